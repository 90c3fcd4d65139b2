"""The synthetic benchmark zoo: Gaussian, mixtures, Student-t mixture, funnel, wells, rings.

Every registered variant is checked for: its log Z against an independent integral of its own log_prob (2-D
grids, per-coordinate grids for separable targets, importance sampling with a proposal written here, or scipy's
densities), its analytic score against autograd, its exact sampler's moments (and, for 1-D factors, a KS test)
against values computed here by quadrature, determinism of the sampler for a seed, batching over leading dims
and the error for a wrong trailing dimension. All in float64.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, special, stats

import sampleflow.targets as T
from sampleflow.targets import GaussianMixture, LogZ, TargetInputError
from sampleflow.targets.data import load_array
from sampleflow.targets.gaussian import Gaussian
from sampleflow.targets.student_t import StudentTMixture

F64 = torch.float64
_trapz = getattr(np, "trapezoid", None) or np.trapz

EXPECTED_VARIANTS = {
    "gaussian": [{"dim": 2}, {"dim": 10}, {"dim": 50}],
    "gmm9": [{}],
    "gmm25": [{}],
    "mog40": [{"dim": 2}, {"dim": 50}],
    "gmm40_fab": [{}],
    "mos10": [{"dim": 2}, {"dim": 50}],
    "funnel": [{"dim": 10}],
    "manywell": [{"dim": 32}, {"dim": 50}, {"dim": 64}],
    "multiwell": [{"dim": 5, "m": 5, "delta": 4.0}, {"dim": 50, "m": 5, "delta": 2.0}],
    "double_well_1d": [{"a": 4.0}, {"a": 4.0, "tilt": 1.0}],
    "rings": [{}],
}
VARIANTS = [(name, v) for name, vs in EXPECTED_VARIANTS.items() for v in vs]
IDS = [name + "".join(f"-{k}{val}" for k, val in v.items()) for name, v in VARIANTS]
MIXTURES = [(n, v) for n, v in VARIANTS if n in ("gmm9", "gmm25", "mog40", "gmm40_fab", "mos10")]
MIX_IDS = [IDS[VARIANTS.index(nv)] for nv in MIXTURES]

_cache: dict = {}


def target(name, params):
    key = (name, tuple(sorted(params.items())))
    if key not in _cache:
        _cache[key] = T.get(name, **params)
    return _cache[key]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_registered_variants():
    by_name = {e.name: e for e in T.entries()}
    for name, variants in EXPECTED_VARIANTS.items():
        assert name in by_name, name
        assert [dict(v) for v in by_name[name].variants] == variants, name


@pytest.mark.parametrize("name,params", VARIANTS, ids=IDS)
def test_metadata(name, params):
    t = target(name, params)
    assert t.name == name and t.version == "1"
    assert isinstance(t.log_Z, LogZ) and t.log_Z.exact and t.log_Z.source
    assert math.isfinite(t.log_Z.value)
    low, high = t.box
    assert low.shape == high.shape == (t.dim,) and bool((low < high).all())
    assert t.has_exact_sampler
    if "dim" in params:
        assert t.dim == params["dim"]


# ============================================================================ log Z, independently
def _trapz2(f, g0, g1):
    return _trapz(_trapz(f, g1, axis=1), g0)


def _grid_integrals(t, lo, hi, h):
    """(log ∫ π̃, E_π[log π̃]) over a 2-D box by the trapezoid rule (spectrally accurate for these smooth,
    rapidly decaying integrands)."""
    g0 = torch.arange(lo[0], hi[0] + h / 2, h, dtype=F64)
    g1 = torch.arange(lo[1], hi[1] + h / 2, h, dtype=F64)
    X = torch.stack(torch.meshgrid(g0, g1, indexing="ij"), -1)
    lp = t.log_prob(X).numpy()
    mx = lp.max()
    f = np.exp(lp - mx)
    z = _trapz2(f, g0.numpy(), g1.numpy())
    return mx + math.log(z), _trapz2(f * lp, g0.numpy(), g1.numpy()) / z


def _grid_log_integral(t, lo, hi, h):
    return _grid_integrals(t, lo, hi, h)[0]


def _separable_integrals(t, lo=-10.0, hi=10.0, n=2001):
    """(log ∫ π̃, E_π[log π̃]) for a target additively separable in its coordinates: log_prob(0) plus the sum
    of 1-D grid integrals of g_j(u) = log_prob(u·e_j) − log_prob(0). Separability is checked at random points."""
    d = t.dim
    zero = torch.zeros(1, d, dtype=F64)
    lp0 = float(t.log_prob(zero))
    x = torch.randn(50, d, generator=gen(3), dtype=F64) * 1.5
    parts = torch.stack([t.log_prob(torch.diag_embed(x)[:, j]) for j in range(d)], -1)   # x_j·e_j
    torch.testing.assert_close(t.log_prob(x) - lp0, (parts - lp0).sum(-1), rtol=1e-12, atol=1e-9)
    u = torch.linspace(lo, hi, n, dtype=F64)
    total, mean_lp = lp0, lp0
    for j in range(d):
        X = torch.zeros(n, d, dtype=F64)
        X[:, j] = u
        g = (t.log_prob(X) - lp0).numpy()
        assert g[0] < g.max() - 40 and g[-1] < g.max() - 40      # the grid holds all the mass
        mx = g.max()
        f = np.exp(g - mx)
        z = _trapz(f, u.numpy())
        total += mx + math.log(z)
        mean_lp += _trapz(f * g, u.numpy()) / z
    return total, mean_lp


def _separable_log_integral(t, **kw):
    return _separable_integrals(t, **kw)[0]


def _is_log_integral(t, draw_q, log_q, n):
    """Importance sampling: log mean exp(log π̃ − log q) and its delta-method standard error."""
    x = draw_q(n)
    lw = t.log_prob(torch.as_tensor(x, dtype=F64)).numpy() - log_q(x)
    est = special.logsumexp(lw) - math.log(n)
    w = np.exp(lw - lw.max())
    se = w.std() / w.mean() / math.sqrt(n)
    return est, se


def _is_mog40_d50(t):
    means = load_array("mog40_means_d50.npy").astype(np.float64)
    K, d = means.shape
    s = 1.1
    rng = np.random.default_rng(11)

    def draw(n):
        return means[rng.integers(K, size=n)] + s * rng.standard_normal((n, d))

    def log_q(x):      # Σ_i log N(x_i; μ_ki, s²), via |x − μ|² = |x|² − 2x·μ + |μ|² (float64)
        sq = (x * x).sum(1)[:, None] - 2 * x @ means.T + (means * means).sum(1)[None]
        comp = -0.5 * sq / s ** 2 - d * (math.log(s) + 0.5 * math.log(2 * math.pi))
        return special.logsumexp(comp, axis=1) - math.log(K)
    return _is_log_integral(t, draw, log_q, 20000)


def _is_mos10_d50(t):
    locs = load_array("mos10_locs_d50.npy").astype(np.float64)
    K, d = locs.shape
    s = 1.05
    rng = np.random.default_rng(12)

    def draw(n):
        return locs[rng.integers(K, size=n)] + s * rng.standard_t(2, size=(n, d))

    c1 = math.lgamma(1.5) - math.lgamma(1.0) - 0.5 * math.log(2 * math.pi) - math.log(s)   # log t₂ at 0, scale s

    def log_q(x):
        u = (x[:, None, :] - locs[None]) / s
        comp = d * c1 - 1.5 * np.log1p(u * u / 2).sum(-1)
        return special.logsumexp(comp, axis=1) - math.log(K)
    return _is_log_integral(t, draw, log_q, 20000)


def _is_funnel(t):
    d = t.dim
    rng = np.random.default_rng(13)

    def draw(n):
        x0 = 3.3 * rng.standard_normal(n)
        return np.concatenate([x0[:, None], np.exp(x0 / 2)[:, None] * rng.standard_t(4, size=(n, d - 1))], 1)

    def log_q(x):
        x0 = x[:, 0]
        return (stats.norm.logpdf(x0, 0, 3.3)
                + (stats.t.logpdf(x[:, 1:] * np.exp(-x0 / 2)[:, None], 4) - x0[:, None] / 2).sum(1))
    return _is_log_integral(t, draw, log_q, 100000)


def _mos_d2_sinh(t, expectation=False):
    """2-D MoS (heavy t₂ tails) on a sinh-mapped grid x = 2 sinh(v), |v| ≤ 12: log Z (or E_π[log π̃])."""
    v = torch.arange(-12.0, 12.0 + 1e-9, 0.03, dtype=F64)
    x1, jac = 2 * torch.sinh(v), 2 * torch.cosh(v)
    X = torch.stack(torch.meshgrid(x1, x1, indexing="ij"), -1)
    lp_x = t.log_prob(X).numpy()
    lp = lp_x + np.log(jac.numpy())[:, None] + np.log(jac.numpy())[None, :]
    mx = lp.max()
    f = np.exp(lp - mx)
    z = _trapz2(f, v.numpy(), v.numpy())
    return _trapz2(f * lp_x, v.numpy(), v.numpy()) / z if expectation else mx + math.log(z)


def _gaussian_scipy(t, params):
    d = params["dim"]
    i = np.arange(d)
    cov = 0.8 ** np.abs(i[:, None] - i[None, :])
    x = np.random.default_rng(5).standard_normal((200, d)) * 2
    ref = stats.multivariate_normal(np.zeros(d), cov).logpdf(x)
    np.testing.assert_allclose(t.log_prob(torch.as_tensor(x)).numpy(), ref, rtol=1e-11, atol=1e-10)


@pytest.mark.parametrize("name,params", VARIANTS, ids=IDS)
def test_log_Z_independent(name, params):
    t = target(name, params)
    lz = t.log_Z.value
    if name == "gaussian":
        _gaussian_scipy(t, params)          # log_prob is scipy's normalised density, so log Z = 0
        if t.dim == 2:
            assert abs(_grid_log_integral(t, (-10, -10), (10, 10), 0.1) - lz) < 1e-9
        return
    if name in ("manywell", "multiwell", "double_well_1d"):
        assert abs(_separable_log_integral(t) - lz) < 1e-8 * max(1.0, abs(lz))
        return
    if name in ("mog40", "mos10") and t.dim == 50 or name == "funnel":
        est, se = {"mog40": _is_mog40_d50, "mos10": _is_mos10_d50, "funnel": _is_funnel}[name](t)
        assert se < 0.03, se                 # precise enough to catch a wrong constant
        assert abs(est - lz) < 5 * se, (est, se, lz)
        return
    if name == "mos10":
        assert abs(_mos_d2_sinh(t) - lz) < 1e-6
        return
    half, h = GRIDS_2D[name]
    assert abs(_grid_log_integral(t, (-half, -half), (half, half), h) - lz) < 1e-9


def test_published_log_Z_values():
    """The values TARGETS.md states (adaptive quadrature there too, so agreement to ~1e-10)."""
    assert abs(target("manywell", {"dim": 32}).log_Z.value - 164.6956753132) < 1e-8
    assert abs(target("manywell", {"dim": 50}).log_Z.value - 257.3369926768) < 1e-8
    assert abs(target("manywell", {"dim": 64}).log_Z.value - 329.3913506264) < 1e-8
    assert abs(target("multiwell", {"dim": 5, "m": 5, "delta": 4.0}).log_Z.value - (-0.5410555128795)) < 1e-10
    assert abs(target("multiwell", {"dim": 50, "m": 5, "delta": 2.0}).log_Z.value - 42.8172426775) < 1e-8


# ============================================================================ score
def _autograd_score(t, x):
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(t.log_prob(xg).sum(), xg)
    return g


def _test_points(t, n=64, seed=0):
    low, high = t.box
    u = torch.rand(n, t.dim, generator=gen(seed), dtype=F64)
    return torch.cat([low + (high - low) * u, t.sample(n, gen(seed + 1), dtype=F64)])


@pytest.mark.parametrize("name,params", VARIANTS, ids=IDS)
def test_score_matches_autograd(name, params):
    t = target(name, params)
    x = _test_points(t)
    s = t.score(x)
    ref = _autograd_score(t, x)
    scale = float(ref.abs().max()) + 1.0
    torch.testing.assert_close(s, ref, rtol=1e-9, atol=1e-10 * scale)
    lp, s2 = t.log_prob_and_score(x)
    torch.testing.assert_close(lp, t.log_prob(x), rtol=0, atol=0)
    torch.testing.assert_close(s2, s, rtol=1e-12, atol=1e-12 * scale)


@pytest.mark.parametrize("name,params", MIXTURES, ids=MIX_IDS)
@pytest.mark.parametrize("radius", [1e3, 1e6])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_mixture_score_far_away_points_back(name, params, radius, dtype):
    t = target(name, params)
    u = torch.randn(16, t.dim, generator=gen(9), dtype=F64)
    x = (radius * u / u.norm(dim=-1, keepdim=True)).to(dtype)
    s = t.score(x)
    assert s.dtype == dtype
    assert bool(torch.isfinite(s).all()) and bool(torch.isfinite(t.log_prob(x)).all())
    assert bool((s.norm(dim=-1) > 0).all()), "silent zero score far from the modes"
    assert bool(((s * x).sum(-1) < 0).all()), "score does not point back toward the mass"
    if dtype == torch.float64:
        torch.testing.assert_close(s, _autograd_score(t, x), rtol=1e-7, atol=1e-12)


def test_rings_score_at_origin_is_finite():
    t = target("rings", {})
    x = torch.zeros(3, 2, dtype=F64)
    assert bool(torch.isfinite(t.score(x)).all()) and bool(torch.isfinite(t.log_prob(x)).all())


# ============================================================================ exact samplers
def _assert_mean_cov(x, mean, cov, zmax=5.0, what=""):
    """Sample mean and covariance against the truth, entrywise, in units of their Monte-Carlo standard error."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    mean, cov = np.asarray(mean, float), np.asarray(cov, float)
    se_m = x.std(0) / math.sqrt(n)
    z_m = (x.mean(0) - mean) / se_m
    assert np.abs(z_m).max() < zmax, f"{what} mean off by {np.abs(z_m).max():.1f} standard errors"
    a = x - mean
    c = a.T @ a / n
    a2 = a * a
    se_c = np.sqrt(np.maximum(a2.T @ a2 / n - c * c, 1e-300) / n)
    z_c = (c - cov) / se_c
    assert np.abs(z_c).max() < zmax, f"{what} covariance off by {np.abs(z_c).max():.1f} standard errors"


