"""KL diagnostics: exact Gaussian KL, Gaussian-fit KL, OU-flow KL against ULA, KDE plug-in KL against scipy."""
import math

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch

from sampleflow.metrics import gaussian_fit_kl, gaussian_kl, kde_kl, kde_log_density, ou_gaussian_kl
from sampleflow.metrics import kl as K


def rng(seed=0):
    return np.random.default_rng(seed)


def spd(r, d):
    A = r.standard_normal((d, d))
    return A @ A.T + 0.5 * np.eye(d)


def log_normal(mu, s2=1.0):
    return lambda z: -0.5 * (z[:, 0] - mu) ** 2 / s2 - 0.5 * math.log(2 * math.pi * s2)


# ------------------------------------------------------------------------------------------------ gaussian_kl
def test_gaussian_kl_matches_explicit_inverse_formula():
    r = rng(1)
    d = 4
    m0, m1, C0, C1 = r.standard_normal(d), r.standard_normal(d), spd(r, d), spd(r, d)
    C1i = np.linalg.inv(C1)
    ref = 0.5 * (np.trace(C1i @ C0) + (m1 - m0) @ C1i @ (m1 - m0) - d
                 + np.linalg.slogdet(C1)[1] - np.linalg.slogdet(C0)[1])
    out = gaussian_kl(m0, C0, m1, C1)
    assert out.ndim == 0 and out.dtype == torch.float64
    assert float(out) == pytest.approx(ref, rel=1e-11)
    assert float(gaussian_kl(m0, C0, m0, C0)) == pytest.approx(0.0, abs=1e-13)
    # asymmetric in its arguments
    assert abs(float(gaussian_kl(m1, C1, m0, C0)) - ref) > 1e-3


def test_gaussian_kl_1d_closed_form_and_float32_input():
    m0, s0, m1, s1 = 0.3, 0.7, -1.1, 1.9
    ref = math.log(s1 / s0) + (s0 ** 2 + (m0 - m1) ** 2) / (2 * s1 ** 2) - 0.5
    out = gaussian_kl(torch.tensor([m0], dtype=torch.float32), torch.tensor([[s0 ** 2]]),
                      [m1], [[s1 ** 2]])
    assert out.dtype == torch.float64
    assert float(out) == pytest.approx(ref, rel=1e-6)  # float32 input rounding only


@pytest.mark.parametrize("args, msg", [
    (([0.0, 0.0], np.eye(2), [0.0], np.eye(2)), "mean1"),
    (([0.0, 0.0], np.eye(3), [0.0, 0.0], np.eye(2)), "cov0"),
    (([0.0, np.nan], np.eye(2), [0.0, 0.0], np.eye(2)), "mean0"),
    (([0.0, 0.0], np.eye(2), [0.0, 0.0], np.array([[1.0, 2.0], [2.0, 1.0]])), "cov1 is not positive definite"),
    (([0.0, 0.0], np.array([[1.0, 0.5], [0.0, 1.0]]), [0.0, 0.0], np.eye(2)), "cov0 must be symmetric"),
    (([0.0, 0.0], np.eye(2), [0.0, 0.0], np.array([[1.0, np.inf], [np.inf, 1.0]])), "cov1"),
    ((np.zeros((2, 1)), np.eye(2), [0.0, 0.0], np.eye(2)), "mean0"),
])
def test_gaussian_kl_errors_name_the_argument(args, msg):
    with pytest.raises(ValueError, match=msg):
        gaussian_kl(*args)


# ------------------------------------------------------------------------------------------------ gaussian_fit_kl
def test_gaussian_fit_kl_is_gaussian_kl_of_sample_moments():
    r = rng(2)
    x = r.standard_normal((50, 3)) @ np.array([[1.0, 0.2, 0.0], [0.0, 0.8, 0.3], [0.0, 0.0, 1.5]]) + 0.4
    m, C = np.array([0.1, -0.2, 0.3]), spd(r, 3)
    ref = float(gaussian_kl(x.mean(0), np.cov(x.T), m, C))
    assert float(gaussian_fit_kl(x, m, C)) == pytest.approx(ref, rel=1e-12)
    assert float(gaussian_fit_kl(torch.as_tensor(x), torch.as_tensor(m), torch.as_tensor(C))) == \
        pytest.approx(ref, rel=1e-12)


