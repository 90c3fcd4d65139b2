import math

import pytest
import torch

from sampleflow.generative import (EDMPreconditioning, EDMSDE, GaussianMixture, ScoreMLP, ScoreModel, SubVPSDE,
                                   VESDE, VPSDE, denoiser_to_eps, dsm_loss, edm_preconditioning, eps_to_denoiser,
                                   eps_to_score, estimate_sigma_data, importance_time_density, sample_times,
                                   score_to_eps)

from .helpers import CHOL, DT, analytic_model, mixture


@pytest.mark.parametrize("chol", [None, CHOL], ids=["iso", "chol"])
def test_conversions_round_trip(chol):
    sde = VPSDE(noise_chol=chol)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 2, generator=g, dtype=DT)
    eps = torch.randn(6, 2, generator=g, dtype=DT)
    t = torch.rand(6, generator=g, dtype=DT) * 0.9 + 0.05
    s, sig = sde.marginal(t)
    assert torch.allclose(score_to_eps(eps_to_score(eps, sig, sde), sig, sde), eps)
    assert torch.allclose(denoiser_to_eps(eps_to_denoiser(eps, x, s, sig, sde), x, s, sig, sde), eps)
    # Tweedie: D = (x + σ² Σ ∇log p)/s
    Sig = torch.eye(2, dtype=DT) if chol is None else chol @ chol.T
    D = eps_to_denoiser(eps, x, s, sig, sde)
    score = eps_to_score(eps, sig, sde)
    assert torch.allclose(D, (x + sig[:, None] ** 2 * score @ Sig) / s[:, None])


@pytest.mark.parametrize("sde", [VPSDE(), VESDE(sigma_max=10.0), VPSDE(noise_chol=CHOL)], ids=["vp", "ve", "vp-chol"])
def test_three_parametrisations_agree(sde):
    """The same analytic field given as score, ε or denoiser network gives the same score/ε/D."""
    mix = mixture()
    m_score = analytic_model(mix, sde)

    def eps_net(x, t):
        return m_score.eps(x, t)

    def den_net(x, t):
        return m_score.denoise(x, t)

    m_eps = ScoreModel(eps_net, sde, "eps")
    m_den = ScoreModel(den_net, sde, "denoiser")
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 2, generator=g, dtype=DT) * 2
    for t in (torch.tensor(0.05, dtype=DT), torch.rand(8, generator=g, dtype=DT) * 0.9 + 0.05):
        for m in (m_eps, m_den):
            assert torch.allclose(m.score(x, t), m_score.score(x, t), rtol=1e-9, atol=1e-10)
            assert torch.allclose(m.eps(x, t), m_score.eps(x, t), rtol=1e-9, atol=1e-10)
            assert torch.allclose(m.denoise(x, t), m_score.denoise(x, t), rtol=1e-9, atol=1e-10)
            assert torch.allclose(m.cov_score(x, t), m_score.cov_score(x, t), rtol=1e-9, atol=1e-10)


def test_denoiser_is_posterior_mean_for_gaussian_data():
    """x0 ~ N(0, v I): E[x0 | x_t] = s v x_t / (s² v + σ²)."""
    v = 0.7
    gm = GaussianMixture([1.0], [[0.0, 0.0]], [v])
    sde = VPSDE()
    m = analytic_model(gm, sde)
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(0), dtype=DT)
    t = torch.tensor(0.4, dtype=DT)
    s, sig = sde.marginal(t)
    assert torch.allclose(m.denoise(x, t), s * v * x / (s * s * v + sig * sig))


