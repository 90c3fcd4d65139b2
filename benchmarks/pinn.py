"""PINN sampler (Sun et al. 2024) against the learned diffusion samplers DIS and PIS (log-variance loss).

    OMP_NUM_THREADS=1 python benchmarks/pinn.py                                  # every target, preset budget
    OMP_NUM_THREADS=1 python benchmarks/pinn.py --time-budget 60 --targets gmm9,funnel:10 --methods pinn,dis
    python benchmarks/pinn.py --print-only benchmarks/results/pinn.json          # the table again

For each (target, method, seed): seed torch's global generator (the networks' initialisation) and build
the sampler from ``--preset`` (default "cpu"; DIS and PIS with
``loss="lv"``), fit it with ``generator=seed`` for the preset's iterations (or ``--iterations``) and at most
``--time-budget`` training seconds, draw ``--n-eval`` samples with a separate generator (seed + 10⁶) and
evaluate them with :func:`sampleflow.evaluate`: EMC (entropic mode coverage, mixtures only, of the
importance-weighted samples), |log Z error| of the importance-sampling estimate, Sinkhorn distance to exact
draws, normalised ESS, training and sampling wall time, iterations done. A cell that fails (a diverged
fit, non-finite samples, a missing data file) is recorded as failed with its error and the sweep goes on.

Targets: registry names, ``name`` or ``name:dim``; ``gmm40`` is short for ``mog40:2`` (needs the data file
``mog40_means_d2.npy`` in ``$SAMPLEFLOW_DATA``, see ``sampleflow data list``). Writes ``--out`` (JSON, rewritten
after every cell) and ``--md`` (the Markdown table) and prints the table. ``--pinn-overrides`` sets PINN config
fields per target (keys as written in ``--targets``), e.g. the Funnel/ManyWell settings of benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

import sampleflow as sf
from sampleflow.io import write_json

DEFAULT_TARGETS = "gmm9,gmm25,gmm40,funnel:10,manywell:32"
DEFAULT_METHODS = "pinn,dis,pis"
ALIASES = {"gmm40": "mog40:2", "funnel": "funnel:10", "manywell": "manywell:32"}
COLUMNS = [("target", "target"), ("method", "method"), ("seed", "seed"), ("emc", "EMC"),
           ("log_Z_error", "log Z error"), ("sinkhorn", "Sinkhorn"), ("ess", "ESS"), ("train_s", "train s"),
           ("sample_s", "sample s"), ("iters", "iterations"), ("status", "status")]


def make_target(spec: str):
    name, _, dim = ALIASES.get(spec, spec).partition(":")
    return sf.targets.get(name, dim=int(dim)) if dim else sf.targets.get(name)


def _finite(v):
    return None if v is None or not math.isfinite(float(v)) else float(v)


def run_cell(target, tname: str, method: str, seed: int, a) -> dict:
    row = {"target": tname, "method": method, "seed": seed}
    sampler = None
    if target is None:
        return {**row, "status": "failed", "error": a._target_errors[tname][:300]}
    try:
        cls = sf.samplers.get(method)
        overrides = {"checkpoint_every": None}
        if cls.learned and method != "pinn":
            overrides["loss"] = a.loss
        overrides = {k: v for k, v in overrides.items() if k in {f for f in cls.Config.__dataclass_fields__}}
        if method == "pinn":
            overrides.update(a.pinn_overrides.get(tname, {}))
        cfg = cls.make_config(a.preset, **overrides)
        torch.manual_seed(seed)   # network initialisation draws from torch's global generator, not fit's
        sampler = cls(target, cfg)
        sampler.fit(generator=seed, iterations=a.iterations, time_budget=a.time_budget, progress=False)
        info = sampler.fit_info
        row.update(train_s=float(info["train_seconds"]), iters=int(info["iterations"]),
                   stop=str(info.get("stop_reason")))
        samples = sampler.sample(a.n_eval, torch.Generator().manual_seed(seed + 10 ** 6))
        row["sample_s"] = float(samples.wall_time)
        m = sf.evaluate(samples, target, seed=seed, metrics=["log_Z_is", "log_Z_error", "ess", "sinkhorn", "emc"])
        for k in ("log_Z_is", "log_Z_error", "ess", "sinkhorn", "emc"):
            if k in m:
                row[k] = _finite(m[k])
        if "log_Z_is" in m and row.get("log_Z_is") is None:
            raise FloatingPointError("non-finite importance-sampling log Z (diverged)")
        if method == "pinn":
            row["log_Z_path"] = _finite(sampler.log_Z_path_estimate())
        row["status"] = "ok"
    except Exception as e:  # noqa: BLE001 - a failed cell is a result, not a crash
        row["status"] = "failed"
        row["error"] = f"{type(e).__name__}: {e}"[:300]
        row["traceback"] = traceback.format_exc()
        if sampler is not None and getattr(sampler, "trainer", None) is not None:
            row.setdefault("iters", int(sampler.trainer.iteration))
    return row


def _fmt(key: str, v) -> str:
    if v is None:
        return "—"
    if key in ("train_s", "sample_s"):
        return f"{v:.1f}"
    if key in ("seed", "iters"):
        return str(int(v))
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return str(v)


def markdown(rows: list[dict], setting: dict) -> str:
    lines = ["| " + " | ".join(h for _, h in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        cells = []
        for k, _ in COLUMNS:
            v = r.get(k)
            if k == "status" and r.get("status") == "failed":
                v = "failed: " + r.get("error", "")[:80].replace("|", "/")
            cells.append(_fmt(k, v))
        lines.append("| " + " | ".join(cells) + " |")
    out = "\n".join(lines)
    if setting.get("seeds", 1) > 1:
        out += "\n\nMean over seeds (failed cells left out; n = successful seeds):\n\n" + _summary(rows)
    tb, it = setting.get("time_budget"), setting.get("iterations")
    budget = " / ".join(([f"{it} iterations"] if it else ["the preset's iterations"])
                        + ([f"at most {tb:g} s of training"] if tb else []))
    out += (f"\n\nPreset '{setting['preset']}', diffusion loss '{setting['loss']}', budget per fit: {budget}; "
            f"n_eval {setting['n_eval']}; torch {setting['torch']}, {setting['threads']} thread(s). "
            "EMC of the importance-weighted samples (mixtures only); log Z error = |log Z_IS − log Z|; "
            "Sinkhorn against exact draws (evaluate's protocol); ESS normalised. Wall times on a shared machine "
            "are noisy.")
    return out


def _summary(rows: list[dict]) -> str:
    keys = ["emc", "log_Z_error", "sinkhorn", "ess", "train_s"]
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["target"], r["method"]), []).append(r)
    lines = ["| target | method | n | " + " | ".join(keys) + " |", "|" + "---|" * (3 + len(keys))]
    for (t, m), rs in groups.items():
        ok = [r for r in rs if r.get("status") == "ok"]
        cells = []
        for k in keys:
            vals = [r[k] for r in ok if r.get(k) is not None]
            cells.append("—" if not vals else (f"{statistics.mean(vals):.3g} ± {statistics.stdev(vals):.2g}"
                                                if len(vals) > 1 else f"{vals[0]:.3g}"))
        lines.append(f"| {t} | {m} | {len(ok)}/{len(rs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _positive(kind):
    def parse(s):
        v = kind(s)
        if not v > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {s}")
        return v
    return parse


def _json_object(s):
    try:
        v = json.loads(s)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON: {e}") from None
    if not (isinstance(v, dict) and all(isinstance(o, dict) for o in v.values())):
        raise argparse.ArgumentTypeError('must map target names to override objects, e.g. {"gmm9": {"width": 32}}')
    return v


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--targets", default=DEFAULT_TARGETS, help=f"comma-separated (default {DEFAULT_TARGETS})")
    p.add_argument("--methods", default=DEFAULT_METHODS, help="comma-separated sampler names (default pinn,dis,pis)")
    p.add_argument("--preset", default="cpu")
    p.add_argument("--loss", default="lv", help="loss of the diffusion samplers (default lv, log-variance)")
    p.add_argument("--iterations", type=_positive(int), default=None, help="training iterations (overrides preset)")
    p.add_argument("--time-budget", type=_positive(float), default=None,
                   help="training seconds per fit (stops at this or the iteration count, whichever first)")
    p.add_argument("--seeds", type=_positive(int), default=1, help="seeds 0 … seeds-1")
    p.add_argument("--n-eval", type=_positive(int), default=2000)
    p.add_argument("--threads", type=_positive(int), default=1)
    p.add_argument("--out", default="benchmarks/results/pinn.json")
    p.add_argument("--md", default="benchmarks/results/pinn.md")
    p.add_argument("--pinn-overrides", metavar="JSON", default="{}", type=_json_object,
                   help='PINN config overrides per target, e.g. \'{"funnel:10": {"prior_std": 3.0}}\'')
    p.add_argument("--print-only", metavar="JSON", default=None)
    a = p.parse_args(argv)
    if a.print_only:
        data = json.loads(Path(a.print_only).read_text())
        print(markdown(data["rows"], data["setting"]))
        return
    targets, methods = a.targets.split(","), a.methods.split(",")
    for m in methods:
        try:
            sf.samplers.get(m)
        except Exception as e:  # noqa: BLE001
            p.error(f"--methods: {e}")
    stray = sorted(set(a.pinn_overrides) - set(targets))
    if stray:
        p.error(f"--pinn-overrides: {stray} are not among --targets {targets}")
    torch.set_num_threads(a.threads)
    setting = {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
               "preset": a.preset, "loss": a.loss, "iterations": a.iterations, "time_budget": a.time_budget,
               "n_eval": a.n_eval, "seeds": a.seeds, "targets": targets, "methods": methods,
               "pinn_overrides": a.pinn_overrides}
    rows: list[dict] = []
    a._target_errors = {}

    def save():
        if a.out:
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            write_json(a.out, {"setting": setting, "rows": rows})

    t_start = time.perf_counter()
    for tname in targets:
        try:
            target = make_target(tname)
        except Exception as e:  # noqa: BLE001 - e.g. a missing data file: its cells are failed
            target, a._target_errors[tname] = None, f"{type(e).__name__}: {e}"
        for method in methods:
            for seed in range(a.seeds):
                t0 = time.perf_counter()
                row = run_cell(target, tname, method, seed, a)
                rows.append(row)
                save()
                brief = {k: row.get(k) for k, _ in COLUMNS if row.get(k) is not None}
                print(f"[{time.perf_counter() - t0:.0f} s] {brief}" + (f" {row['error']}" if row.get("error") else ""),
                      flush=True)
    setting["total_seconds"] = time.perf_counter() - t_start
    save()
    table = markdown(rows, setting)
    if a.md:
        Path(a.md).parent.mkdir(parents=True, exist_ok=True)
        Path(a.md).write_text(f"# PINN vs DIS / PIS\n\n`{' '.join(['python', 'benchmarks/pinn.py', *(sys.argv[1:] if argv is None else argv)])}`"
                              f"\n\n{table}\n")
    print()
    print(table)


if __name__ == "__main__":
    main()