def test_gaussian_fit_kl_plugin_bias_matches_wishart_formula():
    # x ~ N(m, C) exactly: E KL = ½[d/n − Σ_{i=1}^d ψ((n−i)/2) − d log(2/(n−1))]; check by 3000 replicates
    r = rng(3)
    n, d, R = 20, 2, 3000
    m, C = np.array([1.0, -0.5]), np.array([[2.0, 0.6], [0.6, 0.5]])
    Lc = np.linalg.cholesky(C)
    vals = np.array([float(gaussian_fit_kl(m + r.standard_normal((n, d)) @ Lc.T, m, C)) for _ in range(R)])
    expect = 0.5 * (d / n - sum(scipy.special.digamma((n - i) / 2) for i in range(1, d + 1))
                    - d * math.log(2 / (n - 1)))
    se = vals.std(ddof=1) / math.sqrt(R)
    assert expect == pytest.approx(0.1325, abs=2e-3)  # ≈ d/(2n) + d(d+1)/(4(n−1)) = 0.129
    assert abs(vals.mean() - expect) < 4 * se


def test_gaussian_fit_kl_errors():
    with pytest.raises(ValueError, match="at least 2 points"):
        gaussian_fit_kl(np.zeros((1, 2)), [0.0, 0.0], np.eye(2))
    with pytest.raises(ValueError, match="x: .*sample covariance of x is not positive definite"):
        gaussian_fit_kl(rng().standard_normal((3, 3)), np.zeros(3), np.eye(3))  # n = d: singular
    with pytest.raises(ValueError, match="mean must have length 2"):
        gaussian_fit_kl(rng().standard_normal((10, 2)), np.zeros(3), np.eye(2))
    with pytest.raises(ValueError, match=r"x must have shape \(n, d\)"):
        gaussian_fit_kl(np.zeros(10), [0.0], [[1.0]])
    with pytest.raises(ValueError, match="x contains 1 non-finite"):
        gaussian_fit_kl(np.array([[0.0], [np.nan], [1.0]]), [0.0], [[1.0]])


# ------------------------------------------------------------------------------------------------ ou_gaussian_kl
def test_ou_kl_equals_gaussian_kl_of_the_solved_variance():
    v0, s2, d = 3.0, 0.5, 3
    t = torch.tensor([0.0, 0.01, 0.2, 1.0, 3.0], dtype=torch.float64)
    out = ou_gaussian_kl(t, v0, s2, d)
    assert out.shape == t.shape and out.dtype == torch.float64
    for ti, oi in zip(t.tolist(), out.tolist()):
        v = s2 + (v0 - s2) * math.exp(-2 * ti / s2)
        assert oi == pytest.approx(float(gaussian_kl(np.zeros(d), v * np.eye(d), np.zeros(d), s2 * np.eye(d))),
                                   rel=1e-10)
    assert float(ou_gaussian_kl(0.0, v0, s2, d)) == pytest.approx(1.5 * (6 - 1 - math.log(6)), rel=1e-13)
    # float t gives a 0-d tensor; monotone decay; exponential rate e^{-4t/σ²} at late times
    assert ou_gaussian_kl(0.5, v0, s2, d).ndim == 0
    assert bool((out[1:] < out[:-1]).all())
    late = ou_gaussian_kl(torch.tensor([4.0, 4.5], dtype=torch.float64), v0, s2, d)
    assert float(late[1] / late[0]) == pytest.approx(math.exp(-4 * 0.5 / s2), rel=1e-3)


def test_ou_variance_ode_matches_discretised_langevin_recursion():
    # ULA on the OU target: v_{k+1} = (1 − h/σ²)² v_k + 2h exactly; converges to v(t) at rate O(h)
    v0, s2, T = 0.5, 2.0, 1.0

    def ula_var(h):
        v = v0
        for _ in range(round(T / h)):
            v = (1 - h / s2) ** 2 * v + 2 * h
        return v

    v_exact = s2 + (v0 - s2) * math.exp(-2 * T / s2)
    e2, e3 = abs(ula_var(1e-2) - v_exact), abs(ula_var(1e-3) - v_exact)
    assert e3 < 2e-3 and 8 < e2 / e3 < 12


