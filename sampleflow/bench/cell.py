"""One benchmark cell, start to end, in its own folder: build the target and the sampler, train (learned
samplers: checkpointed, resumed from the checkpoint when one is there), draw ``n`` samples, evaluate them and
write the artifacts. ``run_cell(spec)`` is a module-level function of a plain dict so that any executor
(this process, a process pool, Ray workers) can run it; it returns the outcome as a dict and raises on failure.

Artifacts (relative to the results root): ``samples.npz``, ``metrics.json``, ``samples.png``; for learned
samplers also ``history.csv``, ``training.png``, ``checkpoint.pt`` and ``sampler.pt``.
"""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import torch

__all__ = ["run_cell", "CellDiverged", "write_training_outputs"]


class CellDiverged(RuntimeError):
    """The run finished but produced non-finite samples (or training diverged)."""


def run_cell(spec: dict) -> dict:
    """Run the cell described by ``spec`` (``Cell.spec()`` plus ``root``, the results folder, and optionally
    ``threads``, ``device`` ("cpu", "cuda", or "auto": CUDA when this worker has a GPU) and ``data_dir``, the
    driver's benchmark data folder, used when this worker sees it too); return ``{"cell_id", "metrics",
    "artifacts", "wall_time", "train_time", "nfe", "resumed_from", "host", "device"}``."""
    from .. import samplers
    from .._rng import make_generator
    from ..io import write_json
    from ..metrics.evaluate import evaluate
    from ..plots import samples_picture
    from ..targets import get

    start = time.perf_counter()
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    if spec.get("data_dir") and Path(spec["data_dir"]).is_dir():
        os.environ["SAMPLEFLOW_DATA"] = spec["data_dir"]
    device = spec.get("device") or "cpu"
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    root = Path(spec["root"])
    folder = root / spec["folder"]
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "cell.json", {k: v for k, v in spec.items() if k != "root"})
    target = get(spec["target_name"], **spec["target_params"])
    cls = samplers.get(spec["method"])
    budget = spec.get("budget") or {}
    options = dict(spec["options"])
    if not cls.learned and budget.get("iterations") is not None:
        options["n_steps"] = budget["iterations"]        # a particle/chain sampler's budget is its step count
    sampler = cls(target, cls.make_config(spec["preset"], **options)).to(device)
    artifacts, resumed_from, train_time = {}, None, None
    if cls.learned:
        resumed_from, train_time = _train(sampler, spec, folder, budget)
        artifacts.update(write_training_outputs(sampler, target, folder,
                                                f"{spec['sampler']} on {spec['target']} (seed {spec['seed']})"))
    s = sampler.sample(spec["n"], generator=make_generator(spec["seed"] + 1, device))
    bad = int((~torch.isfinite(s.x).all(dim=-1)).sum())
    if bad:
        raise CellDiverged(f"diverged: {bad} of {s.n} samples are not finite")
    metrics = evaluate(s, target, seed=spec["seed"])
    s.to_npz(folder / "samples.npz")
    write_json(folder / "metrics.json", metrics)
    samples_picture(s, target, folder / "samples.png", seed=spec["seed"],
                    title=f"{spec['sampler']} on {spec['target']} (seed {spec['seed']})")
    artifacts.update({"samples": "samples.npz", "metrics": "metrics.json", "samples_png": "samples.png"})
    return {"cell_id": spec["cell_id"], "metrics": metrics,
            "artifacts": {k: f"{spec['folder']}/{v}" for k, v in artifacts.items()},
            "wall_time": time.perf_counter() - start, "train_time": train_time, "nfe": int(s.nfe or 0),
            "resumed_from": resumed_from, "host": f"{socket.gethostname()}:{os.getpid()}", "device": device}


def _train(sampler, spec: dict, folder: Path, budget: dict) -> tuple[int | None, float]:
    """Fit with the checkpoint in the cell folder; resume from it when it is there. Returns (iteration
    resumed from or None, training seconds of this session)."""
    ckpt = folder / "checkpoint.pt"
    resumed_from = None
    if ckpt.is_file():
        resumed_from = int(torch.load(ckpt, map_location="cpu", weights_only=False).get("iteration", 0))
    t0 = time.perf_counter()
    sampler.fit(generator=spec["seed"], checkpoint=ckpt, resume=resumed_from is not None, progress=False,
                **{k: v for k, v in budget.items() if v is not None})
    return resumed_from, time.perf_counter() - t0


def write_training_outputs(sampler, target, folder: Path, title: str) -> dict:
    """A fitted learned sampler's ``history.csv``, ``training.png`` (with the exact log Z where known) and
    ``sampler.pt`` in ``folder``; returns {kind: file name} (the checkpoint is there already)."""
    from ..plots import training_curves
    sampler.history.to_csv(folder / "history.csv")
    log_z = target.log_Z.value if target.log_Z is not None else None
    training_curves(sampler.history, folder / "training.png", log_Z=log_z, title=title)
    sampler.save(folder / "sampler.pt")
    return {"history": "history.csv", "training_png": "training.png", "checkpoint": "checkpoint.pt",
            "sampler": "sampler.pt"}
