"""SBTM 1-D benchmarks (Ilin et al. 2025, "Score-Based Deterministic Density Sampling"): KL(f_t || pi) along
the flow for SBTM, ULA and SVGD on

* ``ou``   — f0 = N(0, 1 - e^{-0.2}), pi = N(0, 1), step 0.002, 1000 steps (t <= 2); exact KL from
             ``ou_gaussian_kl``;
* ``near`` — pi = 0.25 N(-2, 1) + 0.75 N(2, 1), f0 = N(0, 1), step 0.01, 1000 steps;
* ``far``  — pi = 0.25 N(-4, 1) + 0.75 N(4, 1), f0 = N(0, 1), step 0.01, 1000 steps.

Methods (same initial particles per (target, n), same step h):
  SBTM  — ``sbtm_flow`` with the default SBTMConfig (paper's 1-D settings), forward Euler;
  ULA   — x <- x + h grad log pi(x) + sqrt(2h) xi;
  SVGD  — plain SGD x <- x + h phi(x) (RBF kernel, median bandwidth over the first 500 particles, i.e. the
          library's SVGDConfig default), the forward-Euler discretisation of the SVGD flow with the same h.

KL is the paper's 1-D KDE plug-in estimate (Scott's rule, leave-in, clipped at 0) every 10 steps. For speed
the logged values use ``fast_kde_kl`` below: the same estimator as ``sampleflow.metrics.kl.kde_kl`` computed on
sorted points with kernel terms beyond 9 bandwidths dropped (each < e^-40.5, so the result agrees to ~1e-14);
the final value of every run is also computed with the library's ``kde_kl`` and both are stored.

Each run writes ``results/one_d_curve_<target>_<method>_n<n>.csv`` as soon as it finishes; the summary
tables/figures are rebuilt from all curve files after every run (so several processes may run disjoint
subsets, e.g. ``--methods sbtm`` and ``--methods ula svgd``, and partial results survive).

    cd /work/main && OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sbtm/one_d.py            # everything
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sbtm/one_d.py --quick --out /tmp/q         # smoke test
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sbtm/one_d.py --summarize                  # tables only
"""
from __future__ import annotations

import argparse
import csv
import glob
import math
import os
import time

import torch

from sampleflow.metrics.kl import kde_kl, ou_gaussian_kl
from sampleflow.samplers.sbtm import SBTMConfig, ScoreTrainer, build_score_network, sbtm_flow
from sampleflow.samplers.svgd import median_bandwidth, svgd_direction
from sampleflow.tables import markdown_table, text_table
from sampleflow.targets.gaussian import Gaussian
from sampleflow.targets.mixtures import GaussianMixture

TARGETS = ("ou", "near", "far")
METHODS = ("sbtm", "ula", "svgd")
VAR0_OU = 1.0 - math.exp(-0.2)
# paper values quoted in the issue (final KL at n = 1e4)
PAPER = {("ou", "sbtm"): 1.0e-3, ("ou", "ula"): 1.2e-3, ("near", "sbtm"): 3.6e-3, ("near", "ula"): 4.3e-3,
         ("far", "sbtm"): 0.084, ("far", "ula"): 0.084}
SEED = {"ou": 11, "near": 22, "far": 33}


def make_target(name: str):
    """(target, var0 of the N(0, var0) start, step size)."""
    if name == "ou":
        return Gaussian(torch.zeros(1), torch.eye(1)), VAR0_OU, 0.002
    m = 2.0 if name == "near" else 4.0
    t = GaussianMixture(torch.tensor([0.25, 0.75]), torch.tensor([[-m], [m]]), torch.ones(2, 1, 1))
    return t, 1.0, 0.01


def fast_kde_kl(x: torch.Tensor, log_prob, cut: float = 9.0, block: int = 512) -> float:
    """kde_kl (1-D, Scott's rule, leave-in, clipped at 0) on sorted points, dropping kernel terms beyond
    ``cut`` bandwidths (relative error < n e^{-cut^2/2}, the self term alone contributing 1)."""
    x = x.detach().double()
    n = x.shape[0]
    xs = x[:, 0]
    bw = float(xs.std()) * n ** (-0.2)            # Scott: kappa = n^{-1/(d+4)}, kernel sd = kappa * sd(x)
    z, _ = torch.sort(xs / bw)
    acc = 0.0
    for a in range(0, n, block):
        zi = z[a:a + block]
        lo = int(torch.searchsorted(z, zi[0] - cut))
        hi = int(torch.searchsorted(z, zi[-1] + cut, right=True))
        d = (zi[:, None] - z[None, lo:hi]).square_().mul_(-0.5)
        acc += float(torch.log(torch.exp(d).sum(1)).sum())
    mean_lf = acc / n - (math.log(n) + 0.5 * math.log(2 * math.pi) + math.log(bw))
    mean_lp = float(log_prob(x).double().reshape(-1).mean())
    return max(0.0, mean_lf - mean_lp)


