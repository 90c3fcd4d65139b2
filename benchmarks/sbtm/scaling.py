"""SBTM vs SVGD cost per step against the number of particles n, peak memory, and where an SBTM step's time goes.

    cd /work/main && nice .venv/bin/python benchmarks/sbtm/scaling.py [--quick]

(the parent sets OMP_NUM_THREADS / torch.set_num_threads per worker itself.)

Target: the 1-D mixture 0.25 N(−2, 1) + 0.75 N(2, 1) (sampleflow GaussianMixture), float32, CPU.
* SBTM: SBTMConfig defaults = the paper's network and schedule (ResNet-MLP [128, 128], softsign, AdamW 5e-4,
  per step 10 minibatch iterations of 400 particles with the exact-divergence ISM loss, Euler step 0.01).
  Variants: "sbtm" = the default (hand-derived ISM gradient, sbtm/fused.py, eager), "sbtm_compiled" =
  ``compile=True`` (each training iteration and the score evaluation as one Inductor graph), and the autograd
  reference path ``ScoreTrainer(..., fast=False)``, eager ("sbtm_autograd") and with its compiled loss
  ("sbtm_autograd_compiled", what ``compile=True`` did before the fast path).
  Particles start from the sampler's default start law N(0, 3.5²) (centre / quarter width of the target box).
  The per-step timing skips the one-time initial fit to the start score (``fit_initial``; its cost is
  reported by the memory runs, which use the full sampler). One step = trainer.train(x) [10 iterations] +
  trainer.score(x) [network on all n particles] + target.score(x) + the rest (relative Fisher, Euler
  update), each timed separately; ms/step = median over the timed steps after warm-up steps. As a check,
  the library loop ``sbtm_flow`` is also timed over the same number of steps (mean per step). "CPU ms/step" is
  the process CPU time per step (time.process_time), less sensitive than wall time to other jobs on a shared
  machine (for one thread; with two threads it adds both threads, including OpenMP spin-waiting).
* SVGD: sampleflow's step (median bandwidth over ≤ 500 particles, chunked O(n²) kernel sums with 1024-row
  blocks, AdaGrad update); for n ≥ 3·10⁴ only a few steps are timed (see the table's ``steps`` column).
Each (method, n, threads) runs in a fresh subprocess; peak memory = ``resource.getrusage(RUSAGE_SELF)
.ru_maxrss`` at its end (includes the ~300 MB Python+torch baseline, reported too as ``base MB`` = max RSS
after imports and setup, before the first step).
Memory vs number of steps: the full sampler (``sampleflow.sample(target, "sbtm", n=10⁴, n_steps=K,
keep_trajectory=0)``, including the initial fit) for K = 100 and 1000, peak RSS compared.

Outputs (written as results arrive): results/scaling_steps.csv, results/scaling_memory.csv, and at the end
results/scaling.md (tables) and results/scaling_time.png (log-log time per step vs n, slopes 1 and 2).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RES = HERE / "results"
JAX_REF = {1000: 11.7, 10000: 28.8}   # ms/step, the paper's JAX code, 2 cores (as given in the brief)


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # Linux: kilobytes


# ------------------------------------------------------------------------------------------------ worker
def worker(spec: dict) -> dict:
    import torch
    torch.set_num_threads(spec["threads"])
    os.environ["SAMPLEFLOW_PROGRESS"] = "0"
    from sampleflow.targets.mixtures import GaussianMixture
    target = GaussianMixture([0.25, 0.75], [[-2.0], [2.0]], 1.0, name="mix1d")
    n, kind = spec["n"], spec["kind"]
    out = dict(spec)
    g = torch.Generator().manual_seed(0)
    if kind == "sbtm_run":
        import sampleflow
        base = max_rss_mb()
        t0 = time.perf_counter()
        s = sampleflow.sample(target, "sbtm", n=n, seed=0, n_steps=spec["steps"], keep_trajectory=0)
        out.update(wall_s=time.perf_counter() - t0, init_iterations=s.info["init_iterations"],
                   base_mb=base, peak_mb=max_rss_mb(), finite=bool(torch.isfinite(s.x).all()))
        return out
    x = 3.5 * torch.randn(n, 1, generator=g)
    if kind.startswith("sbtm"):
        from sampleflow.samplers.sbtm import SBTMConfig, ScoreTrainer, build_score_network, sbtm_flow
        from sampleflow.samplers.sbtm.losses import relative_fisher
        # compiled: the warm-up steps pay the compilation; "autograd": the reference path (fast=False)
        cfg = SBTMConfig(compile=kind.endswith("compiled"))
        net = build_score_network(1, cfg, seed=0)
        tr = ScoreTrainer(net, cfg, 1, g, fast=not kind.startswith("sbtm_autograd"))
        out["load_start"] = os.getloadavg()[0]
        base = max_rss_mb()
        parts = {"train": [], "net_all": [], "target": [], "rest": [], "total": []}
        cpu = []
        h = cfg.step_size
        for k in range(spec["warmup"] + spec["steps"]):
            c0 = time.process_time()
            t0 = time.perf_counter()
            tr.train(x)
            t1 = time.perf_counter()
            s = tr.score(x)
            t2 = time.perf_counter()
            gs = target.score(x)
            t3 = time.perf_counter()
            relative_fisher(s, gs)
            x = x + h * (gs - s)
            t4 = time.perf_counter()
            if k >= spec["warmup"]:
                cpu.append(1e3 * (time.process_time() - c0))
                for key, v in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
                    parts[key].append(1e3 * v)
        cfg_flow = SBTMConfig(n_steps=spec["steps"], compile=cfg.compile)
        t0 = time.perf_counter()
        sbtm_flow(x, target.score, tr, cfg_flow, progress_desc=None)
        out["flow_ms"] = 1e3 * (time.perf_counter() - t0) / spec["steps"]
        out.update({f"{k}_ms": statistics.median(v) for k, v in parts.items()})
        out["cpu_ms"] = statistics.median(cpu)
    else:  # svgd
        from sampleflow.samplers.svgd import median_bandwidth, svgd_direction
        base = max_rss_mb()
        times, cpu, hist = [], [], None
        for k in range(spec["warmup"] + spec["steps"]):
            c0 = time.process_time()
            t0 = time.perf_counter()
            bw = median_bandwidth(x, 500)
            phi = svgd_direction(x, target.score(x), bw, 1024)
            g2 = phi * phi
            hist = g2 if hist is None else hist.mul_(0.9).add_(g2, alpha=0.1)
            x = x + 0.01 * phi / (1e-6 + hist.sqrt())
            if k >= spec["warmup"]:
                times.append(1e3 * (time.perf_counter() - t0))
                cpu.append(1e3 * (time.process_time() - c0))
        out["total_ms"] = statistics.median(times)
        out["cpu_ms"] = statistics.median(cpu)
    out.update(base_mb=base, peak_mb=max_rss_mb(), finite=bool(torch.isfinite(x).all()), load=os.getloadavg()[0])
    return out


def launch(spec: dict) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]), MKL_NUM_THREADS=str(spec["threads"]),
               SAMPLEFLOW_PROGRESS="0")
    if spec.get("rep") is not None and spec["threads"] > 1:
        # --sbtm runs: idle OpenMP threads sleep instead of spinning (spinning threads on a loaded 2-core
        # machine made two threads 5-20x slower than one)
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], env=env, capture_output=True,
                       text=True)
    if r.returncode != 0:
        print(r.stderr[-3000:], file=sys.stderr)
        raise RuntimeError(f"worker failed: {spec}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["process_s"] = time.perf_counter() - t0
    return out


# ------------------------------------------------------------------------------------------------ parent
STEP_FIELDS = ["method", "n", "threads", "rep", "warmup", "steps", "total_ms", "cpu_ms", "load_start", "load", "train_ms", "net_all_ms", "target_ms",
               "rest_ms", "flow_ms", "base_mb", "peak_mb", "finite", "process_s"]
MEM_FIELDS = ["n", "steps", "wall_s", "init_iterations", "base_mb", "peak_mb", "finite", "process_s"]


def f(v, nd=3):
    if v is None or v == "":
        return ""
    if isinstance(v, float):
        return f"{v:.{nd}g}"
    return str(v)


def md_table(header, rows):
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                     + ["| " + " | ".join(f(c) for c in r) + " |" for r in rows])


def describe_step(r: dict) -> str:
    text = (f"{r['method']:5s} n={r['n']:>6} thr={r['threads']} {r['total_ms']:9.2f} ms/step "
            f"(cpu {r['cpu_ms']:.1f} ms, load {r['load']:.1f}) peak {r['peak_mb']:.0f} MB (base {r['base_mb']:.0f})")
    if r["method"].startswith("sbtm"):
        text += (f"  train {r['train_ms']:.1f} net {r['net_all_ms']:.1f} target {r['target_ms']:.2f} "
                 f"rest {r['rest_ms']:.2f} flow {r['flow_ms']:.1f}")
    return text


def describe_memory(r: dict) -> str:
    return (f"sbtm full sampler n={r['n']} steps={r['steps']}: {r['wall_s']:.1f} s, peak {r['peak_mb']:.0f} MB "
            f"(base {r['base_mb']:.0f}), init fit {r['init_iterations']} it")


def run_jobs(jobs: list, path: Path, fields: list, describe) -> list:
    """Run each job in a fresh subprocess, appending its row to the CSV ``path`` as soon as it is done
    (a new file when there are jobs; with none the file is left as it is)."""
    rows = []
    if not jobs:
        return rows
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for spec in jobs:
            r = launch(spec)
            if "kind" in r and "method" in fields:
                r["method"] = r.pop("kind")
            rows.append(r)
            w.writerow(r)
            fh.flush()
            print(describe(r), flush=True)
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run: small n, few steps")
    p.add_argument("--steps", type=int, default=5, help="timed steps per (method, n) (after warm-up; SVGD at "
                   "n >= 3e4: 2 and 1)")
    p.add_argument("--only", choices=["steps", "memory"], default=None,
                   help="run only the per-step jobs or only the memory-vs-steps runs (two processes in parallel)")
    p.add_argument("--sbtm", action="store_true", help="only the SBTM speed table: n = 1e3, 1e4, 1e5, the four "
                   "variants, 1 and 2 threads (results/scaling_sbtm{,_quick}.md)")
    p.add_argument("--kinds", default=None, help="with --sbtm: comma-separated subset of the variants (e.g. "
                   "sbtm_compiled); the CSV then holds only those (name it apart with --tag)")
    p.add_argument("--tag", default="", help="suffix of the output files")
    p.add_argument("--repeat", type=int, default=3, help="with --sbtm: runs per configuration (the tables keep "
                   "the run with the lowest median, and show the range of the run medians)")
    p.add_argument("--report", action="store_true", help="only rebuild scaling.md and the plot from the CSVs")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))), flush=True)
        return
    RES.mkdir(parents=True, exist_ok=True)
    tag = ("_sbtm" if args.sbtm else "") + ("_quick" if args.quick else "") + args.tag
    t_all = time.perf_counter()
    if args.quick:
        jobs = [dict(kind="sbtm", n=1000, threads=1, warmup=1, steps=2),
                dict(kind="svgd", n=1000, threads=1, warmup=1, steps=2),
                dict(kind="sbtm", n=1000, threads=2, warmup=1, steps=2)]
        mem_jobs = [dict(kind="sbtm_run", n=1000, threads=1, steps=k) for k in (2, 5)]
    else:
        sizes = [1000, 3000, 10000, 30000, 100000]
        jobs = [dict(kind="sbtm", n=n, threads=1, warmup=2, steps=args.steps) for n in sizes]
        jobs += [dict(kind="svgd", n=n, threads=1, warmup=1, steps=args.steps) for n in sizes[:3]]
        jobs += [dict(kind="sbtm", n=n, threads=2, warmup=2, steps=args.steps) for n in (1000, 10000, 100000)]
        jobs += [dict(kind="sbtm_compiled", n=n, threads=th, warmup=3, steps=args.steps)
                 for th in (1, 2) for n in (1000, 10000, 100000)]
        jobs += [dict(kind="svgd", n=30000, threads=1, warmup=0, steps=2),
                 dict(kind="svgd", n=100000, threads=1, warmup=0, steps=1)]
        mem_jobs = [dict(kind="sbtm_run", n=10000, threads=1, steps=k) for k in (100, 1000)]
    if args.sbtm:   # round-robin repeats, so that the machine's load hits every variant alike
        sizes = (1000,) if args.quick else (1000, 10000, 100000)
        one = [dict(kind=k, n=n, threads=th, warmup=3, steps=args.steps)
               for k in ("sbtm_compiled", "sbtm", "sbtm_autograd", "sbtm_autograd_compiled")
               for th in ((1, 2) if k in ("sbtm_compiled", "sbtm") else (1,)) for n in sizes]
        if args.kinds:
            one = [spec for spec in one if spec["kind"] in args.kinds.split(",")]
        jobs = [dict(spec, rep=r) for r in range(args.repeat) for spec in one]
        mem_jobs = []
    if args.report:
        report(read_csv(RES / f"scaling_steps{tag}.csv"), read_csv(RES / f"scaling_memory{tag}.csv"), tag, None)
        return
    if args.only == "steps":
        mem_jobs = []
    elif args.only == "memory":
        jobs = []
    step_rows = run_jobs(jobs, RES / f"scaling_steps{tag}.csv", STEP_FIELDS, describe_step)
    mem_rows = run_jobs(mem_jobs, RES / f"scaling_memory{tag}.csv", MEM_FIELDS, describe_memory)
    if args.only is None:
        report(step_rows, mem_rows, tag, time.perf_counter() - t_all)
    else:
        print(f"{args.only} done in {time.perf_counter() - t_all:.0f} s; rebuild the tables with --report")


def read_csv(path):
    rows = []
    if not path.exists():
        return rows
    with open(path) as fh:
        for r in csv.DictReader(fh):
            out = {}
            for k, v in r.items():
                if k in ("method",):
                    out[k] = v
                elif v in ("", None):
                    out[k] = None
                elif v in ("True", "False"):
                    out[k] = v == "True"
                else:
                    x = float(v)
                    out[k] = int(x) if k in ("n", "threads", "rep", "warmup", "steps", "init_iterations") else x
            rows.append(out)
    return rows


def report(step_rows, mem_rows, tag, seconds):
    t1 = [["method", "n", "threads", "timed steps", "ms/step (wall)", "CPU ms/step", "load avg", "peak MB",
           "base MB", "peak − base MB"]]
    for r in step_rows:
        t1.append([r["method"], r["n"], r["threads"], r["steps"], r["total_ms"], r["cpu_ms"], r["load"],
                   r["peak_mb"], r["base_mb"], r["peak_mb"] - r["base_mb"]])
    sb, spread = {}, {}
    for r in step_rows:          # with repeats: keep the run with the lowest median, note the range
        if r["method"].startswith("sbtm"):
            key = (r["method"], r["n"], r["threads"])
            spread.setdefault(key, []).append(r["total_ms"])
            if key not in sb or r["total_ms"] < sb[key]["total_ms"]:
                sb[key] = r
    variants = [m for m in ("sbtm_compiled", "sbtm", "sbtm_autograd_compiled", "sbtm_autograd")
                if any(k[0] == m for k in sb)]
    threads = {m: sorted({k[2] for k in sb if k[0] == m}) for m in variants}
    t2 = [["n"] + [f"{m}, {th} thr" for m in variants for th in threads[m]] + ["JAX reference (2 cores)"]]
    for n in (1000, 10000, 100000):
        cells = []
        for m in variants:
            for th in threads[m]:
                r = sb.get((m, n, th))
                runs = spread.get((m, n, th), [])
                rng = f" [{min(runs):.3g}–{max(runs):.3g}, {len(runs)} runs]" if len(runs) > 1 else ""
                cells.append(f"**{r['total_ms']:.3g}** (load {r['load']:.1f}){rng}" if r else "")
        if any(c != "" for c in cells):
            t2.append([n, *cells, JAX_REF.get(n, "")])
    t3 = [["method", "n", "threads", "train 10 it (ms)", "net on all n (ms)", "target score (ms)", "rest (ms)",
           "sum (ms)", "sbtm_flow loop (ms/step)", "train share"]]
    for (m, n, th), r in sorted(sb.items()):
        t3.append([m, n, th, r["train_ms"], r["net_all_ms"], r["target_ms"], r["rest_ms"], r["total_ms"],
                   r["flow_ms"], f"{100 * r['train_ms'] / r['total_ms']:.0f}%"])
    t4 = [["n", "steps", "wall s", "init fit iterations", "peak MB", "base MB"]]
    for r in mem_rows:
        t4.append([r["n"], r["steps"], r["wall_s"], r["init_iterations"], r["peak_mb"], r["base_mb"]])
    text = (f"# SBTM / SVGD scaling (1-D mixture 0.25N(-2,1)+0.75N(2,1), float32, CPU)\n\n"
            + (f"Total run time {seconds:.0f} s.\n\n" if seconds else "") + f"## Time and peak memory per step\n\n" + md_table(t1[0], t1[1:])
            + "\n\n## Speed vs the JAX reference (wall ms per step)\n\nEach cell: the lowest of the runs' medians "
              "over the timed steps (bold), the load average at the end of that run, and [the range of the run "
              "medians, number of runs].\n\n" + md_table(t2[0], t2[1:])
            + "\n\n## Where an SBTM step's time goes (medians)\n\n" + md_table(t3[0], t3[1:])
            + "\n\n## Peak memory vs number of steps (full sampler, keep_trajectory=0)\n\n"
            + md_table(t4[0], t4[1:]) + "\n")
    (RES / f"scaling{tag}.md").write_text(text)
    print(text)
    plot(step_rows, tag)


def plot(step_rows, tag):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    series = [("sbtm", 1, "o-", "SBTM, 1 thread"), ("sbtm", 2, "s--", "SBTM, 2 threads"),
              ("sbtm_compiled", 2, "d-", "SBTM compiled, 2 threads"), ("svgd", 1, "^-", "SVGD, 1 thread")]
    for m, th, st, lab in series:
        rows = sorted([r for r in step_rows if r["method"] == m and r["threads"] == th], key=lambda r: r["n"])
        if rows:
            ax.loglog([r["n"] for r in rows], [r["total_ms"] for r in rows], st, label=lab + " (wall)")
            if th == 1:
                ax.loglog([r["n"] for r in rows], [r["cpu_ms"] for r in rows], st[0] + ":", mfc="none",
                          color=ax.lines[-1].get_color(), label=lab + " (CPU time)")
    ns = sorted({r["n"] for r in step_rows})
    if ns:
        n0, n1 = ns[0], ns[-1]
        sv = [r for r in step_rows if r["method"] == "svgd"]
        sbt = [r for r in step_rows if r["method"] == "sbtm" and r["threads"] == 1]
        if sbt:
            a = max(sbt, key=lambda r: r["n"])
            ax.loglog([n0, n1], [a["total_ms"] * n0 / a["n"], a["total_ms"] * n1 / a["n"]], "k:", lw=1,
                      label="slope 1")
        if sv:
            a = max(sv, key=lambda r: r["n"])
            ax.loglog([n0, n1], [a["total_ms"] * (n0 / a["n"]) ** 2, a["total_ms"] * (n1 / a["n"]) ** 2], "k-.",
                      lw=1, label="slope 2")
    for n, v in JAX_REF.items():
        ax.plot([n], [v], "r*", ms=9, label="JAX reference (2 cores)" if n == 1000 else None)
    ax.set_xlabel("number of particles n")
    ax.set_ylabel("ms per step")
    loads = [r["load"] for r in step_rows if r.get("load") is not None]
    ax.set_title(f"time per step, 1-D mixture, 2-core CPU (load average {min(loads):.1f}–{max(loads):.1f})"
                 if loads else "time per step, 1-D mixture, 2-core CPU", fontsize=8)
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(RES / f"scaling_time{tag}.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
