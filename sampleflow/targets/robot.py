"""Planar robot arm, d = 10 (Blessing et al. 2024, "Beyond ELBOs", ``targets/planar_robot.py``; the 4-goal
variant from SCLD, Chen et al. 2025, ``configs/target/planar_robot_4goal.yaml``; TARGETS.md §3).

θ ∈ R^{10} joint angles of an arm with ten unit links; end effector
    p(θ) = (Σ_{i=1}^{10} cos(θ₁ + … + θ_i),  Σ_{i=1}^{10} sin(θ₁ + … + θ_i)).
Prior θ₁ ~ N(0, 1), θ_i ~ N(0, 0.2²) (i ≥ 2); likelihood the **max** over goals g of log N(p(θ); g, 0.01² I₂):

    log π̃(θ) = Σ_i log N(θ_i; 0, s_i²) + max_g log N(p(θ); g, 10⁻⁴ I₂)     (normalising constants included).

Goals: ``planar_robot_1goal`` (7, 0); ``planar_robot_4goal`` (7, 0), (−7, 0), (0, 7), (0, −7).
Reference draws: BE's 1-goal set (``planar_robot_1goal_reference_10k.npy``) and SCLD's 4-goal set rebuilt by
rotating those draws and resampling (``planar_robot_4goal_reference_10k.npy``; its mode proportions are slightly
flattened by the without-replacement selection, see TARGETS.md §3). log_Z is None.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from . import data
from .base import Target
from .registry import register

__all__ = ["PlanarRobot"]

_LOG_2PI = math.log(2 * math.pi)

GOALS = {1: ((7.0, 0.0),), 4: ((7.0, 0.0), (-7.0, 0.0), (0.0, 7.0), (0.0, -7.0))}
_REFERENCE = {1: "planar_robot_1goal_reference_10k.npy", 4: "planar_robot_4goal_reference_10k.npy"}


class PlanarRobot(Target):
    """Planar robot arm with ``num_goals`` ∈ {1, 4} goals (see the module docstring)."""

    version = "1"

    def __init__(self, num_goals: int = 1, prior_std: float = 0.2, first_prior_std: float = 1.0,
                 likelihood_std: float = 0.01):
        if num_goals not in GOALS:
            raise ValueError(f"num_goals must be 1 or 4, got {num_goals!r}")
        dim = 10
        sd = np.full(dim, float(prior_std))
        sd[0] = float(first_prior_std)
        box = ([-math.pi] + [-1.5] * (dim - 1), [math.pi] + [1.5] * (dim - 1))  # reference draws reach ±1.1
        super().__init__(dim, name=f"planar_robot_{num_goals}goal", log_Z=None, box=box)
        self.num_goals = num_goals
        self.likelihood_std = float(likelihood_std)
        self._register("inv_var", 1.0 / sd ** 2)
        self._register("goals", np.array(GOALS[num_goals], dtype=np.float64))
        self._prior_const = float(-0.5 * dim * _LOG_2PI - np.log(sd).sum())
        self._lik_const = -_LOG_2PI - 2 * math.log(self.likelihood_std)

    def end_effector(self, theta: torch.Tensor) -> torch.Tensor:
        """p(θ), shape (..., 2)."""
        phi = torch.cumsum(theta, -1)
        return torch.stack([torch.cos(phi).sum(-1), torch.sin(phi).sum(-1)], -1)

    def _log_prob(self, theta):
        inv_var, goals = self._param("inv_var", theta), self._param("goals", theta)
        prior = -0.5 * (theta * theta * inv_var).sum(-1) + self._prior_const
        p = self.end_effector(theta)
        d = p.unsqueeze(-2) - goals                                   # (..., G, 2)
        ll = -0.5 * (d * d).sum(-1) / self.likelihood_std ** 2 + self._lik_const
        return prior + ll.max(-1).values

    def _reference_samples(self):
        return torch.as_tensor(np.asarray(data.load_array(_REFERENCE[self.num_goals]), dtype=np.float64))


def _one_goal():
    return PlanarRobot(num_goals=1)


def _four_goals():
    return PlanarRobot(num_goals=4)


register("planar_robot_1goal", _one_goal, "Planar robot arm, 10 joints, goal (7, 0) (BE 2024), d=10")
register("planar_robot_4goal", _four_goals, "Planar robot arm, 10 joints, 4 goals (SCLD), d=10")
