"""Concentric rings in 2-D: a radial mixture of Gaussian "tubes" around circles.

π̃(x) = Σ_k w_k exp(−(|x| − r_k)² / (2σ²)),   Σ_k w_k = 1,

with default radii r = (1, 2, 3, 4), σ = 0.1 and equal w (so an outer ring holds more mass than an inner one,
in proportion to its length). A standard 2-D toy target of the "concentric circles" kind (cf. the "rings" toy
data of Grathwohl et al., FFJORD, ICLR 2019): separated, curved, zero-mean modes that defeat mode-seeking
samplers and Gaussian proposals. Unnormalised; log Z in closed form, from the radial integral

Z = 2π ∫₀^∞ r f(r) dr = 2π Σ_k w_k [σ² e^{−r_k²/(2σ²)} + r_k σ √(2π) Φ(r_k/σ)].

Exact draws: the angle uniform on [0, 2π), the radius from r·f(r) on (0, ∞) by rejection (a Gaussian mixture
proposal with one component per ring, bound checked numerically; see ``wells.Rejection1D``).
The density has a cone point at x = 0 (where it is ~e^{−r₁²/(2σ²)}, negligible); the score there is set to 0.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .base import LogZ, Target, TargetInputError
from .registry import register
from .wells import Rejection1D, _trapezoid

__all__ = ["Rings"]


class Rings(Target):
    """Σ_k w_k exp(−(|x| − r_k)²/(2σ²)) in 2-D; unnormalised, closed-form log Z, exact sampler."""

    name = "rings"
    version = "1"

    def __init__(self, radii=(1.0, 2.0, 3.0, 4.0), sigma: float = 0.1, weights=None):
        r = np.asarray(radii, dtype=np.float64).reshape(-1)
        if r.size < 1 or not np.all(np.isfinite(r)) or np.any(r < 0):
            raise TargetInputError(f"radii must be finite and non-negative, got {radii!r}")
        sigma = float(sigma)
        if not (sigma > 0 and math.isfinite(sigma)):
            raise TargetInputError(f"sigma must be positive, got {sigma!r}")
        K = r.size
        w = np.full(K, 1.0 / K) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
        if w.shape != (K,) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise TargetInputError(f"weights must be {K} non-negative numbers, not all zero; got {weights!r}")
        w = w / w.sum()
        # ∫₀^∞ r exp(−(r − a)²/(2σ²)) dr = σ² e^{−a²/(2σ²)} + a σ √(2π) Φ(a/σ)
        mass = np.array([sigma ** 2 * math.exp(-a * a / (2 * sigma ** 2))
                         + a * sigma * math.sqrt(2 * math.pi) * 0.5 * math.erfc(-a / (sigma * math.sqrt(2)))
                         for a in r])
        log_Z = math.log(2 * math.pi) + math.log(float((w * mass).sum()))
        R = float(r.max()) + 4 * sigma
        super().__init__(2, log_Z=LogZ(log_Z, 0.0, "closed form (radial integral)"), box=(-R, R))
        self.radii, self.sigma, self.ring_weights = tuple(float(a) for a in r), sigma, tuple(float(a) for a in w)
        self._register("radii", r)
        self._register("log_w", np.log(np.maximum(w, 1e-300)))
        self._rejection = self._build_rejection(r, w, sigma, mass)

    # ----------------------------------------------------------------------- density
    def _radial_terms(self, rad):
        """(…, K) log w_k − (r − r_k)²/(2σ²)."""
        d = rad[..., None] - self._param("radii", rad)
        return self._param("log_w", rad) - 0.5 * d * d / self.sigma ** 2

    @staticmethod
    def _radius(x):
        sq = (x * x).sum(-1)
        return torch.sqrt(sq.clamp_min(torch.finfo(x.dtype).tiny))

    def _log_prob(self, x):
        return torch.logsumexp(self._radial_terms(self._radius(x)), -1)

    def _score(self, x):
        rad = self._radius(x)
        terms = self._radial_terms(rad)
        rho = torch.softmax(terms, -1)
        g = -(rho * (rad[..., None] - self._param("radii", rad))).sum(-1) / self.sigma ** 2   # d log f / dr
        unit = torch.where((x * x).sum(-1, keepdim=True) > 0, x / rad[..., None], torch.zeros_like(x))
        return g[..., None] * unit

    # ----------------------------------------------------------------------- exact sampler
    def _build_rejection(self, r, w, sigma, mass) -> Rejection1D:
        keep = w > 0
        r, w, mass = r[keep], w[keep], mass[keep]
        lo, hi = -1.0, float(r.max()) + 40 * sigma
        log_w = np.log(w)

        def log_f_np(u):
            u = np.asarray(u, dtype=np.float64)
            d = u[..., None] - r
            t = log_w - 0.5 * d * d / sigma ** 2
            mx = t.max(-1)
            lse = mx + np.log(np.exp(t - mx[..., None]).sum(-1))
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.where(u > 0, np.log(np.where(u > 0, u, 1.0)) + lse, -np.inf)

        def log_f_torch(u):
            rr = torch.as_tensor(r, dtype=u.dtype, device=u.device)
            lw = torch.as_tensor(log_w, dtype=u.dtype, device=u.device)
            d = u[..., None] - rr
            lse = torch.logsumexp(lw - 0.5 * d * d / sigma ** 2, -1)
            pos = u > 0
            return torch.where(pos, torch.log(torch.where(pos, u, torch.ones_like(u))) + lse,
                               torch.full_like(u, -math.inf))

        # one proposal component per ring: the mean and sd of r·exp(−(r − r_k)²/(2σ²)) on r > 0, sd widened
        g = np.linspace(0.0, hi, 200001)
        means, sds = [], []
        for a in r:
            f = g * np.exp(-0.5 * (g - a) ** 2 / sigma ** 2)
            m0 = _trapezoid(f, g)
            m1 = _trapezoid(f * g, g) / m0
            var = _trapezoid(f * (g - m1) ** 2, g) / m0
            means.append(m1)
            sds.append(max(1.3 * math.sqrt(var), 1.2 * sigma))
        return Rejection1D(log_f_np, log_f_torch, w * mass, means, sds, lo=lo, hi=hi)

    @property
    def rejection_sampler(self) -> Rejection1D:
        return self._rejection

    def _sample(self, n, generator, device):
        rad = self._rejection.sample(n, generator, device)
        theta = 2 * math.pi * torch.rand(n, generator=generator, device=device, dtype=torch.float64)
        return torch.stack([rad * torch.cos(theta), rad * torch.sin(theta)], -1)


register("rings", Rings, "2-D concentric rings, radii 1–4, σ = 0.1: Σ_k w_k exp(−(|x|−r_k)²/2σ²); exact log Z",
         variants=({},))
