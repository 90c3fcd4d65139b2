"""Hierarchical and spatial real-data targets (TARGETS.md §5 of the shared data folder).

* ``seeds`` (d = 26): random-effects logistic regression of Crowder (1978), as in Blessing et al. 2024
  ("Beyond ELBOs", ``targets/seeds.py``, a numpyro model).
* ``brownian`` (d = 32): Brownian motion with unknown innovation and observation scales and missing middle
  observations, from the Inference Gym (``BrownianMotionUnknownScalesMissingMiddleObservations``), as used by BE.
* ``lgcp`` (d = 1600): log-Gaussian Cox process on the Finnish pines data (Møller, Syversveen & Waagepetersen
  1998), unwhitened parametrisation as in annealed_flow_transport / BE ``targets/lgcp.py``.

None has a closed-form log Z (``log_Z`` is None).
"""
from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import torch
import torch.nn.functional as F

from . import data
from .base import Target
from .registry import register

__all__ = ["Seeds", "BrownianMotion", "LGCP"]

_LOG_2PI = math.log(2 * math.pi)


# ---------------------------------------------------------------------------------------------------- Seeds
class Seeds(Target):
    """Seeds random-effects logistic regression (Crowder 1978), d = 26.

    Coordinates (numpyro's flattening, keys sorted): x = (a₀, a₁, a₁₂, a₂, b₁, …, b₂₁, s), s = log τ.

        τ ~ Gamma(0.01, rate 0.01);  a₀, a₁, a₂, a₁₂ ~ N(0, 10²);  b_j ~ N(0, 1/τ);
        R_j ~ Binomial(N_j, σ(η_j)),  η_j = a₀ + a₁X1_j + a₂X2_j + a₁₂X1_jX2_j + b_j,

    log π̃(x) = Σ log N(a; 0, 10²) + log Gamma(e^s; 0.01, 0.01) + s + Σ_j log N(b_j; 0, e^{−s})
              + Σ_j [log C(N_j, R_j) + R_j log σ(η_j) + (N_j − R_j) log σ(−η_j)]
    (the "+ s" is the Jacobian of τ = e^s; binomial coefficients included).
    """

    name = "seeds"
    version = "1"

    def __init__(self):
        import csv
        with open(data.path("seeds.csv"), newline="") as f:
            rows = list(csv.DictReader(f))
        R = np.array([float(r["R"]) for r in rows])
        N = np.array([float(r["N"]) for r in rows])
        X1 = np.array([float(r["X1"]) for r in rows])
        X2 = np.array([float(r["X2"]) for r in rows])
        self.n_plates = len(rows)
        low = [-10.0] * (4 + self.n_plates) + [-5.0]
        high = [10.0] * (4 + self.n_plates) + [15.0]
        super().__init__(4 + self.n_plates + 1, log_Z=None, box=(low, high))
        # design for (a0, a1, a12, a2) in the flattening order
        self._register("D", np.stack([np.ones_like(X1), X1, X1 * X2, X2], axis=1))
        self._register("R", R)
        self._register("NmR", N - R)
        lbinom = sum(math.lgamma(n + 1) - math.lgamma(r + 1) - math.lgamma(n - r + 1) for n, r in zip(N, R))
        k = rate = 0.01
        self._const = (lbinom + 4 * (-0.5 * _LOG_2PI - math.log(10.0))
                       + k * math.log(rate) - math.lgamma(k) - 0.5 * self.n_plates * _LOG_2PI)
        self._k, self._rate = k, rate

    def _log_prob(self, x):
        D, R, NmR = self._param("D", x), self._param("R", x), self._param("NmR", x)
        a, b, s = x[..., :4], x[..., 4:-1], x[..., -1]
        eta = a @ D.T + b
        lik = -(R * F.softplus(-eta)).sum(-1) - (NmR * F.softplus(eta)).sum(-1)
        prior_a = -0.5 * (a * a).sum(-1) / 100.0
        prior_s = self._k * s - self._rate * torch.exp(s)               # Gamma(e^s) + Jacobian s
        prior_b = 0.5 * self.n_plates * s - 0.5 * torch.exp(s) * (b * b).sum(-1)
        return lik + prior_a + prior_s + prior_b + self._const


# ---------------------------------------------------------------------------------------------------- Brownian
class BrownianMotion(Target):
    """Brownian motion with unknown scales and missing middle observations (Inference Gym), d = 32.

    z = (z_α, z_β, x₀, …, x₂₉), α = softplus(z_α), β = softplus(z_β):

        log π̃(z) = log LogNormal(α; 0, 2) + log LogNormal(β; 0, 2) + log σ(z_α) + log σ(z_β)
                  + log N(x₀; 0, α²) + Σ_{t=1}^{29} log N(x_t; x_{t−1}, α²) + Σ_{t observed} log N(y_t; x_t, β²),

    y = ``brownian_observations.npy`` (NaN, i.e. unobserved, at t = 10..19). Score by autograd.
    """

    name = "brownian"
    version = "1"

    def __init__(self):
        obs = np.asarray(data.load_array("brownian_observations.npy"), dtype=np.float64)
        T = obs.shape[0]
        super().__init__(T + 2, log_Z=None, box=([-6.0, -6.0] + [-3.0] * T, [3.0, 3.0] + [3.0] * T))
        mask = ~np.isnan(obs)
        self.n_steps = T
        self.n_observed = int(mask.sum())
        self._register("obs", np.where(mask, obs, 0.0))
        self._register("mask", mask.astype(np.float64))

    def _log_prob(self, z):
        obs, mask = self._param("obs", z), self._param("mask", z)
        za, zb, x = z[..., 0], z[..., 1], z[..., 2:]
        la, lb = F.softplus(za), F.softplus(zb)
        log_a, log_b = torch.log(la), torch.log(lb)

        def lognormal(log_v):  # log LogNormal(v; 0, 2) at v = e^{log_v}
            return -log_v - 0.5 * (_LOG_2PI + 2 * math.log(2.0)) - log_v * log_v / 8.0

        lp = lognormal(log_a) + lognormal(log_b) + F.logsigmoid(za) + F.logsigmoid(zb)
        steps = torch.cat([x[..., :1], x[..., 1:] - x[..., :-1]], -1)
        T = self.n_steps
        lp = lp - 0.5 * (steps * steps).sum(-1) / (la * la) - T * log_a - 0.5 * T * _LOG_2PI
        r = (x - obs) * mask
        lp = lp - 0.5 * (r * r).sum(-1) / (lb * lb) - self.n_observed * (log_b + 0.5 * _LOG_2PI)
        return lp


