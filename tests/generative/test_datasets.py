import numpy as np
import pytest
import torch

from sampleflow.generative import (GaussianMixture, VPSDE, load_data, load_digits, make_circles, make_moons,
                                   make_swiss_roll, toy_dataset)

from .helpers import DT, mixture


def test_toy_sets_shapes_ranges_and_seeds():
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    m = make_moons(1001, generator=g())
    assert m.shape == (1001, 2) and torch.equal(m, make_moons(1001, generator=g()))
    assert -1.3 < float(m[:, 0].min()) and float(m[:, 0].max()) < 2.3
    c = make_circles(1000, noise=0.0, generator=g(), dtype=DT)
    r = c.norm(dim=-1)
    assert torch.allclose(torch.sort(r).values[:500], torch.full((500,), 0.5, dtype=DT))
    assert torch.allclose(torch.sort(r).values[500:], torch.ones(500, dtype=DT))
    s = make_swiss_roll(2000, generator=g())
    assert s.shape == (2000, 2) and s.abs().max() < 4.0
    assert toy_dataset("moons", 10, generator=g()).shape == (10, 2)
    with pytest.raises(ValueError, match="name"):
        toy_dataset("spiral", 10)
    with pytest.raises(ValueError, match="n must"):
        make_moons(0)


def test_mixture_log_prob_and_score_match_autograd_and_torch():
    mix = mixture()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 2, generator=g, dtype=DT) * 2
    comps = torch.distributions.MultivariateNormal(mix.means, mix.covs)
    ref = torch.logsumexp(comps.log_prob(x[:, None]) + mix.weights.log(), -1)
    assert torch.allclose(mix.log_prob(x), ref)
    sde = VPSDE()
    t = torch.rand(16, generator=g, dtype=DT)
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(mix.log_prob(xr, sde, t).sum(), xr)
    assert torch.allclose(mix.score(x, sde, t), grad)
    # noised marginal: at t = 0.5 the mixture is Σ w N(s m, s² S + σ² I)
    t0 = torch.tensor(0.5, dtype=DT)
    s, sig = sde.marginal(t0)
    comps_t = torch.distributions.MultivariateNormal(s * mix.means, s * s * mix.covs + sig * sig * torch.eye(2, dtype=DT))
    ref_t = torch.logsumexp(comps_t.log_prob(x[:, None]) + mix.weights.log(), -1)
    assert torch.allclose(mix.log_prob(x, sde, t0), ref_t)
    with pytest.raises(ValueError, match="x must"):
        mix.score(torch.zeros(3, 3))


def test_grid_mixture():
    gm = GaussianMixture.grid(3, spacing=2.0, var=0.1)
    assert gm.means.shape == (9, 2) and torch.allclose(gm.means.mean(0), torch.zeros(2, dtype=DT))


def test_load_data_sources_and_errors(tmp_path):
    a = np.random.default_rng(0).normal(size=(20, 3))
    assert load_data(a, dtype=DT).shape == (20, 3)
    np.save(tmp_path / "x.npy", a)
    assert torch.allclose(load_data(tmp_path / "x.npy", dtype=DT), torch.as_tensor(a))
    np.savez(tmp_path / "x.npz", train=a, other=a[:2])
    assert load_data(tmp_path / "x.npz", key="train").shape == (20, 3)
    with pytest.raises(ValueError, match="key="):
        load_data(tmp_path / "x.npz")
    (tmp_path / "x.csv").write_text("a,b,c\n" + "\n".join(",".join(map(str, r)) for r in a))
    assert torch.allclose(load_data(tmp_path / "x.csv", dtype=DT), torch.as_tensor(a))
    bad = a.copy()
    bad[4, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        load_data(bad)
    with pytest.raises(ValueError, match="shape"):
        load_data(np.zeros(5))
    with pytest.raises(ValueError, match="3 features"):
        load_data(a[:, :2], dim=3)
    with pytest.raises(FileNotFoundError):
        load_data(tmp_path / "missing.npy")
    with pytest.raises(ValueError, match=".npy, .npz or .csv"):
        (tmp_path / "x.txt").write_text("1")
        load_data(tmp_path / "x.txt")


def test_digits():
    pytest.importorskip("sklearn")
    x = load_digits()
    assert x.shape == (1797, 64) and float(x.min()) == -1.0 and float(x.max()) == 1.0
