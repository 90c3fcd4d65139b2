"""The ``sampleflow`` command: a thin layer over the Python API.

    sampleflow targets                          list the registry
    sampleflow samplers                         list the samplers
    sampleflow sample --target NAME|file.py:fn [--dim D] --sampler NAME -n N --seed S --out DIR
                      [--loss lv --preset cpu --resume]  (learned samplers: checkpoint, history, curves)
    sampleflow evaluate samples.npz --target NAME
    sampleflow data list | path | fetch NAME [--base-url URL]
    sampleflow demo [--out DIR --jobs N]           the `quick` benchmark suite and its report (= make demo)
    sampleflow generate train --data moons|circles|swiss_roll|gmm|digits|file.npy --out RUN
                      [--preset cpu --iterations N --sde vp --parametrisation eps --seed S --resume]
    sampleflow generate sample RUN --sampler heun --steps 18 -n 10000 [--out DIR --seed S]
    sampleflow bench suites                     list the shipped suites
    sampleflow bench run SUITE|file.yaml --out DIR [--jobs N | --executor ray --address HOST:PORT]
                      [--gpus-per-cell G --seeds 0,1 --retry-failed --no-report]
    sampleflow bench results --out DIR [--suite S --sampler L --target L --status done --metric NAME --csv F]
    sampleflow bench report --out DIR [--suite S]
"""
from __future__ import annotations

import argparse
import dataclasses
import ast
import json
import os
import sys
from pathlib import Path

__all__ = ["main", "build_parser"]


