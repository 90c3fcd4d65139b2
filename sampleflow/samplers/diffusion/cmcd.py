"""CMCD — controlled Monte Carlo diffusion (Vargas, Padhy, Blessing & Nüsken 2024, ICLR)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ...sde.paths import CMCDPath
from ..registry import register
from .base import DiffusionConfig, DiffusionSampler

__all__ = ["CMCD", "CMCDConfig", "LearnedStep"]


@dataclass
class CMCDConfig(DiffusionConfig):
    """CMCD options: prior N(0, ``prior_scale``² I), Langevin step δ (``step_size``, learned when
    ``learn_step``)."""
    prior_scale: float = 1.0
    step_size: float = 0.02
    learn_step: bool = True

    def __post_init__(self):
        super().__post_init__()
        if not self.step_size > 0:
            raise ValueError(f"step_size must be positive, got {self.step_size!r}")


class LearnedStep(torch.nn.Module):
    """A positive scalar δ = exp(θ)."""

    def __init__(self, init: float, learn: bool = True):
        super().__init__()
        self.log_step = torch.nn.Parameter(torch.tensor(math.log(init)), requires_grad=learn)

    def forward(self):
        return self.log_step.exp()


@register
class CMCD(DiffusionSampler):
    """Controlled Monte Carlo diffusion: annealed Langevin with a learned correction (Vargas et al. 2024).

    Annealed Langevin dynamics along the geometric path from N(0, σ₀² I) to π with a learned
    correction u = NN(x, t) (zero-initialised: training starts from MCD / uncorrected annealed
    Langevin importance sampling). The control needs no target score of its own — the Langevin
    drift already carries ∇log π_t."""

    name = "cmcd"
    Config = CMCDConfig

    def build_path(self):
        c = self.config
        return CMCDPath(self.target.dim, c.n_steps, c.T, c.prior_scale, c.step_size)

    def build_controls(self):
        c = self.config
        return {"control": self._control(kind="plain"), "step": LearnedStep(c.step_size, c.learn_step)}

    def before_simulation(self):
        self.path.set_step(self.modules["step"]())
