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