def _value(text: str):
    """A CLI value: a Python literal (number, list, bool, None) or else the plain string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _key_values(pairs: list[str] | None, flag: str) -> dict:
    out = {}
    for p in pairs or []:
        key, sep, val = p.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} expects KEY=VALUE, got {p!r}")
        out[key.replace("-", "_")] = _value(val)
    return out


def _target(args):
    from .targets import get
    from .targets.user import is_function_spec, load_function_target
    params = _key_values(args.param, "--param")
    if is_function_spec(args.target):
        return load_function_target(args.target, args.dim)
    if args.dim is not None:
        params["dim"] = args.dim
    return get(args.target, **params)


def _add_target_args(p):
    p.add_argument("--target", required=True, help="registry name (see `sampleflow targets`) or file.py:function")
    p.add_argument("--dim", type=int, help="dimension (required for file.py:function targets)")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="target parameter (repeatable)")


def cmd_targets(args) -> int:
    from .tables import text_table
    from .targets import entries, get
    from .targets.data import DataFileError
    rows = []
    for e in entries():
        for params in e.variants:
            label = e.name + "".join(f" {k}={v}" for k, v in params.items())
            try:
                d = get(e.name, **params).describe()
            except DataFileError as err:  # a missing data file should not hide the rest of the list
                d = {"dim": None, "log_Z": None, "log_Z_source": f"needs a data file: {err.file} "
                                                                  "(see `sampleflow data list`)"}
            log_z = None if d["log_Z"] is None else f"{d['log_Z']:.10g}"
            if d.get("log_Z_error"):
                log_z += f" ± {d['log_Z_error']:.2g}"
            rows.append({"target": label, "dim": d["dim"], "log Z": log_z,
                         "log Z source": d.get("log_Z_source"), "exact samples": d.get("exact_sampler"),
                         "reference samples": d.get("reference_samples")})
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(text_table(rows, ["target", "dim", "log Z", "log Z source", "exact samples", "reference samples"]))
    return 0


def cmd_samplers(args) -> int:
    from . import samplers
    for name in samplers.names():
        cls = samplers.get(name)
        print(f"{name:12s} {cls.__doc__.strip().splitlines()[0] if cls.__doc__ else ''}")
    return 0


def _fit_learned(cls, target, overrides, args, out: Path):
    """Train a learned sampler with its checkpoint in ``out``; write its history and training curves."""
    from .bench.cell import write_training_outputs
    sampler = cls(target, cls.make_config(args.preset, **overrides))
    ckpt = out / "checkpoint.pt"
    if args.resume and not ckpt.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {ckpt} (run without --resume first)")
    budget = {k: v for k, v in (("iterations", args.iterations), ("time_budget", args.time_budget)) if v is not None}
    sampler.fit(generator=args.seed, checkpoint=ckpt, resume=args.resume, **budget)
    loss = f" ({sampler.config.loss})" if hasattr(sampler.config, "loss") else ""
    write_training_outputs(sampler, target, out, f"{args.sampler}{loss} on {target.name}")
    return sampler


def cmd_sample(args) -> int:
    from ._rng import make_generator
    from .api import sample
    from .io import write_json
    from .metrics.evaluate import evaluate
    from .plots import samples_picture
    from .samplers import get as get_sampler
    target = _target(args)
    overrides = _key_values(args.set, "--set")
    if args.loss is not None:
        overrides["loss"] = args.loss
    cls = get_sampler(args.sampler)
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    if args.steps is not None:
        if "n_steps" not in fields:
            raise ValueError(f"--steps: sampler '{args.sampler}' has no step count (n_steps); "
                             f"its options are {sorted(fields)}")
        overrides["n_steps"] = args.steps
    if "keep_trajectory" in fields and "keep_trajectory" not in overrides:
        steps = overrides.get("n_steps", cls.make_config(args.preset).n_steps)
        overrides["keep_trajectory"] = max(1, steps // 50)   # about 50 frames for the trajectory picture
    out = Path(args.out)
    written = []
    if cls.learned:
        try:
            sampler = _fit_learned(cls, target, overrides, args, out)
        except KeyboardInterrupt:
            print(f"interrupted: the training state is in {out / 'checkpoint.pt'}; run the same command with "
                  "--resume to continue", file=sys.stderr)
            return 130
        s = sampler.sample(args.n, generator=make_generator(args.seed + 1, "cpu"))
        written += [out / "checkpoint.pt", out / "sampler.pt", out / "history.csv", out / "training.png"]
        if hasattr(sampler, "figures"):          # method-specific pictures (e.g. the PINN velocity field)
            written += sampler.figures(out, generator=make_generator(args.seed + 2, "cpu"))
    else:
        if args.loss is not None or args.resume or args.iterations is not None or args.time_budget is not None:
            raise ValueError(f"--loss/--resume/--iterations/--time-budget apply to learned samplers; "
                             f"'{args.sampler}' is not learned")
        s = sample(target, args.sampler, n=args.n, seed=args.seed, preset=args.preset, **overrides)
    s.to_npz(out / "samples.npz")
    metrics = evaluate(s, target)
    write_json(out / "metrics.json", {"target": target.describe(), "sampler": args.sampler, "seed": args.seed,
                                      "preset": args.preset, "overrides": overrides, "nfe": s.nfe,
                                      "wall_time": s.wall_time, "metrics": metrics})
    samples_picture(s, target, out / "samples.png", seed=args.seed, title=f"{args.sampler} on {target.name} (n={s.n})")
    written += [out / "samples.npz", out / "metrics.json", out / "samples.png"]
    written += _write_particle_outputs(s, target, args, out)
    print("wrote " + ", ".join(str(p) for p in written))
    _print_metrics(metrics)
    return 0


def _write_particle_outputs(s, target, args, out: Path) -> list[Path]:
    """Per-step diagnostics (CSV + picture) and the trajectory picture, where the sampler produced them."""
    from ._rng import make_generator
    from .io import write_columns_csv
    from .plots import particle_trajectories, step_diagnostics
    written = []
    diag = s.info.get("diagnostics")
    if diag:
        write_columns_csv(out / "diagnostics.csv", diag)
        step_diagnostics(diag, out / "diagnostics.png", title=f"{args.sampler} on {target.name}: per step")
        written += [out / "diagnostics.csv", out / "diagnostics.png"]
    mon = s.info.get("monitors")
    if mon:
        write_columns_csv(out / "monitors.csv", mon)
        written.append(out / "monitors.csv")
    if s.trajectory is not None:
        particle_trajectories(s.trajectory, out / "trajectory.png", box=target.box,
                              reference=target.reference_points(2000, make_generator(12345)),
                              title=f"{args.sampler} on {target.name}: particle paths")
        written.append(out / "trajectory.png")
    return written


def _print_metrics(metrics: dict) -> None:
    from .tables import format_value
    width = max(len(k) for k in metrics) if metrics else 0
    for k, v in metrics.items():
        print(f"  {k:{width}s}  {format_value(v)}")


def cmd_evaluate(args) -> int:
    from .io import write_json
    from .metrics.evaluate import evaluate
    from .samples import Samples
    target = _target(args)
    s = Samples.from_npz(args.samples)
    if s.dim != target.dim:
        raise ValueError(f"samples in {args.samples} have dimension {s.dim}, target '{target.name}' "
                         f"has dim {target.dim}")
    metrics = evaluate(s, target, seed=args.seed)
    if args.out:
        write_json(args.out, metrics)
    if args.json:
        print(json.dumps(metrics, indent=1))
    else:
        _print_metrics(metrics)
    return 0


def cmd_data(args) -> int:
    from .tables import text_table
    from .targets import data
    if args.data_cmd == "path":
        print(data.data_dir())
    elif args.data_cmd == "list":
        print(f"data folder: {data.data_dir()}")
        print(text_table(data.status(), ["name", "present", "bytes", "downloadable", "source"]))
    elif args.data_cmd == "fetch":
        names = sorted(data.FILES) if args.name == "all" else [args.name]
        for name in names:
            p = data.fetch(name, base_url=args.base_url, force=args.force)
            print(f"{name}: ok ({p})")
    return 0


def cmd_demo(args) -> int:
    """``make demo``: the ``quick`` suite into ``--out`` (resumable like any suite), then its report."""
    args.suite, args.executor, args.address, args.gpus_per_cell = "quick", "local", None, 0
    args.seeds, args.retry_failed, args.no_report, args.bench_cmd = None, False, False, "run"
    return cmd_bench(args)


def cmd_generate(args) -> int:
    """Score-based generative models from data: ``generate train`` / ``generate sample``."""
    from .generative.run import sample_run, train_run
    if args.gen_cmd == "train":
        overrides = _key_values(args.set, "--set")
        for key in ("sde", "parametrisation"):
            if getattr(args, key) is not None:
                overrides[key] = getattr(args, key)
        if args.iterations is not None and args.iterations < 1:
            raise ValueError(f"--iterations must be a positive integer, got {args.iterations}")
        out = Path(args.out)
        try:
            s = train_run(args.data, out, preset=args.preset, seed=args.seed, resume=args.resume,
                          iterations=args.iterations, time_budget=args.time_budget, n=args.n, **overrides)
        except KeyboardInterrupt:
            print(f"interrupted: the training state is in {out / 'checkpoint.pt'}; run the same command with "
                  "--resume to continue", file=sys.stderr)
            return 130
        written = [out / name for name in ("checkpoint.pt", "model.pt", "history.csv", "training.png", "run.json")]
        print("wrote " + ", ".join(str(p) for p in written))
        print(f"  iterations {s['iterations']}, {s['train_seconds']:.1f} s, final loss {s['final_loss']:.4g}")
        return 0
    res = sample_run(args.run, sampler=args.sampler, steps=args.steps, n=args.n, seed=args.seed, out=args.out)
    out = Path(args.out) if args.out else Path(args.run)
    print("wrote " + ", ".join(str(out / name) for name in ("samples.npz", "metrics.json", "samples.png")))
    _print_metrics({k: v for k, v in res.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
    return 0


def cmd_bench(args) -> int:
    """The benchmark suite: ``bench suites | run | results | report``."""
    from .bench import SuiteError, load_suite, shipped_suites
    from .bench.runner import STORE_NAME, run_suite
    from .bench.store import ResultsStore
    from .tables import text_table
    if args.bench_cmd == "suites":
        for name, path in sorted(shipped_suites().items()):
            suite = load_suite(path)
            print(f"{name:10s} {len(suite.cells()):4d} cells  {suite.description}")
        return 0
    out = Path(args.out)
    if args.bench_cmd == "run":
        suite = load_suite(args.suite)
        if args.seeds is not None:
            from .bench.suite import with_overrides
            suite = with_overrides(suite, seeds=tuple(_int_list(args.seeds, "--seeds")))
        if args.jobs < 1:
            raise ValueError(f"--jobs must be a positive integer, got {args.jobs}")
        try:
            summary = run_suite(suite, out, executor=args.executor, jobs=args.jobs, address=args.address,
                                gpus_per_cell=args.gpus_per_cell, threads=args.threads,
                                retry_failed=args.retry_failed)
        except KeyboardInterrupt:
            print(f"interrupted: run the same command again to resume (finished cells are kept in {out / STORE_NAME})",
                  file=sys.stderr)
            return 130
        print(summary.line())
        if not args.no_report:
            _bench_report(out, cell_ids=[c.cell_id for c in suite.cells()])
        return 0
    if not (out / STORE_NAME).is_file():
        raise FileNotFoundError(f"--out: no results store at {out / STORE_NAME} (run `sampleflow bench run` first)")
    if args.bench_cmd == "report":
        if args.suite is None:
            _bench_report(out)
        else:          # a suite file or shipped name: exactly its current cells; else cells stored under that name
            try:
                _bench_report(out, cell_ids=[c.cell_id for c in load_suite(args.suite).cells()])
            except SuiteError:
                _bench_report(out, suite=args.suite)
        return 0
    with ResultsStore(out / STORE_NAME) as store:             # bench results
        rows = store.cells(suite=args.suite, sampler=args.sampler, target=args.target, status=args.status)
        if args.csv:
            store.export_csv(args.csv, rows)
            print(f"wrote {len(rows)} rows to {args.csv}")
    metrics = [args.metric] if args.metric else ["log_Z_error", "ess", "sinkhorn", "mmd", "emc"]
    if args.metric and rows and not any(args.metric in r["metrics"] for r in rows):
        known = sorted({k for r in rows for k in r["metrics"]})
        raise ValueError(f"--metric: no cell has a metric {args.metric!r}; known: {known}")
    table = [{"target": r["target"], "sampler": r["sampler"], "seed": r["seed"], "status": r["status"],
              **{m: r["metrics"].get(m) for m in metrics}, "wall_time": r["wall_time"]} for r in rows]
    if args.json:
        print(json.dumps(table, indent=1))
    else:
        print(text_table(table, ["target", "sampler", "seed", "status", *metrics, "wall_time"]))
    return 0


def _bench_report(out: Path, suite: str | None = None, cell_ids: list[str] | None = None) -> None:
    """Write the report of the selected cells (all, a suite name's, or exactly ``cell_ids``) and print a short
    summary: per target and sampler, the mean ± std over seeds of the main metrics."""
    from .bench.report import format_mean_std, summary_rows, write_report
    from .bench.runner import STORE_NAME
    from .bench.store import ResultsStore
    from .tables import text_table
    with ResultsStore(out / STORE_NAME) as store:
        cells = store.cells(suite=suite, cell_ids=cell_ids)
    if not cells:
        raise ValueError(f"no cells to report in {out / STORE_NAME}" + (f" for suite {suite!r}" if suite else ""))
    written = write_report(cells, out)
    rows = summary_rows(cells)
    metrics = [m for m in ("log_Z_error", "ess", "sinkhorn", "emc", "wall_time") if any(r.get(m) is not None for r in rows)]
    table = [{"target": r["target"], "sampler": r["sampler"], "seeds": r["seeds"], "failed": r["failed"],
              **{m: format_mean_std(r.get(m), r.get(f"{m}_std")) for m in metrics}} for r in rows]
    if table:
        print(text_table(table, ["target", "sampler", "seeds", "failed", *metrics]))
    print(f"report: {Path(written['html']).resolve()}  (and {Path(written['markdown']).resolve()})")


def _int_list(text: str, flag: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{flag} expects comma-separated integers, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sampleflow", description="Sampling by learned dynamical measure transport.")
    sub = p.add_subparsers(dest="cmd", required=True)

    q = sub.add_parser("targets", help="list the registered targets")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_targets)

    q = sub.add_parser("samplers", help="list the registered samplers")
    q.set_defaults(func=cmd_samplers)

    q = sub.add_parser("sample", help="run a sampler on a target; write samples, metrics and a picture")
    _add_target_args(q)
    q.add_argument("--sampler", required=True)
    q.add_argument("-n", type=int, default=2000, help="number of samples")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--preset", default="default")
    q.add_argument("--set", action="append", metavar="KEY=VALUE", help="sampler option (repeatable)")
    q.add_argument("--out", required=True, help="output folder")
    q.add_argument("--loss", help="loss of a learned sampler: lv, lv_start, kl or tb")
    q.add_argument("--iterations", type=int, help="training iterations of a learned sampler (overrides the preset)")
    q.add_argument("--time-budget", type=float, help="training time budget in seconds (learned samplers)")
    q.add_argument("--resume", action="store_true", help="continue training from DIR/checkpoint.pt")
    q.add_argument("--steps", type=int, help="number of steps of a particle or chain sampler (its n_steps)")
    q.set_defaults(func=cmd_sample)

    q = sub.add_parser("evaluate", help="score an .npz of samples against a target")
    q.add_argument("samples", help=".npz file with an array 'x' (and optionally 'log_weights')")
    _add_target_args(q)
    q.add_argument("--seed", type=int, default=0, help="seed for reference draws and projections")
    q.add_argument("--out", help="write the metrics as JSON here")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_evaluate)

    q = sub.add_parser("data", help="the benchmark data folder")
    dsub = q.add_subparsers(dest="data_cmd", required=True)
    dsub.add_parser("path", help="print the data folder")
    dsub.add_parser("list", help="list the known files and whether they are present")
    f = dsub.add_parser("fetch", help="download a data file (or 'all') and check its SHA-256")
    f.add_argument("name")
    f.add_argument("--base-url", help="a mirror holding the files by name (default: each file's public source)")
    f.add_argument("--force", action="store_true")
    q.set_defaults(func=cmd_data)

    q = sub.add_parser("generate", help="score-based generative models from data: train, then sample")
    gsub = q.add_subparsers(dest="gen_cmd", required=True)
    t = gsub.add_parser("train", help="train a score model on data into a run folder")
    t.add_argument("--data", required=True,
                   help="moons, circles, swiss_roll, gmm, digits, or a .npy/.npz/.csv file (rows = samples)")
    t.add_argument("--out", required=True, help="run folder")
    t.add_argument("--preset", default="cpu", help="default, cpu (2-D data in < 1 min) or digits")
    t.add_argument("--iterations", type=int, help="training iterations (overrides the preset)")
    t.add_argument("--time-budget", type=float, help="training time budget in seconds")
    t.add_argument("--sde", choices=["vp", "subvp", "ve", "edm"])
    t.add_argument("--parametrisation", choices=["eps", "score", "denoiser"])
    t.add_argument("-n", type=int, help="training points of a built-in 2-D data set (default 10000)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="ScoreModelConfig field (repeatable)")
    t.add_argument("--resume", action="store_true", help="continue training from RUN/checkpoint.pt")
    t = gsub.add_parser("sample", help="sample a trained run; write samples.npz, metrics.json, samples.png")
    t.add_argument("run", help="run folder written by `generate train`")
    t.add_argument("--sampler", default="heun",
                   help="heun, rk45, euler_maruyama (em), reverse_diffusion, pc, ode_euler")
    t.add_argument("--steps", type=int, default=18, help="steps (ignored by the adaptive rk45)")
    t.add_argument("-n", type=int, default=10000, help="number of samples")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", help="output folder (default: the run folder)")
    q.set_defaults(func=cmd_generate)

    q = sub.add_parser("bench", help="benchmark suites: run a grid of samplers × targets × seeds, query, report")
    bsub = q.add_subparsers(dest="bench_cmd", required=True)
    bsub.add_parser("suites", help="list the shipped suites")
    b = bsub.add_parser("run", help="run a suite's unfinished cells into a results folder, then write the report")
    b.add_argument("suite", help="a shipped suite (quick, standard, paper) or a suite YAML file")
    b.add_argument("--out", required=True, help="results folder (store, cell folders, report)")
    b.add_argument("--executor", choices=["local", "ray"], default="local")
    b.add_argument("--jobs", type=int, default=1, help="local executor: cells run at once (processes)")
    b.add_argument("--address", help="ray executor: address of an existing cluster (default: start a local one)")
    b.add_argument("--gpus-per-cell", type=float, default=0, help="ray executor: GPUs reserved per cell")
    b.add_argument("--threads", type=int, help="torch threads per cell (default: cores / jobs)")
    b.add_argument("--seeds", help="override the suite's seeds, e.g. 0,1,2")
    b.add_argument("--retry-failed", action="store_true", help="run failed cells again")
    b.add_argument("--no-report", action="store_true", help="do not write the report afterwards")
    b = bsub.add_parser("results", help="query the results store (filters match labels exactly)")
    b.add_argument("--out", required=True, help="results folder")
    for flag in ("--suite", "--sampler", "--target", "--metric"):
        b.add_argument(flag)
    b.add_argument("--status", choices=["pending", "running", "done", "failed"])
    b.add_argument("--csv", help="export the selected cells with every metric to this CSV file")
    b.add_argument("--json", action="store_true")
    b = bsub.add_parser("report", help="write report.md and report.html (with plots) from the store")
    b.add_argument("--out", required=True, help="results folder")
    b.add_argument("--suite", help="only this suite's cells: a suite file or shipped name (exactly its current "
                                   "cells), else the cells stored under that suite name")
    q.set_defaults(func=cmd_bench)

    q = sub.add_parser("demo", help="run the quick benchmark suite and write its report (what `make demo` does)")
    q.add_argument("--out", default="demo_output")
    q.add_argument("--jobs", type=int, default=1, help="cells run at once (processes)")
    q.add_argument("--threads", type=int, help="torch threads per cell (default: cores / jobs)")
    q.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .samplers.registry import UnknownSamplerError
    from .targets.base import TargetInputError
    from .targets.data import DataFileError
    from .targets.registry import UnknownTargetError
    try:
        return args.func(args)
    except (UnknownTargetError, UnknownSamplerError, TargetInputError, DataFileError, ValueError, TypeError,
            FileNotFoundError, NotImplementedError) as e:
        if os.environ.get("SAMPLEFLOW_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
