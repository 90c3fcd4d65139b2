"""Trainer checkpoints: one file, written atomically, loadable with ``torch.load(weights_only=True)``."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

__all__ = ["CHECKPOINT_FORMAT", "load_checkpoint", "check_plain"]

CHECKPOINT_FORMAT = "sampleflow.training.checkpoint/1"


def check_plain(obj, where: str) -> None:
    """extra_state must be loadable with torch.load(weights_only=True): plain data and tensors."""
    if obj is None or isinstance(obj, (bool, int, float, str, bytes, torch.Tensor)):
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            check_plain(v, f"{where}[{i}]")
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, (str, int, float, bool)) and k is not None:
                raise TypeError(f"{where}: key {k!r} is a {type(k).__name__}; use str/int keys")
            check_plain(v, f"{where}[{k!r}]")
        return
    hint = " (use dataclasses.asdict)" if dataclasses.is_dataclass(obj) else ""
    raise TypeError(f"{where} is a {type(obj).__name__}: checkpoints hold plain data only "
                    f"(dict, list, tuple, str, numbers, None, tensors){hint}")


def load_checkpoint(path: str | Path) -> dict:
    """Read a trainer checkpoint (tensors on the CPU) as a dict: ``iteration``, ``elapsed``,
    ``config``, ``modules``, ``optimizer``, ``ema``, ``scheduler``, ``history``, ``generators``,
    ``extra_state``, ...  Use it to rebuild the caller's objects (e.g. from ``extra_state``) before
    constructing the :class:`Trainer` that resumes."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 -- any unreadable file gets one clear message
        raise ValueError(f"checkpoint {str(path)!r} cannot be read as a trainer checkpoint: {e}") from e
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{str(path)!r} is not a sampleflow trainer checkpoint (format {CHECKPOINT_FORMAT})")
    return state
