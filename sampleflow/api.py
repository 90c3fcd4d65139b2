"""The one-call API: ``sampleflow.sample(target, "smc", n=2000, seed=0, preset="cpu", **overrides)``."""
from __future__ import annotations

import torch

from . import samplers, targets
from ._rng import make_generator
from .samples import Samples
from .targets.base import Target

__all__ = ["sample", "resolve_target"]


def resolve_target(target: str | Target, **params) -> Target:
    """A Target from a registry name (with parameters) or a Target passed through."""
    if isinstance(target, Target):
        if params:
            raise TypeError(f"target parameters {sorted(params)} given with a Target object; "
                            "pass them to sampleflow.targets.get instead")
        return target
    if isinstance(target, str):
        return targets.get(target, **params)
    raise TypeError(f"target must be a registry name or a sampleflow Target, got {type(target).__name__}")


def sample(target: str | Target, sampler: str, n: int, *, seed: int | torch.Generator = 0,
           preset: str = "default", device: str | torch.device = "cpu", target_params: dict | None = None,
           **overrides) -> Samples:
    """Run sampler ``sampler`` (a registry name) on ``target`` and return ``n`` Samples.

    ``preset`` picks a named set of config values ("default" = the paper's settings, "cpu" = a small
    budget); ``overrides`` set single config fields. Learned samplers are fitted first. The same seed
    gives the same samples."""
    t = resolve_target(target, **(target_params or {}))
    cls = samplers.get(sampler)
    config = cls.make_config(preset, **overrides)
    s = cls(t, config).to(device)
    g = make_generator(seed, device)
    if cls.learned:
        s.fit(generator=g)
    return s.sample(n, generator=g)
