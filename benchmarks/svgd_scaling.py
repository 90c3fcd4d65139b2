"""Time per SVGD step against the number of particles n (the kernel sums are O(n² d)).

    python benchmarks/svgd_scaling.py [--sizes 250 500 ... 10000] [--dim 10] [--chunk-size 1024]
                                      [--dtype float32] [--device cpu] [--min-seconds 3]

Target: the registry's correlated Gaussian (Σ_ij = 0.8^|i−j|) in ``--dim`` dimensions. For each n, SVGD
(default config: median heuristic over at most 500 particles, AdaGrad) runs one warm-up step, then
steps until at least ``--min-seconds`` have passed (at least 2 steps); seconds/step is the mean. A step
is one score evaluation per particle, the median bandwidth, and the chunked kernel sums.

Columns: n; seconds per step; ratio to the previous n's time, and the square of the ratio of the n's (time
ratio ≈ (n ratio)² means quadratic: 4× per doubling); estimated peak working memory of a step, counted from
the tensors it allocates: two (chunk × n) kernel blocks (squared distances, kernel), the m × m median
distance matrix and one masked copy (m = min(n, median_points)), and ~8 (n × d) tensors (x, score, φ,
AdaGrad state, ...); and the process's peak resident set size so far (monotone; includes the Python/torch
baseline). Timings on a shared machine are noisy; small n are dominated by the fixed per-step overhead
(Python, the median over ≤ 500 particles).
"""
from __future__ import annotations

import argparse
import resource
import time

import torch

from sampleflow.samplers.svgd import SVGD, SVGDConfig
from sampleflow.tables import text_table
from sampleflow.targets.gaussian import gaussian


def step_memory_bytes(n: int, d: int, chunk: int | None, median_points: int | None, itemsize: int) -> int:
    c = n if chunk is None else min(chunk, n)
    m = n if median_points is None else min(median_points, n)
    return (2 * c * n + 2 * m * m + 8 * n * d) * itemsize


def time_per_step(target, n, cfg_kw, device, min_seconds):
    g = torch.Generator(device=device).manual_seed(0)
    SVGD(target, SVGDConfig(n_steps=1, **cfg_kw)).sample(n, g)  # warm-up (allocations, kernels)
    steps, total = 0, 0.0
    k = 2
    while total < min_seconds:
        s = SVGD(target, SVGDConfig(n_steps=k, **cfg_kw)).sample(n, g)
        if device != "cpu":
            torch.cuda.synchronize()
        steps += k
        total += s.wall_time
        k *= 2
    return total / steps, steps


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[250, 500, 1000, 2000, 4000, 8000, 10000])
    p.add_argument("--dim", type=int, default=10)
    p.add_argument("--chunk-size", type=int, default=1024)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--min-seconds", type=float, default=3.0)
    args = p.parse_args()
    target = gaussian(dim=args.dim)
    cfg_kw = dict(dtype=args.dtype, chunk_size=args.chunk_size, step_size=1e-2)
    median_points = SVGDConfig().median_points
    itemsize = torch.empty((), dtype=getattr(torch, args.dtype)).element_size()
    print(f"SVGD step time, Gaussian d={args.dim}, {args.dtype}, device={args.device}, "
          f"chunk_size={args.chunk_size}, median over <= {median_points} particles, "
          f"torch threads={torch.get_num_threads()}", flush=True)
    rows, prev = [], None
    t_start = time.perf_counter()
    time_per_step(target, args.sizes[0], cfg_kw, args.device, 0.5)  # process warm-up (thread pools, caches)
    for n in args.sizes:
        sec, steps = time_per_step(target, n, cfg_kw, args.device, args.min_seconds)
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        row = {"n": n, "s/step": sec, "steps timed": steps,
               "time ratio": float("nan") if prev is None else sec / prev[1],
               "(n ratio)^2": float("nan") if prev is None else (n / prev[0]) ** 2,
               "est. step MB": step_memory_bytes(n, args.dim, args.chunk_size, median_points, itemsize) / 2**20,
               "peak RSS MB": rss_mb}
        rows.append(row)
        prev = (n, sec)
        print(text_table([row], list(row)).splitlines()[-1], flush=True)
    print()
    print(text_table(rows, list(rows[0])))
    print(f"\ntotal {time.perf_counter() - t_start:.1f} s")


if __name__ == "__main__":
    main()
