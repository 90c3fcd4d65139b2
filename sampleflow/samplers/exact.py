"""``exact``: the target's own exact sampler (the reference every other sampler is scored against)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..samples import Samples
from .base import Sampler, Timer
from .registry import register

__all__ = ["Exact", "ExactConfig"]


@dataclass
class ExactConfig:
    """No options: exact draws use the target's closed-form sampler."""


@register
class Exact(Sampler):
    """Exact draws from the target's own sampler (no weights, no target evaluations)."""

    name = "exact"
    Config = ExactConfig
    presets = {"default": {}, "cpu": {}}

    def __init__(self, target, config=None):
        super().__init__(target, config)
        if not target.has_exact_sampler:
            raise ValueError(f"sampler 'exact' needs a target with an exact sampler; "
                             f"target '{target.name}' has none")

    def sample(self, n: int, generator: torch.Generator | None = None) -> Samples:
        n = self._check_n(n)
        with Timer() as t:
            x = self.target.sample(n, generator=generator)
        return Samples(x=x, nfe=0, wall_time=t.seconds, sampler=self.name, target=self.target.name)
