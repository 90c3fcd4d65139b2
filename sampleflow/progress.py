"""Progress bars for long runs (tqdm), shown only on an interactive terminal unless asked for.

``progress(total, desc)`` returns a tqdm bar (a no-op bar when disabled); update it with
``bar.update(k)`` and ``bar.set_postfix(...)``. Disabled when stderr is not a TTY, or when
``SAMPLEFLOW_PROGRESS=0``; forced on with ``SAMPLEFLOW_PROGRESS=1`` or ``enabled=True``.
"""
from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm

__all__ = ["progress"]


def _default_enabled() -> bool:
    env = os.environ.get("SAMPLEFLOW_PROGRESS")
    if env is not None:
        return env not in ("0", "false", "no", "")
    return sys.stderr.isatty()


def progress(total: int | None = None, desc: str = "", enabled: bool | None = None, **kwargs) -> tqdm:
    """A tqdm progress bar over ``total`` steps (disabled off a terminal)."""
    on = _default_enabled() if enabled is None else enabled
    return tqdm(total=total, desc=desc, disable=not on, dynamic_ncols=True, leave=False, **kwargs)
