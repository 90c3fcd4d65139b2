r"""The learned-path variant of the PINN sampler (Sun, Berner, Richter, Zeinhofer, Müller, Azizzadenesheli &
Anandkumar, "Dynamical measure transport and neural PDE solvers for sampling", 2024, §3: a learned log-density
with built-in boundary conditions and an optimal-transport regularised gradient velocity).

Instead of prescribing the path, learn the normalised log-density V(t, x) ≈ log p_t(x) with the boundary values
built in,

    V(t, x) = log p̃^geo_t(x) − β_t F + t(1 − t) N(t, x),
    log p̃^geo_t = (1 − β_t) log p₀ + β_t log π̃            (:class:`~.path.GeometricPath`),

so V(0) = log p₀ and V(1) = log π̃ − F for any network N; the scalar F is learned and estimates log Z (it is
the log-normaliser F(t) = β_t F of the unnormalised learned path log p̃^geo_t + t(1 − t)N at t = 1). The
velocity is a gradient, b = ∇Φ, of a learned potential Φ(t, x). Since the continuity equation alone does not fix
the path, the Hamilton–Jacobi equation ∂_tΦ + ½|∇Φ|² (+ ½σ²ΔΦ) = 0 selects the optimal-transport
(Benamou–Brenier; with σ > 0 the Schrödinger-bridge) one; the loss is

    E[r_cont(t, x)²] + w_HJ E[r_HJ(t, x)²],   r_cont = ∂_tV + ΔΦ + ∇Φ·∇V − ½σ²(ΔV + |∇V|²),
                                              r_HJ   = ∂_tΦ + ½|∇Φ|² + ½σ²ΔΦ

(:func:`~.residual.learned_path_residuals`). The derivatives ∂_t, ∇ and Δ of the networks come from
:func:`scalar_field_derivatives` (reverse-mode autograd with ``create_graph``, so they stay differentiable in the
parameters; the Laplacian is the exact trace of the Hessian by d vector–Hessian products, or Hutchinson's
estimate, as in :mod:`sampleflow.sde.divergence`). The target enters V in closed form (its log-density, score and,
for σ > 0, the divergence of the score), never through second derivatives of the target by autograd.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from ...nn import MLP
from ...sde.divergence import sample_probes
from .path import GeometricPath

__all__ = ["scalar_field_derivatives", "TimeSpaceScalar", "PotentialVelocity", "LearnedLogDensity"]


def scalar_field_derivatives(fn: Callable[[Tensor, Tensor], Tensor], t: Tensor, x: Tensor, *,
                             laplacian: bool = False, divergence: str = "exact", probes: int = 1,
                             generator: torch.Generator | None = None
                             ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """(u, ∂_t u, ∇u, Δu) at the rows of (t (B,), x (B, d)) for a scalar field ``fn(x, t) -> (B,)`` whose row i
    depends only on (t_i, x_i); Δu only when ``laplacian`` (else None): exact (tr ∇²u, d second-order vjps) or
    Hutchinson (εᵀ∇²u ε averaged over ``probes`` Rademacher probes). Under grad mode the results keep their
    graph (differentiable in fn's parameters); under ``torch.no_grad()`` they are plain tensors."""
    differentiable = torch.is_grad_enabled()
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[:-1])
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        tr = t.detach().requires_grad_(True)
        u = fn(xr, tr)
        gx, gt = torch.autograd.grad(u.sum(), (xr, tr), create_graph=differentiable or laplacian,
                                     allow_unused=True)
        gx = torch.zeros_like(x) if gx is None else gx
        gt = torch.zeros_like(t) if gt is None else gt
        lap = None
        if laplacian:
            lap = torch.zeros_like(t)
            if gx.requires_grad:
                if divergence == "exact":
                    for k in range(x.shape[-1]):
                        (h,) = torch.autograd.grad(gx[:, k].sum(), xr, create_graph=differentiable,
                                                   retain_graph=True, allow_unused=True)
                        if h is not None:
                            lap = lap + h[:, k]
                else:
                    eps = sample_probes(x, probes, generator)
                    for j in range(probes):
                        (h,) = torch.autograd.grad((gx * eps[j]).sum(), xr, create_graph=differentiable,
                                                   retain_graph=True, allow_unused=True)
                        if h is not None:
                            lap = lap + (h * eps[j]).sum(-1) / probes
    out = (u, gt, gx, lap)
    if not differentiable:
        out = tuple(None if v is None else v.detach() for v in out)
    return out


class TimeSpaceScalar(nn.Module):
    """A scalar network (t, x) ↦ f(t, x) ∈ R: an MLP on the concatenation (x, t) with a smooth activation
    (GELU by default; second derivatives in x and first in t enter the residuals), zero-initialised output.
    A plain MLP on t rather than the sin/cos features of :class:`sampleflow.nn.TimeMLP`: ∂_t enters the
    residuals, and features of frequency up to 100 make it badly conditioned (see :class:`.sampler.LogZPath`)."""

    def __init__(self, dim: int, width: int = 64, depth: int = 3, activation: str = "gelu"):
        super().__init__()
        self.dim = int(dim)
        self.net = MLP(dim + 1, 1, width=width, depth=depth, activation=activation, zero_init_last=True)

    def forward(self, x: Tensor, t) -> Tensor:
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[:-1])
        return self.net(torch.cat([x, t[..., None]], -1))[..., 0]