def test_ou_kl_against_ula_simulation():
    # 20000 chains of ULA X ← X − h X/σ² + √(2h) ξ, h = 1e-3, d = 2, from N(0, v0 I) towards N(0, σ² I)
    n, d, h, v0, s2 = 20000, 2, 1e-3, 0.5, 2.0
    g = torch.Generator().manual_seed(0)
    X = math.sqrt(v0) * torch.randn(n, d, generator=g, dtype=torch.float64)
    checks = {250: None, 1000: None}
    for k in range(1, 1001):
        X = X - (h / s2) * X + math.sqrt(2 * h) * torch.randn(n, d, generator=g, dtype=torch.float64)
        if k in checks:
            checks[k] = X.clone()
    for k, Xk in checks.items():
        t = k * h
        v = s2 + (v0 - s2) * math.exp(-2 * t / s2)
        exact = float(ou_gaussian_kl(t, v0, s2, d))
        # MC: v̂ = mean of X² over n·d coordinates (known zero mean), sd(v̂) = v √(2/(n d));
        # delta method: dKL/dv = (d/2)(1/σ² − 1/v)
        vhat = float(Xk.square().mean())
        se = abs(0.5 * d * (1 / s2 - 1 / v)) * v * math.sqrt(2 / (n * d))
        # ULA bias: exact discrete variance recursion vs v(t), through the same derivative
        vd = v0
        for _ in range(k):
            vd = (1 - h / s2) ** 2 * vd + 2 * h
        bias = abs(0.5 * d * (1 / s2 - 1 / v)) * abs(vd - v)
        est = float(ou_gaussian_kl(torch.zeros(()), vhat, s2, d))  # KL of N(0, v̂ I), t = 0
        assert abs(est - exact) < 4 * se + bias, (t, est, exact, se, bias)
        # the Gaussian-fit KL on the same particles ("exact for Gaussians"): adds the mean/off-diagonal
        # fluctuations and the O(d²/n) plug-in bias, so allow 6 se + bias + d(d+3)/(4n)
        fit = float(gaussian_fit_kl(Xk, np.zeros(d), s2 * np.eye(d)))
        assert abs(fit - exact) < 6 * se + bias + d * (d + 3) / (4 * n), (t, fit, exact)
        assert se < 0.1 * exact  # the test resolves the KL itself, not just noise


@pytest.mark.parametrize("kw, msg", [
    (dict(t=-0.1, var0=1.0), "t must be >= 0"),
    (dict(t=float("nan"), var0=1.0), "t contains"),
    (dict(t=0.1, var0=0.0), "var0 must be a positive"),
    (dict(t=0.1, var0=1.0, var_target=-1.0), "var_target must be a positive"),
    (dict(t=0.1, var0=1.0, dim=0), "dim must be a positive integer"),
])
def test_ou_kl_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        ou_gaussian_kl(**kw)


# ------------------------------------------------------------------------------------------------ KDE
@pytest.mark.parametrize("d, bw", [(1, "scott"), (2, "scott"), (2, "silverman"), (3, 0.4)])
def test_kde_log_density_matches_scipy(d, bw):
    r = rng(10 + d)
    A = np.eye(d) + 0.3 * np.triu(np.ones((d, d)), 1)
    x = r.standard_normal((300, d)) @ A
    y = 2 * r.standard_normal((40, d))
    kde = scipy.stats.gaussian_kde(x.T, bw_method=bw)
    got_y = kde_log_density(x, y, bandwidth=bw).numpy()
    got_x = kde_log_density(torch.as_tensor(x), bandwidth=bw).numpy()  # leave-in: the points themselves
    np.testing.assert_allclose(got_y, kde.logpdf(y.T), rtol=0, atol=1e-10)
    np.testing.assert_allclose(got_x, kde.logpdf(x.T), rtol=0, atol=1e-10)


