"""CMCD — controlled Monte Carlo diffusion (Vargas, Padhy, Blessing & Nüsken 2024, ICLR)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ...sde.paths import CMCDPath
from ..registry import register
from .base import DiffusionConfig, DiffusionSampler

__all__ = ["CMCD", "CMCDConfig", "LearnedSchedule", "LearnedStep"]


@dataclass
class CMCDConfig(DiffusionConfig):
    """CMCD options: prior N(0, ``prior_scale``² I); Langevin step δ (``step_size``: its initial value, learned
    when ``learn_step``; one per grid step when ``per_step``, else one scalar); annealing schedule β_k, learned
    when ``learn_schedule`` (starts uniform, β_k = k/K). Vargas et al. (2024) learn the steps and the schedule
    jointly with the control."""
    prior_scale: float = 1.0
    step_size: float = 0.02
    learn_step: bool = True
    per_step: bool = True
    learn_schedule: bool = True

    def __post_init__(self):
        super().__post_init__()
        if not (isinstance(self.step_size, (int, float)) and math.isfinite(self.step_size) and self.step_size > 0):
            raise ValueError(f"step_size must be a positive finite number, got {self.step_size!r}")


class LearnedStep(torch.nn.Module):
    """Positive step sizes δ = exp(θ): a scalar, or one per grid step (``n`` given)."""

    def __init__(self, init: float, learn: bool = True, n: int | None = None):
        super().__init__()
        shape = () if n is None else (n,)
        self.log_step = torch.nn.Parameter(torch.full(shape, math.log(init)), requires_grad=learn)

    def forward(self):
        return self.log_step.exp()


class LearnedSchedule(torch.nn.Module):
    """An increasing annealing schedule 0 = β_0 < β_1 < … < β_K = 1: the cumulative sums of softmax(θ) over K
    increments (θ = 0 gives the uniform β_k = k/K)."""

    def __init__(self, n_steps: int, learn: bool = True):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.zeros(n_steps), requires_grad=learn)

    def forward(self):
        inc = torch.softmax(self.logits, 0)
        beta = torch.cat([inc.new_zeros(1), torch.cumsum(inc, 0)])
        return beta / beta[-1]


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
        modules = {"control": self._control(kind="plain"),
                   "step": LearnedStep(c.step_size, c.learn_step, c.n_steps if c.per_step else None)}
        if c.learn_schedule:
            modules["schedule"] = LearnedSchedule(c.n_steps)
        return modules

    def before_simulation(self):
        self.path.set_step(self.modules["step"]())
        if "schedule" in self.modules:
            self.path.set_schedule(self.modules["schedule"]())
