"""Throughput of every registered target's log_prob and score (points per second), CPU float32.

    python benchmarks/targets_throughput.py [--n 4096] [--repeats 5]

Prints a table: target, dim, log_prob Mpts/s, score Mpts/s, score kind (analytic or autograd).
"""
from __future__ import annotations

import argparse
import time

import torch

import sampleflow as sf
from sampleflow.tables import text_table
from sampleflow.targets.base import Target


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=4096)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    rows = []
    g = torch.Generator().manual_seed(0)
    for entry in sf.targets.entries():
        for params in entry.variants:
            t = entry.factory(**params)
            lo, hi = t.box
            x = (lo + (hi - lo) * torch.rand(args.n, t.dim, generator=g, dtype=torch.float64)).float()
            with torch.no_grad():
                t_lp = best_time(lambda: t.log_prob(x), args.repeats)
            t_sc = best_time(lambda: t.score(x), args.repeats)
            rows.append({"target": entry.name + "".join(f" {k}={v}" for k, v in params.items()), "dim": t.dim,
                         "log_prob Mpts/s": args.n / t_lp / 1e6, "score Mpts/s": args.n / t_sc / 1e6,
                         "score": "autograd" if type(t)._score is Target._score else "analytic"})
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, n = {args.n}, float32, best of {args.repeats}")
    print(text_table(rows, ["target", "dim", "log_prob Mpts/s", "score Mpts/s", "score"]))


if __name__ == "__main__":
    main()
