"""Well potentials with separable coordinates: ManyWell, the multi-well of Richter & Berner, a 1-D double well.

All three are products of 1-D factors, so log Z is a sum of 1-D quadratures (``scipy.integrate.quad``) and exact
draws come from 1-D rejection sampling (:class:`Rejection1D`: a two-component Gaussian proposal and a bound on
f̃/q found numerically on a fine grid, with a margin).

**ManyWell** (Noé, Olsson, Köhler & Wu, "Boltzmann generators", Science 2019 (double-well pair);
Midgley et al., "Flow annealed importance sampling bootstrap", ICLR 2023 (ManyWell); Beyond-ELBOs
``targets/many_well.py``; gfn-diffusion ``many_well.py``). Coordinates in consecutive pairs (x_{2k}, x_{2k+1}):

    log π̃(x) = Σ_k [ 0.5·x_{2k} + 6·x_{2k}² − x_{2k}⁴ − ½·x_{2k+1}² ],

    log Z = (d/2)·(log Z₁ + ½ log 2π),   Z₁ = ∫ exp(0.5u + 6u² − u⁴) du ≈ 11784.509265128.

Unnormalised (log_prob is the formula above, log Z carries the constant). d = 32, 50, 64 are the benchmarks;
any even d works. Exact draws: x_{2k} by rejection from 0.2·N(−1.7, 0.5²) + 0.8·N(1.7, 0.5²) (the proposal of
gfn-diffusion, whose bound 3·Z₁ is replaced by a numerically verified one), x_{2k+1} ~ N(0, 1).

**Multi-well** (Richter & Berner, "Improved sampling via learned diffusions", ICLR 2024; sde_sampler
``distr/double_well.py`` class ``MultiWell``): m double-well coordinates with separation δ,

    log π̃(x) = −Σ_{i<m} (x_i² − δ)² − ½ Σ_{i≥m} x_i²,

    log Z = m·log ∫ e^{−(u² − δ)²} du + (d − m)/2 · log 2π    (2^m modes for δ > 0).

Benchmarks: (d, m, δ) = (5, 5, 4) (log Z = −0.5410555128795) and (50, 5, 2) (log Z = 42.8172426775).

**1-D double well** (registry ``double_well_1d``): log π̃(x) = −a·(x² − 1)² + tilt·x, wells at x ≈ ±1,
barrier height a (in units of log-density) for tilt = 0; a tilt ≠ 0 makes the wells unequal. log Z by quadrature.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from .base import LogZ, Target, TargetInputError
from .registry import register

__all__ = ["Rejection1D", "ManyWell", "MultiWell", "DoubleWell1D"]

_LOG_2PI = math.log(2 * math.pi)
_trapezoid = getattr(np, "trapezoid", None) or np.trapz   # numpy < 2 has only trapz
_QUAD_SOURCE = "1-D quadrature (scipy.integrate.quad)"


# ---------------------------------------------------------------------------------------------- 1-D tools
def log_quad(log_f, lo: float, hi: float, points=()) -> float:
    """log ∫_lo^hi exp(log_f(u)) du by adaptive quadrature (relative accuracy ~1e-13), scaled by the grid max."""
    from scipy.integrate import quad
    u = np.linspace(lo, hi, 20001)
    shift = float(np.max(log_f(u)))
    pts = sorted(p for p in points if lo < p < hi)
    val, _ = quad(lambda v: math.exp(float(log_f(np.asarray(v))) - shift), lo, hi, points=pts or None,
                  epsabs=0.0, epsrel=1e-13, limit=500)
    return shift + math.log(val)


class Rejection1D:
    """Exact rejection sampling from a 1-D unnormalised density f̃ = exp(log_f).

    Proposal q = Σ_j p_j N(m_j, s_j²). The bound log M ≥ sup_u (log f̃(u) − log q(u)) is the maximum over a grid of
    ``n_grid`` points on [lo, hi] plus ``margin`` (far above the grid's discretisation error for these smooth
    ratios); construction fails unless the ratio has dropped by ≥ 30 nats at both ends of the grid (so the sup
    lies inside it). Acceptance rate Z/M. Draws are an i.i.d. stream: the first n accepted proposals.
    """

    def __init__(self, log_f_np, log_f_torch, weights, means, stds, *, lo: float, hi: float,
                 n_grid: int = 400001, margin: float = 1e-3):
        self.log_f_np, self.log_f_torch = log_f_np, log_f_torch
        p = np.asarray(weights, dtype=np.float64)
        self.p = p / p.sum()
        self.m = np.asarray(means, dtype=np.float64)
        self.s = np.asarray(stds, dtype=np.float64)
        u = np.linspace(lo, hi, n_grid)
        with np.errstate(divide="ignore"):
            lf = log_f_np(u)
        lr = lf - self._log_q_np(u)
        i = int(np.argmax(lr))
        top = float(lr[i])
        if not (np.isfinite(top) and lr[0] < top - 30 and lr[-1] < top - 30):
            raise RuntimeError("Rejection1D: the ratio f/q does not decay inside the grid; widen [lo, hi]")
        self.log_M = top + margin
        ok = np.isfinite(lf)
        self.log_Z_grid = float(np.log(_trapezoid(np.exp(lf[ok] - lf[ok].max()), u[ok])) + lf[ok].max())
        self.acceptance = math.exp(self.log_Z_grid - self.log_M)

    def _log_q_np(self, u):
        z = (u[:, None] - self.m) / self.s
        comp = np.log(self.p) - 0.5 * z * z - np.log(self.s) - 0.5 * _LOG_2PI
        mx = comp.max(1, keepdims=True)
        return (mx + np.log(np.exp(comp - mx).sum(1, keepdims=True)))[:, 0]

    def log_ratio_bound_violation(self, u: np.ndarray) -> float:
        """max(log f̃ − log q − log M) over ``u`` (≤ 0 where the bound holds): for tests."""
        with np.errstate(divide="ignore"):
            return float(np.max(self.log_f_np(u) - self._log_q_np(u) - self.log_M))

    def sample(self, n: int, generator, device) -> torch.Tensor:
        """``n`` exact draws, float64, shape (n,)."""
        opts = dict(device=device, dtype=torch.float64)
        p, m, s = (torch.as_tensor(a, **opts) for a in (self.p, self.m, self.s))
        logp = torch.log(p)
        out, have = [], 0
        while have < n:
            k = int((n - have) / self.acceptance * 1.15) + 64
            j = torch.multinomial(p, k, replacement=True, generator=generator)
            u = m[j] + s[j] * torch.randn(k, generator=generator, **opts)
            log_u = torch.log(torch.rand(k, generator=generator, **opts))
            log_q = None
            for c in range(len(self.p)):          # a few components: elementwise logaddexp beats logsumexp
                z = (u - m[c]) / s[c]
                lc = (logp[c] - torch.log(s[c]) - 0.5 * _LOG_2PI) - 0.5 * z * z
                log_q = lc if log_q is None else torch.logaddexp(log_q, lc)
            acc = log_u < self.log_f_torch(u) - self.log_M - log_q
            out.append(u[acc])
            have += int(acc.sum())
        return torch.cat(out)[:n] if out else torch.zeros(0, **opts)


def _proposal_from_grid(log_f_np, lo: float, hi: float, split: float = 0.0, widen: float = 1.2,
                        defensive: float = 0.05):
    """A Gaussian-mixture proposal for a double well: one component per side of ``split`` with that side's mass,
    mean and sd (sd widened by ``widen``), plus a broad "defensive" component (weight ``defensive``, the overall
    mean, 1.5 × the overall sd) that covers the barrier region between the wells."""
    u = np.linspace(lo, hi, 200001)
    lf = log_f_np(u)
    f = np.exp(lf - lf.max())

    def moments(fs, us):
        mass = _trapezoid(fs, us)
        mean = _trapezoid(fs * us, us) / mass
        return mass, mean, math.sqrt(max(_trapezoid(fs * (us - mean) ** 2, us) / mass, 1e-24))

    w, m, s = [], [], []
    for side in (u < split, u >= split):
        mass, mean, sd = moments(f[side], u[side])
        w.append(mass)
        m.append(mean)
        s.append(widen * sd)
    w = np.asarray(w)
    w = (1.0 - defensive) * np.maximum(w / w.sum(), 1e-6)   # keep both wells alive (the bound is checked anyway)
    _, mean_all, sd_all = moments(f, u)
    return np.append(w, defensive), np.asarray(m + [mean_all]), np.asarray(s + [1.5 * sd_all])


# ---------------------------------------------------------------------------------------------- ManyWell
def _manywell_u_np(u):
    return 0.5 * u + 6.0 * u ** 2 - u ** 4


def _manywell_u_torch(u):
    u2 = u * u
    return 0.5 * u + u2 * (6.0 - u2)


@functools.lru_cache(maxsize=None)
def manywell_log_Z1() -> float:
    """log Z₁ = log ∫ exp(0.5u + 6u² − u⁴) du (quadrature); Z₁ ≈ 11784.509265128."""
    return log_quad(_manywell_u_np, -8.0, 8.0, points=(-1.7, 0.0, 1.7))


@functools.lru_cache(maxsize=None)
def _manywell_sampler() -> Rejection1D:
    return Rejection1D(_manywell_u_np, _manywell_u_torch, [0.2, 0.8], [-1.7, 1.7], [0.5, 0.5], lo=-8.0, hi=8.0)


class ManyWell(Target):
    """ManyWell in even dimension d (d/2 independent double-well pairs); unnormalised, exact log Z."""

    name = "manywell"
    version = "1"

    def __init__(self, dim: int = 32):
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 2 or dim % 2:
            raise TargetInputError(f"ManyWell needs an even dim >= 2, got {dim!r}")
        log_Z = 0.5 * dim * (manywell_log_Z1() + 0.5 * _LOG_2PI)
        super().__init__(dim, log_Z=LogZ(log_Z, 0.0, _QUAD_SOURCE + ", per pair: (d/2)(log Z1 + ½ log 2π)"),
                         box=(-3.0, 3.0))

    def _log_prob(self, x):
        sq = x * x
        a2 = sq[..., 0::2]
        return (0.5 * x[..., 0::2] + a2 * (6.0 - a2)).sum(-1) - 0.5 * sq[..., 1::2].sum(-1)

    def _score(self, x):
        g = torch.empty_like(x)
        a = x[..., 0::2]
        g[..., 0::2] = 0.5 + a * (12.0 - 4.0 * a * a)
        g[..., 1::2] = -x[..., 1::2]
        return g

    @property
    def rejection_sampler(self) -> Rejection1D:
        return _manywell_sampler()

    def _sample(self, n, generator, device):
        h = self.dim // 2
        a = _manywell_sampler().sample(n * h, generator, device).reshape(n, h)
        b = torch.randn(n, h, generator=generator, device=device, dtype=torch.float64)
        return torch.stack([a, b], -1).reshape(n, self.dim)


# ---------------------------------------------------------------------------------------------- multi-well
def _dw_np(delta):
    return lambda u: -(u * u - delta) ** 2


@functools.lru_cache(maxsize=None)
def multiwell_log_Z1(delta: float) -> float:
    """log ∫ exp(−(u² − δ)²) du (quadrature)."""
    r = math.sqrt(delta) if delta > 0 else 0.0
    L = r + 6.0
    return log_quad(_dw_np(delta), -L, L, points=(-r, 0.0, r))


@functools.lru_cache(maxsize=None)
def _multiwell_sampler(delta: float) -> Rejection1D:
    r = math.sqrt(delta) if delta > 0 else 0.0
    L = r + 6.0
    f = _dw_np(delta)
    w, m, s = _proposal_from_grid(f, -L, L)
    return Rejection1D(f, lambda u: -torch.square(u * u - delta), w, m, s, lo=-L, hi=L)


class MultiWell(Target):
    """Richter & Berner's multi-well: m double wells (x_i² − δ)² and d − m standard normal coordinates."""

    name = "multiwell"
    version = "1"

    def __init__(self, dim: int = 5, m: int = 5, delta: float = 4.0):
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
            raise TargetInputError(f"dim must be a positive integer, got {dim!r}")
        if not isinstance(m, int) or isinstance(m, bool) or not 0 <= m <= dim:
            raise TargetInputError(f"m (number of double-well coordinates) must be an integer in [0, dim={dim}], "
                                   f"got {m!r}")
        delta = float(delta)
        if not math.isfinite(delta):
            raise TargetInputError(f"delta must be finite, got {delta!r}")
        log_Z = m * multiwell_log_Z1(delta) + 0.5 * (dim - m) * _LOG_2PI
        r = math.sqrt(delta) if delta > 0 else 0.0
        half = [r + 1.5] * m + [4.0] * (dim - m)
        super().__init__(dim, log_Z=LogZ(log_Z, 0.0, _QUAD_SOURCE + " of the 1-D double well, times m"),
                         box=([-h for h in half], half))
        self.m, self.delta = m, delta

    def _log_prob(self, x):
        a, b = x[..., :self.m], x[..., self.m:]
        e = a * a - self.delta
        return -(e * e).sum(-1) - 0.5 * (b * b).sum(-1)

    def _score(self, x):
        a, b = x[..., :self.m], x[..., self.m:]
        return torch.cat([-4.0 * a * (a * a - self.delta), -b], -1)

    @property
    def rejection_sampler(self) -> Rejection1D:
        return _multiwell_sampler(self.delta)

    def _sample(self, n, generator, device):
        a = _multiwell_sampler(self.delta).sample(n * self.m, generator, device).reshape(n, self.m)
        b = torch.randn(n, self.dim - self.m, generator=generator, device=device, dtype=torch.float64)
        return torch.cat([a, b], -1)


