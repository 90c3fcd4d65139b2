"""The general diffusion bridge: learned forward *and* backward controls (Richter & Berner 2024, §3)."""
from __future__ import annotations

from dataclasses import dataclass

from ...sde.paths import VPPath
from ..registry import register
from .base import DiffusionConfig, DiffusionSampler

__all__ = ["Bridge", "BridgeConfig"]


@dataclass
class BridgeConfig(DiffusionConfig):
    """Bridge options: the VP reference drift/diffusion (β from ``beta_min`` to ``beta_max``)."""
    beta_min: float = 0.1
    beta_max: float = 10.0


@register
class Bridge(DiffusionSampler):
    """Forward drift ½βx + βu, backward drift ½βx − βv, both learned; u as in DIS (score
    interpolation), v = NN(x, t) zero-initialised, so training starts from DIS's initial process.
    At the optimum u + v = ∇log p_t (Nelson's relation); the pair is not unique, which the log-variance
    loss does not mind."""

    name = "bridge"
    Config = BridgeConfig
    control_kind = "interpolated"
    coef_init = 1.0

    def build_path(self):
        c = self.config
        return VPPath(self.target.dim, c.n_steps, c.T, c.beta_min, c.beta_max, learn_backward=True)

    def build_controls(self):
        return {"control": self._control(), "backward": self._control(kind="plain")}
