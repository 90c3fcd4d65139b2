"""Gaussian mixtures: the general class and the standard benchmark mixtures.

π(x) = Σ_k w_k N(x; μ_k, Σ_k),  Σ_k w_k = 1,

so ``log_prob`` = logsumexp_k(log w_k + log N(x; μ_k, Σ_k)) is normalised and log Z = 0 exactly.
The score is Σ_k r_k(x) ∇log N(x; μ_k, Σ_k) with the responsibilities r = softmax(log w + log N): it is
computed from the log-domain responsibilities, so far from every mode (|x| = 10³ and more) it stays finite and
points back to the mass instead of underflowing to 0/0.

Registered benchmark mixtures (all normalised, log Z = 0):

* ``gmm9``  — 9 modes on the grid {−5, 0, 5}², N(μ, 0.3·I), equal weights (Zhang & Chen, PIS, ICLR 2022;
  Sendera et al., "Improved off-policy training of diffusion samplers", NeurIPS 2024, gfn-diffusion
  ``nine_gmm.py``; that code writes the standard deviation as the literal 0.5477222, i.e. variance
  0.29999961 — here the variance is exactly 0.3).
* ``gmm25`` — 25 modes on {−10, −5, 0, 5, 10}², N(μ, 0.3·I), equal weights (Sendera et al. 2024,
  ``twenty_five_gmm.py``).
* ``mog40`` — "GMM-40" of Blessing et al., "Beyond ELBOs: a large-scale evaluation of variational methods for
  sampling", ICML 2024: 40 equal-weight N(μ_k, I), μ_k from ``mog40_means_d{2,50}.npy``
  (uniform on [−40, 40]^d, JAX PRNGKey(0)); d = 2 or 50.
* ``gmm40_fab`` — the FAB / iDEM variant (Midgley et al., "Flow annealed importance sampling bootstrap",
  ICLR 2023; Akhound-Sadegh et al., iDEM, 2024): 40 equal-weight N(μ_k, s²·I), s = softplus(1) (a standard
  deviation), μ_k from ``gmm40_fab_means_d2.npy``. FAB's own ``log_prob`` replaces values below −10⁴ by −∞;
  that clipping is *not* reproduced here.

Every mixture exposes ``n_components``, ``means`` (K, d), ``weights``/``log_weights`` (K,) and
``component_log_probs(x)`` -> (..., K), the log-densities log N(x; μ_k, Σ_k) of the components *without* the
weights (the convention of Blessing et al.'s entropic mode coverage, which assigns a sample to the argmax
component); ``responsibilities(x)`` gives the posterior component probabilities (with the weights).
"""
from __future__ import annotations

import math

import torch

from .base import LogZ, Target, TargetInputError
from .registry import register

__all__ = ["GaussianMixture", "MixtureMixin", "gmm9", "gmm25", "mog40", "gmm40_fab"]

_LOG_2PI = math.log(2 * math.pi)
# rows × components × dim above which per-component differences are formed chunk by chunk
_CHUNK_ELEMS = 1 << 23