def test_edm_preconditioning_matches_table_1():
    sd = 0.5
    for sigma in (0.002, 0.3, 1.0, 80.0):
        s = torch.tensor(sigma, dtype=DT)
        c_skip, c_out, c_in, c_noise = edm_preconditioning(s, sd)
        assert float(c_skip) == pytest.approx(sd ** 2 / (sigma ** 2 + sd ** 2), rel=1e-12)
        assert float(c_out) == pytest.approx(sigma * sd / math.sqrt(sigma ** 2 + sd ** 2), rel=1e-12)
        assert float(c_in) == pytest.approx(1 / math.sqrt(sigma ** 2 + sd ** 2), rel=1e-12)
        assert float(c_noise) == pytest.approx(0.25 * math.log(sigma), rel=1e-12)
        assert float(EDMPreconditioning(sd).loss_weight(s)) == pytest.approx((sigma ** 2 + sd ** 2) / (sigma * sd) ** 2)
    # at σ = 1, σ_d = 0.5: c_skip = 0.2, c_out = 0.5/√1.25, c_in = 1/√1.25
    c = edm_preconditioning(torch.tensor(1.0, dtype=DT), 0.5)
    assert float(c[0]) == pytest.approx(0.2)
    # the effective training target has unit variance: Var[(x0 − c_skip x)/c_out] = 1 for Var x0 = σ_d²
    sigma = 2.0
    cs, co, _, _ = edm_preconditioning(torch.tensor(sigma, dtype=DT), sd)
    var = ((1 - cs) ** 2 * sd ** 2 + cs ** 2 * sigma ** 2) / co ** 2
    assert float(var) == pytest.approx(1.0)


def test_preconditioned_model_uses_scaled_variables():
    """D(x_t) = c_skip x̃ + c_out F(c_in x̃, c_noise), x̃ = x/s, σ̃ = σ/s (checked on VP where s ≠ 1)."""
    sde = VPSDE()
    pc = EDMPreconditioning(0.8)
    seen = {}

    def F(x, c_noise):
        seen["c_noise"] = c_noise
        return torch.sin(x)

    m = ScoreModel(F, sde, "denoiser", preconditioning=pc)
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=DT)
    t = torch.tensor(0.5, dtype=DT)
    s, sig = sde.marginal(t)
    st = sig / s
    expect = pc.c_skip(st) * x / s + pc.c_out(st) * torch.sin(pc.c_in(st) * x / s)
    assert torch.allclose(m.denoise(x, t), expect)
    assert torch.allclose(seen["c_noise"], 0.25 * st.log())
    with pytest.raises(ValueError, match="denoiser"):
        ScoreModel(F, sde, "eps", preconditioning=pc)


def test_estimate_sigma_data():
    x = torch.randn(20000, 3, generator=torch.Generator().manual_seed(0), dtype=DT) * 0.5 + 3.0
    assert estimate_sigma_data(x) == pytest.approx(0.5, rel=0.02)


def test_score_mlp_shapes_and_gradients():
    net = ScoreMLP(2, width=32, depth=3, generator=torch.Generator().manual_seed(0)).double()
    sde = EDMSDE()
    m = ScoreModel(net, sde, "denoiser", preconditioning=EDMPreconditioning(1.0))
    x0 = mixture().sample(64, torch.Generator().manual_seed(1), dtype=DT)
    loss = dsm_loss(m, x0, torch.Generator().manual_seed(2), weighting="edm", time_sampling="lognormal")
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    assert m.score(x0, torch.rand(64, dtype=DT) + 0.1).shape == (64, 2)


# ---------------------------------------------------------------------------------------------- DSM loss
def test_dsm_loss_exact_score_equals_known_constant():
    """x0 ~ N(0, v I_d) at fixed t: E‖ε̂* − ε‖² = d s² v / (s² v + σ²) (the irreducible DSM floor)."""
    v, d, n = 0.5, 2, 40000
    gm = GaussianMixture([1.0], [[0.0, 0.0]], [v])
    for sde in (VPSDE(), VESDE(sigma_max=10.0)):
        m = analytic_model(gm, sde)
        x0 = gm.sample(n, torch.Generator().manual_seed(0), dtype=DT)
        t = 0.3
        per = dsm_loss(m, x0, torch.Generator().manual_seed(1), t=t, reduce=False)
        s, sig = sde.marginal(torch.tensor(t, dtype=DT))
        const = float(d * s * s * v / (s * s * v + sig * sig))
        se = float(per.std()) / math.sqrt(n)
        assert abs(float(per.mean()) - const) < 4 * se, (float(per.mean()), const, se)


@pytest.mark.parametrize("weighting,time_sampling", [("sigma2", "uniform"), ("likelihood", "importance"),
                                                     ("likelihood", "uniform"), ("edm", "lognormal")])
