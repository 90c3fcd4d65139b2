r"""Gauss–Newton fine-tuning of a least-squares residual (for PINNs: Müller & Zeinhofer, "Achieving high
accuracy with PINNs via energy natural gradient descent", ICML 2023; used for the transport PDE by Sun et al.
2024). For the loss L(θ) = (1/B) Σᵢ rᵢ(θ)² with Jacobian J = ∂r/∂θ (B × P), the damped Gauss–Newton
direction is

    δ = (JᵀJ + λI)⁻¹ Jᵀ r = Jᵀ (JJᵀ + λI)⁻¹ r,                                              (GN)

and the update θ ← θ − η δ takes the largest η ∈ {1, ½, ¼, …} that lowers L on the same points (backtracking
line search). For the energy natural gradient of a linear PDE operator this is the same step (the Gram matrix
of the residual's linearisation is JᵀJ). Two solvers of (GN):

* ``"direct"`` — form J by B batched vector-Jacobian products and solve by Cholesky: the B × B system
  (second form, push-through identity) when B ≤ P, else the P × P normal equations. Exact, but J costs
  B backward passes through the residual's (already double-backward) graph and B·P memory: at B = 2048,
  P ≈ 25 000 one step did not finish in 15 minutes on a CPU.
* ``"cg"`` — matrix-free: conjugate gradient (Hestenes & Stiefel, "Methods of conjugate gradients for
  solving linear systems", 1952) on the P × P system (JᵀJ + λI) δ = Jᵀr, which is symmetric positive
  (semi-)definite, using only products J·v and Jᵀ·u — the "Hessian-free" approach of Martens, "Deep
  learning via Hessian-free optimization", ICML 2010, with the Gauss–Newton matrix as curvature. Jᵀ·u is
  one vjp; J·v is a double vjp (J v = ∂/∂u ⟨Jᵀu, v⟩, the derivative of a vjp with respect to its
  cotangent, which is linear in u), so each CG iteration costs about three backward passes whatever B is,
  and memory stays O(B + P). CG stops after ``iterations`` steps or when ‖(JᵀJ + λI)δ − Jᵀr‖ ≤ tol·‖Jᵀr‖;
  started from δ = 0, a truncated CG solve is itself a regulariser (its iterates lie in the Krylov space
  of Jᵀr, the first one being the steepest-descent direction).

The direct solver takes J from the caller when it can form it row by row (``jacobian=``: for the PINN
residuals, :func:`.residual.transport_residual_jacobian`, O(B) single-point backward passes by ``torch.func``,
≈ 1.7 s for B = 4096 and P ≈ 22 000 on one CPU thread), which makes it affordable for thousands of points;
otherwise by B vjps through the batch's graph (O(B²), small B only). If the Cholesky factorisation fails
(a rank-deficient J at tiny λ in float32), λ is raised tenfold until it succeeds.

``"auto"`` uses the direct solver while B·P ≤ :data:`AUTO_DIRECT_MAX_ENTRIES` (or
:data:`AUTO_DIRECT_MAX_ENTRIES_ROWWISE` with a row-wise ``jacobian``), else CG.

The damping is relative: λ = ``damping`` · max(1, mean squared row norm of J) (= tr(JᵀJ)/B; for CG
estimated by Hutchinson's trace estimator E‖Jv‖² = tr(JᵀJ), v Rademacher, with a couple of probes).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

__all__ = ["gauss_newton_direction", "residual_jacobian", "gauss_newton_step", "conjugate_gradient",
           "gauss_newton_direction_cg", "jacobian_products", "resolve_solver", "AUTO_DIRECT_MAX_ENTRIES",
           "SOLVERS", "AUTO_DIRECT_MAX_ENTRIES_ROWWISE"]

SOLVERS = ("direct", "cg", "auto")
AUTO_DIRECT_MAX_ENTRIES = 2 ** 22
"""``solver="auto"`` forms J (direct solve) while B·P is at most this (≈ 4.2 M entries, 16 MB in float32: at
the cpu preset's P ≈ 22 000 parameters B = 128 is direct, B = 512 is CG — measured there on one CPU thread,
forming J for B = 512 took ≈ 6 s against ≈ 0.2 s for a 10-iteration CG solve)."""
AUTO_DIRECT_MAX_ENTRIES_ROWWISE = 2 ** 26
"""The same bound when J comes row by row (``jacobian=``): ≈ 67 M entries, 256 MB in float32 (B = 2048 at
P ≈ 22 000 is direct; forming J then takes ≈ 0.9 s and the B × B solve ≈ 3 s on one CPU thread)."""


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
    """δ = (JᵀJ + λI)⁻¹ Jᵀ r by a Cholesky solve: of the B × B system Jᵀ (JJᵀ + λI)⁻¹ r when B ≤ P, else of
    the P × P normal equations (so λ = 0 is allowed when J has full rank in the smaller dimension). Where the
    factorisation fails in the working precision, λ grows tenfold (from at least 10⁻⁷ × the mean diagonal)."""
    B, P = J.shape
    small = B <= P
    K = J @ J.T if small else J.T @ J
    scale = float(K.diagonal().mean()) if K.numel() else 1.0
    lam = damping
    for _ in range(8):
        L, info = torch.linalg.cholesky_ex(K + lam * torch.eye(K.shape[0], dtype=K.dtype, device=K.device))
        if int(info) == 0:
            break
        lam = max(10 * lam, 1e-7 * scale)      # not positive definite in this precision: more damping
    else:
        raise torch.linalg.LinAlgError(f"Gauss–Newton system not positive definite even with damping {lam:g}")
    if small:
        return J.T @ torch.cholesky_solve(r[:, None], L)[:, 0]
    return torch.cholesky_solve((J.T @ r)[:, None], L)[:, 0]


def conjugate_gradient(matvec: Callable[[Tensor], Tensor], b: Tensor, iterations: int, tol: float = 0.0
                       ) -> tuple[Tensor, dict]:
    """Solve A x = b for symmetric positive definite A given by ``matvec`` (Hestenes & Stiefel 1952), from
    x₀ = 0: with residual s = b − A x and search direction p (p₀ = s₀),

        α = sᵀs / pᵀAp,  x ← x + α p,  s ← s − α A p,  p ← s + (s_newᵀ s_new / s_oldᵀ s_old) p,

    at most ``iterations`` times, stopping early when ‖s‖ ≤ tol·‖b‖ (or when pᵀAp ≤ 0, i.e. A is only
    semi-definite along p). Returns (x, {"iterations", "relative_residual"})."""
    x = torch.zeros_like(b)
    s = b.clone()
    p = s.clone()
    ss = float(s @ s)
    bnorm = ss ** 0.5
    k = 0
    if bnorm == 0.0:
        return x, {"iterations": 0, "relative_residual": 0.0}
    while k < iterations and ss ** 0.5 > tol * bnorm:
        Ap = matvec(p)
        pAp = float(p @ Ap)
        if not pAp > 0.0:
            break
        alpha = ss / pAp
        x.add_(p, alpha=alpha)
        s.sub_(Ap, alpha=alpha)
        ss_new = float(s @ s)
        p.mul_(ss_new / ss).add_(s)
        ss = ss_new
        k += 1
    return x, {"iterations": k, "relative_residual": ss ** 0.5 / bnorm}


def jacobian_products(r: Tensor, params: list[Tensor]) -> tuple[Callable[[Tensor], Tensor],
                                                                Callable[[Tensor], Tensor]]:
    """(jvp, vjp) for J = ∂r/∂θ of a residual ``r`` (B,) that still carries its graph: ``vjp(u)`` = Jᵀu (P,),
    flattened and concatenated in ``params`` order, and ``jvp(v)`` = J v (B,) by the double-vjp trick: the
    graph of g(u) = Jᵀu is built once (``create_graph``) at a dummy cotangent u, and J v = ∂⟨g(u), v⟩/∂u."""
    sizes = [p.numel() for p in params]
    u0 = torch.zeros_like(r, requires_grad=True)
    g = torch.autograd.grad(r, params, grad_outputs=u0, create_graph=True, allow_unused=True)
    live = [i for i, gi in enumerate(g) if gi is not None and gi.requires_grad]

    def vjp(u: Tensor) -> Tensor:
        out = torch.autograd.grad(r, params, grad_outputs=u, retain_graph=True, allow_unused=True)
        return torch.cat([torch.zeros(n, dtype=r.dtype, device=r.device) if o is None else o.reshape(-1)
                          for o, n in zip(out, sizes)])

    def jvp(v: Tensor) -> Tensor:
        if not live:
            return torch.zeros_like(r)
        pieces = torch.split(v, sizes)
        (out,) = torch.autograd.grad([g[i] for i in live], u0,
                                     grad_outputs=[pieces[i].view_as(g[i]) for i in live],
                                     retain_graph=True, allow_unused=True)
        return torch.zeros_like(r) if out is None else out.detach()

    return jvp, vjp


def gauss_newton_direction_cg(jvp: Callable[[Tensor], Tensor], vjp: Callable[[Tensor], Tensor], r: Tensor,
                              damping: float, iterations: int, tol: float = 0.0) -> tuple[Tensor, dict]:
    """δ ≈ (JᵀJ + λI)⁻¹ Jᵀ r by :func:`conjugate_gradient` with A v = Jᵀ(J v) + λ v, from the products
    ``jvp(v)`` = J v and ``vjp(u)`` = Jᵀ u only (matrix-free). Returns (δ, CG info)."""
    b = vjp(r).detach()
    return conjugate_gradient(lambda v: vjp(jvp(v)).detach() + damping * v, b, iterations, tol)


@torch.no_grad()
def _shift(params: list[Tensor], base: list[Tensor], delta: Tensor, eta: float) -> None:
    offset = 0
    for p, b in zip(params, base):
        k = p.numel()
        p.copy_(b - eta * delta[offset:offset + k].view_as(p))
        offset += k


def _check_step_args(solver, cg_iterations, cg_tol, damping, max_halvings) -> None:
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if not (isinstance(cg_iterations, int) and not isinstance(cg_iterations, bool) and cg_iterations >= 1):
        raise ValueError(f"cg_iterations must be a positive integer, got {cg_iterations!r}")
    if not (isinstance(cg_tol, (int, float)) and 0 <= cg_tol < 1):
        raise ValueError(f"cg_tol must be a number in [0, 1), got {cg_tol!r}")
    if not (isinstance(damping, (int, float)) and damping >= 0):
        raise ValueError(f"damping must be a non-negative number, got {damping!r}")
    if not (isinstance(max_halvings, int) and max_halvings >= 1):
        raise ValueError(f"max_halvings must be a positive integer, got {max_halvings!r}")


def resolve_solver(solver: str, batch: int, n_params: int, rowwise: bool = False) -> str:
    """``"auto"`` → ``"direct"`` when batch · n_params ≤ :data:`AUTO_DIRECT_MAX_ENTRIES` (with a row-wise
    Jacobian, ``rowwise``: :data:`AUTO_DIRECT_MAX_ENTRIES_ROWWISE`), else ``"cg"``."""
    if solver != "auto":
        return solver
    bound = AUTO_DIRECT_MAX_ENTRIES_ROWWISE if rowwise else AUTO_DIRECT_MAX_ENTRIES
    return "direct" if batch * n_params <= bound else "cg"


def gauss_newton_step(residual: Callable[[], Tensor], params: list[Tensor], damping: float = 1e-6,
                      max_halvings: int = 12, *, solver: str = "direct", cg_iterations: int = 50,
                      cg_tol: float = 1e-6, trace_probes: int = 2, generator: torch.Generator | None = None,
                      jacobian: Callable[[], Tensor] | None = None,
                      line_search: Callable[[], Tensor] | None = None) -> dict:
    """One damped Gauss–Newton step with backtracking on the fixed points inside ``residual()`` (a closure
    returning r with its graph). ``solver``: "direct", "cg" (matrix-free, at most ``cg_iterations`` CG
    steps or relative residual ``cg_tol``) or "auto" (see the module docstring). ``jacobian``: optional
    closure returning J = ∂r/∂θ (B, P) for the direct solver, formed row by row (columns in ``params``
    order); without it J comes from B vjps of ``residual()``'s graph. ``line_search``: optional closure
    returning the residual at other points, on which the backtracking judges the step instead (a step that
    fits the batch but not fresh points is then refused; "loss_before"/"loss_after" are on those points).
    Returns {"loss_before",
    "loss_after", "eta", "solver"} (plus "cg_iterations", "cg_relative_residual" for CG); η = 0 means no
    step lowered the loss (the parameters are left unchanged)."""
    _check_step_args(solver, cg_iterations, cg_tol, damping, max_halvings)
    r = residual()
    n_params = sum(p.numel() for p in params)
    solver = resolve_solver(solver, r.numel(), n_params, rowwise=jacobian is not None)
    extra: dict = {"solver": solver}
    if solver == "direct":
        J = residual_jacobian(r, params) if jacobian is None else jacobian()
        r = r.detach()
        scale = float(J.pow(2).sum(1).mean())
        delta = gauss_newton_direction(J, r, damping * max(1.0, scale))
        del J
    else:
        jvp, vjp = jacobian_products(r, params)
        # Hutchinson: E‖Jv‖² = tr(JᵀJ) for Rademacher v, so ‖Jv‖²/B estimates the mean squared row norm
        scale = 0.0
        if damping > 0:
            for _ in range(trace_probes):
                v = torch.randint(0, 2, (n_params,), generator=generator, dtype=r.dtype).mul_(2).sub_(1)
                scale += float(jvp(v).pow(2).sum()) / (r.numel() * trace_probes)
        rd = r.detach()
        delta, info = gauss_newton_direction_cg(jvp, vjp, rd, damping * max(1.0, scale), cg_iterations, cg_tol)
        extra.update(cg_iterations=info["iterations"], cg_relative_residual=info["relative_residual"])
        del jvp, vjp
        r = rd
    judge = residual if line_search is None else line_search
    if line_search is None:
        loss0 = float((r * r).mean())
    else:
        with torch.no_grad():
            loss0 = float(judge().detach().pow(2).mean())
    base = [p.detach().clone() for p in params]
    eta = 1.0
    for _ in range(max_halvings):
        _shift(params, base, delta, eta)
        with torch.no_grad():
            rr = judge().detach()
        loss = float((rr * rr).mean())
        if loss < loss0:
            return {"loss_before": loss0, "loss_after": loss, "eta": eta, **extra}
        eta *= 0.5
    _shift(params, base, delta, 0.0)
    return {"loss_before": loss0, "loss_after": loss0, "eta": 0.0, **extra}
