"""ULA / MALA / HMC: exactness on Gaussians (and ULA's known bias), the funnel, adaptation,
reproducibility, NFE, errors.

Statistical tolerances come from the number of independent chains C (each test uses the final
states of C chains, which are independent draws once the chains have mixed):
  mean of coordinate i:      standard error σ_i / √C
  covariance entry (i, j):   standard error √((Σ_ii Σ_jj + Σ_ij²) / C)   (Gaussian fourth moments)
  variance from N values:    standard error v √(2 / N)
The max over coordinates/entries of the standardised error is required below 4.5 (50 means) or 5
(1275 covariance entries): under a correct sampler the chance of a false failure is < 1e-3.
"""
import math

import pytest
import torch

import sampleflow as sf
import sampleflow.samplers.mcmc as mcmc
from sampleflow.samplers import kernels as K
from sampleflow.targets.base import TargetInputError
from sampleflow.targets.gaussian import Gaussian


def _check_gaussian_moments(x, mean, cov):
    x = x.double()
    C = x.shape[0]
    sd = cov.diagonal().sqrt()
    z_mean = ((x.mean(0) - mean) / sd * math.sqrt(C)).abs().max()
    se_cov = ((cov.diagonal()[:, None] * cov.diagonal()[None, :] + cov ** 2) / C).sqrt()
    z_cov = ((torch.cov(x.T) - cov) / se_cov).abs().max()
    assert z_mean < 4.5, f"max standardised mean error {float(z_mean):.2f}"
    assert z_cov < 5.0, f"max standardised covariance error {float(z_cov):.2f}"
    return float(z_mean), float(z_cov)


# ---------------------------------------------------------------------- exactness on a 50-d Gaussian
def test_mala_reproduces_correlated_gaussian_50d():
    t = sf.targets.get("gaussian", dim=50)  # Σ_ij = 0.8^|i-j|, condition number ≈ 81
    s = sf.sample(t, "mala", n=1000, seed=0, dtype="float64", n_warmup=500, n_steps=300)
    assert s.x.shape == (1000, 50) and s.x.dtype == torch.float64
    _check_gaussian_moments(s.x, t.mean, t.cov)
    assert abs(s.info["acceptance_rate"] - 0.574) < 0.07
    assert s.nfe == 1000 * (500 + 300 + 1)


def test_hmc_reproduces_correlated_gaussian_50d():
    t = sf.targets.get("gaussian", dim=50)
    s = sf.sample(t, "hmc", n=1000, seed=1, dtype="float64", n_warmup=150, n_steps=150, n_leapfrog=10)
    _check_gaussian_moments(s.x, t.mean, t.cov)
    assert abs(s.info["acceptance_rate"] - 0.8) < 0.07
    assert s.nfe == 1000 * (1 + 10 * (150 + 150))


def test_ula_reproduces_correlated_gaussian_50d_up_to_its_known_step_bias():
    """ULA x' = x − hΣ⁻¹x + √(2h)ξ on N(0, Σ) has the stationary covariance Σ_h = (Σ⁻¹ − hΣ⁻²/2)⁻¹ (solve
    C = (I − hΣ⁻¹)C(I − hΣ⁻¹) + 2hI). At h = 0.05 (stable below 2λ_min(Σ) ≈ 0.22; relaxation of the widest
    direction λ_max/h ≈ 180 iterations) the chains match Σ_h to Monte Carlo precision, and Σ_h is within the
    stated ULA tolerance of the target: max |Σ_h − Σ|_ij < 0.05 (measured 0.025 ≈ h/2)."""
    t = sf.targets.get("gaussian", dim=50)
    h = 0.05
    prec = torch.linalg.inv(t.cov.double())
    cov_h = torch.linalg.inv(prec - 0.5 * h * prec @ prec)
    s = sf.sample(t, "ula", n=1000, seed=4, dtype="float64", step_size=h, n_warmup=1200, n_steps=300)
    _check_gaussian_moments(s.x, t.mean, cov_h)
    assert float((cov_h - t.cov).abs().max()) < 0.05


# ---------------------------------------------------------------------- ULA's exact bias vs MALA's exactness
def _std_normal(d=10, sigma=1.0):
    return Gaussian(torch.zeros(d), sigma ** 2)


