import math

import pytest
import torch

from sampleflow.generative import EDMSDE, SubVPSDE, VESDE, VPSDE, get_sde, ve_sigma_max

from .helpers import CHOL, DT


def _simulate_forward(sde, x0, t_check, n_steps, g):
    """Euler–Maruyama of the forward SDE from t = 0 (x at t = 0 drawn from the marginal), recording
    mean and covariance at the grid indices in t_check."""
    x, _ = sde.sample_marginal(x0, torch.tensor(0.0, dtype=DT), g)
    ts = torch.linspace(0, sde.T, n_steps + 1, dtype=DT)
    out = {}
    for k in range(n_steps):
        t, h = ts[k], ts[k + 1] - ts[k]
        noise = torch.randn(x.shape, generator=g, dtype=DT)
        x = x + sde.drift(x, t) * h + sde.diffusion(t) * h.sqrt() * sde.apply_chol(noise)
        if k + 1 in t_check:
            out[k + 1] = (ts[k + 1], x.mean(0), torch.cov(x.T))
    return out


@pytest.mark.parametrize(
    "sde",
    [VPSDE(), SubVPSDE(), VESDE(sigma_max=5.0), VPSDE(noise_chol=CHOL), VESDE(sigma_max=5.0, noise_chol=CHOL)],
    ids=["vp", "subvp", "ve", "vp-chol", "ve-chol"],
)
def test_forward_marginals_match_euler_maruyama(sde):
    """x_t = s(t) x0 + σ(t) C ε: simulated mean within 0.03 σ and covariance within 5 % of σ² Σ
    (n = 20000: the Monte Carlo error of the covariance is ≈ 1 %; EM bias with 600 steps ≈ 1 %)."""
    g = torch.Generator().manual_seed(0)
    n = 20000
    x0 = torch.tensor([1.5, -1.0], dtype=DT).expand(n, 2)
    Sig = torch.eye(2, dtype=DT) if sde.noise_chol is None else CHOL @ CHOL.T
    for k, (t, mean, cov) in _simulate_forward(sde, x0, {180, 600}, 600, g).items():
        s, sig = sde.marginal(t)
        assert ((mean - s * x0[0]) / sig).abs().max() < 0.03, (k, mean)
        assert ((cov - sig ** 2 * Sig) / sig ** 2).abs().max() < 0.05, (k, cov)


def test_subvp_std_is_not_square_root():
    sde = SubVPSDE()
    t = torch.tensor(0.3, dtype=DT)
    B = 0.1 * 0.3 + 0.5 * 19.9 * 0.09
    assert torch.allclose(sde.sigma(t), torch.tensor(1 - math.exp(-B), dtype=DT))
    assert torch.allclose(sde.mean_scale(t), torch.tensor(math.exp(-B / 2), dtype=DT))
    # the sub-VP variance is below the VP variance at every t > 0
    ts = torch.linspace(0.01, 1, 50, dtype=DT)
    assert (SubVPSDE().sigma(ts) < VPSDE().sigma(ts)).all()


def test_diffusion_matches_variance_derivative():
    """dσ²/dt = 2 f σ² + g² for every SDE (the marginal ODE of a linear SDE)."""
    for sde in [VPSDE(), SubVPSDE(), VESDE(sigma_max=20.0), EDMSDE()]:
        t = torch.linspace(sde.t_min * 10, sde.T * 0.9, 7, dtype=DT).requires_grad_(True)
        var = sde.sigma(t) ** 2
        (dvar,) = torch.autograd.grad(var.sum(), t)
        rhs = 2 * sde.drift_coef(t) * var + sde.diffusion(t) ** 2
        assert torch.allclose(dvar, rhs.detach(), rtol=1e-8), type(sde).__name__


@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE(), VESDE(sigma_max=20.0), EDMSDE()], ids=["vp", "subvp", "ve", "edm"])
def test_t_from_sigma_tilde_inverts(sde):
    t = torch.linspace(sde.t_min, sde.T, 11, dtype=DT)
    assert torch.allclose(sde.t_from_sigma_tilde(sde.sigma_tilde(t)), t, rtol=1e-9, atol=1e-12)


def test_edm_defaults_and_prior():
    sde = EDMSDE()
    assert (sde.t_min, sde.T) == (0.002, 80.0)
    t = torch.tensor([0.5, 3.0], dtype=DT)
    assert torch.equal(sde.sigma(t), t) and torch.allclose(sde.diffusion(t), (2 * t).sqrt())
    x = sde.prior_sample((4000, 2), torch.Generator().manual_seed(0), dtype=DT)
    assert abs(float(x.std()) - 80.0) < 2.0
    # prior log-density is that of N(0, 80² I)
    lp = sde.prior_log_prob(x[:3])
    ref = torch.distributions.Normal(0.0, 80.0).log_prob(x[:3]).sum(-1)
    assert torch.allclose(lp, ref)


def test_prior_log_prob_with_cholesky():
    sde = VESDE(sigma_max=3.0, noise_chol=CHOL)
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(0), dtype=DT)
    ref = torch.distributions.MultivariateNormal(torch.zeros(2, dtype=DT), scale_tril=3.0 * CHOL).log_prob(x)
    assert torch.allclose(sde.prior_log_prob(x), ref)


def test_ve_sigma_max_chunked_equals_brute_force():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 3, generator=g, dtype=DT)
    brute = torch.cdist(x, x).max().item()
    assert ve_sigma_max(x, chunk_size=64) == pytest.approx(brute, rel=1e-12)
    big = torch.randn(10_000, 2, generator=g)
    assert 7.0 < ve_sigma_max(big) < 12.0
    with pytest.raises(ValueError, match="data"):
        ve_sigma_max(torch.tensor([[0.0, float("nan")], [1.0, 1.0]]))


def test_bad_sde_arguments():
    with pytest.raises(ValueError, match="sigma_max"):
        VESDE(sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match="noise_chol"):
        VPSDE(noise_chol=torch.ones(2, 3))
    with pytest.raises(ValueError, match="sde"):
        get_sde("nope")
    with pytest.raises(ValueError, match="shape"):
        VPSDE().prior_sample(5)
