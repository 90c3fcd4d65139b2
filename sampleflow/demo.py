"""``make demo``: score exact samples, classical baselines and deliberately poor samplers on two
targets, print the table.

The poor samplers are importance samplers whose proposal is a narrow Gaussian at the origin: on the
9-mode mixture it sees mostly the centre mode; on the funnel it misses the neck and the wide mouth.
Adaptive tempered SMC and MALA/HMC (at their "cpu" presets) show what the baselines reach on the same
targets. (The benchmark suite replaces this with the `quick` suite.)
"""
from __future__ import annotations

import time
from pathlib import Path

from ._rng import make_generator
from .api import sample
from .io import atomic_write, write_json
from .metrics.evaluate import evaluate
from .plots import scatter_samples
from .tables import markdown_table, text_table
from .targets import get

__all__ = ["run_demo", "DEMO_RUNS"]

# (target name, label, sampler name, options for sampleflow.sample: preset and sampler config fields)
DEMO_RUNS = [
    ("gmm9", "exact", "exact", {}),
    ("gmm9", "smc", "smc", {"preset": "cpu"}),
    ("gmm9", "mala", "mala", {"preset": "cpu"}),
    ("gmm9", "IS, wide Student-t proposal", "importance", {"proposal": "student_t", "loc": 0.0, "scale": 4.0}),
    ("gmm9", "IS, narrow proposal (poor)", "importance", {"proposal": "gaussian", "loc": 0.0, "scale": 1.0}),
    ("funnel", "exact", "exact", {}),
    ("funnel", "smc", "smc", {"preset": "cpu"}),
    ("funnel", "hmc", "hmc", {"preset": "cpu", "init": "prior"}),
    ("funnel", "IS, narrow proposal (poor)", "importance", {"proposal": "gaussian", "loc": 0.0, "scale": 1.0}),
]

COLUMNS = ["target", "sampler", "n", "nfe", "log_Z_error", "ess", "sinkhorn", "mmd", "energy", "mean_error",
           "std_error", "emc", "wall_time"]


def run_demo(out: str | Path = "demo_output", n: int = 2000, seed: int = 0) -> list[dict]:
    out = Path(out)
    rows = []
    t0 = time.perf_counter()
    for target_name, label, sampler, opts in DEMO_RUNS:
        target = get(target_name)
        s = sample(target, sampler, n=n, seed=seed, **opts)
        m = evaluate(s, target, seed=seed)
        slug = f"{target_name}_{label.split(',')[0].split()[0].lower()}_{len(rows)}"
        s.to_npz(out / slug / "samples.npz")
        write_json(out / slug / "metrics.json", m)
        pts = s.resample(generator=make_generator(seed)).x if s.log_weights is not None else s.x
        scatter_samples(pts, out / slug / "samples.png", reference=target.sample(n, make_generator(seed + 1)),
                        box=target.box, title=f"{label} on {target_name}")
        rows.append({"target": target_name, "sampler": label, **m})
    table = text_table(rows, COLUMNS)
    md = ("# sampleflow demo\n\nCommand: `make demo` (`sampleflow demo --out " + str(out) + f" -n {n} --seed {seed}`)"
          f"\n\n{markdown_table(rows, COLUMNS)}\n\nMetric definitions: see `sampleflow.metrics` docstrings "
          "(Sinkhorn: Beyond-ELBOs protocol; MMD: median-heuristic Gaussian kernel).\n")
    atomic_write(out / "report.md", lambda f: f.write(md))
    write_json(out / "results.json", rows)
    print(table)
    print(f"\nreport: {(out / 'report.md').resolve()}  ({time.perf_counter() - t0:.1f} s)")
    return rows
