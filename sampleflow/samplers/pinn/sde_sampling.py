r"""Sampling the SDE variants of the PINN sampler (Fokker–Planck, and the learned path with σ > 0) with
importance weights.

Euler–Maruyama of dX = b(t, X) dt + σ dW from X_0 ~ p₀ on a grid t_0 = 0 < … < t_K = 1 gives the forward
(model) chain F_k(x_{k+1} | x_k) = N(x_k + b(t_k, x_k) h_k, σ² h_k I). When the marginals p_t are known up to
their normalisers — the prescribed path of the Fokker–Planck variant, or the learned log-density V of the
learned-path variant — the time reversal of the SDE is known too: its drift in reverse time is
b − σ²∇log p_t (Nelson's relation; Anderson 1982), which gives the backward chain

    B_k(x_k | x_{k+1}) = N(x_{k+1} − (b(t_{k+1}, x_{k+1}) − σ²∇log p̃_{t_{k+1}}(x_{k+1})) h_k, σ² h_k I)

started from π at t_K = 1, and the discrete-time path-space Radon–Nikodym derivative

    log w = log π̃(X_K) − log p₀(X_0) + Σ_k [log B_k(X_k | X_{k+1}) − log F_k(X_{k+1} | X_k)],

for which E[w] = Z exactly for any b, σ > 0 and step (a ratio of two normalised path densities times Z; the
form used by controlled diffusion samplers, e.g. Vargas, Padhy, Blessing & Nüsken 2024 (CMCD), whose
forward/backward pair is the same construction for a geometric path; see :mod:`sampleflow.sde.paths`). These
weights are our choice, not a recipe of Sun et al. (2024), whose framework trains the SDE from the FP equation
without time reversals: a path-space RND is usually expensive because the reverse drift is unknown, but here
∇log p_t is known in closed form (prescribed path) or learned (V), so the weights cost one path score per step on
top of the drift. The learned F(1) remains the simulation-free log Z estimate (``info["log_Z_path"]``). The self-normalised weights give log Z and the ESS; the better b
solves the FP equation, the closer w is to constant (for exact b and h → 0, w ≡ Z).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from ...sde.paths import transition_log_ratio

__all__ = ["euler_maruyama_log_ratio"]


def euler_maruyama_log_ratio(drift: Callable[[Tensor, Tensor], Tensor], score: Callable[[Tensor, Tensor], Tensor],
                             x0: Tensor, grid: Tensor, sigma: float, generator: torch.Generator | None = None,
                             return_trajectory: bool = False):
    """Simulate Euler–Maruyama of dX = drift(x, t) dt + σ dW from ``x0`` (B, d) over ``grid`` (increasing) and
    return (x_K, Σ_k [log B_k − log F_k]) (and the (K + 1, B, d) trajectory when ``return_trajectory``), with
    the backward kernel of drift − σ²·score, ``score(t, x)`` = ∇log p̃_t(x) for t of shape (B,). Add
    log π̃(x_K) − log p₀(x_0) for the log weights. σ must be positive. No graph is kept."""
    if not sigma > 0:
        raise ValueError(f"sigma must be positive for the SDE sampler, got {sigma!r}")
    B = x0.shape[0]
    with torch.no_grad():
        x = x0
        t = grid[0]
        b = drift(x, t)
        log_ratio = torch.zeros(B, dtype=x0.dtype, device=x0.device)
        traj = [x0] if return_trajectory else None
        for k in range(len(grid) - 1):
            h = grid[k + 1] - grid[k]
            std = sigma * math.sqrt(float(h))
            mean_f = x + b * h
            x_next = mean_f + std * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            t_next = grid[k + 1]
            b_next = drift(x_next, t_next)
            mean_b = x_next - (b_next - sigma ** 2 * score(t_next.expand(B), x_next)) * h
            log_ratio = log_ratio + transition_log_ratio(x, x_next, (mean_f, std), (mean_b, std))
            x, b = x_next, b_next
            if return_trajectory:
                traj.append(x)
    if return_trajectory:
        return x, log_ratio, torch.stack(traj)
    return x, log_ratio
