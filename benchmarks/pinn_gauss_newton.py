"""Gauss–Newton fine-tuning against more Adam at the same wall time, for the PINN sampler on a mixture.

Protocol: train ``--iterations`` Adam steps (the "cpu" preset otherwise), copy the sampler, then (a) run
``--gn-steps`` damped Gauss–Newton steps (fresh collocation batch each, backtracking), and (b) continue Adam
from the same weights (a new Adam state, constant lr = the preset's final lr) for the wall time (a) took. Report for the Adam-only start, (a) and (b): the mean squared residual on 4096 held-out collocation
points, F(1), the importance-weighted log Z (2000 samples) and its error, ESS and the entropic mode coverage.

    OMP_NUM_THREADS=1 python benchmarks/pinn_gauss_newton.py [--target gmm9] [--iterations 1500] [--gn-steps 10]
        [--gn-batch 512] [--damping 1e-6]
"""
from __future__ import annotations

import argparse
import copy
import time

import torch

import sampleflow as sf
from sampleflow.samplers.pinn import PINN
from sampleflow.tables import text_table


def held_out_residual(s: PINN) -> float:
    t, x = s.collocation(4096, torch.Generator().manual_seed(99))
    r = s.residual(t, x).detach()
    return float((r * r).mean())


def row(name: str, s: PINN, target, seconds: float) -> dict:
    out = s.sample(2000, torch.Generator().manual_seed(7))
    m = sf.evaluate(out, target)
    exact = target.log_Z.value
    return {"run": name, "seconds": seconds, "residual": held_out_residual(s), "F(1)": s.log_Z_path_estimate(),
            "IS log Z": out.log_Z(), "|error|": abs(out.log_Z() - exact), "ESS": out.ess(), "EMC": m.get("emc")}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", default="gmm9")
    p.add_argument("--iterations", type=int, default=1500)
    p.add_argument("--gn-steps", type=int, default=10)
    p.add_argument("--gn-batch", type=int, default=512)
    p.add_argument("--damping", type=float, default=1e-6, help="λ relative to the mean squared row norm of J")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    target = sf.targets.get(args.target)
    base = PINN(target, PINN.make_config("cpu", iterations=args.iterations))
    t0 = time.perf_counter()
    base.fit(generator=0, progress=False)
    rows = [row("Adam", base, target, time.perf_counter() - t0)]
    gn = copy.deepcopy(base)
    t0 = time.perf_counter()
    log = gn.fine_tune(args.gn_steps, batch_size=args.gn_batch, generator=1, damping=args.damping)
    gn_seconds = time.perf_counter() - t0
    rows.append(row(f"+ {args.gn_steps} Gauss-Newton", gn, target, gn_seconds))
    more = copy.deepcopy(base)
    lr = more.config.lr_final or more.config.lr
    more.config = PINN.make_config("cpu", iterations=10 ** 6, lr=lr, lr_final=None)
    t0 = time.perf_counter()
    more.fit(generator=1, time_budget=gn_seconds, progress=False)
    rows.append(row(f"+ Adam, same wall time ({more.trainer.iteration} it)", more, target,
                    time.perf_counter() - t0))
    print(f"PINN on {args.target} (exact log Z {target.log_Z.value}); Gauss-Newton step sizes "
          f"{[round(s['eta'], 3) for s in log]}\n")
    print(text_table(rows, ["run", "seconds", "residual", "F(1)", "IS log Z", "|error|", "ESS", "EMC"]))


if __name__ == "__main__":
    main()
