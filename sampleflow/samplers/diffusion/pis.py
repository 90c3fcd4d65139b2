"""PIS — path integral sampler (Zhang & Chen 2022, ICLR): a controlled Brownian motion from δ₀."""
from __future__ import annotations

from dataclasses import dataclass

from ...sde.paths import PISPath
from ..registry import register
from .base import DiffusionConfig, DiffusionSampler

__all__ = ["PIS", "PISConfig"]


@dataclass
class PISConfig(DiffusionConfig):
    """PIS options; ``sigma`` = None gives the paper's σ² T = 1."""
    sigma: float | None = None


@register
class PIS(DiffusionSampler):
    """Path integral sampler: a Brownian motion from δ₀ with a learned control (Zhang & Chen 2022).

    dX = σ u dt + σ dW from X_0 = 0; u = NN(x, t) + c(t)·clip(∇log π̃) (the "Langevin-informed"
    network of the PIS paper, c zero-initialised: training starts from the uncontrolled Brownian motion,
    i.e. importance sampling from N(0, σ²T I)). Target path: π at T and the Brownian bridge to 0."""

    name = "pis"
    Config = PISConfig
    control_kind = "score"
    coef_init = 0.0

    def build_path(self):
        c = self.config
        return PISPath(self.target.dim, c.n_steps, c.T, c.sigma)
