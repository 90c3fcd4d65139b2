"""Mixture of products of univariate Student-t densities ("MoS", Blessing et al., "Beyond ELBOs", ICML 2024).

π(x) = Σ_k w_k Π_j t_ν((x_j − μ_kj)/s) / s,
log t_ν(u) = lgamma((ν+1)/2) − lgamma(ν/2) − ½ log(νπ) − (ν+1)/2 · log(1 + u²/ν).

Each component is a product of *independent* univariate t's (not a multivariate t), so it has heavy tails along
every axis. The benchmark ``mos10`` has 10 equal-weight components, ν = 2, s = 1 and locations
``mos10_locs_d{2,50}.npy`` (uniform on [−10, 10]^d, JAX PRNGKey(0); Beyond-ELBOs ``student_t_mixture.py``).
Normalised: log Z = 0. With ν = 2 the variance is infinite (the mean exists).

Exact draws: component k ~ Categorical(w), then x_j = μ_kj + s·z_j / sqrt(χ²_ν / ν) with z ~ N(0, 1) from the
torch generator and the χ² draws from a NumPy generator seeded by that same torch generator (torch cannot draw
gammas with an explicit generator), so a seed fixes the samples.
"""
from __future__ import annotations

import math

import torch

from .._rng import numpy_rng
from .base import LogZ, Target, TargetInputError
from .mixtures import MixtureMixin, _as_locations, _as_weights, _row_chunks
from .registry import register

__all__ = ["StudentTMixture", "mos10"]


class StudentTMixture(MixtureMixin, Target):
    """Σ_k w_k Π_j t_ν(x_j; μ_kj, s_kj), normalised (log Z = 0).

    ``weights``: (K,) (``None`` = equal); ``locs``: (K, d); ``df``: ν > 0; ``scale``: a scalar, (K,) or (K, d)."""

    name = "student_t_mixture"
    version = "1"

    def __init__(self, weights, locs, df: float = 2.0, scale=1.0, *, name: str | None = None,
                 box: tuple | None = None):
        mu = _as_locations(locs, "locs")
        K, d = mu.shape
        w = _as_weights(weights, K)
        df = float(df)
        if not (df > 0 and math.isfinite(df)):
            raise TargetInputError(f"df must be positive and finite, got {df!r}")
        s = torch.as_tensor(scale, dtype=torch.float64)
        if s.ndim == 0:
            s = s.expand(K, d)
        elif s.shape == (K,):
            s = s[:, None].expand(K, d)
        elif s.shape != (K, d):
            raise TargetInputError(f"scale must be a scalar, ({K},) or ({K}, {d}), got {tuple(s.shape)}")
        s = s.clone()
        if not bool(torch.isfinite(s).all()) or bool((s <= 0).any()):
            raise TargetInputError("scale must be positive and finite")
        if box is None:
            # heavy tails: the central 99.5 % of one t_ν coordinate is a box, not all of the mass
            half = _t_quantile(0.9975, df) * s.max(0).values
            box = (mu.min(0).values - half, mu.max(0).values + half)
        super().__init__(d, name=name, log_Z=LogZ(0.0, 0.0, "closed form (normalised mixture)"), box=box)
        self._init_mixture(w, mu)
        self.df = df
        self._register("scale", s)
        self._register("inv_scale", 1.0 / s)
        c1 = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
        self._register("const", d * c1 - torch.log(s).sum(-1))

    def _comp_lp(self, x2):
        mu, inv_s = self._param("means", x2), self._param("inv_scale", x2)
        const = self._param("const", x2)
        K, d, nu = self.n_components, self.dim, self.df
        out = []
        for sl in _row_chunks(x2.shape[0], K * d):
            u = (x2[sl, None, :] - mu) * inv_s                                     # (n, K, d)
            out.append(const - 0.5 * (nu + 1) * torch.log1p(u * u / nu).sum(-1))
        return torch.cat(out, 0) if len(out) > 1 else out[0]

    def _comp_scores(self, x2, r):
        mu, inv_s = self._param("means", x2), self._param("inv_scale", x2)
        K, d, nu = self.n_components, self.dim, self.df
        out = []
        for sl in _row_chunks(x2.shape[0], K * d):
            u = (x2[sl, None, :] - mu) * inv_s
            g = -(nu + 1) * u / (nu + u * u) * inv_s                                # ∇ log p_k, (n, K, d)
            out.append(torch.einsum("nk,nkd->nd", r[sl], g))
        return torch.cat(out, 0) if len(out) > 1 else out[0]

    def _sample(self, n, generator, device):
        idx = self._sample_components(n, generator, device)
        z = torch.randn(n, self.dim, generator=generator, device=device, dtype=torch.float64)
        chi2 = numpy_rng(generator).chisquare(self.df, size=(n, self.dim))
        t = z / torch.sqrt(torch.as_tensor(chi2, dtype=torch.float64, device=device) / self.df)
        return self._param("means", z)[idx] + t * self._param("scale", z)[idx]


def _t_quantile(p: float, df: float) -> float:
    from scipy.stats import t as student_t
    return float(student_t.ppf(p, df))


def mos10(dim: int = 2) -> StudentTMixture:
    """Beyond-ELBOs MoS: 10 equal-weight products of t_2 (scale 1), locations ``mos10_locs_d{dim}.npy``."""
    if dim not in (2, 50):
        raise TargetInputError(f"mos10 exists for dim 2 and 50 (mos10_locs_d2/d50.npy), got dim={dim!r}")
    from .data import load_array
    locs = torch.as_tensor(load_array(f"mos10_locs_d{dim}.npy"), dtype=torch.float64)
    return StudentTMixture(None, locs, df=2.0, scale=1.0, name="mos10")


register("mos10", mos10, "Mixture of 10 products of Student-t (ν = 2) of Blessing et al. 2024; log Z = 0",
         variants=({"dim": 2}, {"dim": 50}))
