"""log Z / ESS estimators, entropic mode coverage, moment errors."""
import math

import numpy as np
import pytest
import torch

from sampleflow.metrics import (elbo, entropic_mode_coverage, ess, eubo, log_Z_importance, mean_error,
                                mode_histogram, moment_errors, std_error, weighted_mean_std, weights_from_log)


# ------------------------------------------------------------------------------------------------ log Z / ESS
def test_ess_extremes():
    assert ess(torch.zeros(500)) == pytest.approx(1.0, rel=1e-12)
    lw = torch.full((500,), -50.0)
    lw[7] = 0.0
    assert ess(lw) == pytest.approx(1 / 500, rel=1e-6)
    # (Σw)²/(nΣw²) by hand
    w = np.array([1.0, 2.0, 3.0, 4.0])
    assert ess(np.log(w)) == pytest.approx(w.sum() ** 2 / (4 * (w ** 2).sum()), rel=1e-12)


def test_importance_log_z_with_the_exact_density_as_proposal_is_exact():
    # q = π̃ / Z  =>  log w = log π̃ − log q = log Z for every sample: IS, ELBO and EUBO all equal log Z
    log_Z = 3.7
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 2, generator=g, dtype=torch.float64)
    log_q = -0.5 * (x ** 2).sum(1) - math.log(2 * math.pi)
    log_pi_tilde = log_q + log_Z
    lw = log_pi_tilde - log_q
    assert log_Z_importance(lw) == pytest.approx(log_Z, abs=1e-12)
    assert elbo(lw) == pytest.approx(log_Z, abs=1e-12)
    assert eubo(lw) == pytest.approx(log_Z, abs=1e-12)
    assert ess(lw) == pytest.approx(1.0, rel=1e-12)


def test_importance_log_z_gaussian_proposal_within_standard_errors():
    # π̃(x) = exp(c) · exp(−|x − μ|²/(2σ²)) in d = 2: Z = exp(c) (2πσ²)^{d/2}
    d, sigma, c = 2, 0.7, -1.3
    mu = torch.tensor([0.5, -0.5], dtype=torch.float64)
    log_Z = c + 0.5 * d * math.log(2 * math.pi * sigma ** 2)
    g = torch.Generator().manual_seed(1)
    n, s_q = 20000, 1.5
    x = s_q * torch.randn(n, d, generator=g, dtype=torch.float64)
    log_q = -0.5 * (x ** 2).sum(1) / s_q ** 2 - 0.5 * d * math.log(2 * math.pi * s_q ** 2)
    lw = c - 0.5 * ((x - mu) ** 2).sum(1) / sigma ** 2 - log_q
    est = log_Z_importance(lw)
    w = torch.exp(lw - lw.max())
    se = float(w.std() / (w.mean() * math.sqrt(n)))   # delta method: sd of log Ẑ ≈ sd(w)/(mean(w) √n)
    assert abs(est - log_Z) < 4 * se
    assert se < 0.02                                  # the check above is not vacuous
    assert elbo(lw) < log_Z                           # Jensen


# ------------------------------------------------------------------------------------------------ EMC
class FakeMixture:
    """Well-separated equal-weight mixture of K unit Gaussians (component log-densities without weights)."""

    name = "fake_mixture"

    def __init__(self, means):
        self.means = torch.as_tensor(means, dtype=torch.float64)
        self.n_components, self.dim = self.means.shape

    def component_log_probs(self, x):
        x = torch.as_tensor(x, dtype=torch.float64)
        d2 = ((x[..., None, :] - self.means) ** 2).sum(-1)
        return -0.5 * d2 - 0.5 * self.dim * math.log(2 * math.pi)


MEANS = [[-10.0, -10.0], [-10.0, 10.0], [10.0, -10.0], [10.0, 10.0]]


def _points_in_modes(counts, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.cat([torch.tensor(MEANS[k], dtype=torch.float64) + torch.randn(c, 2, generator=g, dtype=torch.float64)
                      for k, c in enumerate(counts) if c])


@pytest.fixture(params=["fake", "zoo"])
def mixture(request):
    if request.param == "fake":
        return FakeMixture(MEANS)
    mixtures = pytest.importorskip("sampleflow.targets.mixtures")
    return mixtures.GaussianMixture(None, MEANS, 1.0)


def test_emc_full_partial_and_single_mode(mixture):
    assert entropic_mode_coverage(_points_in_modes([50, 50, 50, 50]), mixture) == pytest.approx(1.0, abs=1e-12)
    assert entropic_mode_coverage(_points_in_modes([0, 80, 0, 80]), mixture) == pytest.approx(0.5, abs=1e-12)
    assert entropic_mode_coverage(_points_in_modes([0, 0, 120, 0]), mixture) == 0.0
    # hand value for an uneven histogram p = (1/2, 1/4, 1/4, 0): H = 1.5 log 2, / log 4 = 0.75
    assert entropic_mode_coverage(_points_in_modes([100, 50, 50, 0]), mixture) == pytest.approx(0.75, abs=1e-12)


def test_emc_weights_and_soft_assignment(mixture):
    x = _points_in_modes([50, 50, 50, 50])
    w = np.ones(200)
    w[50:] = 0.0   # all the weight on mode 0
    assert entropic_mode_coverage(x, mixture, weights=w) == 0.0
    np.testing.assert_allclose(mode_histogram(x, mixture).numpy(), [0.25] * 4, atol=1e-12)
    assert entropic_mode_coverage(x, mixture, assignment="soft") == pytest.approx(1.0, abs=1e-9)


def test_emc_needs_a_mixture():
    with pytest.raises(ValueError, match="component_log_probs"):
        entropic_mode_coverage(np.zeros((3, 2)), object())
    with pytest.raises(ValueError, match="at least 2"):
        entropic_mode_coverage(np.zeros((3, 2)), FakeMixture([[0.0, 0.0]]))


# ------------------------------------------------------------------------------------------------ moments
def test_moment_errors_unweighted_weighted_and_analytic():
    r = np.random.default_rng(0)
    x = r.standard_normal((500, 3)) * [1.0, 2.0, 0.5] + [1.0, 0.0, -1.0]
    mu, sd = weighted_mean_std(x)
    np.testing.assert_allclose(mu.numpy(), x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(sd.numpy(), x.std(0), rtol=1e-12)       # ddof = 0
    ref_mu, ref_sd = np.array([1.0, 0.0, -1.0]), np.array([1.0, 2.0, 0.5])
    e = moment_errors(x, (ref_mu, ref_sd))
    assert e["mean_error"] == pytest.approx(np.linalg.norm(x.mean(0) - ref_mu), rel=1e-12)
    assert e["std_error"] == pytest.approx(np.mean(np.abs(x.std(0) - ref_sd)), rel=1e-12)
    assert mean_error(x, x) == pytest.approx(0.0, abs=1e-12) and std_error(x, x) == pytest.approx(0.0, abs=1e-12)
    # self-normalised importance weights: weight 3 == the point three times
    w = np.ones(500)
    w[:100] = 3.0
    dup = np.concatenate([x, x[:100], x[:100]])
    ew, ed = moment_errors(x, (ref_mu, ref_sd), weights=w), moment_errors(dup, (ref_mu, ref_sd))
    assert ew["mean_error"] == pytest.approx(ed["mean_error"], rel=1e-12)
    assert ew["std_error"] == pytest.approx(ed["std_error"], rel=1e-12)
    np.testing.assert_allclose(weights_from_log(np.log(w)).numpy(), w / w.sum(), rtol=1e-12)
    with pytest.raises(ValueError, match="dimension"):
        moment_errors(x, np.zeros((10, 2)))
