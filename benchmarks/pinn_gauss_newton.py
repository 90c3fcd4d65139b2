"""Gauss–Newton fine-tuning against Adam alone at the same wall time, for the PINN sampler.

Protocol, per case and seed: build the case's PINN (``torch`` initialisation from ``init_seed`` = seed) and fit it
with Adam for the case's iterations and learning-rate schedule. From that same state, then

* **Gauss–Newton**: damped Gauss–Newton steps (:meth:`PINN.fine_tune`, the direct solve with the row-wise
  Jacobian, a fresh collocation batch of ``batch`` points per step, backtracking line search on fresh points or
  on the batch, ``line_search``) until
  ``--seconds`` of wall time have passed;
* **Adam alone**: Adam continued (fresh optimiser state, constant learning rate) for exactly the wall time the
  Gauss–Newton run took, once at the case's learning rate and once at a tenth of it.

For the start and the three results: the mean squared residual at 4096 held-out collocation points (seed 99,
none of them a training point), |F(1) − log Z| (the simulation-free log Z of the learned path), the
importance-sampling log Z error as the root mean square of log Ẑ − log Z over ``--repeats`` independent draws of
``--n`` samples (one draw of 2000 has a Monte Carlo error of ≈ √((1/ESS − 1)/n) ≈ 0.02 at ESS 0.5, which hid
any difference in an earlier version of this benchmark), the mean normalised ESS and, for mixtures, the entropic
mode coverage of the first draw.

    OMP_NUM_THREADS=1 python benchmarks/pinn_gauss_newton.py                      # every case, seeds 0 and 1
    OMP_NUM_THREADS=1 python benchmarks/pinn_gauss_newton.py --cases gmm9-small --seeds 1 --seconds 20
    python benchmarks/pinn_gauss_newton.py --print-only benchmarks/results/pinn_gauss_newton.json

Writes ``--out`` (JSON, rewritten after every case) and ``--md`` (the Markdown table) and prints the table.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import time
from pathlib import Path

import torch

import sampleflow as sf
from sampleflow.io import write_json
from sampleflow.samplers.pinn import PINN
from sampleflow.tables import markdown_table

CASES = {
    # a Gaussian path (p₀ = N(0, 2.5² I) to N(0, I)): smooth and exactly representable, the regime of
    # Müller & Zeinhofer (2023), where Gauss–Newton converges fast
    "gaussian": {"target": ("gaussian", {"dim": 2}), "batch": 1024, "damping": 1e-6, "line_search": "fresh",
                 "config": {"width": 32, "depth": 3, "dtype": "float64", "iterations": 3000, "lr": 1e-3,
                            "lr_final": 1e-4}},
    # the 9-mode grid mixture with a small network (P ≈ 5 500) in float64
    "gmm9-small": {"target": ("gmm9", {}), "batch": 1024, "damping": 1e-4, "line_search": "fresh",
                   "config": {"width": 32, "depth": 3, "dtype": "float64", "iterations": 3000, "lr": 1e-3,
                              "lr_final": 1e-4}},
    # the cpu preset itself (width 64, P ≈ 22 000, float32)
    "gmm9-cpu": {"target": ("gmm9", {}), "batch": 2048, "damping": 1e-4, "line_search": "batch",
                 "config": {"iterations": 1500}},
}
COLUMNS = [("case", "case"), ("seed", "seed"), ("run", "run"), ("seconds", "wall s"), ("steps", "steps"),
           ("residual", "held-out residual"), ("F1_error", "\\|F(1) − log Z\\|"), ("is_rmse", "IS log Z RMSE"),
           ("ess", "ESS"), ("emc", "EMC")]


def held_out_residual(s: PINN) -> float:
    t, x = s.collocation(4096, torch.Generator().manual_seed(99))
    r = s.residual(t, x).detach()
    return float((r * r).mean())


def measure(s: PINN, target, n: int, repeats: int, seed: int) -> dict:
    exact = target.log_Z.value
    errors, ess, emc = [], [], None
    for k in range(repeats):
        out = s.sample(n, torch.Generator().manual_seed(10 ** 6 + 1000 * seed + k))
        errors.append(out.log_Z() - exact)
        ess.append(out.ess())
        if k == 0 and hasattr(target, "component_log_probs"):
            emc = sf.evaluate(out, target, seed=seed, metrics=["emc"]).get("emc")
    return {"residual": held_out_residual(s), "F1_error": abs(s.log_Z_path_estimate() - exact),
            "is_rmse": math.sqrt(sum(e * e for e in errors) / repeats), "ess": sum(ess) / repeats, "emc": emc}


def run_case(name: str, seed: int, a) -> list[dict]:
    case = CASES[name]
    tname, params = case["target"]
    target = sf.targets.get(tname, **params)
    cfg = PINN.make_config("cpu", **{**case["config"], "init_seed": seed, "checkpoint_every": None})
    base = PINN(target, cfg)
    t0 = time.perf_counter()
    base.fit(generator=seed, progress=False)
    row = {"case": name, "seed": seed}
    rows = [{**row, "run": f"Adam start ({cfg.iterations} it)", "seconds": time.perf_counter() - t0,
             "steps": cfg.iterations, **measure(base, target, a.n, a.repeats, seed)}]
    gn = copy.deepcopy(base)
    t0, steps, etas = time.perf_counter(), 0, []
    while time.perf_counter() - t0 < a.seconds:
        etas += [s["eta"] for s in gn.fine_tune(1, batch_size=case["batch"], generator=seed * 10 ** 4 + steps,
                                                 damping=case["damping"], solver="direct",
                                                 line_search=case["line_search"])]
        steps += 1
    seconds = time.perf_counter() - t0
    ls = "line search on fresh points" if case["line_search"] == "fresh" else "line search on the batch"
    rows.append({**row, "run": f"+ Gauss–Newton (B = {case['batch']}, λ = {case['damping']:g}, {ls})",
                 "seconds": seconds, "steps": steps, "etas": etas, **measure(gn, target, a.n, a.repeats, seed)})
    for lr in (cfg.lr, cfg.lr / 10):
        more = copy.deepcopy(base)
        more.config = PINN.make_config("cpu", **{**case["config"], "init_seed": seed, "iterations": 10 ** 7,
                                                 "lr": lr, "lr_final": None, "checkpoint_every": None})
        t0 = time.perf_counter()
        more.fit(generator=seed + 1, time_budget=seconds, progress=False)
        rows.append({**row, "run": f"+ Adam alone, lr {lr:g}", "seconds": time.perf_counter() - t0,
                     "steps": more.trainer.iteration, **measure(more, target, a.n, a.repeats, seed)})
    return rows


def markdown(rows: list[dict], setting: dict) -> str:
    shown = [{h: round(r[k], 1) if k == "seconds" else r.get(k) for k, h in COLUMNS} for r in rows]
    return markdown_table(shown, [h for _, h in COLUMNS]) + (
        f"\n\n{setting['seconds']:g} s of fine-tuning per run; IS log Z RMSE over {setting['repeats']} draws of "
        f"{setting['n']} samples; torch {setting['torch']}, {setting['threads']} thread(s). 'steps': Adam "
        "iterations or Gauss–Newton steps.")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {list(CASES)}")
    p.add_argument("--seeds", type=int, default=2, help="seeds 0 … seeds-1")
    p.add_argument("--seconds", type=float, default=30.0, help="wall time of each fine-tuning run")
    p.add_argument("--n", type=int, default=2000, help="samples per importance-sampling draw")
    p.add_argument("--repeats", type=int, default=5, help="independent draws for the log Z RMSE")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/results/pinn_gauss_newton.json")
    p.add_argument("--md", default="benchmarks/results/pinn_gauss_newton.md")
    p.add_argument("--print-only", metavar="JSON", default=None)
    a = p.parse_args(argv)
    if a.print_only:
        data = json.loads(Path(a.print_only).read_text())
        print(markdown(data["rows"], data["setting"]))
        return
    unknown = [c for c in a.cases.split(",") if c not in CASES]
    if unknown:
        p.error(f"--cases: unknown {unknown}; choose from {list(CASES)}")
    for flag in ("seeds", "n", "repeats", "threads"):
        if getattr(a, flag) < 1:
            p.error(f"--{flag} must be a positive integer")
    if not a.seconds > 0:
        p.error("--seconds must be positive")
    torch.set_num_threads(a.threads)
    setting = {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
               "seconds": a.seconds, "n": a.n, "repeats": a.repeats, "cases": {c: CASES[c] for c in a.cases.split(",")}}
    rows: list[dict] = []
    for name in a.cases.split(","):
        for seed in range(a.seeds):
            rows += run_case(name, seed, a)
            write_json(a.out, {"setting": setting, "rows": rows})
            print(markdown(rows[-4:], setting).split("\n\n")[0], flush=True)
    md = markdown(rows, setting)
    Path(a.md).write_text("# Gauss–Newton against Adam alone\n\n" + md + "\n")
    print(md)


if __name__ == "__main__":
    main()