# ---------------------------------------------------------------------------------------------------- LGCP
@functools.lru_cache(maxsize=4)
def _lgcp_cholesky(n: int, sigma2: float, beta: float) -> tuple[torch.Tensor, float]:
    """Cholesky factor of the n²×n² grid covariance K_mn = σ² exp(−‖g_m − g_n‖ / (n β)) and log|K| (cached)."""
    g = np.array(list(itertools.product(range(n), range(n))), dtype=np.float64)
    dist = np.sqrt(((g[:, None, :] - g[None, :, :]) ** 2).sum(-1))
    K = torch.as_tensor(sigma2 * np.exp(-dist / (n * beta)))
    L = torch.linalg.cholesky(K)
    return L, float(2 * torch.log(torch.diagonal(L)).sum())


class LGCP(Target):
    """Log-Gaussian Cox process on the Finnish pines (Møller et al. 1998), 40 × 40 grid, d = 1600.

    Latent f ∈ R^{1600} (cell m = row·40 + col, row from the x coordinate), counts c_m of the 126 pines,

        log π̃(f) = log N(f; μ1, K) + Σ_m [c_m f_m − a e^{f_m}],   a = 1/1600,
        K_mn = σ² exp(−‖g_m − g_n‖₂ / (40 β)),  σ² = 1.91,  β = 1/33,  μ = log 126 − σ²/2,

    with g_m the integer grid index pair; the Poisson −log c_m! term is omitted, as in the benchmark code.
    The Cholesky factor L of K is computed once per process (float64) and cached; the Gaussian term is a
    batched triangular solve. Score: −K⁻¹(f − μ) + c − a e^f.
    """

    name = "lgcp"
    version = "1"

    def __init__(self, grid: int = 40, sigma2: float = 1.91, beta: float = 1 / 33):
        pts = np.genfromtxt(data.path("pines.csv"), delimiter=",")[1:, 1:3]
        d = grid * grid
        super().__init__(d, log_Z=None, box=(-4.0, 8.0))
        idx = np.minimum(np.floor(pts * grid).astype(int), grid - 1)
        counts = np.zeros((grid, grid))
        np.add.at(counts, (idx[:, 0], idx[:, 1]), 1.0)
        self.grid, self.sigma2, self.beta = grid, float(sigma2), float(beta)
        self.n_points = int(pts.shape[0])
        self.mu = math.log(self.n_points) - self.sigma2 / 2
        self.area = 1.0 / d
        L, logdet = _lgcp_cholesky(grid, self.sigma2, self.beta)
        self._register("L", L)
        self._register("counts", counts.reshape(-1))
        self._prior_const = -0.5 * (d * _LOG_2PI + logdet)

    def _whiten(self, f):
        """L⁻¹(f − μ) for f of shape (..., d), as (..., d)."""
        L = self._param("L", f)
        r = (f - self.mu).reshape(-1, self.dim)
        v = torch.linalg.solve_triangular(L, r.T, upper=False)
        return v.T.reshape(f.shape)

    def prior_log_prob(self, f: torch.Tensor) -> torch.Tensor:
        """The Gaussian term log N(f; μ1, K) alone."""
        f = self._check_points(f)
        v = self._whiten(f)
        return -0.5 * (v * v).sum(-1) + self._prior_const

    def _log_prob(self, f):
        c = self._param("counts", f)
        v = self._whiten(f)
        return (-0.5 * (v * v).sum(-1) + self._prior_const
                + (c * f).sum(-1) - self.area * torch.exp(f).sum(-1))

    def _score(self, f):
        c, L = self._param("counts", f), self._param("L", f)
        r = (f - self.mu).reshape(-1, self.dim).T
        kinv_r = torch.cholesky_solve(r, L, upper=False).T.reshape(f.shape)
        return -kinv_r + c - self.area * torch.exp(f)


register("seeds", Seeds, "Seeds random-effects logistic regression (Crowder 1978; BE 2024), d=26")
register("brownian", BrownianMotion,
         "Brownian motion, unknown scales, missing middle observations (Inference Gym; BE 2024), d=32")
register("lgcp", LGCP, "Log-Gaussian Cox process, Finnish pines on a 40x40 grid (Møller et al. 1998), d=1600")
