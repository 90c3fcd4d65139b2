"""SVGD (Liu & Wang 2016): the direction against naive references, the median heuristic against
``metrics.median_pairwise_distance``, one step of the sampler by hand, moments of a correlated 2-D Gaussian,
reproducibility, NFE and config errors. Tolerances are stated where they are set."""
import math

import pytest
import torch

import sampleflow.samplers.svgd as svgd_mod
from sampleflow.metrics.distances import median_pairwise_distance
from sampleflow.samplers import registry
from sampleflow.samplers.svgd import SVGD, SVGDConfig, median_bandwidth, svgd_direction
from sampleflow.targets.base import Target, TargetInputError
from sampleflow.targets.gaussian import Gaussian

MEAN = torch.tensor([1.0, -0.5], dtype=torch.float64)
COV = torch.tensor([[1.5, 0.9], [0.9, 1.0]], dtype=torch.float64)


def gaussian_target():
    # box centre (0, -1) is off the mean, so the particles have to travel
    return Gaussian(MEAN, COV, box=((-4.0, -5.0), (4.0, 3.0)))


def naive_direction(x, score, h):
    """φ(x_i) = (1/n) Σ_j [k(x_j, x_i) s_j + ∇_{x_j} k(x_j, x_i)], k = exp(−|x_j − x_i|²/h), the gradient by
    autograd, one pair at a time."""
    n = x.shape[0]
    out = torch.zeros_like(x)
    for i in range(n):
        for j in range(n):
            xj = x[j].clone().requires_grad_(True)
            k = torch.exp(-((xj - x[i]) ** 2).sum() / h)
            (gk,) = torch.autograd.grad(k, xj)
            out[i] += k.detach() * score[j] + gk
    return out / n


# ------------------------------------------------------------------------------------------------ direction
def test_direction_matches_double_loop_autograd_reference():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 2, generator=g, dtype=torch.float64)
    s = torch.randn(5, 2, generator=g, dtype=torch.float64)
    for h in (0.3, 1.7):
        ref = naive_direction(x, s, h)
        for chunk in (None, 1, 2, 5):
            torch.testing.assert_close(svgd_direction(x, s, h, chunk), ref, rtol=1e-12, atol=1e-12)


def test_direction_chunked_equals_unchunked():
    g = torch.Generator().manual_seed(1)
    x = 2 * torch.randn(203, 3, generator=g, dtype=torch.float64)
    s = torch.randn(203, 3, generator=g, dtype=torch.float64)
    h = torch.tensor(0.8, dtype=torch.float64)
    full = svgd_direction(x, s, h, None)
    for chunk in (1, 7, 64, 202, 203, 1000):
        torch.testing.assert_close(svgd_direction(x, s, h, chunk), full, rtol=1e-10, atol=1e-10)


def test_direction_shape_error():
    with pytest.raises(ValueError, match="shape"):
        svgd_direction(torch.zeros(4, 2), torch.zeros(4, 3), 1.0)


