"""Parallel tempering (``pt``) on the 9-mode grid mixture gmm9 (means {−5, 0, 5}², N(μ, 0.3 I)).

Mode fractions: every β=1 final state is assigned to its nearest mean; with n independent systems
the fraction per mode has standard error √((1/9)(8/9)/n) ≈ 0.014 at n = 500, so the accepted band
[0.04, 0.2] is > 5 standard errors from 1/9 on either side. "Visited" means some sample lies within
1.0 of the mean (a single draw is within 1.0 with probability 1 − exp(−1/0.6) ≈ 0.81).
"""
import math

import pytest
import torch

import sampleflow as sf
import sampleflow.samplers.pt  # noqa: F401  (registers "pt")
from sampleflow.samplers import kernels as K
from sampleflow.samplers.pt import PT, PTConfig, geometric_ladder, swap_round
from sampleflow.targets.base import TargetInputError


@pytest.fixture(scope="module")
def gmm9():
    return sf.targets.get("gmm9")


SETTINGS = dict(n_temperatures=6, min_beta=0.02, n_warmup=200, n_steps=200)
START = [-5.0, -5.0]


def _mode_stats(x, means):
    d = torch.cdist(x.double(), means.double())
    counts = torch.bincount(d.argmin(1), minlength=means.shape[0])
    frac = counts.double() / x.shape[0]
    visited = (d < 1.0).any(0)
    return frac, visited


def test_pt_visits_all_gmm9_modes_in_proportion(gmm9):
    n = 500
    s = sf.sample(gmm9, "pt", n=n, seed=0, **SETTINGS)
    assert s.x.shape == (n, 2) and s.sampler == "pt"
    frac, visited = _mode_stats(s.x, gmm9.means)
    assert bool(visited.all()), visited
    assert float(frac.min()) > 0.04 and float(frac.max()) < 0.2, frac.tolist()
    Kt = SETTINGS["n_temperatures"]
    info = s.info
    assert info["betas"] == pytest.approx(geometric_ladder(Kt, 0.02))
    assert info["betas"][0] == 1.0 and info["betas"][-1] == pytest.approx(0.02)
    assert len(info["swap_acceptance_rate"]) == Kt - 1
    assert all(0.0 < a < 1.0 for a in info["swap_acceptance_rate"]), info["swap_acceptance_rate"]
    assert len(info["acceptance_rate"]) == Kt
    assert all(abs(a - 0.574) < 0.05 for a in info["acceptance_rate"]), info["acceptance_rate"]
    steps = info["step_size"]
    assert all(steps[k + 1] > steps[k] for k in range(Kt - 1))  # hotter levels take larger steps
    assert s.nfe == Kt * n * (1 + 200 + 200)


def test_swaps_let_pt_leave_the_starting_mode_where_mala_cannot(gmm9):
    """All chains start at the mean (−5, −5). Same iterations and same NFE (MALA gets K·n chains):
    MALA stays in the starting mode, PT without swaps (β=1 replicas are then plain MALA) too, PT
    with swaps spreads its β=1 replicas over all nine modes in proportion."""
    n, Kt = 300, SETTINGS["n_temperatures"]
    init = torch.tensor(START)
    start_mode = int(torch.cdist(init[None].double(), gmm9.means.double()).argmin())
    m = sf.sample(gmm9, "mala", n=Kt * n, seed=1, n_warmup=200, n_steps=200, init=init)
    frac_m, _ = _mode_stats(m.x, gmm9.means)
    assert float(frac_m[start_mode]) > 0.95, frac_m.tolist()

    no_swap = sf.sample(gmm9, "pt", n=n, seed=1, init=init, swap_every=10 ** 6, **SETTINGS)
    frac_0, _ = _mode_stats(no_swap.x, gmm9.means)
    assert float(frac_0[start_mode]) > 0.95, frac_0.tolist()
    assert no_swap.info["n_swap_rounds"] == 0

    p = sf.sample(gmm9, "pt", n=n, seed=1, init=init, **SETTINGS)
    assert p.nfe == m.nfe == Kt * n * 401
    frac_p, visited = _mode_stats(p.x, gmm9.means)
    assert bool(visited.all()), visited
    assert float(frac_p.min()) > 0.04 and float(frac_p.max()) < 0.2, frac_p.tolist()


