import os
from pathlib import Path

import pytest
import torch

# Tests read the benchmark data from the shared folder next to the checkout unless told otherwise.
_shared = Path(__file__).resolve().parents[2] / "shared" / "data"
if "SAMPLEFLOW_DATA" not in os.environ and _shared.is_dir():
    os.environ["SAMPLEFLOW_DATA"] = str(_shared)


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """The suite's tensors are small: on a 2-core machine intra-op threads mostly wait on each other
    (seen: 3× slower, and far worse when the machine is busy). One thread for the whole session."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