# ------------------------------------------------------------------------------------------------ bandwidth
@pytest.mark.parametrize("n", [2, 3, 4, 5, 50, 51])
def test_median_bandwidth_is_med_squared_over_log_n(n):
    x = torch.randn(n, 3, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    med = median_pairwise_distance(x, include_diagonal=False)  # pairs i < j, as in pdist
    assert median_bandwidth(x).item() == pytest.approx(med ** 2 / math.log(n), rel=1e-12)


@pytest.mark.parametrize("n", [4, 6, 9, 12])
def test_median_bandwidth_with_tied_distances(n):
    # points on a small integer grid: many equal distances, including at the two middle ranks
    x = torch.randint(0, 3, (n, 2), generator=torch.Generator().manual_seed(n)).double()
    med = median_pairwise_distance(x, include_diagonal=False)
    expected = med ** 2 / math.log(n) if med > 0 else 1.0
    assert median_bandwidth(x).item() == pytest.approx(expected, rel=1e-12)


def test_median_bandwidth_subsample_uses_first_points_and_full_log_n():
    x = torch.randn(80, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    med = median_pairwise_distance(x[:30], include_diagonal=False)
    assert median_bandwidth(x, 30).item() == pytest.approx(med ** 2 / math.log(80), rel=1e-12)
    assert median_bandwidth(x[:1]).item() == 1.0


# ------------------------------------------------------------------------------------------------ sampler
@pytest.mark.parametrize("optimizer", ["sgd", "adagrad"])
def test_one_step_by_hand(optimizer):
    t = gaussian_target()
    cfg = SVGDConfig(n_steps=1, step_size=0.05, optimizer=optimizer, dtype="float64", chunk_size=4)
    n = 9
    out = SVGD(t, cfg).sample(n, torch.Generator().manual_seed(5))
    x0 = SVGD(t, cfg).initial_particles(n, torch.Generator().manual_seed(5), torch.float64, torch.device("cpu"))
    h = median_pairwise_distance(x0, include_diagonal=False) ** 2 / math.log(n)
    phi = naive_direction(x0, t.score(x0), h)
    step = phi if optimizer == "sgd" else phi / (1e-6 + phi.abs())  # AdaGrad: G_0 = φ_0²
    torch.testing.assert_close(out.x, x0 + 0.05 * step, rtol=1e-10, atol=1e-10)
    assert out.info["bandwidth"] == pytest.approx(h, rel=1e-12)


def test_correlated_gaussian_moments():
    # measured (seeds 0-4, float32 and float64): |mean err| <= 0.03, relative Frobenius cov error 0.030-0.036
    # (finite-n SVGD slightly under-disperses). Tolerances 0.06 / 0.06 fail for a flipped kernel-gradient sign
    # (cov err 0.98), half the repulsion (0.52), no repulsion (1.0), h/10 (0.24) and h/3 (0.087).
    # (h too *large* is not visible here: for a Gaussian a wide RBF kernel still matches two moments; the
    # bandwidth is pinned by the one-step and median tests instead.)
    t = gaussian_target()
    cfg = SVGDConfig(n_steps=300, step_size=0.05, init_scale=0.4, dtype="float64")
    s = SVGD(t, cfg).sample(300, torch.Generator().manual_seed(0))
    C = torch.cov(s.x.T)
    assert (s.x.mean(0) - MEAN).norm().item() < 0.06
    assert ((C - COV).norm() / COV.norm()).item() < 0.06


def test_same_seed_same_particles_nfe_and_info():
    t = gaussian_target()
    cfg = SVGDConfig(n_steps=20, step_size=0.05, keep_trajectory=5, init="box")
    a = SVGD(t, cfg).sample(40, torch.Generator().manual_seed(7))
    b = SVGD(t, cfg).sample(40, torch.Generator().manual_seed(7))
    c = SVGD(t, cfg).sample(40, torch.Generator().manual_seed(8))
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)
    assert a.x.dtype == torch.get_default_dtype() and a.x.shape == (40, 2)
    assert a.nfe == 40 * 20 + 40  # n score evaluations per step + n log-density checks at the start
    assert a.info["nfe_score"] == 40 * 20 and a.info["steps"] == 20 and a.info["bandwidth"] > 0
    assert a.trajectory.shape == (5, 40, 2)  # start + every 5th of 20 steps
    assert a.wall_time > 0 and a.sampler == "svgd" and a.log_weights is None


def test_fixed_bandwidth_and_registry():
    assert registry.get("svgd") is SVGD
    cfg = SVGD.make_config("cpu", n_steps=3, bandwidth=0.7)
    s = SVGD(gaussian_target(), cfg).sample(10, torch.Generator().manual_seed(0))
    assert s.info["bandwidth"] == pytest.approx(0.7) and s.info["bandwidth_rule"] == "fixed"


@pytest.mark.parametrize("field,value", [
    ("n_steps", -1), ("n_steps", 2.5), ("step_size", 0.0), ("step_size", float("nan")), ("optimizer", "adam"),
    ("momentum", 1.0), ("bandwidth", "mean"), ("bandwidth", -1.0), ("median_points", 1), ("init", "uniform"),
    ("init_scale", 0.0), ("chunk_size", 0), ("keep_trajectory", -2), ("dtype", "float16")])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        SVGDConfig(**{field: value})


def test_bad_n_and_nonfinite_start():
    t = gaussian_target()
    with pytest.raises(ValueError, match="n must be"):
        SVGD(t).sample(0)
    half = Target.from_log_prob(lambda x: torch.where(x[..., 0] > 0, -0.5 * (x ** 2).sum(-1),
                                                     torch.full_like(x[..., 0], -math.inf)), dim=2, name="half")
    with pytest.raises(TargetInputError, match="initial SVGD particles"):
        SVGD(half, SVGDConfig(n_steps=2)).sample(20, torch.Generator().manual_seed(0))


def test_direction_used_by_sampler_is_module_function(monkeypatch):
    # guards that the sampler really goes through svgd_direction (which the reference tests pin down)
    calls = []
    orig = svgd_mod.svgd_direction
    monkeypatch.setattr(svgd_mod, "svgd_direction", lambda *a: calls.append(1) or orig(*a))
    SVGD(gaussian_target(), SVGDConfig(n_steps=4)).sample(6, torch.Generator().manual_seed(0))
    assert len(calls) == 4
