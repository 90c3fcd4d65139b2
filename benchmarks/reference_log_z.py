"""Reference log Z for targets without a closed form: adaptive tempered SMC, cross-checked by an independent
importance-sampling estimate (a defensive kernel-mixture proposal built from pilot MCMC draws).

    OMP_NUM_THREADS=1 SAMPLEFLOW_DATA=../shared/data python benchmarks/reference_log_z.py \\
        --targets seeds,brownian --seeds 4 --particles 2048 --out ref.json

Per target (everything in float64 on the CPU):

0. coordinates: the target is sampled in coordinates u = T(x) with log π̃_u(u) = log π̃(T⁻¹u) + log|det ∂x/∂u|
   (same Z, since ∫π̃_u du = ∫π̃ dx). T is the identity except for the hierarchical models (``REPARAM``):
   Seeds and Brownian use their *non-centred* form (random effects / increments divided by their scale), which
   removes the funnel between a scale and the effects it scales (Papaspiliopoulos, Roberts & Sköld, Stat. Sci.
   2007); LGCP is whitened by its prior's Cholesky factor. No Laplace / mode fit is used anywhere: the joint
   mode of a hierarchical model sits in the neck of its funnel (Seeds: τ ≈ 10³ with all b_j = 0), far from the
   posterior mass (tests/targets/test_reference_values.py shows this on Seeds).
1. pilot: HMC chains (``--pilot-chains``, diagonal mass adapted in warm-up, started from the target's box, or
   from N(0, I) in u-coordinates when T is not the identity), then a second HMC run on the u-target whitened
   by the first run's mean and covariance (a full-covariance preconditioner, started from the first run's final
   states); the pooled kept draws of the second run give the mean m and covariance Σ (Cholesky factor C).
2. SMC (estimator A): ``sampleflow.sample(w, "smc", kernel="hmc", ...)`` on the whitened target
   w(z) = π̃_u(m + Cz)·|det C| (same Z), Gaussian reference N(0, ``inflate``² I), ``--seeds`` seeds; estimate =
   mean of the seeds' log Ẑ, standard error = std across seeds / √seeds. With ``--smc-reference prior`` (targets
   whose prior is a proper Gaussian, ``PRIOR_WHITENING``: the planar robots and LGCP), the target is instead
   whitened by the prior (z = prior-standardised coordinates) and the reference is the prior itself, N(0, I):
   the SMC path then tempers only the likelihood, log Z = log E_prior[likelihood], and uses no pilot at all.
3. IS (estimator B): M = ``--is-draws`` draws from the defensive mixture, in whitened pilot coordinates z,
       q(z) = (1 − ε)·(1/K) Σ_k N(z; z_k, h² I) + ε·t_ν(z; 0, c² I),
   z_k = K (``--kde-centres``) pilot draws, h = (bandwidth factor)·h_S with Silverman's
   h_S = (4/(d+2))^{1/(d+4)} K^{−1/(d+4)}, ε = ``--defensive``, ν = ``--df``, c = ``--t-scale`` (Hesterberg,
   "Weighted average importance sampling and defensive mixture distributions", Technometrics 1995; West 1993 for
   kernel-mixture proposals). The bandwidth factor is chosen among ``--bandwidths`` by the ESS of a trial run
   (``--is-trial`` draws, its own seed); the estimate uses fresh draws: log w = log π̃_u(u) − log q_u(u),
   log Ẑ = log mean w, delta-method se = sd(w)/(√M·mean w); the two halves of the draws are also reported.
4. IS with a multivariate t (df ν, location m, scale Σ; the original cross-check) is reported as well.
5. marginalised estimators where the model allows integrating part of x out exactly or by low-dimensional
   quadrature (``--no-marginal`` skips them; these are the most trustworthy second estimators):
   Brownian — the 30 states are Gaussian given the two scales: exact marginal + 2-D grid quadrature
   (:func:`brownian_quadrature`, numerically exact); Seeds — the 21 random effects are independent given
   (a, τ): 1-D quadrature each, IS over the 5 remaining coordinates (:func:`seeds_marginal_is`); planar
   robots — the base joint rotates the arm (Laplace in θ₁, relative error ~10⁻⁶), the last joint on a grid,
   IS over the 8 middle joints (:func:`robot_marginal_is`; 4 goals = the sum over the goals). For the robots
   the 4-goal value implied by the 1-goal one (:func:`robot_4goal_from_1goal`) is also printed.
6. ``--second-smc``: an SMC run with the other reference (pilot ↔ prior; for LGCP: the Laplace fit, see
   below) and the other kernel (HMC ↔ MALA; ``--second-smc-kernel`` overrides).
   LGCP runs on :class:`WhitenedLGCP` (a dedicated whitened density, two dense products per evaluation). Its
   posterior is log-concave (Gaussian prior, Poisson log-link), so it is unimodal and a Laplace fit
   (:func:`lgcp_laplace`: Newton's mode and the Hessian's Cholesky factor) is a sound SMC reference there
   (``--smc-reference laplace``) — unlike on the hierarchical models above.
7. a table: |Δ|/√(se_A² + se_B²) between SMC and each second estimator, and, with ``--out``, a JSON file.

Store a value only when SMC and a second estimator whose own diagnostics are sound (ESS, halves, convergence)
agree within about 3 combined standard errors. Exact commands and results: sampleflow/targets/reference_values.py
and benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

import sampleflow as sf
from sampleflow.targets.base import Target

LOGISTIC = ["german_credit_normal10_prior", "german_credit_flat_prior", "breast_cancer_normal10_prior",
            "ionosphere", "sonar"]


# ---------------------------------------------------------------------------------------------- coordinates
class Reparam:
    """A bijection x = T⁻¹(u) with log|det ∂x/∂u|; the identity by default."""

    name = "identity"

    def to_u(self, x):
        return x

    def to_x(self, u):
        """(x, log|det ∂x/∂u|) for u of shape (n, d)."""
        return u, torch.zeros(u.shape[:-1], dtype=u.dtype, device=u.device)


class SeedsNonCentred(Reparam):
    """Seeds x = (a₀, a₁, a₁₂, a₂, b₁..b₂₁, s = log τ) ↔ u = (a, b̃ = b·e^{s/2}, s): b = b̃·e^{−s/2},
    log|det ∂x/∂u| = −(21/2)·s."""

    name = "seeds-noncentred"

    def __init__(self, n_plates: int = 21):
        self.k = n_plates

    def to_u(self, x):
        s = x[..., -1:]
        return torch.cat([x[..., :4], x[..., 4:-1] * torch.exp(0.5 * s), s], -1)

    def to_x(self, u):
        s = u[..., -1:]
        return torch.cat([u[..., :4], u[..., 4:-1] * torch.exp(-0.5 * s), s], -1), -0.5 * self.k * u[..., -1]


class BrownianNonCentred(Reparam):
    """Brownian z = (z_α, z_β, x₀..x_{T−1}) ↔ u = (z_α, z_β, ε) with ε_t = (x_t − x_{t−1})/α (x₋₁ = 0),
    α = softplus(z_α): x = α·cumsum(ε), log|det ∂x/∂u| = T·log α."""

    name = "brownian-noncentred"

    def to_u(self, z):
        a = F.softplus(z[..., :1])
        x = z[..., 2:]
        eps = torch.cat([x[..., :1], x[..., 1:] - x[..., :-1]], -1) / a
        return torch.cat([z[..., :2], eps], -1)

    def to_x(self, u):
        a = F.softplus(u[..., :1])
        x = a * torch.cumsum(u[..., 2:], -1)
        return torch.cat([u[..., :2], x], -1), x.shape[-1] * torch.log(a[..., 0])


class Affine(Reparam):
    """x = loc + C u (C lower triangular), log|det ∂x/∂u| = Σ log C_ii."""

    name = "affine"

    def __init__(self, loc, chol, name: str = "affine"):
        self.loc, self.C = loc, chol
        self.logdet = float(torch.log(torch.diagonal(chol)).sum())
        self.name = name

    def to_u(self, x):
        return torch.linalg.solve_triangular(self.C, (x - self.loc).T, upper=False).T

    def to_x(self, u):
        return self.loc + u @ self.C.T, torch.full(u.shape[:-1], self.logdet, dtype=u.dtype, device=u.device)


def lgcp_prior_whitening(t) -> Affine:
    L = t._param("L", torch.zeros((), dtype=torch.float64))
    return Affine(torch.full((t.dim,), t.mu, dtype=torch.float64), L, "lgcp-prior-whitened")


def robot_prior_whitening(t) -> Affine:
    sd = 1.0 / torch.sqrt(t._param("inv_var", torch.zeros((), dtype=torch.float64)))
    return Affine(torch.zeros(t.dim, dtype=torch.float64), torch.diag(sd), "robot-prior-whitened")


REPARAM = {"seeds": lambda t: SeedsNonCentred(t.n_plates), "brownian": lambda t: BrownianNonCentred(),
           "lgcp": lgcp_prior_whitening}
PRIOR_WHITENING = {"lgcp": lgcp_prior_whitening, "planar_robot_1goal": robot_prior_whitening,
                   "planar_robot_4goal": robot_prior_whitening}


class Transformed(Target):
    """π̃_u(u) = π̃(T⁻¹u)·|det ∂x/∂u|: the same normalising constant as ``base``. Score by the base score and the
    chain rule through T⁻¹ (autograd on T⁻¹ only)."""

    def __init__(self, base: Target, reparam: Reparam):
        super().__init__(base.dim, name=f"{base.name}[{reparam.name}]", box=(-3.0, 3.0))
        self.base, self.reparam = base, reparam

    def _log_prob(self, u):
        x, ld = self.reparam.to_x(u)
        return self.base.log_prob(x) + ld

    def log_prob_and_score(self, u):
        u = self._check_points(u)
        if isinstance(self.reparam, Affine):
            x, ld = self.reparam.to_x(u)
            lp, g = self.base.log_prob_and_score(x)
            return lp + ld, g @ self.reparam.C
        with torch.enable_grad():
            ug = u.detach().requires_grad_(True)
            x, ld = self.reparam.to_x(ug)
            lp, gx = self.base.log_prob_and_score(x.detach())
            (gu,) = torch.autograd.grad((x * gx).sum() + ld.sum(), ug)
        return (lp + ld).detach(), gu


# ---------------------------------------------------------------------------------------------- LGCP
class WhitenedLGCP(Target):
    """The LGCP posterior in whitened coordinates ε, with f = μ + L z and z = z₀ + B ε (L the prior's Cholesky
    factor; B = I, z₀ = 0 is plain prior whitening):

        log π̃_ε(ε) = log N(z; 0, I) + Σ_m [c_m f_m − a e^{f_m}] + log|det B|,

    the same Z as the registered target (the Jacobian |det L| cancels the prior's normaliser). Two to four dense
    products per evaluation instead of the generic path's triangular solves, so SMC in d = 1600 is affordable."""

    def __init__(self, t, z0=None, B=None, name="lgcp-prior-whitened"):
        super().__init__(t.dim, name=name, box=(-3.0, 3.0))
        f64 = torch.zeros((), dtype=torch.float64)
        self.L, self.c, self.a, self.mu = t._param("L", f64), t._param("counts", f64), t.area, t.mu
        self.z0 = torch.zeros(t.dim, dtype=torch.float64) if z0 is None else z0
        self.B = B
        self.LB = self.L if B is None else self.L @ B
        self.f0 = self.mu + self.L @ self.z0
        self.const = -0.5 * t.dim * math.log(2 * math.pi) + (0.0 if B is None else float(torch.linalg.slogdet(B)[1]))

    def _terms(self, e):
        z = self.z0 + (e if self.B is None else e @ self.B.T)
        f = self.f0 + e @ self.LB.T
        ef = self.a * torch.exp(f)
        return z, ef, -0.5 * (z * z).sum(-1) + (self.c * f).sum(-1) - ef.sum(-1) + self.const

    def _log_prob(self, e):
        return self._terms(e)[2]

    def log_prob_and_score(self, e):
        e = self._check_points(e)
        z, ef, lp = self._terms(e)
        gz = (self.c - ef) @ self.L - z          # ∇_z
        return lp, gz if self.B is None else gz @ self.B

    def _score(self, e):
        return self.log_prob_and_score(e)[1]


def lgcp_laplace(t, *, tol: float = 1e-10, max_iter: int = 50):
    """Mode ẑ and Hessian factor of the LGCP posterior in prior-whitened coordinates, by Newton's method.

    The posterior is log-concave (Gaussian prior, Poisson log-link likelihood), hence unimodal, so the mode and
    the Hessian H = I + Lᵀ diag(a e^f) L describe its bulk (the hierarchical-model hazard of the module docstring
    does not arise). Returns (ẑ, B) with B = R⁻ᵀ, R Rᵀ = H, so z = ẑ + Bε has ε ~ N(0, I) under the Laplace
    approximation. Used only as an SMC reference: the estimate stays unbiased however crude the fit."""
    w = WhitenedLGCP(t)
    z = torch.zeros(t.dim, dtype=torch.float64)
    eye = torch.eye(t.dim, dtype=torch.float64)
    for _ in range(max_iter):
        _, ef, _ = w._terms(z[None])
        g = (w.c - ef[0]) @ w.L - z
        H = eye + w.L.T @ (ef[0, :, None] * w.L)
        step = torch.linalg.solve(H, g)
        z = z + step
        if float(step.norm()) < tol:
            break
    _, ef, _ = w._terms(z[None])
    R = torch.linalg.cholesky(eye + w.L.T @ (ef[0, :, None] * w.L))
    B = torch.linalg.solve_triangular(R.T, eye, upper=True)
    return z, B


# ---------------------------------------------------------------------------------------------- pilot
def _hmc_draws(target, *, chains, warmup, steps, seed, n_leapfrog, init):
    s = sf.sample(target, "hmc", n=chains, seed=seed, n_warmup=warmup, n_steps=steps, n_leapfrog=n_leapfrog,
                  adapt_mass=True, keep_trajectory=True, thin=max(1, steps // 50), dtype="float64", init=init)
    x = s.trajectory.reshape(-1, target.dim).to(torch.float64)
    return x[torch.isfinite(target.log_prob(x))], s


def pilot_moments(target, *, chains: int, warmup: int, steps: int, seed: int, n_leapfrog: int = 10):
    """Mean and full covariance of pooled HMC draws (thinned trajectories of all chains); x-coordinates."""
    x, s = _hmc_draws(target, chains=chains, warmup=warmup, steps=steps, seed=seed, n_leapfrog=n_leapfrog,
                      init="box")
    return x.mean(0), torch.cov(x.T).reshape(target.dim, target.dim), x.shape[0], s.info


def _chol(cov):
    d = cov.shape[0]
    return torch.linalg.cholesky(cov + 1e-10 * cov.diagonal().mean() * torch.eye(d, dtype=cov.dtype))


def pilot_fit(target, reparam: Reparam, *, chains: int, warmup: int, steps: int, seed: int, n_leapfrog: int = 10):
    """Two-stage pilot in u-coordinates (module docstring, step 1). Returns (u-draws of stage 2, m, C, info)."""
    tu = Transformed(target, reparam)
    init = "box" if reparam.name == "identity" else "prior"
    u1, s1 = _hmc_draws(tu if reparam.name != "identity" else target, chains=chains, warmup=warmup, steps=steps,
                        seed=seed, n_leapfrog=n_leapfrog, init=init)
    m1, C1 = u1.mean(0), _chol(torch.cov(u1.T).reshape(target.dim, target.dim))
    w = Transformed(tu, Affine(m1, C1))
    z0 = torch.linalg.solve_triangular(C1, (s1.x.to(torch.float64) - m1).T, upper=False).T
    z, s2 = _hmc_draws(w, chains=chains, warmup=warmup, steps=steps, seed=seed + 1, n_leapfrog=n_leapfrog,
                       init=z0)
    u = m1 + z @ C1.T
    m, C = u.mean(0), _chol(torch.cov(u.T).reshape(target.dim, target.dim))
    info = {"stage1_acceptance": s1.info.get("acceptance_rate"), "stage2_acceptance": s2.info.get("acceptance_rate"),
            "draws": int(u.shape[0])}
    return u, m, C, info


# ---------------------------------------------------------------------------------------------- IS
def mvt_log_prob(x, mu, L, df):
    """log density of the multivariate t with location mu, scale matrix L Lᵀ, df degrees of freedom."""
    d = mu.numel()
    z = torch.linalg.solve_triangular(L, (x - mu).T, upper=False).T
    m = (z * z).sum(-1)
    const = (math.lgamma((df + d) / 2) - math.lgamma(df / 2) - 0.5 * d * math.log(df * math.pi)
             - torch.log(torch.diagonal(L)).sum())
    return const - 0.5 * (df + d) * torch.log1p(m / df)


def _summarise(lw):
    lw = torch.where(torch.isnan(lw), torch.full_like(lw, -math.inf), lw)
    M = lw.numel()
    a = lw.max()
    w = torch.exp(lw - a)
    mean_w = w.mean()
    return float(a + torch.log(mean_w)), float(w.std() / (math.sqrt(M) * mean_w)), \
        float(w.sum() ** 2 / (w * w).sum() / M), float(w.max() / w.sum())


def student_t_is(target, mu, cov, *, draws: int, df: float = 5.0, seed: int = 0, batch: int = 20000):
    """IS estimate of log Z with a full-covariance multivariate t proposal; returns (log Z, se, ess/M)."""
    d = target.dim
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    L = _chol(cov)
    lws = []
    done = 0
    while done < draws:
        b = min(batch, draws - done)
        z = torch.randn(b, d, generator=g, dtype=torch.float64)
        u = torch.as_tensor(rng.chisquare(df, size=b), dtype=torch.float64)
        x = mu + (z @ L.T) / torch.sqrt(u / df)[:, None]
        lws.append(target.log_prob(x) - mvt_log_prob(x, mu, L, df))
        done += b
    return _summarise(torch.cat(lws))[:3]


def silverman(d: int, k: int) -> float:
    return (4.0 / (d + 2)) ** (1.0 / (d + 4)) * k ** (-1.0 / (d + 4))


class KernelMixture:
    """q(z) = (1 − ε)·(1/K) Σ_k N(z; z_k, h² I) + ε·t_ν(z; 0, c² I) on R^d (module docstring, step 3)."""

    def __init__(self, centres, h: float, eps: float = 0.1, df: float = 5.0, c: float = 1.5):
        self.zk, self.h, self.eps, self.df, self.c = centres, float(h), float(eps), float(df), float(c)
        self.K, self.d = centres.shape
        self._zk2 = (centres * centres).sum(-1)

    def sample(self, n, g: torch.Generator, rng: np.random.Generator):
        d = self.d
        is_t = torch.rand(n, generator=g, dtype=torch.float64) < self.eps
        k = torch.randint(self.K, (n,), generator=g)
        xi = torch.randn(n, d, generator=g, dtype=torch.float64)
        chi = torch.as_tensor(rng.chisquare(self.df, size=n), dtype=torch.float64)
        z_kde = self.zk[k] + self.h * xi
        z_t = self.c * xi / torch.sqrt(chi / self.df)[:, None]
        return torch.where(is_t[:, None], z_t, z_kde)

    def log_prob(self, z, chunk: int = 4000):
        d, out = self.d, []
        for i in range(0, z.shape[0], chunk):
            zc = z[i:i + chunk]
            sq = ((zc * zc).sum(-1)[:, None] + self._zk2[None, :] - 2 * zc @ self.zk.T).clamp_min(0)
            kde = (torch.logsumexp(-0.5 * sq / self.h ** 2, -1) - math.log(self.K)
                   - 0.5 * d * math.log(2 * math.pi * self.h ** 2))
            m = (zc * zc).sum(-1) / self.c ** 2
            lt = (math.lgamma((self.df + d) / 2) - math.lgamma(self.df / 2) - 0.5 * d * math.log(self.df * math.pi)
                  - d * math.log(self.c) - 0.5 * (self.df + d) * torch.log1p(m / self.df))
            out.append(torch.logaddexp(math.log1p(-self.eps) + kde, math.log(self.eps) + lt))
        return torch.cat(out)


def mixture_is_log_weights(w_target, q: KernelMixture, *, draws: int, seed: int, batch: int = 20000):
    """log weights log w(z) − log q(z) of ``draws`` draws from q (w_target: the whitened u-target)."""
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    lws, done = [], 0
    while done < draws:
        b = min(batch, draws - done)
        z = q.sample(b, g, rng)
        lws.append(w_target.log_prob(z) - q.log_prob(z))
        done += b
    return torch.cat(lws)


def mixture_is(w_target, z_pilot, *, draws: int, trial: int, bandwidths, centres: int, eps: float, df: float,
               c: float, seed: int):
    """Defensive kernel-mixture IS (module docstring, step 3). Returns a dict."""
    g = torch.Generator().manual_seed(seed)
    K = min(centres, z_pilot.shape[0])
    zk = z_pilot[torch.randperm(z_pilot.shape[0], generator=g)[:K]]
    hs = silverman(z_pilot.shape[1], K)
    trials = {}
    for f in bandwidths:
        lw = mixture_is_log_weights(w_target, KernelMixture(zk, f * hs, eps, df, c), draws=trial, seed=seed + 1)
        trials[f] = _summarise(lw)
    best = max(trials, key=lambda f: trials[f][2])
    lw = mixture_is_log_weights(w_target, KernelMixture(zk, best * hs, eps, df, c), draws=draws, seed=seed + 2)
    log_Z, se, ess, wmax = _summarise(lw)
    half = lw.numel() // 2
    return {"log_Z": log_Z, "se": se, "ess_fraction": ess, "max_weight_fraction": wmax, "bandwidth_factor": best,
            "h": best * hs, "centres": K, "halves": [_summarise(lw[:half])[0], _summarise(lw[half:])[0]],
            "trials": {str(k): {"log_Z": v[0], "se": v[1], "ess_fraction": v[2]} for k, v in trials.items()}}


# ---------------------------------------------------------------------------------------------- marginalised
def brownian_marginal_log_density(t, za, zb):
    """log ∫ π̃(z_α, z_β, x) dx for the Brownian target, exactly: given the scales, the states are Gaussian,
    x ~ N(0, α² K) with K_st = min(s, t) + 1, and the observed y ~ N(0, α² K_obs + β² I). With K_obs = V Λ Vᵀ,
    log N(y; 0, α²K_obs + β²I) = −(n/2) log 2π − ½ Σ log(α²λ_i + β²) − ½ Σ (Vᵀy)_i² / (α²λ_i + β²).
    Plus the scales' log-normal priors and softplus Jacobians (TARGETS.md §5). Broadcasts over za, zb."""
    obs = t._param("obs", torch.zeros((), dtype=torch.float64))
    mask = t._param("mask", torch.zeros((), dtype=torch.float64)).bool()
    idx = torch.nonzero(mask).flatten().to(torch.float64)
    y = obs[mask]
    lam, V = torch.linalg.eigh(torch.minimum(idx[:, None], idx[None, :]) + 1.0)
    r2 = (V.T @ y) ** 2
    a, b = F.softplus(za), F.softplus(zb)

    def lognormal(lv):
        return -lv - 0.5 * (math.log(2 * math.pi) + 2 * math.log(2.0)) - lv * lv / 8.0

    prior = lognormal(torch.log(a)) + lognormal(torch.log(b)) + F.logsigmoid(za) + F.logsigmoid(zb)
    v = a[..., None] ** 2 * lam + b[..., None] ** 2
    return prior - 0.5 * y.numel() * math.log(2 * math.pi) - 0.5 * torch.log(v).sum(-1) - 0.5 * (r2 / v).sum(-1)


def brownian_quadrature(t, h: float = 0.01, lo: float = -15.0, hi: float = 10.0) -> dict:
    """log Z of the Brownian target: the 30 states integrated out exactly, then the 2-D integral over
    (z_α, z_β) by the trapezoid/midpoint rule on a grid of spacing h over [lo, hi)² (spectrally accurate for
    this smooth, fast-decaying integrand; the result at h and 2h is reported to show convergence)."""
    vals = {}
    for step in (2 * h, h):
        g = torch.arange(lo, hi, step, dtype=torch.float64)
        za, zb = torch.meshgrid(g, g, indexing="ij")
        vals[step] = float(torch.logsumexp(brownian_marginal_log_density(t, za, zb).flatten(), 0)
                           + 2 * math.log(step))
    return {"log_Z": vals[h], "se": max(abs(vals[h] - vals[2 * h]), 1e-9), "coarse": vals[2 * h], "h": h,
            "range": [lo, hi]}


def seeds_marginal_log_density(t, theta, n_grid: int = 801, width: float = 10.0):
    """log ∫ π̃(a, b, s) db for Seeds at theta = (a₀, a₁, a₁₂, a₂, s) (n, 5): the 21 random effects are
    independent given (a, s), b_j ~ N(0, e^{−s}), so the integral is a product of 21 one-dimensional integrals
    ∫ N(b; 0, σ²) Binomial(R_j; N_j, σ(η_j + b)) db, σ = e^{−s/2}, each by the trapezoid rule on b = σv,
    v ∈ [−width, width] (n_grid points). Binomial coefficients, the a and τ priors and the Jacobian as in the
    target (the constant part is taken from the target at a point, so the normalisation matches exactly)."""
    D, R, NmR = (t._param(k, theta) for k in ("D", "R", "NmR"))
    a, s = theta[:, :4], theta[:, 4]
    v = torch.linspace(-width, width, n_grid, dtype=theta.dtype)
    dv = float(v[1] - v[0])
    log_nv = -0.5 * v * v - 0.5 * math.log(2 * math.pi)                 # N(v; 0, 1): b = σv, db N(b) = dv N(v)
    sig = torch.exp(-0.5 * s)
    out = torch.empty(theta.shape[0], dtype=theta.dtype)
    for i in range(0, theta.shape[0], 500):
        eta = (a[i:i + 500] @ D.T)[:, :, None] + sig[i:i + 500, None, None] * v         # (n, 21, G)
        ll = -(R[:, None] * F.softplus(-eta)) - (NmR[:, None] * F.softplus(eta))
        per_plate = torch.logsumexp(ll + log_nv, -1) + math.log(dv)
        out[i:i + 500] = per_plate.sum(-1)
    # the remaining terms: a-prior, τ-prior with Jacobian, binomial coefficients (from the target's definition:
    # log π̃ at b = 0 minus its likelihood and b-prior parts)
    x0 = torch.cat([a, torch.zeros(a.shape[0], t.n_plates, dtype=theta.dtype), s[:, None]], -1)
    eta0 = a @ D.T
    lik0 = -(R * F.softplus(-eta0)).sum(-1) - (NmR * F.softplus(eta0)).sum(-1)
    # log π̃(a, 0, s) = lik0 + [a-, τ-priors, Jacobian, binomial coefficients] + (21/2)(s − log 2π)
    rest = t.log_prob(x0) - lik0 - 0.5 * t.n_plates * (s - math.log(2 * math.pi))
    return out + rest


def seeds_marginal_is(t, pilot_x, *, draws: int, df: float = 5.0, seed: int = 0, batch: int = 20000) -> dict:
    """log Z of Seeds by IS over the 5 coordinates (a, s) only, the 21 random effects integrated out by
    quadrature (:func:`seeds_marginal_log_density`); proposal: multivariate t (df) fitted to the pilot draws'
    (a, s) marginal (a Rao–Blackwellised, 5-dimensional importance sampler)."""
    th = torch.cat([pilot_x[:, :4], pilot_x[:, -1:]], -1)
    mu, L = th.mean(0), _chol(torch.cov(th.T))
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    lws, done = [], 0
    while done < draws:
        b = min(batch, draws - done)
        z = torch.randn(b, 5, generator=g, dtype=torch.float64)
        u = torch.as_tensor(rng.chisquare(df, size=b), dtype=torch.float64)
        y = mu + (z @ L.T) / torch.sqrt(u / df)[:, None]
        lws.append(seeds_marginal_log_density(t, y) - mvt_log_prob(y, mu, L, df))
        done += b
    log_Z, se, ess, wmax = _summarise(torch.cat(lws))
    return {"log_Z": log_Z, "se": se, "ess_fraction": ess, "max_weight_fraction": wmax,
            "method": "Rao-Blackwellised IS: b integrated by quadrature, t(5) over (a, s)"}


def robot_marginal_is(t, *, draws: int, seed: int = 0, grid_step: float = 1e-3, grid_half_width: float = 1.0,
                      batch: int = 1000, fit=None, df: float = 5.0) -> dict:
    """log Z of a planar robot with θ₁ and θ₁₀ integrated out and IS from the prior over θ₂..θ₉.

    p(θ) = R(θ₁) p₀(θ₂..θ₁₀) (rotating the base joint rotates the arm), so with r = |p₀|, ψ = arg p₀ and a goal g
    of norm G and angle γ, N(p; g, σ²I) = (2πσ²)⁻¹ exp(−(r − G)²/(2σ²)) exp(−κ(1 − cos(θ₁ + ψ − γ))), κ = rG/σ²
    (≈ 5·10⁵). The θ₁ integral against N(θ₁; 0, 1) is, by Laplace's method (relative error O(1/κ) ≈ 10⁻⁶),
        √(2π/κ) Σ_k N(γ − ψ + 2πk; 0, 1)        (k = −1, 0, 1).
    The goals are ≥ 9.9 apart (sd 0.01), so the max over goals equals their sum up to e^{−10⁵}: Σ_g. The θ₁₀
    integral (against N(θ₁₀; 0, 0.2²); r depends on θ₁₀ through the last link) is a trapezoid sum on a grid of
    step ``grid_step`` over ±``grid_half_width`` (the (r − G)² peak has width ≥ σ = 0.01 in θ₁₀; halving the step
    changes log Z by < 10⁻¹²; 5 prior sd). The remaining θ₂..θ₉ are drawn from a multivariate t (df) fitted to
    ``fit`` (posterior draws, e.g. the shipped 1-goal reference set: the rotation leaves θ₂..θ₁₀ nearly unchanged,
    so one fit serves both robots), or from their prior N(0, 0.2² I) when ``fit`` is None (ESS ~ 4·10⁻⁴)."""
    inv_var = t._param("inv_var", torch.zeros((), dtype=torch.float64))
    goals = t._param("goals", torch.zeros((), dtype=torch.float64))
    sig = t.likelihood_std
    sd = 1.0 / torch.sqrt(inv_var)
    G, gam = torch.linalg.norm(goals, dim=-1), torch.atan2(goals[:, 1], goals[:, 0])
    v = torch.arange(-grid_half_width, grid_half_width + grid_step / 2, grid_step, dtype=torch.float64)
    log_nv = -0.5 * (v / sd[9]) ** 2 - 0.5 * math.log(2 * math.pi) - torch.log(sd[9])
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    if fit is not None:
        f8 = torch.as_tensor(fit, dtype=torch.float64)[:, 1:9]
        mu_f, L_f = f8.mean(0), _chol(torch.cov(f8.T))
    lws, done = [], 0
    while done < draws:
        b = min(batch, draws - done)
        if fit is None:
            th = torch.randn(b, 8, generator=g, dtype=torch.float64) * sd[1:9]      # θ₂..θ₉ from the prior
            log_corr = torch.zeros(b, dtype=torch.float64)
        else:
            z = torch.randn(b, 8, generator=g, dtype=torch.float64)
            chi = torch.as_tensor(rng.chisquare(df, size=b), dtype=torch.float64)
            th = mu_f + (z @ L_f.T) / torch.sqrt(chi / df)[:, None]
            log_prior = (-0.5 * (th / sd[1:9]) ** 2 - 0.5 * math.log(2 * math.pi) - torch.log(sd[1:9])).sum(-1)
            log_corr = log_prior - mvt_log_prob(th, mu_f, L_f, df)
        phi = torch.cat([torch.zeros(b, 1, dtype=torch.float64), torch.cumsum(th, -1)], -1)   # links 1..9
        P9 = torch.stack([torch.cos(phi).sum(-1), torch.sin(phi).sum(-1)], -1)
        phi10 = phi[:, -1:] + v                                                       # (b, V)
        px, py = P9[:, :1] + torch.cos(phi10), P9[:, 1:] + torch.sin(phi10)
        r, psi = torch.sqrt(px * px + py * py), torch.atan2(py, px)
        lt = []
        for gi in range(goals.shape[0]):
            kappa = r * G[gi] / sig ** 2
            base = torch.remainder(gam[gi] - psi + math.pi, 2 * math.pi) - math.pi
            lk = torch.stack([-0.5 * (base + 2 * math.pi * k) ** 2 for k in (-1, 0, 1)]).logsumexp(0)
            lt.append(lk - 0.5 * math.log(2 * math.pi) + 0.5 * torch.log(2 * math.pi / kappa)
                      - math.log(2 * math.pi * sig ** 2) - (r - G[gi]) ** 2 / (2 * sig ** 2))
        integrand = torch.stack(lt).logsumexp(0) + log_nv
        lws.append(torch.logsumexp(integrand, -1) + math.log(grid_step) + log_corr)
        done += b
    log_Z, se, ess, wmax = _summarise(torch.cat(lws))
    return {"log_Z": log_Z, "se": se, "ess_fraction": ess, "max_weight_fraction": wmax, "grid_step": grid_step,
            "method": "θ₁ (Laplace, rel. error ~1e-6) and θ₁₀ (grid) integrated out; IS over θ₂..θ₉ from "
                      + ("the prior" if fit is None else f"a t({df:g}) fitted to posterior draws")}


def robot_4goal_from_1goal(log_Z1: float, theta1) -> dict:
    """log Z of the 4-goal robot from the 1-goal one. The goals are the 1-goal goal g₁ = (7, 0) rotated by
    φ ∈ {0, π, π/2, −π/2}; rotating θ₁ by φ rotates the end effector by φ, and the likelihood peaks (sd 0.01)
    are ≥ 9.9 apart, so max_g ≈ Σ_g (the overlap is ~exp(−10⁵)). Substituting θ₁ → θ₁ − φ,
        Z₄ = Σ_φ Z₁ · E_{π₁}[N(θ₁ + φ; 0, 1) / N(θ₁; 0, 1)] = Z₁ Σ_φ E_{π₁}[exp(−φθ₁ − φ²/2)],
    with θ₁ the first coordinate of 1-goal posterior draws (``theta1``). Returns the value and the delta-method
    standard error of the expectation part (the error of log Z₁ adds)."""
    th = torch.as_tensor(theta1, dtype=torch.float64).flatten()
    terms = torch.stack([torch.exp(-phi * th - 0.5 * phi * phi) for phi in (0.0, math.pi, math.pi / 2, -math.pi / 2)])
    tot = terms.sum(0)
    m = tot.mean()
    return {"log_Z": log_Z1 + float(torch.log(m)), "se_expectation": float(tot.std() / (math.sqrt(th.numel()) * m)),
            "mode_fractions": (terms.mean(1) / m).tolist()}


# ---------------------------------------------------------------------------------------------- SMC
def smc_runs(target, mu, sd, *, seeds: int, particles: int, inflate: float, n_mcmc_steps: int,
             n_leapfrog: int, cess_target: float, seed0: int = 1000, kernel: str = "hmc"):
    """SMC with the diagonal Gaussian reference N(mu, (inflate·sd)²) on ``target`` (inflate·sd may be a scalar
    with mu a vector). Returns (mean log Ẑ, se across seeds, per-seed values, per-seed #temperatures)."""
    vals, temps = [], []
    scale = inflate * sd if isinstance(sd, torch.Tensor) else torch.full_like(mu, inflate * sd)
    for k in range(seeds):
        s = sf.sample(target, "smc", n=particles, seed=seed0 + k, kernel=kernel, n_mcmc_steps=n_mcmc_steps,
                      n_leapfrog=n_leapfrog, cess_target=cess_target, ref_loc=mu.tolist(),
                      ref_scale=scale.tolist(), dtype="float64")
        vals.append(float(s.info["log_Z"]))
        temps.append(int(s.info["n_temperatures"]))
    v = torch.tensor(vals, dtype=torch.float64)
    se = float(v.std() / math.sqrt(len(vals))) if len(vals) > 1 else math.nan
    smc_runs.last = s  # the last run's Samples (particles and log weights), for diagnostics
    return float(v.mean()), se, vals, temps


# ---------------------------------------------------------------------------------------------- main
def run_target(name: str, a) -> dict:
    t = sf.targets.get(name)
    d = t.dim
    reparam = REPARAM.get(name, lambda t: Reparam())(t)
    out = {"dim": d, "reparam": reparam.name}
    t0 = time.perf_counter()
    need_pilot = not (a.smc_reference in ("prior", "laplace") and a.is_draws == 0
                      and (not a.second_smc or name == "lgcp") and not (name == "seeds" and a.marginal))
    if need_pilot:
        u, m, C, pinfo = pilot_fit(t, reparam, chains=a.pilot_chains, warmup=a.pilot_warmup, steps=a.pilot_steps,
                                   seed=a.pilot_seed, n_leapfrog=a.pilot_leapfrog)
        out["pilot"] = pinfo
        tu = Transformed(t, reparam)
        w = Transformed(tu, Affine(m, C, "pilot-whitened"))
        z = torch.linalg.solve_triangular(C, (u - m).T, upper=False).T
    t1 = time.perf_counter()
    if a.is_draws > 0:
        out["mix_is"] = mixture_is(w, z, draws=a.is_draws, trial=a.is_trial, bandwidths=a.bandwidths,
                                   centres=a.kde_centres, eps=a.defensive, df=a.df, c=a.t_scale, seed=a.is_seed)
        # the original cross-check: a multivariate t fitted to the pilot (x-coordinates)
        xs, _ = reparam.to_x(u)
        if a.t_draws > 0:
            tz = student_t_is(t, xs.mean(0), torch.cov(xs.T).reshape(d, d), draws=a.t_draws, df=a.df,
                              seed=a.is_seed + 7)
            out["t_is"] = {"log_Z": tz[0], "se": tz[1], "ess_fraction": tz[2]}
    if name == "brownian" and a.marginal:
        out["marginal"] = brownian_quadrature(t)
        out["marginal"]["method"] = "states integrated out exactly (Gaussian), 2-D quadrature over the scales"
    if name.startswith("planar_robot") and a.marginal:
        try:
            fit = sf.targets.get("planar_robot_1goal").reference_samples()
        except Exception:  # no reference file: fall back to the prior proposal
            fit = None
        out["marginal"] = robot_marginal_is(t, draws=a.marginal_draws, seed=a.is_seed + 13, fit=fit, df=a.df)
    if name == "seeds" and a.marginal:
        out["marginal"] = seeds_marginal_is(t, reparam.to_x(u)[0], draws=a.marginal_draws, df=a.df,
                                            seed=a.is_seed + 11)
    t2 = time.perf_counter()
    runs = []
    if a.seeds > 0:
        runs.append(("smc", a.smc_reference, a.smc_kernel, a.seed0, a.n_mcmc_steps))
    if a.second_smc:
        other = "laplace" if name == "lgcp" else "pilot" if a.smc_reference == "prior" else "prior"
        kernel2 = a.second_smc_kernel or ("mala" if a.smc_kernel == "hmc" else "hmc")
        runs.append(("smc2", other, kernel2, a.seed0 + 500, a.second_smc_steps))
    for key, reference, kernel, seed0, steps in runs:
        if reference == "prior":
            sw = WhitenedLGCP(t) if name == "lgcp" else Transformed(t, PRIOR_WHITENING[name](t))
            inflate, ref = 1.0, "prior N(0, I) in prior-whitened coordinates"
        elif reference == "laplace":
            if name != "lgcp":
                raise SystemExit("--smc-reference laplace: only for the log-concave lgcp target")
            sw = WhitenedLGCP(t, *lgcp_laplace(t), name="lgcp-laplace-whitened")
            inflate, ref = a.inflate, f"N(0, {a.inflate}² I) in Laplace-whitened coordinates (log-concave target)"
        else:
            sw, inflate = w, a.inflate
            ref = f"N(0, {a.inflate}² I) in pilot-whitened coordinates"
        smc_z, smc_se, vals, temps = smc_runs(sw, torch.zeros(d, dtype=torch.float64), 1.0, seeds=a.seeds,
                                              particles=a.particles, inflate=inflate, n_mcmc_steps=steps,
                                              n_leapfrog=a.n_leapfrog, cess_target=a.cess_target, seed0=seed0,
                                              kernel=kernel)
        out[key] = {"log_Z": smc_z, "se": smc_se, "runs": vals, "n_temperatures": temps, "reference": ref,
                    "kernel": kernel, "n_mcmc_steps": steps}
        if name == "planar_robot_1goal" and key == "smc":
            # the 4-goal log Z implied by this one (robot_4goal_from_1goal), E over the last run's weighted
            # particles (x-coordinates), over the pilot draws and over the shipped reference draws
            last = smc_runs.last
            W = torch.softmax(last.log_weights.to(torch.float64), 0)
            x_last = sw.reparam.to_x(last.x.to(torch.float64))[0]
            idx = torch.multinomial(W, 20 * a.particles, replacement=True,
                                    generator=torch.Generator().manual_seed(0))
            implied = {"smc_particles": robot_4goal_from_1goal(smc_z, x_last[idx, 0])}
            if need_pilot:
                implied["pilot_draws"] = robot_4goal_from_1goal(smc_z, reparam.to_x(u)[0][:, 0])
            try:
                implied["reference_draws"] = robot_4goal_from_1goal(smc_z, t.reference_samples()[:, 0])
            except Exception as e:  # data file not available
                implied["reference_draws"] = str(e)
            out["implied_4goal"] = implied
    t3 = time.perf_counter()
    out["wall_s"] = {"pilot": t1 - t0, "is": t2 - t1, "smc": t3 - t2}
    for key in ("mix_is", "marginal", "smc2"):
        if "smc" in out and key in out:
            diff = out["smc"]["log_Z"] - out[key]["log_Z"]
            out[f"z_{key}"] = abs(diff) / math.sqrt(out["smc"]["se"] ** 2 + out[key]["se"] ** 2)
    return out


def _fmt(r, key):
    v = r.get(key)
    return f"{v['log_Z']:11.4f} ± {v['se']:.4f}" if v else f"{'-':>20s}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--targets", default=",".join(LOGISTIC), help="comma-separated target names")
    p.add_argument("--seeds", type=int, default=4, help="SMC seeds (0: no SMC)")
    p.add_argument("--seed0", type=int, default=1000, help="SMC seeds are seed0, seed0+1, ...")
    p.add_argument("--particles", type=int, default=2048)
    p.add_argument("--n-mcmc-steps", type=int, default=10)
    p.add_argument("--n-leapfrog", type=int, default=5)
    p.add_argument("--cess-target", type=float, default=0.95)
    p.add_argument("--inflate", type=float, default=1.5, help="pilot reference: N(0, inflate² I) whitened")
    p.add_argument("--smc-reference", choices=["pilot", "prior", "laplace"], default="pilot",
                   help="laplace: lgcp only (log-concave posterior), Newton mode + Hessian in prior-whitened space")
    p.add_argument("--smc-kernel", choices=["hmc", "mala"], default="hmc")
    p.add_argument("--second-smc", action="store_true",
                   help="also run SMC with the other reference (pilot <-> prior) and the other kernel (hmc <-> mala), "
                        "seeds seed0+500, ...")
    p.add_argument("--second-smc-kernel", choices=["hmc", "mala"], default=None,
                   help="kernel of the second SMC (default: the other one)")
    p.add_argument("--second-smc-steps", type=int, default=20, help="MCMC moves per temperature of the second SMC")
    p.add_argument("--pilot-chains", type=int, default=64)
    p.add_argument("--pilot-warmup", type=int, default=600)
    p.add_argument("--pilot-steps", type=int, default=600)
    p.add_argument("--pilot-leapfrog", type=int, default=10)
    p.add_argument("--pilot-seed", type=int, default=0)
    p.add_argument("--is-draws", type=int, default=200_000, help="mixture-IS draws (0: no IS, no pilot with "
                                                                   "--smc-reference prior)")
    p.add_argument("--is-trial", type=int, default=20_000)
    p.add_argument("--is-seed", type=int, default=1)
    p.add_argument("--bandwidths", default="0.5,0.8,1.1,1.5", help="factors of Silverman's bandwidth to try")
    p.add_argument("--kde-centres", type=int, default=2000)
    p.add_argument("--defensive", type=float, default=0.1, help="weight ε of the broad t component")
    p.add_argument("--t-scale", type=float, default=1.5, help="scale c of the broad t component (whitened)")
    p.add_argument("--df", type=float, default=5.0)
    p.add_argument("--t-draws", type=int, default=50_000, help="draws of the plain multivariate-t IS (0: skip)")
    p.add_argument("--no-marginal", dest="marginal", action="store_false",
                   help="skip the marginalised estimators (Brownian: exact + 2-D quadrature; Seeds: Rao-Blackwellised IS)")
    p.add_argument("--marginal-draws", type=int, default=50_000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    a.bandwidths = [float(v) for v in str(a.bandwidths).split(",")]
    torch.set_num_threads(a.threads)
    torch.set_default_dtype(torch.float64)

    results = {}
    for name in [n.strip() for n in a.targets.split(",") if n.strip()]:
        r = run_target(name, a)
        r["config"] = {k: v for k, v in vars(a).items()}
        results[name] = r
        print(json.dumps({name: r}, default=str), flush=True)
        if a.out:
            with open(a.out, "w") as f:
                json.dump(results, f, indent=1, default=str)
    print()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); SMC: {a.seeds} seeds × {a.particles} "
          f"particles, HMC ({a.n_mcmc_steps} moves × {a.n_leapfrog} leapfrog), cess {a.cess_target}, "
          f"reference {a.smc_reference}; mixture IS: {a.is_draws} draws")
    print(f"{'target':30s} {'d':>4s}  {'SMC log Z ± se':>20s}  {'mixture IS ± se':>20s}  {'|Δ|/se':>6s}  "
          f"{'ESS':>6s}  {'marginalised ± se':>20s}  {'|Δ|/se':>6s}  {'t-IS ± se':>20s}")
    for name, r in results.items():
        ess = r.get("mix_is", {}).get("ess_fraction", math.nan)
        print(f"{name:30s} {r['dim']:4d}  {_fmt(r, 'smc')}  {_fmt(r, 'mix_is')}  {r.get('z_mix_is', math.nan):6.2f}  "
              f"{ess:6.3f}  {_fmt(r, 'marginal')}  {r.get('z_marginal', math.nan):6.2f}  {_fmt(r, 't_is')}")
        if "implied_4goal" in r:
            print(f"{'':30s} {'':4s}  implied 4-goal log Z: " + ", ".join(
                f"{k} {v['log_Z']:.4f} (±{v['se_expectation']:.4f})" for k, v in r["implied_4goal"].items()
                if isinstance(v, dict)))
        if "smc2" in r:
            print(f"{'':30s} {'':4s}  second SMC ({r['smc2']['reference']}, {r['smc2']['kernel']}): "
                  f"{_fmt(r, 'smc2')}  |Δ|/se {r.get('z_smc2', math.nan):.2f}")
    return results


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main(sys.argv[1:])