def test_ula_matches_its_biased_stationary_variance():
    """For N(0, σ²) ULA's stationary variance is σ²/(1 − h/(2σ²)); σ = 1, h = 0.5 → 4/3, not 1.
    5000 chains × 10 independent coordinates = 50 000 values: SE = (4/3)√(2/50000) ≈ 0.0084."""
    h = 0.5
    s = sf.sample(_std_normal(), "ula", n=5000, seed=2, dtype="float64", step_size=h, n_warmup=50, n_steps=30)
    v = float((s.x ** 2).mean())
    expected = 1.0 / (1.0 - h / 2)
    assert abs(v - expected) < 0.04, v
    assert s.nfe == 5000 * (50 + 30 + 1)


def test_mala_removes_ula_bias_at_the_same_step():
    """Same h = 0.5 with the MH correction (no adaptation): variance 1 (SE ≈ 0.0063), not 4/3."""
    s = sf.sample(_std_normal(), "mala", n=5000, seed=3, dtype="float64", step_size=0.5,
                  adapt_step_size=False, n_warmup=50, n_steps=30)
    v = float((s.x ** 2).mean())
    assert abs(v - 1.0) < 0.035, v
    assert s.info["step_size"] == pytest.approx(0.5)


def test_ula_kernel_preconditioned_and_per_chain_steps():
    """Preconditioned ULA with scale s: stationary variance σ²/(1 − h s²/(2σ²)); per-chain steps:
    chains with h = 0.2 and h = 1.0 reach 1/0.9 and 1/0.5 = 2."""
    t = _std_normal(d=20)
    g = torch.Generator().manual_seed(4)
    C = 4000
    h = torch.cat([torch.full((C // 2,), 0.2), torch.full((C // 2,), 1.0)]).double()
    scale = torch.full((20,), 0.5, dtype=torch.float64)
    st = K.init_state(torch.zeros(C, 20, dtype=torch.float64), t.log_prob_and_score)
    st_p = st
    for _ in range(60):
        st = K.ula_step(st, t.log_prob_and_score, h, g)
        st_p = K.ula_step(st_p, t.log_prob_and_score, 0.5, g, scale=scale)
    v_lo, v_hi = float((st.x[: C // 2] ** 2).mean()), float((st.x[C // 2:] ** 2).mean())
    v_p = float((st_p.x ** 2).mean())
    # 40 000 values per group: SE ≈ v·0.007
    assert abs(v_lo - 1 / 0.9) < 0.04 and abs(v_hi - 2.0) < 0.07, (v_lo, v_hi)
    assert abs(v_p - 1 / (1 - 0.5 * 0.25 / 2)) < 0.03, v_p


# ---------------------------------------------------------------------- Neal's funnel
def test_hmc_funnel_neck_coordinate():
    """Funnel d = 3, x₀ ~ N(0, 3²). HMC with a fixed step under-explores the neck (x₀ ≲ −4) — a known
    difficulty (Neal 2003; Betancourt & Girolami 2015); with δ = 0.95, L = 20, jitter 0.5 it gets close.
    1000 chains: SE(mean) = 0.095, SE(std) ≈ 0.067. Tolerances: |mean| < 0.35, |std − 3| < 0.35 (the
    residual neck bias pulls the std down by ≈ 0.1–0.2). A non-adjusted or broken kernel misses this
    (with δ = 0.8, L = 10 the same budget gives mean ≈ 0.4, std ≈ 2.6)."""
    t = sf.targets.get("funnel", dim=3)
    s = sf.sample(t, "hmc", n=1000, seed=5, dtype="float64", init="prior", n_warmup=300, n_steps=500,
                  n_leapfrog=20, target_accept=0.95, jitter=0.5)
    x0 = s.x[:, 0]
    assert abs(float(x0.mean())) < 0.35, float(x0.mean())
    assert abs(float(x0.std()) - 3.0) < 0.35, float(x0.std())
    assert abs(s.info["acceptance_rate"] - 0.95) < 0.07


def test_hmc_funnel_d10_first_coordinate_with_log_uniform_step_jitter():
    """The benchmark funnel, d = 10, x₀ ~ N(0, 3²) exactly. The neck (x₀ ≈ −6: conditional scale e^{−3} ≈ 0.05)
    and the mouth (x₀ ≈ 6: scale e³ ≈ 20) need step sizes 400× apart, so one adapted step misses the neck: with
    L = 15, δ = 0.8, jitter 0.5 alone, 500 chains × 500 iterations give mean ≈ 0.3–0.4, std ≈ 2.6–2.7
    (seeds 5, 6; δ = 0.95 on a larger budget: mean ≈ 0.8, std ≈ 2.4 reported). Drawing the step per chain
    and iteration from a wide log-uniform law, ε·exp(U(−2, 2)) (``log_jitter=2``; a random step independent
    of the state keeps π invariant, Neal 2011 §5.4.2.2), lets chains enter and leave the neck: measured
    mean −0.05…0.04, std 2.88–2.92, P(x₀ < −3) = 0.154–0.156 (exact 0.159) over seeds 5–7, ~8 s.

    1000 independent chains (the final states), started at N(0, I) (narrower than the target in x₀, so a
    chain that does not move cannot pass): SE(mean) = 0.095, SE(std) ≈ 0.067, SE(P) ≈ 0.012. Tolerances:
    |mean| < 0.4 (≈ 4 SE; a neck-missing sampler is biased by +0.3…+0.8), |std − 3| < 12 % = 0.36
    (≈ 5 SE; the residual neck deficit is ≈ 3–4 %), |P(x₀ < −3) − 0.159| < 0.04, acceptance within 0.07 of δ.
    (MALA is the next test.)"""
    t = sf.targets.get("funnel", dim=10)
    s = sf.sample(t, "hmc", n=1000, seed=5, dtype="float64", init="prior", n_warmup=200, n_steps=300,
                  n_leapfrog=15, target_accept=0.8, jitter=0.5, log_jitter=2.0)
    x0 = s.x[:, 0]
    numbers = (float(x0.mean()), float(x0.std()), float((x0 < -3).double().mean()), s.info["acceptance_rate"])
    assert abs(numbers[0]) < 0.4, numbers
    assert abs(numbers[1] - 3.0) < 0.12 * 3.0, numbers
    assert abs(numbers[2] - 0.158655) < 0.04, numbers
    assert abs(numbers[3] - 0.8) < 0.07, numbers


def test_mala_funnel_d10_first_coordinate_with_log_uniform_step_jitter():
    """MALA on the same funnel. With one adapted step it never enters the neck: 1000 chains × 2000 iterations
    give mean 0.65, std 2.17, P(x₀ < −3) = 0.006. With h·exp(U(−4, 4)) per chain and iteration (h is a
    variance, so the range is twice HMC's) the neck is reached; the mouth (conditional scale e³ ≈ 20 explored by
    steps ≈ 1) still mixes slowly: 1000 chains × (1000 + 10000) iterations measured mean 0.06 / 0.04 / −0.13,
    std 2.65 / 2.61 / 2.73, P 0.135 / 0.140 / 0.157 (seeds 5, 6, 7; 30000 iterations: std 2.72), ~14 s.

    Stated MALA tolerances (looser than HMC's in the std, for that mouth deficit): |mean| < 0.4, |std − 3| < 0.5,
    |P(x₀ < −3) − 0.159| < 0.05, acceptance within 0.05 of 0.574. The un-jittered run fails the mean and P."""
    t = sf.targets.get("funnel", dim=10)
    s = sf.sample(t, "mala", n=1000, seed=5, dtype="float64", init="prior", n_warmup=1000, n_steps=10000,
                  log_jitter=4.0)
    x0 = s.x[:, 0]
    numbers = (float(x0.mean()), float(x0.std()), float((x0 < -3).double().mean()), s.info["acceptance_rate"])
    assert abs(numbers[0]) < 0.4, numbers
    assert abs(numbers[1] - 3.0) < 0.5, numbers
    assert abs(numbers[2] - 0.158655) < 0.05, numbers
    assert abs(numbers[3] - 0.574) < 0.05, numbers


def test_ula_funnel_d10_first_coordinate_stationary_bias_tamed():
    """ULA on the benchmark funnel (d = 10, x₀ ~ N(0, 3²)). ULA cannot be run from a cold start here: the
    mouth (x₀ ≈ 6, conditional scale e³ ≈ 20) relaxes in time ~e^{x₀} ≈ 400 while the neck (x₀ ≈ −6) needs
    h < 2e^{x₀}; measured from N(0, I) at h = 1e-4 over 400 000 iterations (t = 40): mean −0.69, std 2.32. What
    ULA can be asked is how far its own stationary law is from π, so the chains start at exact draws and run
    t = 5. Plain ULA at h = 1e-3 is thrown out of the neck (a chain with h > 2e^{x₀} oscillates with growing
    amplitude and the neck term of ∂log π/∂x₀ flings it to large x₀: std 6.2 measured, seed 5); the tamed
    drift (Brosse et al. 2019) removes that: measured mean 0.09 / 0.18, std 2.80 / 2.78, P(x₀ < −3) 0.134 /
    0.127 (seeds 5, 6; exact 0, 3, 0.159). Its O(h) bias thins the neck, hence the stated tolerances:
    |mean| < 0.4, |std − 3| < 0.5 (as MALA's), |P(x₀ < −3) − 0.159| < 0.06, 2000 chains (SE(mean) 0.07)."""
    t = sf.targets.get("funnel", dim=10)
    g = torch.Generator().manual_seed(5)
    start = t.sample(2000, g).double()
    s = sf.sample(t, "ula", n=2000, seed=5, dtype="float64", init=start, step_size=1e-3, n_warmup=0,
                  n_steps=5000, tamed=True)
    x0 = s.x[:, 0]
    numbers = (float(x0.mean()), float(x0.std()), float((x0 < -3).double().mean()))
    assert abs(numbers[0]) < 0.4, numbers
    assert abs(numbers[1] - 3.0) < 0.5, numbers
    assert abs(numbers[2] - 0.158655) < 0.06, numbers


def test_ula_tamed_drift_is_bounded_and_validated():
    """The tamed drift never moves a coordinate by more than 1 however large the gradient; it agrees with
    plain ULA to O(h²·|∇|²) where the gradient is small."""
    from sampleflow.samplers import kernels as K
    big = lambda x: (-(1e6 * x ** 2).sum(-1) / 2, -1e6 * x)
    st = K.init_state(torch.ones(4, 3, dtype=torch.float64), big)
    g = torch.Generator().manual_seed(0)
    moved = K.ula_step(st, big, 0.1, g, tamed=True).x - 1.0
    noise = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * (0.2 ** 0.5)
    assert ((moved - noise).abs() <= 1.0 + 1e-12).all() and ((moved - noise) < -0.99).all()
    small = _std_normal(d=3)
    st = K.init_state(torch.full((4, 3), 0.1, dtype=torch.float64), small.log_prob_and_score)
    a = K.ula_step(st, small.log_prob_and_score, 1e-3, torch.Generator().manual_seed(1), tamed=True).x
    b = K.ula_step(st, small.log_prob_and_score, 1e-3, torch.Generator().manual_seed(1)).x
    assert (a - b).abs().max() < 1e-7
    with pytest.raises(ValueError, match="tamed"):
        sf.samplers.get("ula").Config(tamed="yes")


@pytest.mark.parametrize("name", ["hmc", "mala"])
def test_log_jitter_validation_and_default_off(name):
    assert sf.samplers.get(name).Config().log_jitter == 0.0
    with pytest.raises(ValueError, match="log_jitter"):
        sf.samplers.get(name).Config(log_jitter=-1.0)


# ---------------------------------------------------------------------- preconditioning
def test_preconditioner_and_mass_matrix_estimated_from_warmup():
    """Diagonal Gaussian with stds 0.1 … 10: the warm-up estimate of each std is within 15 %
    (hundreds of thousands of correlated draws per coordinate); samples then match the moments."""
    sd = torch.logspace(-1, 1, 8, dtype=torch.float64)
    t = Gaussian(torch.zeros(8), sd ** 2)
    for name, extra in (("mala", {"adapt_preconditioner": True}), ("hmc", {"adapt_mass": True, "n_leapfrog": 5})):
        s = sf.sample(t, name, n=1000, seed=6, dtype="float64", n_warmup=400, n_steps=100, **extra)
        est = torch.tensor(s.info["preconditioner_std"], dtype=torch.float64)
        assert torch.allclose(est, sd, rtol=0.15), (name, est)
        _check_gaussian_moments(s.x, t.mean, t.cov)
        assert abs(s.info["acceptance_rate"] - s.info["target_accept"]) < 0.07, name


# ---------------------------------------------------------------------- reproducibility, trajectory, dtype
@pytest.mark.parametrize("name", ["ula", "mala", "hmc"])
def test_same_seed_same_samples(name):
    t = sf.targets.get("gaussian", dim=3)
    kw = dict(n_warmup=20, n_steps=10)
    a = sf.sample(t, name, n=50, seed=7, **kw)
    b = sf.sample(t, name, n=50, seed=7, **kw)
    c = sf.sample(t, name, n=50, seed=8, **kw)
    assert torch.equal(a.x, b.x)
    assert not torch.equal(a.x, c.x)
    assert a.x.dtype == torch.get_default_dtype()
    assert a.sampler == name and a.target == "gaussian" and a.wall_time > 0


def test_trajectory_thinning_and_progress(monkeypatch):
    monkeypatch.setenv("SAMPLEFLOW_PROGRESS", "1")
    t = sf.targets.get("gaussian", dim=2)
    s = sf.sample(t, "mala", n=16, seed=0, n_warmup=10, n_steps=25, keep_trajectory=True, thin=5)
    assert s.trajectory.shape == (5, 16, 2)
    assert torch.equal(s.trajectory[-1], s.x)
    s2 = sf.sample(t, "mala", n=16, seed=0, n_warmup=10, n_steps=25)
    assert s2.trajectory is None and torch.equal(s2.x, s.x)


def test_hmc_nfe_and_init_points():
    t = sf.targets.get("gaussian", dim=2)
    x0 = torch.tensor([1.0, -1.0])
    s = sf.sample(t, "hmc", n=7, seed=0, n_warmup=3, n_steps=4, n_leapfrog=3, init=x0)
    assert s.nfe == 7 * (1 + 3 * 7)
    with pytest.raises(ValueError, match="init"):
        sf.sample(t, "hmc", n=7, seed=0, init=torch.zeros(5, 2))


# ---------------------------------------------------------------------- errors
@pytest.mark.parametrize("name,field,value", [
    ("ula", "step_size", -0.1), ("mala", "step_size", 0.0), ("hmc", "step_size", float("nan")),
    ("hmc", "n_leapfrog", 0), ("mala", "target_accept", 1.0), ("hmc", "target_accept", -0.2),
    ("mala", "n_steps", 0), ("ula", "n_warmup", -1), ("mala", "init", "uniform"), ("hmc", "jitter", 1.5),
    ("ula", "dtype", "float16"),
])
def test_bad_config_names_the_field(name, field, value):
    with pytest.raises(ValueError, match=field):
        sf.sample(sf.targets.get("gaussian", dim=2), name, n=4, seed=0, **{field: value})


def test_nonfinite_log_prob_at_initial_points():
    def log_prob(x):
        return torch.where(x[..., 0] > 0, torch.full_like(x[..., 0], -math.inf), -0.5 * (x ** 2).sum(-1))
    t = sf.Target.from_log_prob(log_prob, dim=2)
    for name in ("ula", "mala", "hmc"):
        with pytest.raises(TargetInputError, match="initial points"):
            sf.sample(t, name, n=32, seed=0, n_warmup=2, n_steps=2)


def test_mala_rejects_nonfinite_proposals():
    """A half-space target: proposals with log π̃ = −∞ are rejected, chains stay in the support."""
    def log_prob(x):
        return torch.where(x[..., 0] > 0, -0.5 * (x ** 2).sum(-1), torch.full_like(x[..., 0], -math.inf))
    t = sf.Target.from_log_prob(log_prob, dim=2, box=([0.1, -2.0], [0.2, 2.0]))
    s = sf.sample(t, "mala", n=64, seed=0, n_warmup=50, n_steps=50, init=torch.tensor([1.0, 0.0]))
    assert bool((s.x[:, 0] > 0).all())
    assert "n_nonfinite_chains" not in s.info


def test_dual_averaging_converges_on_a_monotone_acceptance_curve():
    """α(ε) = exp(−ε²): dual averaging must find ε* with α(ε*) = 0.65, i.e. ε* = √(−log 0.65)."""
    da = K.dual_averaging_init(torch.tensor(1.0, dtype=torch.float64))
    for _ in range(2000):
        eps = torch.exp(da.log_step)
        da = K.dual_averaging_update(da, torch.exp(-eps ** 2), 0.65)
    assert float(torch.exp(da.log_step_avg)) == pytest.approx(math.sqrt(-math.log(0.65)), rel=0.02)


def test_samplers_registered():
    assert {"ula", "mala", "hmc"} <= set(sf.samplers.names())
    cfg = mcmc.HMC.make_config("cpu")
    assert cfg.n_leapfrog == 5 and cfg.target_accept == 0.8
    assert mcmc.MALA.make_config().target_accept == 0.574
