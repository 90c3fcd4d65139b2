"""DIS — time-reversed diffusion sampler (Berner, Richter & Ullrich 2022; Richter & Berner 2024)."""
from __future__ import annotations

from dataclasses import dataclass

from ...sde.paths import VPPath
from ..registry import register
from .base import DiffusionConfig, DiffusionSampler

__all__ = ["DIS", "DISConfig"]


@dataclass
class DISConfig(DiffusionConfig):
    """DIS options: the VP noising schedule β from ``beta_min`` to ``beta_max`` (paper: 0.1 → 10)."""
    beta_min: float = 0.1
    beta_max: float = 10.0


@register
class DIS(DiffusionSampler):
    """Time-reversed diffusion sampler: learns to reverse the VP noising of π (Berner et al. 2022).

    Learns the time reversal of the VP (OU) process that noises π into N(0, I): u ≈ ∇log p_t,
    parametrised as NN(x, t) + c(t)·[(1 − t/T)·∇log N(0, I) + (t/T)·clip(∇log π̃)], c initialised to 1
    (the score interpolation of the paper), NN zero-initialised."""

    name = "dis"
    Config = DISConfig
    control_kind = "interpolated"
    coef_init = 1.0
    learn_backward = False

    def build_path(self):
        c = self.config
        return VPPath(self.target.dim, c.n_steps, c.T, c.beta_min, c.beta_max, learn_backward=self.learn_backward)