def test_same_seed_same_samples_and_trajectory(gmm9):
    kw = dict(n_temperatures=3, min_beta=0.1, n_warmup=20, n_steps=20, keep_trajectory=True, thin=5)
    a = sf.sample(gmm9, "pt", n=50, seed=7, **kw)
    b = sf.sample(gmm9, "pt", n=50, seed=7, **kw)
    c = sf.sample(gmm9, "pt", n=50, seed=8, **kw)
    assert torch.equal(a.x, b.x) and torch.equal(a.trajectory, b.trajectory)
    assert not torch.equal(a.x, c.x)
    assert a.trajectory.shape == (4, 50, 2)
    assert torch.equal(a.trajectory[-1], a.x)
    assert a.info["swap_acceptance_rate"] == b.info["swap_acceptance_rate"]


def test_swap_round_exchanges_and_retempers():
    """K = 3, n = 2, parity 0 proposes only the pair (0, 1). System 0: the hotter replica has the
    higher log π̃, so log α = (β0 − β1)(u1 − u0) > 0: always swapped. System 1: u1 − u0 = −∞: never."""
    beta = torch.tensor([1.0, 0.5, 0.25], dtype=torch.float64)
    u = torch.tensor([[-3.0, 0.0], [-1.0, -math.inf], [-2.0, -2.0]], dtype=torch.float64)  # (K, n)
    x = torch.arange(12, dtype=torch.float64).view(3, 2, 2)
    g = -x
    st = K.MCMCState(x.reshape(6, 2), (u * beta[:, None]).reshape(6), (g * beta[:, None, None]).reshape(6, 2))
    new, a = swap_round(st, beta, 2, 0, torch.Generator().manual_seed(0))
    assert a.shape == (1, 2) and a[0, 0] == 1.0 and a[0, 1] == 0.0
    nx = new.x.view(3, 2, 2)
    assert torch.equal(nx[0, 0], x[1, 0]) and torch.equal(nx[1, 0], x[0, 0])
    assert torch.equal(nx[:, 1], x[:, 1]) and torch.equal(nx[2], x[2])
    nu = new.log_prob.view(3, 2) / beta[:, None]
    assert nu[0, 0] == -1.0 and nu[1, 0] == -3.0 and nu[0, 1] == 0.0
    ng = new.score.view(3, 2, 2) / beta[:, None, None]
    assert torch.equal(ng[0, 0], g[1, 0]) and torch.equal(ng[1, 0], g[0, 0])
    # parity 1: only the pair (1, 2)
    _, a1 = swap_round(st, beta, 2, 1, None)
    assert a1.shape == (1, 2)


def test_explicit_ladder_single_level_and_presets(gmm9):
    s = sf.sample(gmm9, "pt", n=10, seed=0, betas=(1.0, 0.3, 0.1), n_warmup=5, n_steps=5)
    assert s.info["betas"] == [1.0, 0.3, 0.1] and len(s.info["swap_acceptance_rate"]) == 2
    one = sf.sample(gmm9, "pt", n=10, seed=0, n_temperatures=1, n_warmup=5, n_steps=5)
    assert one.info["swap_acceptance_rate"] == [] and one.nfe == 10 * 11
    assert sf.samplers.get("pt") is PT
    cfg = PT.make_config("cpu")
    assert cfg.n_temperatures == 6 and cfg.n_steps == 200
    x3 = torch.zeros(3, 10, 2)
    s3 = sf.sample(gmm9, "pt", n=10, seed=0, betas=(1.0, 0.3, 0.1), n_warmup=0, n_steps=2, init=x3)
    assert math.isnan(s3.info["warmup_acceptance_rate"][0])


@pytest.mark.parametrize("field,value", [
    ("n_temperatures", 0), ("n_temperatures", 2.5), ("min_beta", 0.0), ("min_beta", 1.0),
    ("min_beta", float("nan")), ("betas", (0.5, 0.1)), ("betas", (1.0, 0.2, 0.3)),
    ("betas", (1.0, 0.0)), ("betas", "abc"), ("n_warmup", -1), ("n_steps", 0), ("step_size", -0.1),
    ("step_size", float("inf")), ("swap_every", 0), ("target_accept", 1.0), ("init", "nowhere"),
    ("init", 3), ("init_scale", 0.0), ("thin", 0), ("dtype", "float16"),
])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        PTConfig(**{field: value})


def test_bad_initial_points(gmm9):
    with pytest.raises(ValueError, match="init given as points"):
        sf.sample(gmm9, "pt", n=4, seed=0, n_temperatures=2, n_warmup=1, n_steps=1, init=torch.zeros(5, 2))
    bad = torch.zeros(4, 2)
    bad[2, 0] = math.nan
    with pytest.raises(TargetInputError, match="initial points"):
        sf.sample(gmm9, "pt", n=4, seed=0, n_temperatures=2, n_warmup=1, n_steps=1, init=bad)
    with pytest.raises(ValueError, match="n must be"):
        PT(gmm9).sample(0)
