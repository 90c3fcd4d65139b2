"""The zoo's log π̃ against the check values of the shared data folder (TARGETS.md §6).

Each row gives a point x_k = base_k + c + s·cos(0.7·k) (base = row ``base_row`` of ``base_file``, else 0) and
log π̃(x) as TARGETS.md defines it — unnormalised where TARGETS.md is (ManyWell, multi-well), so log_prob must
equal that formula exactly, with log Z carrying the constant.
"""
from __future__ import annotations

import math
import re

import pytest
import torch

import sampleflow.targets as T
from tests.targets.checks import check_point, check_rows


def _spec(name: str):
    """CSV target name -> (registry name, params, rel tolerance), or None for targets outside the zoo."""
    fixed = {"funnel_d10": ("funnel", {"dim": 10}),
             "gmm9_grid_d2": ("gmm9", {}),
             "gmm25_grid_d2": ("gmm25", {}),
             "gmm40_fab_d2": ("gmm40_fab", {})}
    if name in fixed:
        reg, params = fixed[name]
    elif m := re.fullmatch(r"mog40_be_d(\d+)", name):
        reg, params = "mog40", {"dim": int(m[1])}
    elif m := re.fullmatch(r"mos10_d(\d+)", name):
        reg, params = "mos10", {"dim": int(m[1])}
    elif m := re.fullmatch(r"manywell_d(\d+)", name):
        reg, params = "manywell", {"dim": int(m[1])}
    elif m := re.fullmatch(r"multiwell_d(\d+)_m(\d+)_delta([0-9.]+)", name):
        reg, params = "multiwell", {"dim": int(m[1]), "m": int(m[2]), "delta": float(m[3])}
    else:
        return None
    # the 9-GMM's check values carry gfn-diffusion's sd literal 0.5477222 (variance 0.29999961)
    return reg, params, (1e-6 if reg == "gmm9" else 1e-9)


ROWS = check_rows()
OURS = [r for r in ROWS if _spec(r["target"]) is not None]
ZOO_PREFIXES = ("funnel", "gmm", "mog", "mos", "manywell", "multiwell")


def test_every_zoo_row_is_checked():
    zoo_rows = [r for r in ROWS if r["target"].startswith(ZOO_PREFIXES)]
    assert zoo_rows and len(zoo_rows) == len(OURS), sorted({r["target"] for r in zoo_rows} - {r["target"] for r in OURS})
    assert {_spec(r["target"])[0] for r in OURS} == {"funnel", "gmm9", "gmm25", "mog40", "gmm40_fab", "mos10",
                                                      "manywell", "multiwell"}


@pytest.mark.parametrize("row", OURS, ids=[f"{r['target']}-c{r['c']}-s{r['s']}" for r in OURS])
def test_log_density_check_value(row):
    reg, params, rel = _spec(row["target"])
    t = T.get(reg, **params)
    assert t.dim == int(row["dim"])
    x = check_point(row)
    want = float(row["log_density"])
    got = float(t.log_prob(x))
    assert math.isclose(got, want, rel_tol=rel, abs_tol=0.0), (got, want)
    # batched evaluation gives the same number
    assert math.isclose(float(t.log_prob(x.expand(3, -1))[1]), got, rel_tol=1e-14, abs_tol=1e-12)
