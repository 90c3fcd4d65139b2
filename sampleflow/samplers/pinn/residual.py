r"""Residuals of the transport PDEs along a density path (Sun, Berner, Richter, Zeinhofer, Müller,
Azizzadenesheli & Anandkumar, "Dynamical measure transport and neural PDE solvers for sampling", 2024, §2–3:
the continuity and Fokker–Planck equations, and the Hamilton–Jacobi equation of the optimal-transport
regularised learned path).

**Continuity (ODE).** If particles X_t follow dX/dt = b(t, X) from X_0 ~ p_0, their law p_t obeys
∂_t p_t + ∇·(p_t b) = 0, i.e. ∂_t log p_t + ∇·b + b·∇log p_t = 0. Writing p_t = p̃_t / Z_t with
F(t) = log Z_t (unknown, learned, F(0) = 0):

    r(t, x) = ∂_t log p̃_t(x) − F'(t) + ∇·b(t, x) + b(t, x)·∇log p̃_t(x),

and (b, F) solve the transport exactly iff r ≡ 0 on the support; the loss is the mean of r² over collocation
points (t, x) — no simulation. At t = 1, F(1) = log Z.

**Fokker–Planck (SDE).** For dX = b dt + σ dW the law obeys ∂_t p = −∇·(p b) + ½σ² Δp. Dividing by p and using
Δp / p = Δlog p + |∇log p|²:

    ∂_t log p = −∇·b − b·∇log p + ½σ² (Δlog p + |∇log p|²),

so with log p = log p̃_t − F(t) (∇ and Δ do not see F):

    r_FP(t, x) = r(t, x) − ½σ² (Δlog p̃_t(x) + |∇log p̃_t(x)|²).

For σ = 0 this is r. (A check: b = u + ½σ²∇log p_t solves the FP equation iff u solves the continuity one.)

**Hamilton–Jacobi (learned path, b = ∇Φ).** The kinetic-energy minimising (Benamou–Brenier) transport between
fixed end marginals has b = ∇Φ with ∂_tΦ + ½|∇Φ|² = 0; with diffusion σ (the Schrödinger bridge / entropic
case, drift ∇Φ) the potential obeys ∂_tΦ + ½|∇Φ|² + ½σ²ΔΦ = 0:

    r_HJ(t, x) = ∂_tΦ(t, x) + ½|∇Φ(t, x)|² + ½σ² ΔΦ(t, x).

The pure formulas (:func:`transport_residual`, :func:`hamilton_jacobi_residual`) take the derivatives as
tensors; :func:`continuity_residual` and :func:`fokker_planck_residual` compute them for a velocity network
on a :class:`~.path.GeometricPath`.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from torch import nn
from torch.func import functional_call, jacfwd, jacrev, vmap

from ...sde.divergence import value_and_divergence
from .path import GeometricPath

__all__ = ["continuity_residual", "fokker_planck_residual", "transport_residual", "hamilton_jacobi_residual",
           "learned_path_residuals", "transport_residual_jacobian"]


def transport_residual(dlogp_dt: Tensor, log_z_rate, b: Tensor, div_b: Tensor, score: Tensor,
                       sigma: float = 0.0, laplacian: Tensor | None = None) -> Tensor:
    """r_FP = ∂_t log p̃ − F' + ∇·b + b·∇log p̃ − ½σ²(Δlog p̃ + |∇log p̃|²) per row, from its ingredients:
    ``dlogp_dt`` (B,), ``log_z_rate`` F' ((B,) or a scalar), ``b`` (B, d), ``div_b`` (B,), ``score``
    ∇log p̃ (B, d), ``laplacian`` Δlog p̃ (B,) (needed only when σ ≠ 0). σ = 0: the continuity residual."""
    r = dlogp_dt - log_z_rate + div_b + (b * score).sum(-1)
    if sigma == 0:
        return r
    if laplacian is None:
        raise ValueError("laplacian (Δ log p̃_t) is needed for the Fokker–Planck residual with sigma != 0")
    return r - 0.5 * sigma ** 2 * (laplacian + (score * score).sum(-1))


def hamilton_jacobi_residual(dphi_dt: Tensor, grad_phi: Tensor, sigma: float = 0.0,
                             laplacian_phi: Tensor | None = None) -> Tensor:
    """r_HJ = ∂_tΦ + ½|∇Φ|² (+ ½σ²ΔΦ) per row: ``dphi_dt`` (B,), ``grad_phi`` (B, d), ``laplacian_phi`` (B,)
    (needed only when σ ≠ 0)."""
    r = dphi_dt + 0.5 * (grad_phi * grad_phi).sum(-1)
    if sigma == 0:
        return r
    if laplacian_phi is None:
        raise ValueError("laplacian_phi (ΔΦ) is needed for the Hamilton–Jacobi residual with sigma != 0")
    return r + 0.5 * sigma ** 2 * laplacian_phi


def continuity_residual(velocity: Callable[[Tensor, Tensor], Tensor], log_z_rate: Tensor, path: GeometricPath,
                        t: Tensor, x: Tensor, *, divergence: str = "exact", probes: int = 1,
                        generator: torch.Generator | None = None) -> Tensor:
    """r(t, x) per row (shape (B,)) for ``velocity(x, t) -> (B, d)``, ``log_z_rate`` = F'(t) of shape (B,)
    (or a scalar), ``t`` (B,), ``x`` (B, d). The divergence of b is exact or Hutchinson
    (:func:`sampleflow.sde.divergence.value_and_divergence`); differentiable in the parameters of both."""
    b, div = value_and_divergence(lambda y: velocity(y, t), x, method=divergence, n_probes=probes,
                                  generator=generator)
    _, dlogp_dt, score = path.terms(t, x)
    return transport_residual(dlogp_dt, log_z_rate, b, div, score)


def fokker_planck_residual(velocity: Callable[[Tensor, Tensor], Tensor], log_z_rate: Tensor, path: GeometricPath,
                           t: Tensor, x: Tensor, sigma: float, *, divergence: str = "exact", probes: int = 1,
                           generator: torch.Generator | None = None) -> Tensor:
    """r_FP(t, x) per row for the SDE dX = b dt + σ dW along ``path`` (arguments as
    :func:`continuity_residual`; ``sigma`` ≥ 0 a constant diffusion scale). Δlog π̃ uses the same divergence
    estimator as ∇·b. σ = 0 gives :func:`continuity_residual` (without the extra Laplacian evaluation)."""
    if sigma == 0:
        return continuity_residual(velocity, log_z_rate, path, t, x, divergence=divergence, probes=probes,
                                   generator=generator)
    b, div = value_and_divergence(lambda y: velocity(y, t), x, method=divergence, n_probes=probes,
                                  generator=generator)
    _, dlogp_dt, score, lap = path.terms_with_laplacian(t, x, divergence=divergence, probes=probes,
                                                         generator=generator)
    return transport_residual(dlogp_dt, log_z_rate, b, div, score, sigma, lap)


def learned_path_residuals(v_terms: tuple, phi_terms: tuple, sigma: float = 0.0) -> tuple[Tensor, Tensor]:
    """(r_cont, r_HJ) of the learned-path variant (:mod:`.learned_path`) for the learned normalised log-density
    V and potential Φ (b = ∇Φ, so ∇·b = ΔΦ), from their derivatives ``v_terms`` = (V, ∂_tV, ∇V, ΔV) and
    ``phi_terms`` = (Φ, ∂_tΦ, ∇Φ, ΔΦ) (ΔV needed only when σ ≠ 0):

        r_cont = ∂_tV + ΔΦ + ∇Φ·∇V − ½σ²(ΔV + |∇V|²)      (F is inside V: no F' term),
        r_HJ   = ∂_tΦ + ½|∇Φ|² + ½σ²ΔΦ."""
    _, dv, gv, lv = v_terms
    _, dphi, gphi, lphi = phi_terms
    return (transport_residual(dv, 0.0, gphi, lphi, gv, sigma, lv),
            hamilton_jacobi_residual(dphi, gphi, sigma, lphi))


def transport_residual_jacobian(velocity: nn.Module, log_z_path: nn.Module, t: Tensor, x: Tensor,
                                score: Tensor) -> Tensor:
    """J = ∂r/∂θ, shape (B, P), of the continuity (or Fokker–Planck: the σ-term does not depend on θ) residual
    r_i = ∂_t log p̃(t_i, x_i) − F'(t_i) + ∇·b(t_i, x_i) + b(t_i, x_i)·∇log p̃(t_i, x_i) with respect to the
    parameters θ of ``velocity`` (``velocity(x, t)``) and then of ``log_z_path`` (``log_z_path(t)`` = F(t)),
    each module's in ``parameters()`` order, flattened and concatenated — the order of a Gauss–Newton step's
    parameter list. ``score`` (B, d) = ∇log p̃_t(x_i), which does not depend on θ.

    Row by row: r_i depends only on point i, so each row is the gradient of one point's residual, written as a
    pure function of θ (``torch.func.functional_call``; exact ∇·b by forward mode, ``jacfwd``, d tangents; F' by
    ``jacfwd`` in t) and batched over the points by ``vmap(jacrev(·))``. This costs O(B) backward passes of one
    point, where B vector–Jacobian products through the batch's graph cost O(B²) (at B = 2048 and P ≈ 22 000 the
    latter did not finish in 15 minutes; this takes ≈ 0.9 s on one CPU thread)."""
    pv = {k: v.detach() for k, v in velocity.named_parameters() if v.requires_grad}
    pz = {k: v.detach() for k, v in log_z_path.named_parameters() if v.requires_grad}

    def point(pv, pz, ti, xi, si):
        def b(y):
            return functional_call(velocity, pv, (y[None], ti[None]))[0]
        rate = jacfwd(lambda s: functional_call(log_z_path, pz, (s,)))(ti)
        return -rate + torch.diagonal(jacfwd(b)(xi)).sum() + b(xi) @ si

    jv, jz = vmap(jacrev(point, argnums=(0, 1)), in_dims=(None, None, 0, 0, 0))(pv, pz, t, x, score)
    B = t.shape[0]
    return torch.cat([g.reshape(B, -1) for g in (*jv.values(), *jz.values())], 1)
