r"""Gauss–Newton fine-tuning of a least-squares residual (for PINNs: Müller & Zeinhofer, "Achieving high
accuracy with PINNs via energy natural gradient descent", ICML 2023; used for the transport PDE by Sun et al.
2024). For the loss L(θ) = (1/2B) Σᵢ rᵢ(θ)² with Jacobian J = ∂r/∂θ (B × P), the damped Gauss–Newton
direction is

    δ = (JᵀJ + λI)⁻¹ Jᵀ r = Jᵀ (JJᵀ + λI)⁻¹ r,

the second form (push-through identity) solving a B × B system instead of a P × P one, so the step is cheap
while B ≤ P. The update θ ← θ − η δ takes the largest η ∈ {1, ½, ¼, …} that lowers L on the same points
(backtracking line search). For the energy natural gradient of a linear PDE operator this is the same step
(the Gram matrix of the residual's linearisation is JᵀJ).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

__all__ = ["gauss_newton_direction", "residual_jacobian", "gauss_newton_step"]


def residual_jacobian(r: Tensor, params: list[Tensor]) -> Tensor:
    """J = ∂r/∂θ as a (B, P) matrix (parameters flattened and concatenated in order), by B batched vector-
    Jacobian products (``is_grads_batched``); parameters r does not depend on get zero columns."""
    eye = torch.eye(r.numel(), dtype=r.dtype, device=r.device)
    grads = torch.autograd.grad(r, params, grad_outputs=eye, is_grads_batched=True, retain_graph=True,
                                allow_unused=True)
    cols = [torch.zeros(r.numel(), p.numel(), dtype=r.dtype, device=r.device) if g is None
            else g.reshape(r.numel(), -1) for g, p in zip(grads, params)]
    return torch.cat(cols, 1)


def gauss_newton_direction(J: Tensor, r: Tensor, damping: float) -> Tensor:
    """δ = Jᵀ (JJᵀ + λI)⁻¹ r (= (JᵀJ + λI)⁻¹ Jᵀ r), by a Cholesky solve of the B × B system."""
    K = J @ J.T
    K.diagonal().add_(damping)
    L = torch.linalg.cholesky(K)
    return J.T @ torch.cholesky_solve(r[:, None], L)[:, 0]


@torch.no_grad()
def _shift(params: list[Tensor], base: list[Tensor], delta: Tensor, eta: float) -> None:
    offset = 0
    for p, b in zip(params, base):
        k = p.numel()
        p.copy_(b - eta * delta[offset:offset + k].view_as(p))
        offset += k


def gauss_newton_step(residual: Callable[[], Tensor], params: list[Tensor], damping: float = 1e-6,
                      max_halvings: int = 12) -> dict:
    """One damped Gauss–Newton step with backtracking on the fixed points inside ``residual()`` (a closure
    returning r with its graph). Returns {"loss_before", "loss_after", "eta"}; η = 0 means no step lowered
    the loss (the parameters are left unchanged)."""
    r = residual()
    J = residual_jacobian(r, params)
    r = r.detach()
    loss0 = float((r * r).mean())
    delta = gauss_newton_direction(J, r, damping * max(1.0, float(J.pow(2).sum(1).mean())))
    base = [p.detach().clone() for p in params]
    eta = 1.0
    for _ in range(max_halvings):
        _shift(params, base, delta, eta)
        rr = residual().detach()
        loss = float((rr * rr).mean())
        if loss < loss0:
            return {"loss_before": loss0, "loss_after": loss, "eta": eta}
        eta *= 0.5
    _shift(params, base, delta, 0.0)
    return {"loss_before": loss0, "loss_after": loss0, "eta": 0.0}