# ---------------------------------------------------------------------------------------------- 1-D double well
def _dw1_np(a, tilt):
    return lambda u: -a * (u * u - 1.0) ** 2 + tilt * u


@functools.lru_cache(maxsize=None)
def _dw1_bounds(a: float, tilt: float) -> float:
    # |u| beyond which −a(u²−1)² + tilt·u is 120 nats below its value at ±1
    L = 2.0
    while -a * (L * L - 1) ** 2 + abs(tilt) * L > -abs(tilt) - 120:
        L *= 1.25
    return L


@functools.lru_cache(maxsize=None)
def _dw1_log_Z(a: float, tilt: float) -> float:
    L = _dw1_bounds(a, tilt)
    return log_quad(_dw1_np(a, tilt), -L, L, points=(-1.0, 0.0, 1.0))


@functools.lru_cache(maxsize=None)
def _dw1_sampler(a: float, tilt: float) -> Rejection1D:
    L = _dw1_bounds(a, tilt)
    f = _dw1_np(a, tilt)
    w, m, s = _proposal_from_grid(f, -L, L)
    return Rejection1D(f, lambda u: -a * torch.square(u * u - 1.0) + tilt * u, w, m, s, lo=-L, hi=L)


class DoubleWell1D(Target):
    """log π̃(x) = −a·(x² − 1)² + tilt·x on R (unnormalised; log Z by quadrature)."""

    name = "double_well_1d"
    version = "1"

    def __init__(self, a: float = 4.0, tilt: float = 0.0):
        a, tilt = float(a), float(tilt)
        if not (a > 0 and math.isfinite(a)) or not math.isfinite(tilt):
            raise TargetInputError(f"a must be positive and tilt finite, got a={a!r}, tilt={tilt!r}")
        L = min(_dw1_bounds(a, tilt), 1.0 + 3.0 / math.sqrt(a) + abs(tilt))
        super().__init__(1, log_Z=LogZ(_dw1_log_Z(a, tilt), 0.0, _QUAD_SOURCE), box=(-L, L))
        self.a, self.tilt = a, tilt

    def _log_prob(self, x):
        u = x[..., 0]
        e = u * u - 1.0
        return -self.a * e * e + self.tilt * u

    def _score(self, x):
        return -4.0 * self.a * x * (x * x - 1.0) + self.tilt

    @property
    def rejection_sampler(self) -> Rejection1D:
        return _dw1_sampler(self.a, self.tilt)

    def _sample(self, n, generator, device):
        return _dw1_sampler(self.a, self.tilt).sample(n, generator, device)[:, None]


register("manywell", ManyWell,
         "ManyWell: d/2 pairs 0.5x+6x²−x⁴ − y²/2 (Noé et al. 2019; Midgley et al. 2023); exact log Z",
         variants=({"dim": 32}, {"dim": 50}, {"dim": 64}))
register("multiwell", MultiWell,
         "Multi-well of Richter & Berner 2024: −Σ_{i<m}(x_i²−δ)² − ½Σ_{i≥m}x_i²; exact log Z",
         variants=({"dim": 5, "m": 5, "delta": 4.0}, {"dim": 50, "m": 5, "delta": 2.0}))
register("double_well_1d", DoubleWell1D, "1-D double well −a(x²−1)² + tilt·x; exact log Z by quadrature",
         variants=({"a": 4.0}, {"a": 4.0, "tilt": 1.0}))