def _row_chunks(n_rows: int, per_row: int):
    """Slices of at most ~_CHUNK_ELEMS / per_row rows."""
    step = max(1, _CHUNK_ELEMS // max(1, per_row))
    return [slice(i, min(i + step, n_rows)) for i in range(0, n_rows, step)] or [slice(0, 0)]


def _as_weights(weights, K: int) -> torch.Tensor:
    if weights is None:
        return torch.full((K,), 1.0 / K, dtype=torch.float64)
    w = torch.as_tensor(weights, dtype=torch.float64).flatten()
    if w.shape != (K,):
        raise TargetInputError(f"weights must have shape ({K},) (one per component), got {tuple(w.shape)}")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or float(w.sum()) <= 0:
        raise TargetInputError("weights must be finite, non-negative and not all zero")
    return w / w.sum()


def _as_locations(value, name: str) -> torch.Tensor:
    """(K, d) finite float64 component locations."""
    mu = torch.as_tensor(value, dtype=torch.float64)
    if mu.ndim != 2 or mu.shape[0] < 1 or mu.shape[1] < 1:
        raise TargetInputError(f"{name} must have shape (K, d), got {tuple(mu.shape)}")
    if not bool(torch.isfinite(mu).all()):
        raise TargetInputError(f"{name} must be finite")
    return mu


class MixtureMixin:
    """Shared by every mixture target: log_prob / score / responsibilities from ``_comp_lp``.

    A subclass implements ``_comp_lp(x2)`` (rows (N, d) -> (N, K) log component densities) and
    ``_comp_scores(x2, r)`` (the responsibility-weighted sum Σ_k r_k ∇log p_k, shape (N, d))."""

    def _init_mixture(self, weights: torch.Tensor, means: torch.Tensor) -> None:
        self._register("log_w", torch.log(weights))
        self._register("weights", weights)
        self._register("means", means)
        self.n_components = int(means.shape[0])

    @property
    def means(self) -> torch.Tensor:
        """(K, d) component locations, float64."""
        return self._params["means"]

    @property
    def weights(self) -> torch.Tensor:
        """(K,) component weights (summing to 1), float64."""
        return self._params["weights"]

    @property
    def log_weights(self) -> torch.Tensor:
        return self._params["log_w"]

    def component_log_probs(self, x) -> torch.Tensor:
        """log p_k(x) of every component *without* its weight, shape ``x.shape[:-1] + (K,)``."""
        x = self._check_points(x)
        return self._comp_lp(x.reshape(-1, self.dim)).reshape(*x.shape[:-1], self.n_components)

    def responsibilities(self, x) -> torch.Tensor:
        """Posterior component probabilities r_k(x) = w_k p_k(x) / π(x), shape ``x.shape[:-1] + (K,)``."""
        x = self._check_points(x)
        lp = self._comp_lp(x.reshape(-1, self.dim)) + self._param("log_w", x)
        return torch.softmax(self._finite(lp), -1).reshape(*x.shape[:-1], self.n_components)

    @staticmethod
    def _finite(lp: torch.Tensor) -> torch.Tensor:
        # keeps softmax defined where every component underflows to −inf (points at overflow distance)
        return lp.clamp_min(torch.finfo(lp.dtype).min)

    def _log_prob(self, x):
        lp = self._comp_lp(x.reshape(-1, self.dim)) + self._param("log_w", x)
        return torch.logsumexp(lp, -1).reshape(x.shape[:-1])

    def _lp_and_score(self, x):
        x2 = x.reshape(-1, self.dim)
        lp = self._comp_lp(x2) + self._param("log_w", x)
        r = torch.softmax(self._finite(lp), -1)
        return torch.logsumexp(lp, -1).reshape(x.shape[:-1]), self._comp_scores(x2, r).reshape(x.shape)

    def _score(self, x):
        return self._lp_and_score(x)[1]

    def log_prob_and_score(self, x):
        """log π and ∇log π in one pass (the component densities are computed once)."""
        return self._lp_and_score(self._check_points(x))

    def _sample_components(self, n, generator, device) -> torch.Tensor:
        w = self._params["weights"].to(device)
        if n == 0:
            return torch.zeros(0, dtype=torch.long, device=device)
        return torch.multinomial(w, n, replacement=True, generator=generator)


class GaussianMixture(MixtureMixin, Target):
    """Σ_k w_k N(μ_k, Σ_k), normalised (log Z = 0).

    ``weights``: (K,) non-negative (normalised here; ``None`` = equal weights); ``means``: (K, d);
    ``covs``: a scalar variance shared by all components, (K,) one isotropic variance per component,
    (K, d) diagonal variances, or (K, d, d) full covariance matrices."""

    name = "gmm"
    version = "1"

    def __init__(self, weights, means, covs, *, name: str | None = None, box: tuple | None = None):
        mu = _as_locations(means, "means")
        K, d = mu.shape
        w = _as_weights(weights, K)
        c = torch.as_tensor(covs, dtype=torch.float64)
        if c.ndim == 0:
            c = c.expand(K).clone()
        if c.ndim == 1:
            if c.shape != (K,):
                raise TargetInputError(f"covs as isotropic variances must have shape ({K},), got {tuple(c.shape)}")
            kind = "iso"
        elif c.ndim == 2:
            if c.shape != (K, d):
                raise TargetInputError(f"covs as diagonal variances must have shape ({K}, {d}), got {tuple(c.shape)}")
            kind = "diag"
        elif c.ndim == 3:
            if c.shape != (K, d, d):
                raise TargetInputError(f"covs as full matrices must have shape ({K}, {d}, {d}), got {tuple(c.shape)}")
            kind = "full"
        else:
            raise TargetInputError(f"covs must be a scalar, (K,), (K, d) or (K, d, d); got {tuple(c.shape)}")
        if not bool(torch.isfinite(c).all()):
            raise TargetInputError("covs must be finite")
        if kind != "full" and bool((c <= 0).any()):
            raise TargetInputError("variances in covs must be positive")
        if kind == "full":
            sym = 0.5 * (c + c.transpose(-1, -2))
            if not torch.allclose(sym, c, rtol=1e-10, atol=1e-12 * float(c.abs().max())):
                raise TargetInputError("covariance matrices in covs must be symmetric")
            L, info = torch.linalg.cholesky_ex(sym)
            if bool((info != 0).any()):
                bad = int((info != 0).nonzero()[0])
                raise TargetInputError(f"covs[{bad}] is not positive definite")
            var_diag = sym.diagonal(dim1=-2, dim2=-1)
        elif kind == "diag":
            var_diag = c
        else:
            var_diag = c[:, None].expand(K, d)
        if box is None:
            std = var_diag.sqrt().max(0).values
            box = (mu.min(0).values - 5 * std, mu.max(0).values + 5 * std)
        super().__init__(d, name=name, log_Z=LogZ(0.0, 0.0, "closed form (normalised mixture)"), box=box)
        self._init_mixture(w, mu)
        self._kind = kind
        if kind == "iso":
            self._register("var", c)
            self._register("const", -0.5 * d * (_LOG_2PI + torch.log(c)))
        elif kind == "diag":
            self._register("var", c)
            self._register("inv_var", 1.0 / c)
            self._register("mean_over_var", mu / c)
            self._register("const", -0.5 * (d * _LOG_2PI + torch.log(c).sum(-1)))
        else:
            self._register("cov", sym)
            self._register("chol", L)
            eye = torch.eye(d, dtype=torch.float64).expand(K, d, d)
            self._register("chol_inv", torch.linalg.solve_triangular(L, eye, upper=False))
            self._register("prec", torch.cholesky_inverse(L))
            self._register("const", -0.5 * d * _LOG_2PI - torch.log(L.diagonal(dim1=-2, dim2=-1)).sum(-1))

    @property
    def covariances(self) -> torch.Tensor:
        """(K, d, d) component covariance matrices, float64."""
        if self._kind == "full":
            return self._params["cov"]
        v = self._params["var"]
        if self._kind == "iso":
            v = v[:, None].expand(self.n_components, self.dim)
        return torch.diag_embed(v)

    def _comp_lp(self, x2):
        mu = self._param("means", x2)
        const = self._param("const", x2)
        K, d = self.n_components, self.dim
        out = []
        for sl in _row_chunks(x2.shape[0], K * d):
            diff = x2[sl, None, :] - mu                                            # (n, K, d)
            if self._kind == "iso":
                q = (diff * diff).sum(-1) / self._param("var", x2)
            elif self._kind == "diag":
                q = (diff * diff * self._param("inv_var", x2)).sum(-1)
            else:
                z = torch.einsum("kij,nkj->nki", self._param("chol_inv", x2), diff)
                q = (z * z).sum(-1)
            out.append(const - 0.5 * q)
        return torch.cat(out, 0) if len(out) > 1 else out[0]

    def _comp_scores(self, x2, r):
        mu = self._param("means", x2)
        if self._kind == "iso":
            a = r / self._param("var", x2)                                         # (N, K)
            return a @ mu - x2 * a.sum(-1, keepdim=True)
        if self._kind == "diag":
            return r @ self._param("mean_over_var", x2) - x2 * (r @ self._param("inv_var", x2))
        prec = self._param("prec", x2)
        out = []
        for sl in _row_chunks(x2.shape[0], self.n_components * self.dim):
            diff = x2[sl, None, :] - mu
            out.append(-torch.einsum("nk,kij,nkj->ni", r[sl], prec, diff))
        return torch.cat(out, 0) if len(out) > 1 else out[0]

    def _sample(self, n, generator, device):
        idx = self._sample_components(n, generator, device)
        eps = torch.randn(n, self.dim, generator=generator, device=device, dtype=torch.float64)
        mu = self._param("means", eps)[idx]
        if self._kind == "iso":
            return mu + eps * self._param("var", eps)[idx, None].sqrt()
        if self._kind == "diag":
            return mu + eps * self._param("var", eps)[idx].sqrt()
        return mu + torch.einsum("nij,nj->ni", self._param("chol", eps)[idx], eps)


# ---------------------------------------------------------------------------------------------- the benchmark set
def _grid_means(values) -> torch.Tensor:
    v = torch.as_tensor(values, dtype=torch.float64)
    a, b = torch.meshgrid(v, v, indexing="ij")
    return torch.stack([a.flatten(), b.flatten()], -1)


def gmm9(variance: float = 0.3) -> GaussianMixture:
    """9 equal-weight modes at {−5, 0, 5}², each N(μ, variance·I) (PIS / gfn-diffusion)."""
    return GaussianMixture(None, _grid_means([-5.0, 0.0, 5.0]), float(variance), name="gmm9")


def gmm25(variance: float = 0.3) -> GaussianMixture:
    """25 equal-weight modes at {−10, −5, 0, 5, 10}², each N(μ, variance·I) (gfn-diffusion)."""
    return GaussianMixture(None, _grid_means([-10.0, -5.0, 0.0, 5.0, 10.0]), float(variance), name="gmm25")


def mog40(dim: int = 2) -> GaussianMixture:
    """Beyond-ELBOs GMM-40: 40 equal-weight N(μ_k, I), μ_k from ``mog40_means_d{dim}.npy`` (dim 2 or 50)."""
    if dim not in (2, 50):
        raise TargetInputError(f"mog40 exists for dim 2 and 50 (means files mog40_means_d2/d50.npy), got dim={dim!r}")
    from .data import load_array
    means = torch.as_tensor(load_array(f"mog40_means_d{dim}.npy"), dtype=torch.float64)
    return GaussianMixture(None, means, 1.0, name="mog40")


def gmm40_fab() -> GaussianMixture:
    """FAB / iDEM GMM-40 in d = 2: 40 equal-weight N(μ_k, s²I), s = softplus(1) = log(1 + e)."""
    from .data import load_array
    means = torch.as_tensor(load_array("gmm40_fab_means_d2.npy"), dtype=torch.float64)
    s = math.log1p(math.e)
    return GaussianMixture(None, means, s * s, name="gmm40_fab")


register("gmm9", gmm9, "9-mode grid GMM in 2-D, means {−5,0,5}², variance 0.3 (PIS; Sendera et al. 2024); log Z = 0",
         variants=({},))
register("gmm25", gmm25, "25-mode grid GMM in 2-D, means {−10,…,10}², variance 0.3 (Sendera et al. 2024); log Z = 0",
         variants=({},))
register("mog40", mog40, "GMM-40 of Blessing et al. 2024: 40 unit-variance modes in [−40, 40]^d; log Z = 0",
         variants=({"dim": 2}, {"dim": 50}))
register("gmm40_fab", gmm40_fab, "GMM-40 of FAB / iDEM in 2-D, std softplus(1); log Z = 0", variants=({},))