def test_dsm_loss_lower_at_exact_score(weighting, time_sampling):
    mix = mixture()
    sde = VPSDE()
    exact = analytic_model(mix, sde)
    x0 = mix.sample(4000, torch.Generator().manual_seed(0), dtype=DT)

    def loss(model):
        return float(dsm_loss(model, x0, torch.Generator().manual_seed(1), weighting=weighting,
                              time_sampling=time_sampling))

    base = loss(exact)
    for pert in (lambda x, t: 1.1 * exact.score(x, t), lambda x, t: exact.score(x, t) + 0.1):
        assert loss(ScoreModel(pert, sde, "score")) > base * 1.001


def test_importance_sampling_estimates_the_uniform_objective():
    """Likelihood weighting, Gaussian data N(0, v I): (1/(T − t_min)) ∫ g²/σ² · d s² v/(s² v + σ²) dt by
    quadrature; both the uniform-time and the importance-sampled estimators match it within 4 standard
    errors, and importance sampling has the lower variance."""
    v, d, n = 0.5, 2, 20000
    gm = GaussianMixture([1.0], [[0.0, 0.0]], [v])
    sde = VPSDE()
    m = analytic_model(gm, sde)
    u = torch.linspace(0, 1, 200001, dtype=DT)
    t = sde.t_min + (sde.T - sde.t_min) * u ** 2
    s, sig = sde.marginal(t)
    f = sde.diffusion(t) ** 2 / sig ** 2 * d * s * s * v / (s * s * v + sig * sig)
    quad = float(torch.trapezoid(f, t)) / (sde.T - sde.t_min)
    x0 = gm.sample(n, torch.Generator().manual_seed(0), dtype=DT)
    se = {}
    for ts in ("uniform", "importance"):
        per = dsm_loss(m, x0, torch.Generator().manual_seed(3), weighting="likelihood", time_sampling=ts,
                       reduce=False)
        se[ts] = float(per.std()) / math.sqrt(n)
        assert abs(float(per.mean()) - quad) < 4 * se[ts], (ts, float(per.mean()), quad, se[ts])
    assert se["importance"] < 0.5 * se["uniform"]


def test_sample_times_ranges_and_density():
    sde = VPSDE()
    g = torch.Generator().manual_seed(0)
    for method in ("uniform", "lognormal", "importance"):
        t, w = sample_times(sde, 5000, g, method, dtype=DT)
        assert t.min() >= sde.t_min and t.max() <= sde.T and torch.isfinite(w).all()
    # the importance density integrates to 1 and is ∝ g²/σ²
    tt = torch.linspace(sde.t_min, sde.T, 100001, dtype=DT)
    q = importance_time_density(sde, tt)
    assert float(torch.trapezoid(q, tt)) == pytest.approx(1.0, abs=1e-3)
    # lognormal: ln σ̃ has mean −1.2 (clipping at the ends is rare)
    t, _ = sample_times(EDMSDE(), 20000, g, "lognormal", dtype=DT)
    assert float(t.log().mean()) == pytest.approx(-1.2, abs=0.03)


def test_bad_model_and_loss_inputs():
    sde = VPSDE()
    with pytest.raises(ValueError, match="parametrisation"):
        ScoreModel(lambda x, t: x, sde, "velocity")
    m = ScoreModel(lambda x, t: x[:, :1], sde, "eps")
    with pytest.raises(ValueError, match="shape"):
        m.score(torch.zeros(3, 2), 0.5)
    good = ScoreModel(lambda x, t: x, sde, "eps")
    with pytest.raises(ValueError, match="x0"):
        dsm_loss(good, torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match="weighting"):
        dsm_loss(good, torch.zeros(3, 2), weighting="foo")
    with pytest.raises(ValueError, match="time_sampling"):
        dsm_loss(good, torch.zeros(3, 2), time_sampling="foo")
    with pytest.raises(ValueError, match="t must"):
        good.score(torch.zeros(3, 2), torch.zeros(4))


def test_time_input_options():
    sde = VPSDE()
    seen = []

    def net(x, tau):
        seen.append(tau)
        return x

    x = torch.zeros(3, 2, dtype=DT)
    t = torch.tensor(0.5, dtype=DT)
    st = sde.sigma_tilde(t)
    for ti, expect in (("t", t), ("sigma", st), ("log_sigma", 0.25 * st.log())):
        ScoreModel(net, sde, "eps", time_input=ti).eps(x, t)
        assert torch.allclose(seen[-1], expect)
    with pytest.raises(ValueError, match="time_input"):
        ScoreModel(net, sde, "eps", time_input="beta")
