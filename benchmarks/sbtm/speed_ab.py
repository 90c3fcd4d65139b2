"""Interleaved A/B timing of one SBTM particle step's parts for the four code paths, in one process.

    cd /work/main && OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/sbtm/speed_ab.py [--n 1000] [--rounds 30]

On a shared machine the load drifts within minutes, so timing the variants one after the other (as
scaling.py does, one process each) mixes their difference with the drift. Here the four trainers —
compile=True fast path, default fast path (hand-derived gradient, eager), autograd compiled loss, autograd
eager — take turns step by step on the same particles (1-D mixture start N(0, 3.5²), the paper's network and
schedule), so every variant sees the same load. Printed per variant: min / median / max over the rounds of
the training (10 iterations) and of the score on all n particles, wall and process CPU time (ms), and the
load average before and after.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from sampleflow.samplers.sbtm import SBTMConfig, ScoreTrainer, build_score_network
    variants = {"compiled (fast path)": (True, True), "default (fast path, eager)": (True, False),
                "autograd, compiled loss": (False, True), "autograd, eager": (False, False)}
    x = 3.5 * torch.randn(args.n, 1, generator=torch.Generator().manual_seed(0))
    trainers = {}
    for name, (fast, comp) in variants.items():
        cfg = SBTMConfig(compile=comp)
        tr = ScoreTrainer(build_score_network(1, cfg, seed=0), cfg, 1, torch.Generator().manual_seed(1), fast=fast)
        for _ in range(3):                 # warm-up (compilation)
            tr.train(x)
            tr.score(x)
        trainers[name] = tr
    load0 = os.getloadavg()[0]
    rec = {k: {"train": [], "train_cpu": [], "score": [], "score_cpu": []} for k in trainers}
    for _ in range(args.rounds):
        for name, tr in trainers.items():
            t0, c0 = time.perf_counter(), time.process_time()
            tr.train(x)
            t1, c1 = time.perf_counter(), time.process_time()
            tr.score(x)
            t2, c2 = time.perf_counter(), time.process_time()
            r = rec[name]
            r["train"].append(1e3 * (t1 - t0))
            r["train_cpu"].append(1e3 * (c1 - c0))
            r["score"].append(1e3 * (t2 - t1))
            r["score_cpu"].append(1e3 * (c2 - c1))
    print(f"n = {args.n}, {args.threads} thread(s), {args.rounds} interleaved rounds; load average "
          f"{load0:.1f} -> {os.getloadavg()[0]:.1f}")
    print("| variant | train 10 it, wall min / median / max | train CPU median | score on all n, wall min / median "
          "| score CPU median |")
    print("|---|---|---|---|---|")
    for name, r in rec.items():
        tr_, sc = r["train"], r["score"]
        print(f"| {name} | {min(tr_):.1f} / {statistics.median(tr_):.1f} / {max(tr_):.1f} | "
              f"{statistics.median(r['train_cpu']):.1f} | {min(sc):.2f} / {statistics.median(sc):.2f} | "
              f"{statistics.median(r['score_cpu']):.2f} |")


if __name__ == "__main__":
    main()
