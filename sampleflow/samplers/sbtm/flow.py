r"""The SBTM particle loop (Ilin et al., "Score-based deterministic density sampling", 2025; Boffi &
Vanden-Eijnden, "Probability flow solution of the Fokker–Planck equation", 2023).

The Fokker–Planck equation of Langevin dynamics dX = ∇log π dt + √2 dW is the continuity equation
∂_t f = −∇·(f v) of the *deterministic* velocity v_t = ∇log π − ∇log f_t: particles moved by v have the
Langevin marginals f_t, the Wasserstein gradient flow of KL(f_t‖π). SBTM replaces the unknown ∇log f_t by a
network s_t trained on the particles themselves (implicit score matching) before each step:

    x_{k+1} = x_k + h [ ∇log π_{t_k}(x_k) − γ_k s_{t_k}(x_k) ]                      (forward Euler)
    x̃ = x_k + h v_k(x_k),  retrain s on x̃,  x_{k+1} = x_k + (h/2) [ v_k(x_k) + v_{k+1}(x̃) ]   (Heun)

with the geometric annealing path ∇log π_t = λ_t ∇log π + (1 − λ_t) ∇log f₀ and the temperature γ_k (both
1 by default). Logged per step without host synchronisation: the relative Fisher information
(1/n) Σ|s − ∇log π|² (= −dKL/dt for the exact flow) and the training loss; user monitors (KL estimates,
distances) every ``log_every`` steps. Memory does not grow with the number of steps beyond two floats per
step and the subsampled trajectory.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ...progress import progress
from .config import SBTMConfig
from .losses import relative_fisher
from .score import ScoreTrainer

__all__ = ["sbtm_flow", "FlowResult"]

ScoreFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class FlowResult:
    """x: final particles (n, d). history: per step k (before the move of step k) the relative Fisher
    information and the last training loss, CPU tensors of length n_steps. monitors: {"step": [...],
    name: [...]} evaluated every ``log_every`` steps (step 0 = the start). trajectory: (T, m, d) particles at
    ``trajectory_steps`` (None when not kept)."""

    x: torch.Tensor
    history: dict[str, torch.Tensor]
    monitors: dict[str, list[float]] = field(default_factory=dict)
    trajectory: torch.Tensor | None = None
    trajectory_steps: list[int] = field(default_factory=list)


def _ramp(k: int, n: int) -> float:
    return 1.0 if n <= 0 else min(1.0, k / n)


def sbtm_flow(x0: torch.Tensor, target_score: ScoreFn, trainer: ScoreTrainer, config: SBTMConfig, *,
              init_score: ScoreFn | None = None, monitors: dict[str, Callable[[torch.Tensor], float]] | None = None,
              progress_desc: str | None = "sbtm") -> FlowResult:
    """Run ``config.n_steps`` SBTM steps from the particles ``x0`` (n, d). ``trainer`` holds the score network
    (already fitted to f₀'s score, see :meth:`ScoreTrainer.fit_initial`); ``target_score`` is ∇log π;
    ``init_score`` (∇log f₀) is needed only for annealing. Device and dtype follow ``x0``."""
    c = config
    if c.anneal_steps and init_score is None:
        raise ValueError("anneal_steps > 0 needs init_score (the score of the initial law f₀)")
    n_steps, h = c.n_steps, c.step_size
    monitors = monitors or {}
    x = x0.detach()
    fisher = torch.empty(n_steps, dtype=x.dtype, device=x.device)
    losses = torch.empty(n_steps, dtype=x.dtype, device=x.device)
    m = min(c.trajectory_particles, x.shape[0])
    traj, traj_steps = [], []
    mon = {"step": [], **{k: [] for k in monitors}}

    def weight(k: int) -> float:
        if c.score_weight_final is None:
            return c.score_weight
        return c.score_weight + (c.score_weight_final - c.score_weight) * _ramp(k, n_steps - 1)

    def velocity(k: int, y: torch.Tensor, grad_log_pi: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        if c.anneal_steps:
            lam = _ramp(k, c.anneal_steps)
            if lam < 1.0:
                grad_log_pi = lam * grad_log_pi + (1.0 - lam) * init_score(y)
        return grad_log_pi - weight(k) * s

    def record(k: int) -> None:
        if c.keep_trajectory and k % c.keep_trajectory == 0:
            traj.append(x[:m].clone())
            traj_steps.append(k)
        if monitors and (k % c.log_every == 0 or k == n_steps):
            mon["step"].append(k)
            for name, fn in monitors.items():
                mon[name].append(float(fn(x)))

    record(0)
    bar = progress(n_steps, desc=progress_desc) if progress_desc else None
    try:
        for k in range(n_steps):
            losses[k] = trainer.train(x)
            s = trainer.score(x)
            g = target_score(x)
            fisher[k] = relative_fisher(s, g)
            v = velocity(k, x, g, s)
            if c.integrator == "heun":
                x_pred = x + h * v
                trainer.train(x_pred)
                v_pred = velocity(k + 1, x_pred, target_score(x_pred), trainer.score(x_pred))
                x = x + (0.5 * h) * (v + v_pred)
            else:
                x = x + h * v
            record(k + 1)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    history = {"step": torch.arange(n_steps), "fisher": fisher.cpu(), "loss": losses.cpu()}
    return FlowResult(x=x, history=history, monitors=mon if monitors else {},
                      trajectory=torch.stack(traj) if traj else None, trajectory_steps=traj_steps)
