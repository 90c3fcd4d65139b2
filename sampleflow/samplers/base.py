"""The Sampler interface, shared by every method, and NFE counting.

A sampler is built from a target and a config dataclass (defaults = the paper's settings; named
presets such as ``"cpu"`` override some fields). Learned samplers implement ``fit``; every sampler
implements ``sample(n, generator=...) -> Samples``.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import ClassVar

import torch

from ..io import atomic_write
from ..samples import Samples
from ..targets.base import Target

__all__ = ["Sampler", "CountingTarget", "Timer"]


class CountingTarget:
    """Wraps a target and counts evaluations: ``nfe_log_prob`` and ``nfe_score`` are the number of
    points at which log π̃, resp. ∇log π̃, was evaluated; ``nfe`` counts points evaluated by any call,
    a joint ``log_prob_and_score`` counting once (the usual NFE of gradient-based samplers)."""

    def __init__(self, target: Target):
        self.target = target
        self.dim = target.dim
        self.name = target.name
        self.nfe_log_prob = 0
        self.nfe_score = 0
        self.nfe = 0

    @staticmethod
    def _count(x: torch.Tensor) -> int:
        return x[..., 0].numel()

    def log_prob(self, x):
        n = self._count(x)
        self.nfe_log_prob += n
        self.nfe += n
        return self.target.log_prob(x)

    def score(self, x):
        n = self._count(x)
        self.nfe_score += n
        self.nfe += n
        return self.target.score(x)

    def log_prob_and_score(self, x):
        n = self._count(x)
        self.nfe_log_prob += n
        self.nfe_score += n
        self.nfe += n
        return self.target.log_prob_and_score(x)

    def __getattr__(self, item):  # everything else (log_Z, box, sample, ...) from the target
        return getattr(self.target, item)


class Timer:
    """Wall-clock timer as a context manager (``with Timer() as t: ...; t.seconds``)."""

    def __enter__(self):
        self._start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self._start
        return False


class Sampler:
    """Base class. Subclasses set ``name``, ``Config`` (a dataclass) and optionally ``presets``."""

    name: ClassVar[str] = ""
    Config: ClassVar[type] = None
    presets: ClassVar[dict[str, dict]] = {"default": {}}
    learned: ClassVar[bool] = False

    def __init__(self, target: Target, config=None):
        if not isinstance(target, Target):
            raise TypeError(f"target must be a sampleflow Target, got {type(target).__name__} "
                            "(use sampleflow.targets.get(name) or Target.from_log_prob(fn, dim))")
        if config is None:
            config = self.Config()
        if not isinstance(config, self.Config):
            raise TypeError(f"config of sampler '{self.name}' must be a {self.Config.__name__}, "
                            f"got {type(config).__name__}")
        self.target = target
        self.config = config

    @classmethod
    def make_config(cls, preset: str = "default", **overrides):
        """The config for ``preset`` with ``overrides`` applied; unknown names give a clear error."""
        if preset not in cls.presets:
            raise ValueError(f"unknown preset '{preset}' for sampler '{cls.name}'; "
                             f"known presets: {sorted(cls.presets)}")
        fields = {f.name for f in dataclasses.fields(cls.Config)}
        bad = sorted(set(overrides) - fields)
        if bad:
            raise TypeError(f"sampler '{cls.name}' has no option(s) {bad}; its options are {sorted(fields)}")
        return cls.Config(**{**cls.presets[preset], **overrides})

    def to(self, device) -> "Sampler":
        """Move learned state to ``device`` (nothing to move for particle methods: they follow the
        generator's device)."""
        return self

    def fit(self, **kwargs) -> "Sampler":
        """Train (learned samplers). Particle and MCMC methods have nothing to fit."""
        return self

    def sample(self, n: int, generator: torch.Generator | None = None) -> Samples:
        raise NotImplementedError

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {"sampler": self.name, "config": dataclasses.asdict(self.config)}

    def load_state_dict(self, state: dict) -> None:
        if state.get("sampler") != self.name:
            raise ValueError(f"state is for sampler '{state.get('sampler')}', not '{self.name}'")
        self.config = self.Config(**state["config"])

    def save(self, path: str | Path) -> Path:
        return atomic_write(path, lambda f: torch.save(self.state_dict(), f), binary=True)

    def load(self, path: str | Path) -> "Sampler":
        self.load_state_dict(torch.load(path, map_location="cpu", weights_only=False))
        return self

    @staticmethod
    def _device_dtype(generator: torch.Generator | None, dtype: str | None) -> tuple[torch.device, torch.dtype]:
        """Where particles live: the generator's device (CPU without one) and the config's dtype name
        ("float32", "float64", or None for torch's default)."""
        device = generator.device if generator is not None else torch.device("cpu")
        return device, getattr(torch, dtype) if dtype is not None else torch.get_default_dtype()

    @staticmethod
    def _check_n(n) -> int:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        return n
