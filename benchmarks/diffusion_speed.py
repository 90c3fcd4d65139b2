"""Training-iteration time of the learned diffusion samplers against the compute floor.

    python benchmarks/diffusion_speed.py                 # DIS/PIS/DDS/CMCD/bridge, lv + kl, Funnel d=10
    python benchmarks/diffusion_speed.py --methods dis --losses lv --autocast none,bfloat16

Settings of the issue's speed target: Funnel d=10, batch 512, 100 steps, float32, the paper's control
network (width 64, 4 layers, GELU, sin/cos time features; 38,859 parameters with its score coefficient
network), 2 threads. The *floor* is one forward + backward pass of that control network over all
batch × steps points at once (one time per point, as a network evaluated on the whole trajectory),
measured in the same run; the table prints iteration time / floor.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import sampleflow as sf
from sampleflow.nn import build_control, count_parameters
from sampleflow.tables import text_table


def floor_seconds(dim: int, batch: int, steps: int, repeats: int, autocast: str | None) -> tuple[float, int]:
    """Median time of one forward+backward of the DIS control over batch×steps points."""
    ctl = build_control(dim, kind="interpolated", coef_init=1.0)
    with torch.no_grad():  # non-zero output layer so the backward pass does real work
        ctl.net.output_layer.weight.normal_(0, 0.01)
    n = batch * steps
    g = torch.Generator().manual_seed(0)
    x, score = torch.randn(n, dim, generator=g), torch.randn(n, dim, generator=g)
    t = torch.rand(n, generator=g)
    times = []
    for i in range(repeats + 2):
        t0 = time.perf_counter()
        if autocast:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = ctl(x, t, score=score, prior_score=-x)
        else:
            out = ctl(x, t, score=score, prior_score=-x)
        out.float().square().mean().backward()
        ctl.zero_grad(set_to_none=True)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return statistics.median(times), count_parameters(ctl)


def iteration_seconds(method: str, loss: str, target, batch: int, steps: int, iters: int, autocast: str | None,
                      accuracy_iters: int = 0):
    """Median seconds per training iteration; with ``accuracy_iters`` the run continues to that many
    iterations and the trained sampler's log Z error and ESS (4000 samples, seed 1) are returned too."""
    cls = sf.samplers.get(method)
    total = max(iters + 3, accuracy_iters)
    cfg = cls.make_config("cpu", loss=loss, batch_size=batch, n_steps=steps, iterations=total,
                          checkpoint_every=None, autocast=autocast)
    s = cls(target, cfg)
    stamps = []
    s.fit(generator=0, progress=False, callback=lambda tr, st: stamps.append(time.perf_counter()))
    dts = [b - a for a, b in zip(stamps[2:iters + 3], stamps[3:iters + 3])]
    params = sum(p.numel() for p in s.modules.parameters())
    acc = {}
    if accuracy_iters:
        out = s.sample(4000, torch.Generator().manual_seed(1))
        acc = {"log Z error": abs(out.log_Z() - target.log_Z.value), "ESS": out.ess()}
    return statistics.median(dts), params, acc


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", default="dis,pis,dds,cmcd,bridge")
    p.add_argument("--losses", default="lv,kl")
    p.add_argument("--autocast", default="none", help="comma list of none,bfloat16")
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--iters", type=int, default=12, help="timed iterations per row (median)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--target", default="funnel")
    p.add_argument("--accuracy-iterations", type=int, default=0,
                   help="train each row this long (cpu preset schedule) and report its log Z error and ESS")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    target = sf.targets.get(a.target, dim=10) if a.target == "funnel" else sf.targets.get(a.target)
    rows = []
    for ac in a.autocast.split(","):
        ac = None if ac == "none" else ac
        for method in a.methods.split(","):
            for loss in a.losses.split(","):
                floor, floor_params = floor_seconds(target.dim, a.batch, a.steps, 5, ac)
                it, params, acc = iteration_seconds(method, loss, target, a.batch, a.steps, a.iters, ac,
                                                    a.accuracy_iterations)
                floor_after, _ = floor_seconds(target.dim, a.batch, a.steps, 5, ac)
                floor = min(floor, floor_after)
                rows.append({"method": method, "loss": loss, "network dtype": ac or "float32", "params": params,
                             "s/iter": it, "floor s": floor, "iter/floor": round(it / floor, 2),
                             "iter/s": 1 / it, **acc})
                print(rows[-1], flush=True)
    print()
    print(text_table(rows, list(rows[0])))
    print(f"\n{a.target} d={target.dim}, batch {a.batch}, {a.steps} steps, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; floor = fwd+bwd of the {floor_params}-parameter DIS control over "
          f"{a.batch * a.steps} points (min of the medians before and after the row)")


if __name__ == "__main__":
    main()
