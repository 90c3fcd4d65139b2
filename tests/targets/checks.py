"""The shipped log-density check values (TARGETS.md §6): rows of logdensity_checks.csv and their points."""
import csv

import numpy as np
import torch

from sampleflow.targets import data


def check_rows() -> list[dict]:
    with open(data.path("logdensity_checks.csv"), newline="") as f:
        return list(csv.DictReader(f))


def check_point(row) -> torch.Tensor:
    """x_k = base_k + c + s·cos(0.7·k), k = 0..d−1, base = row ``base_row`` of ``base_file`` (zero if empty)."""
    d = int(row["dim"])
    k = np.arange(d, dtype=np.float64)
    base = np.zeros(d)
    if row["base_file"]:
        base = np.asarray(data.load_array(row["base_file"]), dtype=np.float64)[int(row["base_row"])].reshape(d)
    return torch.as_tensor(base + float(row["c"]) + float(row["s"]) * np.cos(0.7 * k), dtype=torch.float64)