# ---------------------------------------------------------------------------------------------- the runs
def run_one(target_name: str, method: str, n: int, steps: int, log_every: int = 10) -> dict:
    target, var0, h = make_target(target_name)
    gen = torch.Generator().manual_seed(SEED[target_name] * 100003 + n)
    x0 = math.sqrt(var0) * torch.randn(n, 1, generator=gen)          # identical for the three methods
    score = lambda x: target.score(x).to(x.dtype)
    logp = lambda y: target.log_prob(y)                                   # normalised: log Z = 0 exactly
    kl = lambda x: fast_kde_kl(x, logp)
    t0 = time.time()
    steps_log, kls = [], []
    if method == "sbtm":
        cfg = SBTMConfig(n_steps=steps, step_size=h, log_every=log_every)
        net = build_score_network(1, cfg, seed=SEED[target_name])
        trainer = ScoreTrainer(net, cfg, 1, torch.Generator().manual_seed(SEED[target_name] + 7))
        trainer.fit_initial(x0, -x0 / var0)
        res = sbtm_flow(x0, score, trainer, cfg, monitors={"kl": kl}, progress_desc=None)
        x, steps_log, kls = res.x, res.monitors["step"], res.monitors["kl"]
    else:
        noise = torch.Generator().manual_seed(SEED[target_name] * 7 + n + 1)
        x = x0.clone()
        for k in range(steps + 1):
            if k % log_every == 0 or k == steps:
                steps_log.append(k)
                kls.append(kl(x))
            if k == steps:
                break
            g = score(x)
            if method == "ula":
                x = x + h * g + math.sqrt(2 * h) * torch.randn(x.shape, generator=noise)
            else:
                x = x + h * svgd_direction(x, g, median_bandwidth(x, 500), chunk_size=1024)
    wall = time.time() - t0
    lib_final = float(kde_kl(x.double(), logp))
    rows = []
    for k, v in zip(steps_log, kls):
        r = {"target": target_name, "method": method, "n": n, "step": k, "t": k * h, "kl": v}
        r["kl_exact"] = float(ou_gaussian_kl(k * h, VAR0_OU)) if target_name == "ou" else ""
        rows.append(r)
    rows[-1]["kl_lib_final"] = lib_final
    rows[-1]["wall_s"] = wall
    rows[-1]["nonfinite"] = int((~torch.isfinite(x)).sum())
    return rows


def write_curve(rows: list[dict], out: str) -> str:
    r0 = rows[0]
    path = os.path.join(out, f"one_d_curve_{r0['target']}_{r0['method']}_n{r0['n']}.csv")
    cols = ["target", "method", "n", "step", "t", "kl", "kl_exact", "kl_lib_final", "wall_s", "nonfinite"]
    with open(path + ".tmp", "w", newline="") as f:
        w = csv.DictWriter(f, cols)
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in cols})
    os.replace(path + ".tmp", path)
    return path


def read_curves(out: str) -> dict:
    curves = {}
    for p in sorted(glob.glob(os.path.join(out, "one_d_curve_*.csv"))):
        with open(p) as f:
            rows = list(csv.DictReader(f))
        if not rows:
            continue
        key = (rows[0]["target"], rows[0]["method"], int(rows[0]["n"]))
        curves[key] = {"step": [int(r["step"]) for r in rows], "t": [float(r["t"]) for r in rows],
                       "kl": [float(r["kl"]) for r in rows],
                       "kl_exact": [float(r["kl_exact"]) for r in rows] if rows[0]["kl_exact"] else None,
                       "kl_lib_final": float(rows[-1]["kl_lib_final"]), "wall_s": float(rows[-1]["wall_s"]),
                       "nonfinite": int(rows[-1]["nonfinite"])}
    return curves


def _fmt(v):
    return None if v is None else float(v)


