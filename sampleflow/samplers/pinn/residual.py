r"""The continuity-equation residual of a velocity field along a prescribed density path (Sun et al., "Dynamical
measure transport and neural PDE solvers for sampling", 2024, eq. for the "PINN" loss).

If particles X_t follow dX/dt = b(t, X) from X_0 ~ p_0, their law p_t obeys ∂_t p_t + ∇·(p_t b) = 0, i.e.
∂_t log p_t + ∇·b + b·∇log p_t = 0. Writing p_t = p̃_t / Z_t with F(t) = log Z_t (unknown, learned, F(0) = 0):

    r(t, x) = ∂_t log p̃_t(x) − F'(t) + ∇·b(t, x) + b(t, x)·∇log p̃_t(x),

and (b, F) solve the transport exactly iff r ≡ 0 on the support; the loss is the mean of r² over collocation
points (t, x) — no simulation. At t = 1, F(1) = log Z.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ...sde.divergence import value_and_divergence
from .path import GeometricPath

__all__ = ["continuity_residual"]


def continuity_residual(velocity: Callable[[Tensor, Tensor], Tensor], log_z_rate: Tensor, path: GeometricPath,
                        t: Tensor, x: Tensor, *, divergence: str = "exact", probes: int = 1,
                        generator: torch.Generator | None = None) -> Tensor:
    """r(t, x) per row (shape (B,)) for ``velocity(x, t) -> (B, d)``, ``log_z_rate`` = F'(t) of shape (B,)
    (or a scalar), ``t`` (B,), ``x`` (B, d). The divergence of b is exact or Hutchinson
    (:func:`sampleflow.sde.divergence.value_and_divergence`); differentiable in the parameters of both."""
    b, div = value_and_divergence(lambda y: velocity(y, t), x, method=divergence, n_probes=probes,
                                  generator=generator)
    _, dlogp_dt, score = path.terms(t, x)
    return dlogp_dt - log_z_rate + div + (b * score).sum(-1)
