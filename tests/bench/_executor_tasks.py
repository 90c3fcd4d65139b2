"""Cell functions for tests/bench/test_executors.py.

They live in their own module, not in the test file, because spawned workers and Ray workers
import them by name (``tests.bench._executor_tasks.cell``): pickle sends only that name. This
module is importable there because the checkout root is on the workers'
``sys.path``: spawn copies the parent's ``sys.path`` (pytest puts the checkout root on it, since
``tests/`` is a package), and the Ray test cluster is started with ``PYTHONPATH`` set to the
checkout root (Ray also adds the driver's working directory to its workers' ``sys.path``).
"""
import os

import torch


def cell(spec: dict) -> dict:
    """A small deterministic torch computation of ``spec["seed"]``; ``spec["action"]`` makes it
    fail: ``"raise"`` raises a ValueError, ``"exit"`` kills the process with ``os._exit(3)``."""
    action = spec.get("action", "ok")
    if action == "raise":
        raise ValueError(f"cell {spec['seed']} failed on purpose")
    if action == "exit":
        os._exit(3)
    g = torch.Generator().manual_seed(spec["seed"])
    x = torch.randn(spec.get("n", 1000), generator=g, dtype=torch.float64)
    return {"seed": spec["seed"], "sum": float(x.sum()), "pid": os.getpid(), "threads": torch.get_num_threads()}


def where_is_sampleflow(spec: dict) -> dict:
    """Where the worker imports sampleflow from (checks that workers can import the package)."""
    import sampleflow
    import sampleflow.bench.executors

    return {"file": sampleflow.__file__, "pid": os.getpid()}
