"""Benchmark table of the learned diffusion samplers: method × loss × target.

    python benchmarks/diffusion_samplers.py                                  # full sweep (hours on 2 CPUs)
    python benchmarks/diffusion_samplers.py --targets gmm9 --methods dis,pis --losses lv,kl \\
        --iterations 400 --out gmm9.json                                     # a reduced sweep
    python benchmarks/diffusion_samplers.py --print-only gmm9.json           # its table again

For each (target, method, loss, seed): build the sampler from ``--preset`` (plus the budget override),
fit it (seed = the row's seed), draw ``--n-eval`` samples from the learned SDE with a separate generator
(seed + 10⁶), evaluate them with :func:`sampleflow.evaluate`, and record: log Z error of the importance
sampling estimate, ELBO gap, normalised ESS, Sinkhorn, MMD, EMC (entropic mode coverage; mixture targets
only; ``emc`` as ``evaluate`` gives it, i.e. of the importance-weighted samples, and ``emc_raw`` of the raw,
unweighted SDE samples), NFE (training + sampling target evaluations), training wall time, iterations done and iterations
per second. A row that fails (e.g. ``TrainingDivergedError``) is recorded with its error message and the
sweep goes on. ``--out`` is rewritten atomically after every row; ``--resume-from-json`` skips the rows
already in that file (failed rows are retried).

Targets: ``gmm9`` (9-mode grid mixture, d = 2), ``funnel`` (Neal's funnel, d = 10), or any registry name
(``name`` or ``name:dim``).
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import time
import traceback
from pathlib import Path

import torch

import sampleflow as sf
from sampleflow.io import write_json
from sampleflow.metrics.modes import entropic_mode_coverage
from sampleflow.tables import text_table

COLUMNS = ["target", "method", "loss", "seed", "log_Z_error", "elbo_gap", "ess", "sinkhorn", "mmd", "emc",
           "emc_raw", "nfe", "train_s", "iters", "it/s", "stop", "error"]
_TARGET_DIMS = {"funnel": 10}


def make_target(spec: str):
    name, _, dim = spec.partition(":")
    if dim:
        return sf.targets.get(name, dim=int(dim))
    if name in _TARGET_DIMS:
        return sf.targets.get(name, dim=_TARGET_DIMS[name])
    return sf.targets.get(name)


def row_key(row: dict) -> tuple:
    return (row["target"], row["method"], row["loss"], int(row["seed"]))


def _finite(v):
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v


def run_row(target, tname: str, method: str, loss: str, seed: int, a) -> dict:
    row = {"target": tname, "method": method, "loss": loss, "seed": seed}
    overrides = {"loss": loss, "checkpoint_every": None}
    if a.iterations is not None:
        overrides["iterations"] = a.iterations
    if a.time_budget is not None:
        overrides["time_budget"] = a.time_budget  # with the iteration count (preset's or --iterations) as a cap
    sampler = None
    try:
        cls = sf.samplers.get(method)
        cfg = cls.make_config(a.preset, **overrides)
        row["config"] = {"n_steps": cfg.n_steps, "batch_size": cfg.batch_size, "iterations": cfg.iterations,
                         "time_budget": cfg.time_budget, "lr": cfg.lr, "lr_final": cfg.lr_final}
        sampler = cls(target, cfg)
        sampler.fit(generator=seed, progress=False)
        info = sampler.fit_info
        row.update(train_s=float(info["train_seconds"]), iters=int(info["iterations"]),
                   stop=str(info.get("stop_reason")))
        row["it/s"] = row["iters"] / row["train_s"] if row["train_s"] > 0 else None
        hist = sampler.history
        try:
            row["train_logZ_last"] = float(hist["logZ"][-1])
        except Exception:  # noqa: BLE001 - the history is a nicety
            pass
        g = torch.Generator().manual_seed(seed + 10**6)
        samples = sampler.sample(a.n_eval, g)
        m = sf.evaluate(samples, target, seed=seed)
        row["metrics"] = {k: float(v) for k, v in m.items()}
        for k in ("log_Z_error", "log_Z_delta", "elbo_gap", "ess", "sinkhorn", "mmd", "emc"):
            if k in m:
                row[k] = _finite(float(m[k]))
        if "emc" in m:  # mode coverage of the raw (unweighted) SDE samples: the sampler's own collapse
            row["emc_raw"] = float(entropic_mode_coverage(samples.x.detach().to(torch.float64), target))
        row["sample_nfe"] = int(samples.nfe)
        row["train_nfe"] = int(info["train_nfe"])
        row["nfe"] = row["train_nfe"] + row["sample_nfe"]
        row["sample_s"] = float(samples.wall_time)
    except Exception as e:  # noqa: BLE001 - one bad row must not stop the sweep
        row["error"] = f"{type(e).__name__}: {e}"[:300]
        row["traceback"] = traceback.format_exc()
        if sampler is not None and getattr(sampler, "trainer", None) is not None:
            row.setdefault("iters", int(sampler.trainer.iteration))
    return row


def print_table(rows: list[dict], setting: dict) -> None:
    """The text table of ``rows`` and the machine/setting footer."""
    print()
    shown = [{**r, "error": (r["error"][:60] + "…" if len(r["error"]) > 60 else r["error"])} if r.get("error") else r
             for r in rows]
    print(text_table(shown, COLUMNS))
    it, tb = setting.get("iterations"), setting.get("time_budget")
    budget = " / ".join(([f"{it} iterations"] if it is not None else []) + ([f"{tb:g} s"] if tb is not None else []))
    print(f"\ntorch {setting['torch']}, {setting['threads']} thread(s); preset '{setting['preset']}' "
          f"{setting['preset_values']}; budget per run: {budget or 'preset'}; n_eval {setting['n_eval']}. "
          "log_Z_error = |log Z_IS − log Z|; ess normalised; emc of the weighted, emc_raw of the raw samples; "
          "nfe = training + sampling target evaluations; train_s = training wall time.")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", default="pis,dis,dds,cmcd,bridge")
    p.add_argument("--losses", default="lv,kl,tb,lv_start")
    p.add_argument("--targets", default="gmm9,funnel")
    p.add_argument("--preset", default="cpu")
    p.add_argument("--iterations", type=int, default=None, help="training iterations per run (overrides preset)")
    p.add_argument("--time-budget", type=float, default=None, help="training seconds per run; training stops at this or at the iteration count "
                   "(the preset's unless --iterations), whichever comes first")
    p.add_argument("--n-eval", type=int, default=2000, help="samples drawn for the metrics")
    p.add_argument("--seeds", type=int, default=1, help="seeds 0 … seeds-1 per row")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="JSON file of all rows (rewritten after each row)")
    p.add_argument("--resume-from-json", default=None, help="skip the rows already (successfully) in this JSON")
    p.add_argument("--print-only", metavar="JSON", default=None, help="print the table of an --out file and exit")
    a = p.parse_args(argv)
    if a.print_only:
        data = json.loads(Path(a.print_only).read_text())
        print_table(data["rows"], data["setting"])
        return
    torch.set_num_threads(a.threads)

    rows: list[dict] = []
    if a.resume_from_json and Path(a.resume_from_json).exists():
        old = json.loads(Path(a.resume_from_json).read_text())
        rows = [r for r in old.get("rows", []) if not r.get("error")]
        print(f"resuming: {len(rows)} finished rows from {a.resume_from_json}", flush=True)
    done = {row_key(r) for r in rows}
    setting = {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
               "preset": a.preset, "preset_values": sf.samplers.get("dis").presets[a.preset],
               "iterations": a.iterations, "time_budget": a.time_budget, "n_eval": a.n_eval,
               "seeds": a.seeds}

    def save():
        if a.out:
            write_json(a.out, {"setting": setting, "rows": rows})

    for tname in a.targets.split(","):
        target = make_target(tname)
        for method in a.methods.split(","):
            for loss in a.losses.split(","):
                for seed in range(a.seeds):
                    if (tname, method, loss, seed) in done:
                        continue
                    t0 = time.perf_counter()
                    row = run_row(target, tname, method, loss, seed, a)
                    rows.append(row)
                    save()
                    brief = {k: row.get(k) for k in COLUMNS if row.get(k) is not None}
                    print(f"[{time.perf_counter() - t0:.0f} s] {brief}", flush=True)
    save()
    print_table(rows, setting)

if __name__ == "__main__":
    main()
