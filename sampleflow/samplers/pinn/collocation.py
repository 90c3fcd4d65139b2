r"""Collocation points of the PINN sampler from annealed Langevin dynamics on the path (Sun et al., "Dynamical
measure transport and neural PDE solvers for sampling", 2024, discuss where to put the collocation points: the
residual only has to vanish where p_t has mass, and uniform points in a box waste most of the batch in high
dimension or for concentrated targets).

Annealed unadjusted Langevin (ULA) on the prescribed path: chains start from p₀ at t_0 = 0 and, at each time
t_k of an increasing grid t_0 < t_1 < … < t_K, take ``n_steps`` steps

    x ← x + h ∇log p̃_{t_k}(x) + √(2h) ξ,      ξ ~ N(0, I),

targeting p_{t_k}; the state after the steps at t_k is kept as a point (t_k, x). (The points are approximately
p_{t_k}-distributed, with ULA's O(h) bias and the lag of a finite number of steps; that is all a collocation
distribution needs — no weights are used.) Every chain gives one point per grid time, so n points cost about
n · n_steps target score evaluations.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

__all__ = ["annealed_langevin_points"]


def annealed_langevin_points(score: Callable[[Tensor, Tensor], Tensor], x0: Tensor, times: Tensor, n_steps: int,
                             step_size: float, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """(t, x) of shapes ((K + 1)·m,) and ((K + 1)·m, d): the states of the m chains started at ``x0`` (m, d),
    a p₀ sample, after ``n_steps`` ULA steps of size ``step_size`` on p̃_{t_k} at each grid time
    ``times`` = (t_0, …, t_K) (increasing), grouped by time (rows k·m … (k + 1)·m − 1 have t = t_k). At t_0 = 0
    the chains are not moved when x0 is already a p₀ sample — pass ``times[0] = 0`` and the first block is x0.
    ``score(t, x)`` is ∇log p̃_t(x) with t of shape (m,). No graph is kept."""
    if not (isinstance(n_steps, int) and n_steps >= 0):
        raise ValueError(f"n_steps must be a non-negative integer, got {n_steps!r}")
    if not (step_size > 0 and math.isfinite(step_size)):
        raise ValueError(f"step_size must be a positive number, got {step_size!r}")
    m = x0.shape[0]
    noise_scale = math.sqrt(2 * step_size)
    xs, ts = [], []
    with torch.no_grad():
        x = x0
        for k, tk in enumerate(times):
            tt = tk.expand(m)
            if not (k == 0 and float(tk) == 0.0):
                for _ in range(n_steps):
                    xi = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
                    x = x + step_size * score(tt, x) + noise_scale * xi
            xs.append(x)
            ts.append(tt)
    return torch.cat(ts), torch.cat(xs)
