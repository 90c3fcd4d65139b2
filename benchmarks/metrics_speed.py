"""Wall time of the sample-distance metrics at the protocol sizes (CPU, float64).

    python benchmarks/metrics_speed.py [--sizes 500 2000] [--dims 2 50]

Data: x ~ N(0, I), y ~ N(0.5, 1.3² I). Prints a table: metric, n (= m), d, seconds, value.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from sampleflow.metrics import energy_distance, mmd, sinkhorn, sliced_wasserstein, wasserstein2
from sampleflow.tables import text_table

METRICS = {
    "sinkhorn (BE default)": lambda x, y: sinkhorn(x, y),
    "sinkhorn (eps=1e-3)": lambda x, y: sinkhorn(x, y, eps=1e-3),
    "w2 (EMD)": wasserstein2,
    "mmd": mmd,
    "energy": energy_distance,
    "sliced_w2 (500 proj.)": lambda x, y: sliced_wasserstein(x, y, seed=0),
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=int, nargs="+", default=[500, 2000])
    p.add_argument("--dims", type=int, nargs="+", default=[2, 50])
    p.add_argument("--skip", nargs="*", default=[], help="metric names to skip")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for d in args.dims:
        for n in args.sizes:
            x = rng.standard_normal((n, d))
            y = 0.5 + 1.3 * rng.standard_normal((n, d))
            for name, fn in METRICS.items():
                if name in args.skip:
                    continue
                t0 = time.perf_counter()
                v = fn(x, y)
                rows.append({"metric": name, "n": n, "d": d, "seconds": time.perf_counter() - t0, "value": v})
                print(text_table(rows[-1:], ["metric", "n", "d", "seconds", "value"]).splitlines()[-1], flush=True)
    print()
    print(text_table(rows, ["metric", "n", "d", "seconds", "value"]))


if __name__ == "__main__":
    main()