def _ks(samples, cdf_grid, cdf_vals, pmin=1e-4, what=""):
    cdf = lambda v: np.interp(v, cdf_grid, cdf_vals)  # noqa: E731
    p = stats.kstest(np.asarray(samples, float), cdf).pvalue
    assert p > pmin, f"{what}: KS p = {p:.2e}"


def _tab_cdf(logf, lo, hi, n=200001):
    u = np.linspace(lo, hi, n)
    f = np.exp(logf(u) - logf(u).max())
    c = integrate.cumulative_trapezoid(f, u, initial=0.0)
    return u, c / c[-1]


def _moments_1d(logf, lo, hi, powers=(1, 2)):
    shift = max(float(logf(v)) for v in np.linspace(lo, hi, 2001))
    z = integrate.quad(lambda u: math.exp(logf(u) - shift), lo, hi, limit=500, epsabs=1e-13, epsrel=1e-10)[0]
    return [integrate.quad(lambda u: u ** p * math.exp(logf(u) - shift), lo, hi, limit=500, epsabs=1e-13,
                           epsrel=1e-10)[0] / z for p in powers]


def _grid_mixture_truth(means, var):
    m = means.mean(0)
    dm = means - m
    return m, dm.T @ dm / means.shape[0] + var * np.eye(means.shape[1])


