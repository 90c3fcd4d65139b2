"""2-D SBTM experiments: SBTM (with / without annealing) vs ULA vs SVGD on a 16-mode grid mixture and a noisy ring.

    cd /work/main && OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/sbtm/two_d.py [--quick]
                     [--n 2000] [--steps 1000] [--step-size 0.01] [--seed 0] [--every 100]

Targets
* grid16: 16 equal-weight Gaussians N(μ, 0.1·I), μ ∈ {−3, −1, 1, 3}² (sampleflow GaussianMixture).
* ring:   log π(x) = −(|x| − r)²/(2σ²), r = 2, σ = 0.2, built with Target.from_log_prob (analytic score);
          exact reference draws from sampleflow's Rings(radii=(2,), sigma=0.2) exact sampler (angle uniform,
          radius ∝ r·exp(−(r−2)²/2σ²) by rejection) — the same density (checked at start).
Methods (all from the same n particles x₀ ~ N(0, I), same step h, same number of steps):
* sbtm:         SBTMConfig defaults (ResNet-MLP [128,128], softsign, AdamW 5e-4, 10 minibatches of 400 per
                step), init_mean=0, init_std=1, no annealing; the network is first fitted to s₀(x) = −x.
* sbtm_anneal:  the same with anneal_steps = steps/2 (geometric path from N(0, I)).
* ula:          x ← x + h∇log π + √(2h) ξ.
* svgd:         x ← x + h φ(x) (plain SGD, the same time step; RBF kernel, median bandwidth h = med²/log n over
                the first 500 particles, as sampleflow's SVGD).
* svgd_adagrad: sampleflow's default SVGD optimiser (AdaGrad-with-momentum, step 0.01).
Metrics every ``--every`` steps on 1000 particles vs 1000 exact draws (SW 200 projections; "sub1000"), and at
the end on all particles vs 2000 exact draws (SW 500 projections; "full"): sliced W2 (500 projections), MMD
(Beyond-ELBOs protocol: median bandwidth; two exact sets of 2000 give ≈ 0.032, of 1000 ≈ 0.045), grid: modes covered
(modes holding ≥ ¼ of their share 1/16 of particles, hard argmax assignment) and entropic mode coverage;
ring: mean radius and radial std. Outputs: results/two_d_metrics.csv (all checkpoints, written as they
arrive), results/two_d_final.csv / .md, results/two_d_particles.png, results/two_d_trajectories.png.
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time
from pathlib import Path

import torch

os.environ.setdefault("SAMPLEFLOW_PROGRESS", "0")

from sampleflow.metrics import mmd, mode_histogram, entropic_mode_coverage, sliced_wasserstein  # noqa: E402
from sampleflow.samplers.sbtm import SBTMConfig, ScoreTrainer, build_score_network, sbtm_flow  # noqa: E402
from sampleflow.samplers.svgd import median_bandwidth, svgd_direction  # noqa: E402
from sampleflow.targets.base import Target  # noqa: E402
from sampleflow.targets.mixtures import GaussianMixture  # noqa: E402
from sampleflow.targets.rings import Rings  # noqa: E402

HERE = Path(__file__).resolve().parent
RES = HERE / "results"
R_RING, S_RING = 2.0, 0.2
GRID_VAR = 0.1


# ------------------------------------------------------------------------------------------ targets
def grid16():
    v = torch.tensor([-3.0, -1.0, 1.0, 3.0], dtype=torch.float64)
    a, b = torch.meshgrid(v, v, indexing="ij")
    means = torch.stack([a.flatten(), b.flatten()], -1)
    return GaussianMixture(None, means, GRID_VAR, name="grid16")


def ring():
    exact = Rings(radii=(R_RING,), sigma=S_RING)

    def log_prob(x):
        r = x.norm(dim=-1)
        return -(r - R_RING) ** 2 / (2 * S_RING ** 2)

    def score(x):
        r = x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return -(r - R_RING) / S_RING ** 2 * x / r

    t = Target.from_log_prob(log_prob, 2, name="ring", score=score, box=(-3.0, 3.0),
                             sample=lambda n, g: exact.sample(n, generator=g))
    # sanity: same score as the library's single ring
    z = torch.randn(100, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2
    assert torch.allclose(t.score(z), exact.score(z), atol=1e-8), "ring score mismatch"
    return t


# ------------------------------------------------------------------------------------------ metrics
def make_metrics(name, target, ref):
    def metrics(x, full: bool = False):
        """full: all particles vs the 2000 reference draws, SW with 500 projections; else (the every-k-steps
        curve, to keep it cheap) the first 1000 particles vs the first 1000 reference draws, 200 projections."""
        x = x.detach().double()
        ok = torch.isfinite(x).all(1)
        out = {"n_nonfinite": int((~ok).sum()), "protocol": "full" if full else "sub1000"}
        x = x[ok]
        xs, rs = (x, ref) if full else (x[:1000], ref[:1000])
        out["sliced_w2"] = sliced_wasserstein(xs, rs, n_projections=500 if full else 200)
        out["mmd"] = mmd(xs, rs)
        if name == "grid16":
            p = mode_histogram(x, target)
            out["modes_covered"] = int((p >= 0.25 / 16).sum())
            out["emc"] = entropic_mode_coverage(x, target)
            out["max_mode_frac"] = float(p.max())
        else:
            r = x.norm(dim=1)
            out["mean_radius"] = float(r.mean())
            out["radial_std"] = float(r.std())
        return out
    return metrics


# ------------------------------------------------------------------------------------------ methods
def run_sbtm(target, x0, args, anneal: bool, metrics, log):
    cfg = SBTMConfig(n_steps=args.steps, step_size=args.step_size, init_mean=0.0, init_std=1.0,
                     anneal_steps=args.steps // 2 if anneal else 0, keep_trajectory=args.traj_every,
                     trajectory_particles=200, log_every=args.every)
    g = torch.Generator().manual_seed(args.seed + 1)
    net = build_score_network(2, cfg, seed=args.seed)
    trainer = ScoreTrainer(net, cfg, 2, g)
    init_score = lambda x: -x  # noqa: E731  score of N(0, I)
    t0 = time.perf_counter()
    fit = trainer.fit_initial(x0, init_score(x0))
    t_fit = time.perf_counter() - t0
    names = []

    def mon(x):  # one monitor computing every metric, logged through the callback
        m = metrics(x)
        names.append(m)
        return 0.0

    t0 = time.perf_counter()
    flow = sbtm_flow(x0, target.score, trainer, cfg, init_score=init_score, monitors={"all": mon},
                     progress_desc=None)
    t_run = time.perf_counter() - t0
    # the monitor time is included in t_run; subtract it approximately by timing metrics separately later
    for k, m in zip(flow.monitors["step"], names):
        log(k, m)
    return flow.x, flow.trajectory, flow.trajectory_steps, t_run, {"fit_iters": fit["init_iterations"],
                                                                 "fit_rel": fit["init_relative_loss"],
                                                                 "fit_s": t_fit}


def run_ula(target, x0, args, metrics, log):
    g = torch.Generator().manual_seed(args.seed + 2)
    h = args.step_size
    x = x0.clone()
    t_run = 0.0
    log(0, metrics(x))
    for k in range(args.steps):
        t0 = time.perf_counter()
        x = x + h * target.score(x) + math.sqrt(2 * h) * torch.randn(x.shape, generator=g, dtype=x.dtype)
        t_run += time.perf_counter() - t0
        if (k + 1) % args.every == 0 or k + 1 == args.steps:
            log(k + 1, metrics(x))
    return x, t_run


def run_svgd(target, x0, args, metrics, log, adagrad: bool):
    x = x0.clone()
    hist = None
    t_run = 0.0
    log(0, metrics(x))
    for k in range(args.steps):
        t0 = time.perf_counter()
        bw = median_bandwidth(x, 500)
        phi = svgd_direction(x, target.score(x), bw, 1024)
        if adagrad:
            g2 = phi * phi
            hist = g2 if hist is None else hist.mul_(0.9).add_(g2, alpha=0.1)
            x = x + args.step_size * phi / (1e-6 + hist.sqrt())
        else:
            x = x + args.step_size * phi
        t_run += time.perf_counter() - t0
        if (k + 1) % args.every == 0 or k + 1 == args.steps:
            log(k + 1, metrics(x))
    return x, t_run


# ------------------------------------------------------------------------------------------ main
def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run: n=300, 40 steps")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--step-size", type=float, default=0.01)
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--traj-every", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--targets", nargs="+", default=["grid16", "ring"])
    p.add_argument("--methods", nargs="+", default=["sbtm", "sbtm_anneal", "ula", "svgd", "svgd_adagrad"])
    p.add_argument("--tag", default="")
    args = p.parse_args()
    if args.quick:
        args.n, args.steps, args.every, args.traj_every = 300, 20, 10, 2
        args.targets = ["ring"] if args.targets == ["grid16", "ring"] else args.targets
        args.methods = ["sbtm", "ula", "svgd"] if len(args.methods) == 5 else args.methods
        args.tag = args.tag or "_quick"
    torch.set_default_dtype(torch.float32)
    RES.mkdir(parents=True, exist_ok=True)
    tag = args.tag
    if len(args.targets) == 1 and not args.tag:
        tag = f"_{args.targets[0]}"
    mpath = RES / f"two_d_metrics{tag}.csv"
    fields = ["target", "method", "step", "protocol", "sliced_w2", "mmd", "modes_covered", "emc", "max_mode_frac",
              "mean_radius", "radial_std", "n_nonfinite"]
    fh = open(mpath, "w", newline="")
    w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    finals, particles, trajs = [], {}, {}
    t_start = time.perf_counter()
    print(f"n={args.n} steps={args.steps} h={args.step_size} threads={torch.get_num_threads()}", flush=True)
    for tname in args.targets:
        target = grid16() if tname == "grid16" else ring()
        gref = torch.Generator().manual_seed(12345)
        ref = target.sample(2000, generator=gref).double()
        ref2 = target.sample(2000, generator=gref).double()
        metrics = make_metrics(tname, target, ref)
        w.writerow(dict(metrics(ref2), target=tname, method="exact (2nd draw)", step=0))
        m_exact = metrics(ref2, full=True)
        m_exact.update(target=tname, method="exact (2nd draw)", step=0)
        w.writerow(m_exact)
        finals.append({**m_exact, "seconds": 0.0})
        particles[(tname, "exact")] = ref2.float()
        x0 = torch.randn(args.n, 2, generator=torch.Generator().manual_seed(args.seed))
        for meth in args.methods:
            rows = []

            def log(k, m, meth=meth):
                m = dict(m, target=tname, method=meth, step=k)
                rows.append(m)
                w.writerow(m)
                fh.flush()

            extra = {}
            t0 = time.perf_counter()
            if meth.startswith("sbtm"):
                x, traj, tsteps, t_run, extra = run_sbtm(target, x0, args, meth == "sbtm_anneal", metrics, log)
                trajs[(tname, meth)] = (traj, tsteps)
            elif meth == "ula":
                x, t_run = run_ula(target, x0, args, metrics, log)
            elif meth == "svgd":
                x, t_run = run_svgd(target, x0, args, metrics, log, adagrad=False)
            else:
                x, t_run = run_svgd(target, x0, args, metrics, log, adagrad=True)
            total = time.perf_counter() - t0
            particles[(tname, meth)] = x.detach()
            fin = dict(metrics(x, full=True), target=tname, method=meth, step=args.steps)
            w.writerow(fin)
            fh.flush()
            fin.update(seconds=t_run, **extra)
            finals.append(fin)
            print(f"{tname:7s} {meth:13s} SW2={fin['sliced_w2']:.4f} MMD={fin['mmd']:.4f} "
                  + (f"modes={fin['modes_covered']} EMC={fin['emc']:.3f}" if tname == "grid16" else
                     f"r̄={fin['mean_radius']:.3f} sd_r={fin['radial_std']:.3f}")
                  + f"  run {t_run:.1f}s (total incl. metrics {total:.1f}s)", flush=True)
    fh.close()
    write_final(finals, tag)
    plot_particles(particles, args, tag)
    plot_trajectories(trajs, args, tag)
    print(f"total {time.perf_counter() - t_start:.0f} s", flush=True)


def write_final(finals, tag):
    cols = ["target", "method", "sliced_w2", "mmd", "modes_covered", "emc", "mean_radius", "radial_std",
            "n_nonfinite", "seconds"]
    with open(RES / f"two_d_final{tag}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols + ["fit_iters", "fit_s"], extrasaction="ignore")
        w.writeheader()
        for r in finals:
            w.writerow(r)

    def fmt(v):
        if v is None or v == "":
            return ""
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in finals:
        lines.append("| " + " | ".join(fmt(r.get(c)) for c in cols) + " |")
    (RES / f"two_d_final{tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def plot_particles(particles, args, tag):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    tnames = list(dict.fromkeys(k[0] for k in particles))
    meths = ["exact"] + args.methods
    fig, axes = plt.subplots(len(tnames), len(meths), figsize=(2.6 * len(meths), 2.7 * len(tnames)),
                             squeeze=False)
    for i, t in enumerate(tnames):
        for j, m in enumerate(meths):
            ax = axes[i, j]
            x = particles.get((t, m))
            if x is not None:
                x = x[torch.isfinite(x).all(1)]
                ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.4)
            lim = 4.5 if t == "grid16" else 3.2
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_aspect("equal")
            ax.set_title(f"{t}: {m}", fontsize=8)
            ax.tick_params(labelsize=6)
    fig.suptitle(f"final particles, n={args.n}, {args.steps} steps of h={args.step_size}, start N(0,I)", fontsize=9)
    fig.tight_layout()
    fig.savefig(RES / f"two_d_particles{tag}.png", dpi=110)
    plt.close(fig)


def plot_trajectories(trajs, args, tag):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    keys = [k for k in trajs if trajs[k][0] is not None]
    if not keys:
        return
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.4), squeeze=False)
    for ax, k in zip(axes[0], keys):
        traj, steps = trajs[k]
        T = traj.numpy()
        for i in range(min(30, T.shape[1])):
            ax.plot(T[:, i, 0], T[:, i, 1], lw=0.7)
            ax.plot(T[0, i, 0], T[0, i, 1], "k.", ms=2)
            ax.plot(T[-1, i, 0], T[-1, i, 1], "r.", ms=3)
        lim = 4.5 if k[0] == "grid16" else 3.2
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_title(f"{k[0]}: {k[1]} (30 paths)", fontsize=8)
        ax.tick_params(labelsize=6)
    fig.suptitle("SBTM trajectories (black: start, red: end)", fontsize=9)
    fig.tight_layout()
    fig.savefig(RES / f"two_d_trajectories{tag}.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
