"""Gauss–Newton fine-tuning against more Adam at the same wall time, for the PINN sampler on a mixture.

Protocol: train ``--iterations`` Adam steps (the "cpu" preset otherwise), copy the sampler, then (a) run
``--gn-steps`` damped Gauss–Newton steps (fresh collocation batch each, backtracking), and (b) continue Adam
from the same weights (a new Adam state, constant lr = the preset's final lr) for the wall time (a) took
("seconds"; "cpu s" is the process CPU time, which shows how much of the wall time a shared machine gave). Report for the Adam-only start, (a) and (b): the mean squared residual on 4096 held-out collocation
points, F(1), the importance-weighted log Z (2000 samples) and its error, ESS and the entropic mode coverage.

    OMP_NUM_THREADS=1 python benchmarks/pinn_gauss_newton.py [--target gmm9] [--iterations 1500] [--gn-steps 10]
        [--gn-batch 512] [--damping 1e-6] [--solver direct|cg|auto] [--cg-iterations 50] [--cg-tol 1e-6]

``--solver cg`` is the matrix-free Gauss–Newton step (conjugate gradient with J·v and Jᵀ·u products, see
:mod:`sampleflow.samplers.pinn.gauss_newton`), which makes collocation batches of thousands of points
affordable; "direct" forms J (B batched vjps), "auto" picks by B · P.
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


def row(name: str, s: PINN, target, seconds: float, cpu: float) -> dict:
    out = s.sample(2000, torch.Generator().manual_seed(7))
    m = sf.evaluate(out, target)
    exact = target.log_Z.value
    return {"run": name, "seconds": seconds, "cpu s": cpu, "residual": held_out_residual(s), "F(1)": s.log_Z_path_estimate(),
            "IS log Z": out.log_Z(), "|error|": abs(out.log_Z() - exact), "ESS": out.ess(), "EMC": m.get("emc")}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", default="gmm9")
    p.add_argument("--iterations", type=int, default=1500)
    p.add_argument("--gn-steps", type=int, default=10)
    p.add_argument("--gn-batch", type=int, default=512)
    p.add_argument("--damping", type=float, default=1e-6, help="λ relative to the mean squared row norm of J")
    p.add_argument("--solver", default="direct", choices=["direct", "cg", "auto"],
                   help="Gauss–Newton linear solve: form J (direct), matrix-free conjugate gradient (cg), or auto")
    p.add_argument("--cg-iterations", type=int, default=50, help="CG iterations per Gauss–Newton step (cg solver)")
    p.add_argument("--cg-tol", type=float, default=1e-6, help="CG relative residual tolerance (cg solver)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    target = sf.targets.get(args.target)
    torch.manual_seed(0)   # the networks' initialisation draws from torch's global generator
    base = PINN(target, PINN.make_config("cpu", iterations=args.iterations))
    t0, c0 = time.perf_counter(), time.process_time()
    base.fit(generator=0, progress=False)
    rows = [row("Adam", base, target, time.perf_counter() - t0, time.process_time() - c0)]
    gn = copy.deepcopy(base)
    t0, c0 = time.perf_counter(), time.process_time()
    log = gn.fine_tune(args.gn_steps, batch_size=args.gn_batch, generator=1, damping=args.damping,
                       solver=args.solver, cg_iterations=args.cg_iterations, cg_tol=args.cg_tol)
    gn_seconds, gn_cpu = time.perf_counter() - t0, time.process_time() - c0
    rows.append(row(f"+ {args.gn_steps} Gauss-Newton ({log[0]['solver'] if log else args.solver}, "
                    f"B={args.gn_batch})", gn, target, gn_seconds, gn_cpu))
    more = copy.deepcopy(base)
    lr = more.config.lr_final or more.config.lr
    more.config = PINN.make_config("cpu", iterations=10 ** 6, lr=lr, lr_final=None)
    t0, c0 = time.perf_counter(), time.process_time()
    more.fit(generator=1, time_budget=gn_seconds, progress=False)
    rows.append(row(f"+ Adam, same wall time ({more.trainer.iteration} it)", more, target,
                    time.perf_counter() - t0, time.process_time() - c0))
    print(f"PINN on {args.target} (exact log Z {target.log_Z.value}); Gauss-Newton step sizes "
          f"{[round(s['eta'], 3) for s in log]}")
    if log and "cg_iterations" in log[0]:
        print(f"CG iterations {[s['cg_iterations'] for s in log]}, relative residuals "
              f"{[round(s['cg_relative_residual'], 3) for s in log]}")
    print(f"batch losses before/after each step: {[(round(s['loss_before'], 3), round(s['loss_after'], 3)) for s in log]}\n")
    print(text_table(rows, ["run", "seconds", "cpu s", "residual", "F(1)", "IS log Z", "|error|", "ESS", "EMC"]))


if __name__ == "__main__":
    main()
