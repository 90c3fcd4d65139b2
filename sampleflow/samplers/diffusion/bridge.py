"""The general diffusion bridge: learned forward *and* backward controls (Richter & Berner 2024, §3)."""
from __future__ import annotations

from dataclasses import dataclass

from ..registry import register
from .dis import DIS, DISConfig

__all__ = ["Bridge", "BridgeConfig"]


@dataclass
class BridgeConfig(DISConfig):
    """Bridge options: those of DIS (the VP reference, β from ``beta_min`` to ``beta_max``)."""


@register
class Bridge(DIS):
    """Diffusion bridge: learned forward and backward controls on the VP reference (Richter & Berner 2024).

    Forward drift ½βx + βu, backward drift ½βx − βv, both learned; u as in DIS (score
    interpolation), v = NN(x, t) zero-initialised, so training starts from DIS's initial process.
    At the optimum u + v = ∇log p_t (Nelson's relation); the pair is not unique, which the log-variance
    loss does not mind."""

    name = "bridge"
    Config = BridgeConfig
    learn_backward = True

    def build_controls(self):
        return {"control": self._control(), "backward": self._control(kind="plain")}
