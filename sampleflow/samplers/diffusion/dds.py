"""DDS — denoising diffusion sampler (Vargas, Grathwohl & Doucet 2023, ICLR)."""
from __future__ import annotations

from dataclasses import dataclass

from ...sde.paths import DDSPath
from ..registry import register
from .base import DiffusionConfig, DiffusionSampler

__all__ = ["DDS", "DDSConfig"]


@dataclass
class DDSConfig(DiffusionConfig):
    """DDS options: the OU reference's stationary scale ``sigma`` (prior N(0, σ² I)) and the cosine
    schedule's offset."""
    sigma: float = 1.0
    cosine_offset: float = 0.008


@register
class DDS(DiffusionSampler):
    """Denoising diffusion sampler: OU reversal, exponential integrator, cosine grid (Vargas et al. 2023).

    Exponential-integrator reversal of an OU process on the cosine schedule; u plays the score
    minus the reference score, u = NN(x, t) + c(t)·clip(∇log π̃), c zero-initialised (training starts
    from the stationary reference, i.e. importance sampling from N(0, σ² I))."""

    name = "dds"
    Config = DDSConfig
    control_kind = "score"
    coef_init = 0.0

    def build_path(self):
        c = self.config
        return DDSPath(self.target.dim, c.n_steps, c.T, c.sigma, c.cosine_offset)