def summarize(out: str, quiet: bool = False, figures: bool = True) -> None:
    curves = read_curves(out)
    if not curves:
        return
    ns = sorted({k[2] for k in curves})
    # --- final KL: one row per (target, n), one column per method
    final_rows = []
    for tg in TARGETS:
        for n in ns:
            row = {"target": tg, "n": n}
            have = False
            for m in METHODS:
                c = curves.get((tg, m, n))
                row[m] = _fmt(c["kl_lib_final"]) if c else None
                row[f"{m}_s"] = round(c["wall_s"], 1) if c else None
                have |= c is not None
            if tg == "ou":
                any_c = next((curves[k] for k in curves if k[0] == "ou"), None)
                row["exact"] = any_c["kl_exact"][-1] if any_c else None
            row["paper_sbtm"] = PAPER.get((tg, "sbtm")) if n == 10000 else None
            row["paper_ula"] = PAPER.get((tg, "ula")) if n == 10000 else None
            if have:
                final_rows.append(row)
    cols = ["target", "n", "sbtm", "ula", "svgd", "exact", "paper_sbtm", "paper_ula", "sbtm_s", "ula_s", "svgd_s"]
    # --- monotonicity: fraction of logged intervals on which the KL rises
    mono_rows = []
    for (tg, m, n), c in sorted(curves.items()):
        kl = c["kl"]
        rises = sum(1 for a, b in zip(kl[:-1], kl[1:]) if b > a)
        mono_rows.append({"target": tg, "method": m, "n": n, "intervals": len(kl) - 1,
                          "rises": rises, "frac_rises": rises / max(1, len(kl) - 1),
                          "max_abs_fast_vs_lib_final": abs(kl[-1] - c["kl_lib_final"])})
    mcols = ["target", "method", "n", "intervals", "rises", "frac_rises", "max_abs_fast_vs_lib_final"]
    for name, rows, cc in (("final_kl", final_rows, cols), ("monotonicity", mono_rows, mcols)):
        dst = os.path.join(out, f"one_d_{name}.csv")
        with open(f"{dst}.{os.getpid()}.tmp", "w", newline="") as f:
            w = csv.DictWriter(f, cc)
            w.writeheader()
            for r in rows:
                w.writerow({c: ("" if r.get(c) is None else r.get(c)) for c in cc})
        os.replace(f"{dst}.{os.getpid()}.tmp", dst)
    dst = os.path.join(out, "one_d_tables.md")
    with open(f"{dst}.{os.getpid()}.tmp", "w") as f:
        f.write("## Final KL (library kde_kl at the last step; *_s = wall seconds)\n\n")
        f.write(markdown_table(final_rows, cols) + "\n\n")
        f.write("## Fraction of logged intervals (every 10 steps) on which the KDE KL rises\n\n")
        f.write(markdown_table(mono_rows, mcols) + "\n")
    os.replace(f"{dst}.{os.getpid()}.tmp", dst)
    if not quiet:
        print("\nFinal KL (kde_kl at the last step)\n" + text_table(final_rows, cols))
        print("\nKL rises between logged steps\n" + text_table(mono_rows, mcols))
    if figures:
        plot(curves, out)


def plot(curves: dict, out: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    colors = {"sbtm": "C0", "ula": "C1", "svgd": "C2"}
    ns = sorted({k[2] for k in curves})
    big = max(ns)
    for fname, panels in (("one_d_ou.png", [("ou", big), ("ou", 1000 if 1000 in ns else min(ns))]),
                          ("one_d_mixtures.png", [("near", big), ("far", big)])):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for ax, (tg, n) in zip(axes, panels):
            exact_done = False
            for m in METHODS:
                c = curves.get((tg, m, n))
                if c is None:
                    continue
                ax.plot(c["t"], [max(v, 1e-6) for v in c["kl"]], color=colors[m], label=m.upper())
                if c["kl_exact"] and not exact_done:
                    ax.plot(c["t"], c["kl_exact"], "k--", label="exact (OU)")
                    exact_done = True
            ax.set_yscale("log")
            ax.set_xlabel("t")
            ax.set_ylabel("KL(f_t || pi) (KDE plug-in)")
            ax.set_title(f"{tg}, n = {n}")
            ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(out, fname), dpi=110)
        plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, nargs="+", default=[10000, 1000, 3000, 300, 100],
                   help="particle counts, run in this order (largest first so the headline numbers exist)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--targets", nargs="+", default=list(TARGETS), choices=TARGETS)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--svgd-max-n", type=int, default=3000,
                   help="skip SVGD above this n (O(n^2) per step: ~1.6 s/step at n=1e4 on one core)")
    p.add_argument("--quick", action="store_true", help="smoke test: n = 100, 50 steps, all targets and methods (< 1 min)")
    p.add_argument("--summarize", action="store_true", help="only rebuild tables/figures from the curve files")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    a = p.parse_args()
    torch.set_num_threads(1)
    if a.quick:
        a.n, a.steps = [100], 50
    os.makedirs(a.out, exist_ok=True)
    if not a.summarize:
        t_all = time.time()
        for n in a.n:
            for tg in a.targets:
                for m in a.methods:
                    if m == "svgd" and n > a.svgd_max_n:
                        continue
                    rows = run_one(tg, m, n, a.steps)
                    path = write_curve(rows, a.out)
                    print(f"[{time.time() - t_all:7.1f}s] {tg:4s} {m:4s} n={n:5d}: final KL {rows[-1]['kl']:.4g} "
                          f"(lib {rows[-1]['kl_lib_final']:.4g}), {rows[-1]['wall_s']:.1f}s -> {path}", flush=True)
                    summarize(a.out, quiet=True, figures=(n == max(a.n)))
        print(f"total {time.time() - t_all:.1f}s")
    summarize(a.out)


if __name__ == "__main__":
    main()
