"""A multivariate Gaussian target N(μ, Σ) with a full covariance, in any dimension.

log π(x) = −½ (x − μ)ᵀ Σ⁻¹ (x − μ) − ½ log det(2π Σ)

``log_prob`` is the *normalised* density, so log Z = 0 exactly. Σ is factorised once (Cholesky,
Σ = L Lᵀ); the quadratic form uses a triangular solve, the score −Σ⁻¹(x − μ) the precision matrix, and
exact draws are μ + L ε with ε ~ N(0, I).

The registry entry ``gaussian`` builds a fixed, reproducible correlated Gaussian: Σ_ij = scale² ρ^|i−j|
(an AR(1) / Kac–Murdock–Szegő covariance), mean μ = ``mean`` (a scalar or a vector).
"""
from __future__ import annotations

import math

import torch

from .base import LogZ, Target, TargetInputError
from .registry import register

__all__ = ["Gaussian", "ar1_covariance", "gaussian"]

_LOG_2PI = math.log(2 * math.pi)


def _as_covariance(cov, dim: int) -> torch.Tensor:
    """A scalar variance, a (dim,) vector of variances or a (dim, dim) matrix -> a (dim, dim) float64 matrix."""
    c = torch.as_tensor(cov, dtype=torch.float64)
    if c.ndim == 0:
        c = c * torch.eye(dim, dtype=torch.float64)
    elif c.ndim == 1:
        if c.shape != (dim,):
            raise TargetInputError(f"cov given as variances must have shape ({dim},), got {tuple(c.shape)}")
        c = torch.diag(c)
    elif c.shape != (dim, dim):
        raise TargetInputError(f"cov must be a scalar, ({dim},) or ({dim}, {dim}), got {tuple(c.shape)}")
    if not bool(torch.isfinite(c).all()):
        raise TargetInputError("cov must be finite")
    if not torch.allclose(c, c.T, rtol=1e-10, atol=1e-12 * float(c.abs().max())):
        raise TargetInputError("cov must be symmetric")
    return 0.5 * (c + c.T)


def ar1_covariance(dim: int, scale: float = 1.0, correlation: float = 0.8) -> torch.Tensor:
    """Σ_ij = scale² ρ^|i−j| (positive definite for |ρ| < 1)."""
    if not -1.0 < correlation < 1.0:
        raise TargetInputError(f"correlation must lie in (-1, 1), got {correlation!r}")
    if not scale > 0:
        raise TargetInputError(f"scale must be positive, got {scale!r}")
    i = torch.arange(dim, dtype=torch.float64)
    lag = (i[:, None] - i[None, :]).abs()
    return scale ** 2 * torch.as_tensor(correlation, dtype=torch.float64) ** lag


class Gaussian(Target):
    """N(mean, cov) with a full covariance; ``log_prob`` is normalised (log Z = 0).

    ``mean``: (d,) vector (or a scalar together with a matrix ``cov``); ``cov``: (d, d) positive definite
    matrix, a (d,) vector of variances or a scalar variance (then ``mean`` fixes d)."""

    name = "gaussian"
    version = "1"

    def __init__(self, mean, cov, *, name: str | None = None, box: tuple | None = None):
        m = torch.as_tensor(mean, dtype=torch.float64)
        c_raw = torch.as_tensor(cov, dtype=torch.float64)
        if m.ndim == 1:
            dim = m.shape[0]
        elif m.ndim == 0 and c_raw.ndim == 2:
            dim = c_raw.shape[0]
        elif m.ndim == 0 and c_raw.ndim == 1:
            dim = c_raw.shape[0]
        else:
            raise TargetInputError(f"mean must be a (d,) vector, got shape {tuple(m.shape)}")
        if dim < 1:
            raise TargetInputError("mean must have at least one entry")
        m = m.expand(dim).clone() if m.ndim == 0 else m
        if not bool(torch.isfinite(m).all()):
            raise TargetInputError("mean must be finite")
        c = _as_covariance(c_raw, dim)
        L, info = torch.linalg.cholesky_ex(c)
        if int(info) != 0:
            raise TargetInputError("cov must be positive definite (its Cholesky factorisation failed)")
        std = c.diagonal().sqrt()
        if box is None:
            box = (m - 5 * std, m + 5 * std)
        super().__init__(dim, name=name, log_Z=LogZ(0.0, 0.0, "closed form (normalised density)"), box=box)
        self._register("mean", m)
        self._register("cov", c)
        self._register("chol", L)
        self._register("prec", torch.cholesky_inverse(L))
        self._half_log_det = float(torch.log(L.diagonal()).sum())
        self._const = -0.5 * dim * _LOG_2PI - self._half_log_det

    @property
    def mean(self) -> torch.Tensor:
        """(d,) mean, float64."""
        return self._params["mean"]

    @property
    def cov(self) -> torch.Tensor:
        """(d, d) covariance, float64."""
        return self._params["cov"]

    def _log_prob(self, x):
        diff = x - self._param("mean", x)
        flat = diff.reshape(-1, self.dim)
        z = torch.linalg.solve_triangular(self._param("chol", x), flat.T, upper=False).T
        return (-0.5 * (z * z).sum(-1) + self._const).reshape(x.shape[:-1])

    def _score(self, x):
        return -(x - self._param("mean", x)) @ self._param("prec", x)

    def _sample(self, n, generator, device):
        eps = torch.randn(n, self.dim, generator=generator, device=device, dtype=torch.float64)
        ref = eps
        return self._param("mean", ref) + eps @ self._param("chol", ref).T


def gaussian(dim: int = 2, scale: float = 1.0, correlation: float = 0.8, mean=0.0) -> Gaussian:
    """Registry factory: N(mean, Σ) with Σ_ij = scale² · correlation^|i−j|."""
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise TargetInputError(f"dim must be a positive integer, got {dim!r}")
    m = torch.as_tensor(mean, dtype=torch.float64)
    m = m.expand(dim).clone() if m.ndim == 0 else m
    if m.shape != (dim,):
        raise TargetInputError(f"mean must be a scalar or have shape ({dim},), got {tuple(m.shape)}")
    return Gaussian(m, ar1_covariance(dim, scale, correlation), name="gaussian")


register("gaussian", gaussian,
         "Correlated Gaussian N(mean, Σ), Σ_ij = scale²·ρ^|i−j| (default ρ = 0.8); normalised, log Z = 0",
         variants=({"dim": 2}, {"dim": 10}, {"dim": 50}))