def test_kde_log_density_chunked_equals_one_block(monkeypatch):
    x = rng(4).standard_normal((500, 2))
    full = kde_log_density(x)
    monkeypatch.setattr(K, "_CHUNK_ELEMS", 1000)  # 2 rows per block: 250 blocks
    assert len(K._row_blocks(500, 500)) == 250
    np.testing.assert_allclose(kde_log_density(x).numpy(), full.numpy(), rtol=0, atol=1e-12)
    # default block: n = 10⁵ in 1-D is processed 83 rows (8.4 M distances) at a time
    monkeypatch.undo()
    assert max(sl.stop - sl.start for sl in K._row_blocks(10 ** 5, 10 ** 5)) * 10 ** 5 <= 1 << 23


def test_kde_kl_matches_scipy_plugin_on_small_sample():
    x = rng(5).standard_normal((200, 1)) * 1.3 + 0.2
    lp = log_normal(0.0)
    ref = np.mean(scipy.stats.gaussian_kde(x.T).logpdf(x.T) - scipy.stats.norm.logpdf(x[:, 0]))
    assert ref > 0
    assert float(kde_kl(x, lp)) == pytest.approx(ref, abs=1e-10)


def test_kde_kl_near_zero_on_samples_from_target():
    # x ~ π = N(0, 1), n = 10⁴: bias is O(1/(nκ)) + O(κ⁴), κ = n^{-1/5} ≈ 0.16; measured ≈ 1e-3 (positive,
    # the leave-in self-kernel dominates); the MC error of the average of log f − log π is then ≈ 0
    x = torch.as_tensor(rng(6).standard_normal((10_000, 1)))
    out = kde_kl(x, log_normal(0.0))
    assert out.ndim == 0
    assert 0.0 <= float(out) < 3e-3


def test_kde_kl_shifted_gaussian_is_half():
    # x ~ N(0, 1), π = N(1, 1): KL = 1/2. Same-sample exact plug-in (1/n)Σ[log φ(x_i) − log π(x_i)]
    # = mean(1/2 − x_i) has sd 1/√n ≈ 0.014; the KDE estimate must track it to the KDE bias (< 5e-3)
    n = 5000
    x = torch.as_tensor(rng(7).standard_normal((n, 1)))
    est = float(kde_kl(x, log_normal(1.0)))
    exact_plugin = float((0.5 - x[:, 0]).mean())
    assert abs(est - exact_plugin) < 5e-3
    assert abs(est - 0.5) < 4 / math.sqrt(n) + 5e-3


def test_kde_kl_is_clipped_at_zero():
    x = rng(8).standard_normal((300, 1))
    lp_shift = lambda z: log_normal(0.0)(z) + 1.0  # unnormalised (log Z = −1): raw estimate ≈ −1
    raw = float((kde_log_density(x) - lp_shift(torch.as_tensor(x))).mean())
    assert raw < -0.9
    assert float(kde_kl(x, lp_shift)) == 0.0
    assert float(kde_kl(x, lp_shift, clip=False)) == pytest.approx(raw, abs=1e-12)


@pytest.mark.parametrize("x, lp, kw, msg", [
    (np.zeros((1, 1)), log_normal(0.0), {}, "x needs at least 2 points"),
    (np.zeros(10), log_normal(0.0), {}, r"x must have shape \(n, d\)"),
    (np.ones((10, 1)), log_normal(0.0), {}, "x: .*singular"),
    (np.arange(10.0)[:, None], "not callable", {}, "log_prob must be a callable"),
    (np.arange(10.0)[:, None], lambda z: torch.zeros(3), {}, r"log_prob\(x\) must have shape \(10,\)"),
    (np.arange(10.0)[:, None], lambda z: torch.full((10,), -math.inf), {}, r"log_prob\(x\) contains 10 non-finite"),
    (np.arange(10.0)[:, None], log_normal(0.0), dict(bandwidth="wide"), "bandwidth must be"),
    (np.arange(10.0)[:, None], log_normal(0.0), dict(bandwidth=-1.0), "bandwidth must be"),
])
def test_kde_kl_errors(x, lp, kw, msg):
    with pytest.raises(ValueError, match=msg):
        kde_kl(x, lp, **kw)


def test_kde_log_density_points_dimension_error():
    with pytest.raises(ValueError, match="points must have dimension 2"):
        kde_log_density(rng().standard_normal((20, 2)), np.zeros((3, 1)))