def _well_check(x_cols, logf, lo, hi, what):
    m1, m2 = _moments_1d(logf, lo, hi)
    x_cols = np.asarray(x_cols)
    k = x_cols.shape[1]
    _assert_mean_cov(x_cols, [m1] * k, np.eye(k) * (m2 - m1 * m1), what=what)
    g, c = _tab_cdf(logf, lo, hi)
    _ks(x_cols[:, 0], g, c, what=what)


@pytest.mark.parametrize("name,params", VARIANTS, ids=IDS)
def test_sampler_moments(name, params):
    t = target(name, params)
    n = 40000 if t.dim <= 2 or name == "funnel" else (20000 if t.dim <= 10 or name in ("gaussian", "mog40", "mos10")
                                                        else 10000)
    x = t.sample(n, gen(42), dtype=F64).numpy()
    assert x.shape == (n, t.dim) and np.isfinite(x).all()
    if name == "gaussian":
        i = np.arange(t.dim)
        _assert_mean_cov(x, np.zeros(t.dim), 0.8 ** np.abs(i[:, None] - i[None, :]), what=name)
    elif name in ("gmm9", "gmm25"):
        v = np.array([-5.0, 0.0, 5.0]) if name == "gmm9" else np.arange(-10.0, 11.0, 5.0)
        means = np.stack(np.meshgrid(v, v, indexing="ij"), -1).reshape(-1, 2)
        _assert_mean_cov(x, *_grid_mixture_truth(means, 0.3), what=name)
    elif name == "mog40":
        _assert_mean_cov(x, *_grid_mixture_truth(load_array(f"mog40_means_d{t.dim}.npy").astype(float), 1.0),
                         what=name)
    elif name == "gmm40_fab":
        s = math.log(1 + math.e)
        _assert_mean_cov(x, *_grid_mixture_truth(load_array("gmm40_fab_means_d2.npy").astype(float), s * s),
                         what=name)
    elif name == "mos10":
        # infinite variance (ν = 2): KS of coordinate marginals against the t-mixture CDF instead
        locs = load_array(f"mos10_locs_d{t.dim}.npy").astype(float)
        for j in range(min(t.dim, 4)):
            cdf = lambda v, j=j: stats.t.cdf(np.asarray(v)[..., None] - locs[:, j], 2).mean(-1)  # noqa: E731
            assert stats.kstest(x[:, j], cdf).pvalue > 1e-4, j
        # the joint structure: P(every coordinate within r of location k), exactly Σ_j w_j Π_i P(|x_i − μ_ki| < r)
        r = 1.0 if t.dim == 2 else 5.0
        for k in range(3):
            lo_, hi_ = locs[k] - r - locs, locs[k] + r - locs                     # (K, d) per component j
            p = (stats.t.cdf(hi_, 2) - stats.t.cdf(lo_, 2)).prod(-1).mean()
            hit = (np.abs(x - locs[k]) < r).all(-1).mean()
            assert abs(hit - p) < 5 * math.sqrt(p * (1 - p) / n), (k, hit, p)
    elif name == "funnel":
        x0 = x[:, 0]
        y = x[:, 1:] * np.exp(-x0 / 2)[:, None]
        _assert_mean_cov(np.concatenate([x0[:, None] / 3, y], 1), np.zeros(t.dim), np.eye(t.dim), what=name)
    elif name == "manywell":
        f = lambda u: 0.5 * u + 6 * u ** 2 - u ** 4  # noqa: E731
        _well_check(x[:, 0::2], f, -6, 6, "manywell even coordinates")
        _assert_mean_cov(x[:, 1::2], np.zeros(t.dim // 2), np.eye(t.dim // 2), what="manywell odd")
    elif name == "multiwell":
        m, dl = params["m"], params["delta"]
        _well_check(x[:, :m], lambda u: -(u * u - dl) ** 2, -6, 6, "multiwell wells")
        if t.dim > m:
            _assert_mean_cov(x[:, m:], np.zeros(t.dim - m), np.eye(t.dim - m), what="multiwell gaussian part")
    elif name == "double_well_1d":
        a, tilt = params["a"], params.get("tilt", 0.0)
        _well_check(x, lambda u: -a * (u * u - 1) ** 2 + tilt * u, -4, 4, name)
    elif name == "rings":
        radii, sig = np.array([1.0, 2, 3, 4]), 0.1

        def logf(r):
            r = np.asarray(r, float)
            with np.errstate(divide="ignore"):
                return np.log(np.maximum(r, 0)) + special.logsumexp(-(r[..., None] - radii) ** 2 / (2 * sig ** 2), -1)
        (r2,) = _moments_1d(lambda r: float(logf(r)), 1e-12, 6, powers=(2,))
        _assert_mean_cov(x, np.zeros(2), np.eye(2) * r2 / 2, what=name)
        g, c = _tab_cdf(logf, 1e-12, 6)
        _ks(np.linalg.norm(x, axis=1), g, c, what="rings radius")
        ang = (np.arctan2(x[:, 1], x[:, 0]) + math.pi) / (2 * math.pi)
        assert stats.kstest(ang, "uniform").pvalue > 1e-4
    else:  # pragma: no cover
        raise AssertionError(f"no moment check for {name}")


# E_π[log π̃] computed without the sampler; the sampler's average of log π̃ must match it (this sees a wrong
# component width, a wrong well shape or an invalid rejection bound that first and second moments can miss)
GRIDS_2D = {"gaussian": (10, 0.1), "gmm9": (12, 0.1), "gmm25": (17, 0.1), "mog40": (50, 0.2),
            "gmm40_fab": (52, 0.25), "rings": (5, 0.02)}


def _expected_log_density(t, name, params):
    d = t.dim
    if name in ("manywell", "multiwell", "double_well_1d"):
        return _separable_integrals(t)[1]
    if d == 2 and name == "mos10":
        return _mos_d2_sinh(t, expectation=True)
    if d == 2:
        half, h = GRIDS_2D[name]
        return _grid_integrals(t, (-half, -half), (half, half), h)[1]
    if name == "gaussian":          # −entropy of N(μ, Σ)
        i = np.arange(d)
        _, logdet = np.linalg.slogdet(0.8 ** np.abs(i[:, None] - i[None, :]))
        return -0.5 * d * (1 + math.log(2 * math.pi)) - 0.5 * logdet
    if name == "funnel":            # E log N(x₀; 0, 9) + (d−1)·E log N(x_i; 0, e^{x₀}), E x₀ = 0
        return -0.5 * (1 + math.log(2 * math.pi * 9)) - 0.5 * (d - 1) * (1 + math.log(2 * math.pi))
    # d = 50 mixtures: components do not overlap (checked on the samples), so E log π = −log K − H(component)
    if name == "mog40":
        return -math.log(40) - 0.5 * d * (1 + math.log(2 * math.pi))
    if name == "mos10":
        h1 = integrate.quad(lambda u: stats.t.logpdf(u, 2) * stats.t.pdf(u, 2), -np.inf, np.inf,
                            epsabs=1e-13, epsrel=1e-12, limit=500)[0]
        return -math.log(10) + d * h1
    raise AssertionError(name)


@pytest.mark.parametrize("name,params", VARIANTS, ids=IDS)
def test_sampler_mean_log_density(name, params):
    t = target(name, params)
    n = 20000 if t.dim <= 10 else 10000
    x = t.sample(n, gen(21), dtype=F64)
    lp = t.log_prob(x).numpy()
    if t.dim == 50 and name in ("mog40", "mos10"):
        assert float(t.responsibilities(x).max(-1).values.min()) > 1 - 1e-9
    want = _expected_log_density(t, name, params)
    se = lp.std() / math.sqrt(n)
    assert abs(lp.mean() - want) < 5 * se + 1e-9, (lp.mean(), want, se)


@pytest.mark.parametrize("name,params", VARIANTS, ids=IDS)
def test_sampler_is_deterministic_for_a_seed(name, params):
    t = target(name, params)
    a = t.sample(300, gen(7), dtype=F64)
    b = t.sample(300, gen(7), dtype=F64)
    c = t.sample(300, gen(8), dtype=F64)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert t.sample(0, gen(7)).shape == (0, t.dim)
    assert t.sample(5, gen(7)).dtype == torch.get_default_dtype()


def test_rejection_bounds_hold_on_wide_grids():
    """f̃ ≤ M q everywhere (not just on the construction grid), and the acceptance rate is Z/M."""
    cases = [target("manywell", {"dim": 32}), target("multiwell", {"dim": 5, "m": 5, "delta": 4.0}),
             target("multiwell", {"dim": 50, "m": 5, "delta": 2.0}), target("double_well_1d", {"a": 4.0}),
             target("double_well_1d", {"a": 4.0, "tilt": 1.0}), target("rings", {})]
    u = np.concatenate([np.linspace(-60, 60, 240_001), np.linspace(-3, 7, 200_001)])
    for t in cases:
        rs = t.rejection_sampler
        assert rs.log_ratio_bound_violation(u) <= 0.0, t
        assert 0.3 < rs.acceptance <= 1.0, (t, rs.acceptance)
    # ManyWell: our bound is tighter than (and so consistent with) gfn-diffusion's 3·Z₁
    rs = cases[0].rejection_sampler
    assert rs.log_M < math.log(3 * 11784.509265128)


# ============================================================================ shapes and errors
@pytest.mark.parametrize("name,params", VARIANTS, ids=IDS)
def test_batched_and_wrong_dim(name, params):
    t = target(name, params)
    d = t.dim
    x = t.sample(12, gen(1), dtype=F64).reshape(3, 4, d)
    lp = t.log_prob(x)
    assert lp.shape == (3, 4)
    torch.testing.assert_close(lp.reshape(-1), t.log_prob(x.reshape(12, d)), rtol=1e-14, atol=1e-12)
    s = t.score(x)
    assert s.shape == (3, 4, d)
    torch.testing.assert_close(s.reshape(12, d), t.score(x.reshape(12, d)), rtol=1e-13, atol=1e-12)
    assert t.log_prob(x[0, 0]).shape == ()
    # float32 in, float32 out (parameters follow the input's dtype)
    assert t.log_prob(x.float()).dtype == torch.float32 and t.score(x.float()).dtype == torch.float32
    torch.testing.assert_close(t.log_prob(x.float()).double(), lp, rtol=1e-4, atol=1e-3 * (1 + float(lp.abs().max())))
    for bad in (torch.zeros(5, d + 1, dtype=F64), torch.zeros(d + 2, dtype=F64)):
        with pytest.raises(TargetInputError, match=rf"\(\.\.\., {d}\)"):
            t.log_prob(bad)
        with pytest.raises(TargetInputError, match=rf"\(\.\.\., {d}\)"):
            t.score(bad)


@pytest.mark.parametrize("name,params", MIXTURES, ids=MIX_IDS)
def test_mixture_interface(name, params):
    t = target(name, params)
    K = {"gmm9": 9, "gmm25": 25, "mog40": 40, "gmm40_fab": 40, "mos10": 10}[name]
    assert t.n_components == K and t.means.shape == (K, t.dim) and t.weights.shape == (K,)
    x = t.sample(24, gen(2), dtype=F64).reshape(2, 12, t.dim)
    clp = t.component_log_probs(x)
    assert clp.shape == (2, 12, K)
    torch.testing.assert_close(torch.logsumexp(clp + t.log_weights, -1), t.log_prob(x))
    r = t.responsibilities(x)
    torch.testing.assert_close(r.sum(-1), torch.ones(2, 12, dtype=F64))
    with pytest.raises(TargetInputError):
        t.component_log_probs(torch.zeros(3, t.dim + 1))
    # the locations are the data file's (or the grid's), exactly
    files = {"mog40": f"mog40_means_d{t.dim}.npy", "gmm40_fab": "gmm40_fab_means_d2.npy",
             "mos10": f"mos10_locs_d{t.dim}.npy"}
    if name in files:
        np.testing.assert_array_equal(t.means.numpy(), load_array(files[name]).astype(np.float64))


# ============================================================================ the general classes
def _random_spd(rng, K, d):
    A = rng.standard_normal((K, d, d))
    return A @ A.transpose(0, 2, 1) / d + 0.3 * np.eye(d)


@pytest.mark.parametrize("kind", ["scalar", "iso", "diag", "full"])
def test_gaussian_mixture_general(kind):
    rng = np.random.default_rng(0)
    K, d = 3, 3
    w = np.array([0.2, 0.5, 0.3])
    means = rng.standard_normal((K, d)) * 3
    full = {"scalar": lambda: np.tile(0.7 * np.eye(d), (K, 1, 1)),
            "iso": lambda: np.array([0.5, 1.0, 2.0])[:, None, None] * np.eye(d),
            "diag": lambda: np.stack([np.diag(v) for v in rng.uniform(0.3, 2, (K, d))]),
            "full": lambda: _random_spd(rng, K, d)}[kind]()
    covs = {"scalar": 0.7, "iso": np.array([0.5, 1.0, 2.0]),
            "diag": np.stack([np.diag(c) for c in full]), "full": full}[kind]
    t = GaussianMixture(w, means, covs, name="test_gmm")
    x = rng.standard_normal((100, d)) * 4
    comps = np.stack([stats.multivariate_normal(means[k], full[k]).logpdf(x) for k in range(K)], -1)
    ref = special.logsumexp(comps + np.log(w), -1)
    xt = torch.as_tensor(x)
    np.testing.assert_allclose(t.log_prob(xt).numpy(), ref, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(t.component_log_probs(xt).numpy(), comps, rtol=1e-11, atol=1e-11)
    torch.testing.assert_close(t.score(xt), _autograd_score(t, xt), rtol=1e-9, atol=1e-11)
    far = torch.as_tensor(rng.standard_normal((8, d))) * 1e4
    s = t.score(far)
    assert bool(torch.isfinite(s).all()) and bool(((s * far).sum(-1) < 0).all())
    xs = t.sample(40000, gen(4), dtype=F64).numpy()
    m = (w[:, None] * means).sum(0)
    cov = sum(w[k] * (full[k] + np.outer(means[k] - m, means[k] - m)) for k in range(K))
    _assert_mean_cov(xs, m, cov, what=kind)
    torch.testing.assert_close(t.covariances, torch.as_tensor(np.asarray(full, dtype=np.float64)))


def test_gaussian_mixture_bad_input():
    with pytest.raises(TargetInputError, match="means"):
        GaussianMixture(None, np.zeros(3), 1.0)
    with pytest.raises(TargetInputError, match="weights"):
        GaussianMixture([1.0, 2.0, 3.0], np.zeros((2, 2)), 1.0)
    with pytest.raises(TargetInputError, match="positive definite"):
        GaussianMixture(None, np.zeros((2, 2)), np.stack([np.eye(2), -np.eye(2)]))
    with pytest.raises(TargetInputError, match="positive"):
        GaussianMixture(None, np.zeros((2, 2)), np.array([1.0, -1.0]))
    with pytest.raises(TargetInputError):
        GaussianMixture(None, np.zeros((2, 2)), np.ones((2, 3)))
    with pytest.raises(TargetInputError, match="mog40"):
        T.get("mog40", dim=3)


def test_gaussian_general_and_bad_input():
    rng = np.random.default_rng(1)
    d = 4
    cov = _random_spd(rng, 1, d)[0]
    mean = rng.standard_normal(d)
    t = Gaussian(mean, cov)
    x = rng.standard_normal((50, d)) * 3
    np.testing.assert_allclose(t.log_prob(torch.as_tensor(x)).numpy(),
                               stats.multivariate_normal(mean, cov).logpdf(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(t.score(torch.as_tensor(x)), _autograd_score(t, torch.as_tensor(x)))
    xs = t.sample(40000, gen(5), dtype=F64).numpy()
    _assert_mean_cov(xs, mean, cov, what="gaussian")
    with pytest.raises(TargetInputError, match="positive definite"):
        Gaussian(np.zeros(2), np.array([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(TargetInputError, match="symmetric"):
        Gaussian(np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(TargetInputError, match="cov"):
        Gaussian(np.zeros(2), np.eye(3))


def test_student_t_mixture_general():
    rng = np.random.default_rng(2)
    K, d, df = 3, 2, 3.5
    locs = rng.standard_normal((K, d)) * 4
    scale = rng.uniform(0.5, 2.0, (K, d))
    w = np.array([0.5, 0.3, 0.2])
    t = StudentTMixture(w, locs, df=df, scale=scale)
    x = rng.standard_normal((64, d)) * 5
    comps = stats.t.logpdf(x[:, None, :], df, loc=locs, scale=scale).sum(-1)
    np.testing.assert_allclose(t.log_prob(torch.as_tensor(x)).numpy(), special.logsumexp(comps + np.log(w), -1),
                               rtol=1e-11, atol=1e-11)
    torch.testing.assert_close(t.score(torch.as_tensor(x)), _autograd_score(t, torch.as_tensor(x)))
    xs = t.sample(40000, gen(6), dtype=F64).numpy()       # ν = 3.5: finite variance
    m = (w[:, None] * locs).sum(0)
    cov = sum(w[k] * (np.diag(scale[k] ** 2 * df / (df - 2)) + np.outer(locs[k] - m, locs[k] - m)) for k in range(K))
    # heavy tails make the covariance's standard error itself noisy: a wider band
    _assert_mean_cov(xs, m, cov, zmax=6.0, what="student-t mixture")
    with pytest.raises(TargetInputError, match="df"):
        StudentTMixture(None, locs, df=0.0)


def test_wells_bad_input():
    with pytest.raises(TargetInputError, match="even"):
        T.get("manywell", dim=33)
    with pytest.raises(TargetInputError, match="m"):
        T.get("multiwell", dim=3, m=5)
    with pytest.raises(TargetInputError, match="dim"):
        T.get("funnel", dim=1)


def test_reference_points_exact_draws_reference_subset_or_none():
    """Plots compare samples with reference_points: exact draws where there is a sampler, else a random subset of
    the reference samples (all of them when there are fewer), else None."""
    import sampleflow as sf
    g = torch.Generator().manual_seed(0)
    assert sf.targets.get("gmm9").reference_points(50, g).shape == (50, 2)
    dw4 = sf.targets.get("dw4")
    sub = dw4.reference_points(30, torch.Generator().manual_seed(1))
    full = dw4.reference_samples()
    assert sub.shape == (30, 8) and all((full == r).all(-1).any() for r in sub)
    assert dw4.reference_points(10 ** 9).shape == full.shape
    assert sf.Target.from_log_prob(lambda x: -(x ** 2).sum(-1), dim=2).reference_points(10) is None