class PotentialVelocity(nn.Module):
    """b(t, x) = ∇ₓΦ(t, x) for a learned potential Φ (:class:`TimeSpaceScalar`). ``velocity(x, t)`` works under
    ``torch.no_grad()`` too (the gradient is taken inside ``enable_grad``; the graph is kept only when the
    caller is in grad mode, e.g. inside :func:`sampleflow.sde.divergence.value_and_divergence`, which then gives
    ∇·b = ΔΦ)."""

    def __init__(self, dim: int, width: int = 64, depth: int = 3):
        super().__init__()
        self.potential = TimeSpaceScalar(dim, width, depth)

    def forward(self, x: Tensor, t) -> Tensor:
        outer = torch.is_grad_enabled()
        with torch.enable_grad():
            xr = x if x.requires_grad else x.detach().requires_grad_(True)
            phi = self.potential(xr, t)
            (g,) = torch.autograd.grad(phi.sum(), xr, create_graph=outer)
        return g

    def derivatives(self, t: Tensor, x: Tensor, *, laplacian: bool = True, divergence: str = "exact",
                    probes: int = 1, generator=None):
        """(Φ, ∂_tΦ, ∇Φ, ΔΦ) by :func:`scalar_field_derivatives`."""
        return scalar_field_derivatives(self.potential, t, x, laplacian=laplacian, divergence=divergence,
                                        probes=probes, generator=generator)


class LearnedLogDensity(nn.Module):
    """V(t, x) = log p̃^geo_t(x) − β_t F + t(1 − t) N(t, x) (module docstring) with a learned scalar F
    (``log_z``, initialised at 0, parametrised as ``log_z_scale`` times a raw parameter) and network N (:class:`TimeSpaceScalar`, zero-initialised: the fresh V is the
    geometric path with log-normaliser β_t F). ``forward(t)`` is F(t) = β_t F, the log-normaliser of the
    unnormalised learned path (so ``module(1)`` is the log Z estimate, as for :class:`.sampler.LogZPath`)."""

    def __init__(self, path: GeometricPath, width: int = 64, depth: int = 3, log_z_scale: float = 10.0):
        super().__init__()
        self.path = path
        self.correction = TimeSpaceScalar(path.mean.numel(), width, depth)
        self.log_z_raw = nn.Parameter(torch.zeros((), dtype=path.mean.dtype))
        self.log_z_scale = float(log_z_scale)

    @property
    def log_z(self) -> Tensor:
        """F = ``log_z_scale`` · θ: the scale lets Adam (steps of about lr in θ) move F by ``log_z_scale``·lr
        per step — log Z is often O(1–100) while lr ≈ 1e-3."""
        return self.log_z_scale * self.log_z_raw

    def forward(self, t) -> Tensor:
        t = torch.as_tensor(t, dtype=self.log_z_raw.dtype, device=self.log_z_raw.device)
        return self.path.beta(t)[0] * self.log_z

    def terms(self, t: Tensor, x: Tensor, path: GeometricPath | None = None, *, laplacian: bool = False,
              divergence: str = "exact", probes: int = 1, generator=None):
        """(V, ∂_tV, ∇V, ΔV) at (t (B,), x (B, d)); ΔV only when ``laplacian`` (else None). ``path``: the same
        geometric path with another target object (e.g. an NFE-counting wrapper); default the module's own.

            ∂_tV = ∂_t log p̃^geo_t − β'_t F + (1 − 2t) N + t(1 − t) ∂_tN,
            ∇V = ∇log p̃^geo_t + t(1 − t) ∇N,      ΔV = Δlog p̃^geo_t + t(1 − t) ΔN."""
        path = path or self.path
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[:-1])
        if laplacian:
            lp, dlp, s, lap = path.terms_with_laplacian(t, x, divergence=divergence, probes=probes,
                                                        generator=generator)
        else:
            lp, dlp, s = path.terms(t, x)
            lap = None
        n, dn, gn, lapn = scalar_field_derivatives(self.correction, t, x, laplacian=laplacian,
                                                   divergence=divergence, probes=probes, generator=generator)
        beta, dbeta = path.beta(t)
        w = t * (1 - t)
        v = lp - beta * self.log_z + w * n
        dv = dlp - dbeta * self.log_z + (1 - 2 * t) * n + w * dn
        gv = s + w[..., None] * gn
        lv = None if lap is None else lap + w * lapn
        return v, dv, gv, lv

    def score(self, t: Tensor, x: Tensor, path: GeometricPath | None = None) -> Tensor:
        """∇V(t, x) (e.g. for the backward kernel of the SDE sampler)."""
        return self.terms(t, x, path)[2]
