"""Explicit randomness: every random operation takes a torch.Generator (or a seed turned into one)."""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["make_generator", "numpy_rng"]


def make_generator(seed: int | torch.Generator | None = None, device="cpu") -> torch.Generator:
    """A torch.Generator on ``device`` seeded with ``seed`` (a Generator is passed through)."""
    if isinstance(seed, torch.Generator):
        return seed
    g = torch.Generator(device=device)
    if seed is None:
        g.seed()
    else:
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            raise TypeError(f"seed must be an integer, got {seed!r}")
        g.manual_seed(int(seed))
    return g


def numpy_rng(generator: torch.Generator | None) -> np.random.Generator:
    """A NumPy Generator whose seed is drawn from ``generator`` (for distributions torch cannot draw
    with an explicit generator, e.g. chi-square); the same torch state gives the same stream."""
    seed = torch.randint(0, 2**62, (1,), generator=generator, device=generator.device if generator else "cpu")
    return np.random.default_rng(int(seed))
