"""Sample quality against the number of score evaluations (NFE) for every sampler of
``sampleflow.generative`` (Euler–Maruyama, reverse diffusion, predictor–corrector, probability-flow Euler,
EDM Heun, adaptive RK45), on a moons score model trained here (the "cpu" preset) or, with ``--analytic``,
the exact noised score of the built-in 9-mode Gaussian mixture (no training: only the sampler's error).

Quality: sliced 2-Wasserstein distance (500 projections) and MMD (Gaussian kernel, median heuristic) between
``-n`` samples and as many held-out data points (fresh mixture draws for ``--analytic``). The floor of each
metric (held-out data vs other data of the same law) is printed as the row "data".

    OMP_NUM_THREADS=1 python benchmarks/generative.py [--analytic] [-n 2000] [--seed 0] [--iterations 2500]
"""
from __future__ import annotations

import argparse
import time

import torch

from sampleflow.generative import SAMPLERS, ScoreModel, VPSDE, make_moons
from sampleflow.generative.run import builtin_gmm, sample_metrics
from sampleflow.generative.train import ScoreModelConfig, build_score_model, fit_score_model
from sampleflow.tables import text_table

STEPS = {
    "euler_maruyama": [10, 30, 100, 300],
    "reverse_diffusion": [10, 30, 100, 300],
    "pc": [10, 30, 100],
    "ode_euler": [10, 30, 100],
    "heun": [5, 10, 18, 35],
}
RK45_TOL = [1e-2, 1e-3, 1e-5]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--analytic", action="store_true", help="exact score of a 9-mode Gaussian mixture")
    p.add_argument("-n", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iterations", type=int, default=2500, help="training iterations of the moons model")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(args.seed)
    if args.analytic:
        mix = builtin_gmm()
        sde = VPSDE()
        model = ScoreModel(mix.score_fn(sde), sde, "score")
        train, held = mix.sample(args.n, g), mix.sample(args.n, g)
        what = "analytic 9-mode GMM score (VP SDE)"
    else:
        train, held = make_moons(10_000, generator=g), make_moons(args.n, generator=g)
        cfg = ScoreModelConfig.preset("cpu", iterations=args.iterations)
        model = build_score_model(cfg, train)
        t0 = time.perf_counter()
        fit_score_model(model, train, cfg, generator=args.seed, progress=False)
        what = (f"moons score model ({cfg.sde}, {cfg.parametrisation}, {args.iterations} iterations, "
                f"{time.perf_counter() - t0:.0f} s)")
    sde = model.sde
    rows = [{"sampler": "data", "steps": None, "NFE": None,
             **{k: v for k, v in sample_metrics(train[:args.n], held, seed=args.seed).items()
                if k in ("sliced_wasserstein", "mmd")}, "seconds": None}]
    runs = [(name, {"steps": s}) for name, ss in STEPS.items() for s in ss]
    runs += [("rk45", {"rtol": tol, "atol": tol}) for tol in RK45_TOL]
    for name, kw in runs:
        gen = torch.Generator().manual_seed(args.seed + 1)
        t0 = time.perf_counter()
        r = SAMPLERS[name](model, sde, (args.n, 2), generator=gen, **kw)
        sec = time.perf_counter() - t0
        m = sample_metrics(r.x, held, seed=args.seed)
        rows.append({"sampler": name, "steps": kw["steps"] if "steps" in kw else f"tol {kw['rtol']:g}", "NFE": r.nfe,
                     "sliced_wasserstein": m["sliced_wasserstein"], "mmd": m["mmd"], "seconds": sec})
        print(f"{name} {kw}: NFE {r.nfe}, SW2 {m['sliced_wasserstein']:.4f}", flush=True)
    print(f"\n{what}; n = {args.n} samples vs {held.shape[0]} held-out points\n")
    print(text_table(rows, ["sampler", "steps", "NFE", "sliced_wasserstein", "mmd", "seconds"]))


if __name__ == "__main__":
    main()
