"""Real-data targets (logistic regression, Seeds, Brownian, LGCP, DW-4, LJ-13, planar robot) against the check
values and reference files of the shared data folder (TARGETS.md §2–§6)."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

import sampleflow.targets as T
import sampleflow.targets.hierarchical  # noqa: F401  (registers)
import sampleflow.targets.logistic  # noqa: F401
import sampleflow.targets.particles  # noqa: F401
import sampleflow.targets.robot  # noqa: F401
from tests.targets.checks import check_point, check_rows
from sampleflow.targets import data
from sampleflow.targets.logistic import BreastCancer

NAMES = ["ionosphere", "sonar", "german_credit_flat_prior", "german_credit_normal10_prior",
         "breast_cancer_normal10_prior", "seeds", "brownian", "lgcp", "dw4", "lj13",
         "planar_robot_1goal", "planar_robot_4goal"]
DIMS = {"ionosphere": 35, "sonar": 61, "german_credit_flat_prior": 25, "german_credit_normal10_prior": 25,
        "breast_cancer_normal10_prior": 31, "seeds": 26, "brownian": 32, "lgcp": 1600, "dw4": 8, "lj13": 39,
        "planar_robot_1goal": 10, "planar_robot_4goal": 10}
WITH_REFERENCE = ["german_credit_flat_prior", "german_credit_normal10_prior", "breast_cancer_normal10_prior",
                  "dw4", "lj13", "planar_robot_1goal", "planar_robot_4goal"]

_CACHE: dict = {}


def target(name):
    if name not in _CACHE:
        _CACHE[name] = BreastCancer(prior_sd=None) if name == "breast_cancer_flat_prior" else T.get(name)
    return _CACHE[name]


# ------------------------------------------------------------------------------------------ check values
CSV_NAME = {"lgcp_pines_40x40": "lgcp"}


def _rows():
    rows = check_rows()
    return [r for r in rows if CSV_NAME.get(r["target"], r["target"]) in NAMES + ["breast_cancer_flat_prior"]]


ROWS = _rows()


def test_every_data_target_has_check_rows():
    covered = {CSV_NAME.get(r["target"], r["target"]) for r in ROWS}
    assert covered == set(NAMES) | {"breast_cancer_flat_prior"}, covered
    assert len(ROWS) == 26


@pytest.mark.parametrize("row", ROWS, ids=[f"{r['target']}-c{r['c']}-s{r['s']}" for r in ROWS])
def test_log_density_check_value(row):
    t = target(CSV_NAME.get(row["target"], row["target"]))
    assert t.dim == int(row["dim"])
    x = check_point(row)
    want = float(row["log_density"])
    got = t.log_prob(x)
    assert got.dtype == torch.float64 and got.shape == ()
    assert math.isclose(float(got), want, rel_tol=1e-6, abs_tol=0.0), (float(got), want)
    # far tighter in fact (the CSV has 12 significant digits)
    assert math.isclose(float(got), want, rel_tol=1e-9, abs_tol=1e-9), (float(got), want)
    # batched evaluation gives the same number
    assert math.isclose(float(t.log_prob(x.expand(3, -1))[2]), float(got), rel_tol=1e-12, abs_tol=1e-10)


def test_breast_cancer_flat_prior_is_not_registered():
    assert "breast_cancer_flat_prior" not in T.names()
    assert not target("breast_cancer_flat_prior").has_reference_samples


# ------------------------------------------------------------------------------------------ reference files
def test_planar_robot_4goal_testpoints():
    t = target("planar_robot_4goal")
    x = torch.as_tensor(data.load_array("planar_robot_4goal_testpoints.npy"), dtype=torch.float64)
    want = torch.as_tensor(data.load_array("planar_robot_4goal_testpoints_logdensity.npy"), dtype=torch.float64)
    assert x.shape == (200, 10)
    assert torch.allclose(t.log_prob(x), want, rtol=0, atol=1e-8)
    # the 1-goal density differs at points near the other goals
    assert not torch.allclose(target("planar_robot_1goal").log_prob(x), want, rtol=0, atol=1e-3)


def test_breast_cancer_reference_logdensity():
    t = target("breast_cancer_normal10_prior")
    ref = t.reference_samples()
    assert ref.shape == (10080, 31) and ref.dtype == torch.float64
    want = torch.as_tensor(data.load_array("breast_cancer_reference_10k_logdensity_normal10.npy"))
    got = t.log_prob(ref)
    assert torch.allclose(got, want, rtol=0, atol=1e-4), float((got - want).abs().max())
    # ... and the flat-prior density does not reproduce them
    assert not torch.allclose(target("breast_cancer_flat_prior").log_prob(ref), want, rtol=0, atol=1.0)


@pytest.mark.parametrize("name", WITH_REFERENCE)
def test_reference_samples(name):
    t = target(name)
    assert t.has_reference_samples
    ref = t.reference_samples()
    assert ref.dtype == torch.float64 and ref.ndim == 2 and ref.shape[1] == t.dim and ref.shape[0] >= 10000
    assert torch.isfinite(t.log_prob(ref)).all()


@pytest.mark.parametrize("name", ["ionosphere", "sonar", "seeds", "brownian", "lgcp"])
def test_no_reference_samples(name):
    t = target(name)
    assert not t.has_reference_samples
    with pytest.raises(NotImplementedError):
        t.reference_samples()


@pytest.mark.parametrize("name", ["dw4", "lj13"])
def test_particle_reference_centring(name):
    t = target(name)
    n, s = t.n_particles, t.spatial_dim
    ref = t.reference_samples()
    com = ref.reshape(-1, n, s).mean(1)
    assert com.abs().max() < 1e-5
    raw = type(t)(centre_reference=False).reference_samples()
    raw_com = raw.reshape(-1, n, s).mean(1)
    if name == "dw4":
        assert raw_com.abs().max() > 1.0          # the DW-4 files are not centred
    # the energy is translation invariant: centring does not change log π̃
    assert torch.allclose(t.log_prob(raw[:500]), t.log_prob(ref[:500]), rtol=1e-9, atol=1e-7)


def test_lj13_reference_mean_energy():
    t = target("lj13")
    e = -t.log_prob(t.reference_samples()).mean()
    assert abs(float(e) - (-43.2)) < 0.1


def test_planar_robot_reference_end_effectors():
    t1, t4 = target("planar_robot_1goal"), target("planar_robot_4goal")
    p = t1.end_effector(t1.reference_samples())
    assert torch.allclose(p.mean(0), torch.tensor([7.0, 0.0], dtype=torch.float64), atol=0.01)
    p4 = t4.end_effector(t4.reference_samples())
    goals = torch.tensor([[7.0, 0.0], [-7.0, 0.0], [0.0, 7.0], [0.0, -7.0]], dtype=torch.float64)
    dist = torch.cdist(p4, goals).min(-1).values
    assert float(dist.max()) < 0.1


# ------------------------------------------------------------------------------------------ generic properties
def _points(t, n, gen):
    """Points inside the target's box (reference draws plus jitter where available)."""
    if t.has_reference_samples:
        ref = t.reference_samples()
        idx = torch.randint(0, ref.shape[0], (n,), generator=gen)
        return ref[idx] + 0.05 * torch.randn(n, t.dim, generator=gen, dtype=torch.float64)
    low, high = t.box
    if t.name == "lgcp":  # near the prior mean, where the density is not astronomically small
        return t.mu + torch.randn(n, t.dim, generator=gen, dtype=torch.float64)
    return low + (high - low) * (0.3 + 0.4 * torch.rand(n, t.dim, generator=gen, dtype=torch.float64))


@pytest.mark.parametrize("name", NAMES)
def test_registered_metadata(name):
    t = target(name)
    assert t.dim == DIMS[name]
    # no closed form: log Z is the stored reference value where there is one, else None
    from sampleflow.targets.reference_values import REFERENCE_LOG_Z
    assert t.log_Z == REFERENCE_LOG_Z.get(name)
    assert t.version == "1"
    low, high = t.box
    assert low.shape == (t.dim,) and bool((low < high).all())
    assert not t.has_exact_sampler


@pytest.mark.parametrize("name", NAMES)
def test_score_matches_autograd(name):
    t = target(name)
    gen = torch.Generator().manual_seed(1)
    x = _points(t, 4, gen)
    g = t.score(x)
    assert g.shape == x.shape and torch.isfinite(g).all()
    xg = x.clone().requires_grad_(True)
    (ga,) = torch.autograd.grad(t.log_prob(xg).sum(), xg)
    assert torch.allclose(g, ga, rtol=1e-8, atol=1e-8 * float(ga.abs().max())), float((g - ga).abs().max())
    lp, g2 = t.log_prob_and_score(x)
    assert torch.allclose(lp, t.log_prob(x)) and torch.allclose(g2, g)


@pytest.mark.parametrize("name", NAMES)
def test_batched_and_float32(name):
    t = target(name)
    gen = torch.Generator().manual_seed(2)
    x = _points(t, 6, gen).reshape(2, 3, t.dim)
    lp = t.log_prob(x)
    assert lp.shape == (2, 3) and torch.isfinite(lp).all()
    flat = torch.stack([t.log_prob(x[i, j]) for i in range(2) for j in range(3)]).reshape(2, 3)
    assert torch.allclose(lp, flat, rtol=1e-10, atol=1e-8)
    lp32 = t.log_prob(x.float())
    assert lp32.dtype == torch.float32 and lp32.shape == (2, 3)
    assert torch.allclose(lp32.double(), lp, rtol=1e-4, atol=1e-4 * max(1.0, float(lp.abs().max())))
    s32 = t.score(x.float())
    assert s32.dtype == torch.float32 and s32.shape == x.shape and torch.isfinite(s32).all()


def test_logistic_score_formula_on_prior_draws():
    """Prior draws of the N(0, s²)-prior models give finite values; the analytic score is Xᵀ(y − σ(Xw)) − w/s²."""
    gen = torch.Generator().manual_seed(3)
    for name, sd in [("ionosphere", 1.0), ("sonar", 1.0), ("german_credit_normal10_prior", 10.0),
                     ("breast_cancer_normal10_prior", 10.0)]:
        t = target(name)
        w = sd * torch.randn(16, t.dim, generator=gen, dtype=torch.float64)
        assert torch.isfinite(t.log_prob(w)).all() and torch.isfinite(t.score(w)).all()
        X, y = t._params["X"], t._params["y"]
        want = (y - torch.sigmoid(w @ X.T)) @ X - w / sd ** 2
        assert torch.allclose(t.score(w), want)


def test_seeds_and_brownian_prior_like_draws_are_finite():
    gen = torch.Generator().manual_seed(4)
    seeds = target("seeds")
    x = torch.cat([10 * torch.randn(32, 4, generator=gen, dtype=torch.float64),
                   torch.randn(32, 21, generator=gen, dtype=torch.float64),
                   torch.randn(32, 1, generator=gen, dtype=torch.float64)], -1)
    assert torch.isfinite(seeds.log_prob(x)).all()
    br = target("brownian")
    z = torch.randn(32, 32, generator=gen, dtype=torch.float64)
    assert torch.isfinite(br.log_prob(z)).all() and torch.isfinite(br.score(z)).all()


def test_seeds_coordinate_order():
    """a₁₂ (index 2) multiplies X1·X2 and a₂ (index 3) multiplies X2: swapping the two changes log π̃."""
    t = target("seeds")
    x = torch.zeros(26, dtype=torch.float64)
    x[2] = 1.0
    y = torch.zeros(26, dtype=torch.float64)
    y[3] = 1.0
    assert abs(float(t.log_prob(x) - t.log_prob(y))) > 1.0


# ------------------------------------------------------------------------------------------ LGCP
def test_lgcp_counts_and_speed():
    t = target("lgcp")
    c = t._params["counts"]
    assert float(c.sum()) == 126 and int((c > 0).sum()) == 111 and float(c.max()) == 3
    gen = torch.Generator().manual_seed(5)
    f = t.mu + torch.randn(64, 1600, generator=gen, dtype=torch.float64)
    t.log_prob(f[:2])  # warm-up
    t0 = time.perf_counter()
    lp = t.log_prob(f)
    elapsed = time.perf_counter() - t0
    assert lp.shape == (64,) and torch.isfinite(lp).all()
    assert elapsed < 0.5, elapsed
    # the Cholesky factor is cached across instances
    t1 = time.perf_counter()
    T.get("lgcp")
    assert time.perf_counter() - t1 < 0.5


def _grid_cov(n):
    g = np.array([[i, j] for i in range(n) for j in range(n)], dtype=np.float64)
    return 1.91 * np.exp(-np.sqrt(((g[:, None] - g[None]) ** 2).sum(-1)) / (n / 33))


def test_lgcp_prior_matches_scipy_small_grid():
    """The Gaussian term against scipy on a 12×12 grid (same code path; scipy's eigh at 1600 is slow)."""
    from scipy.stats import multivariate_normal
    from sampleflow.targets.hierarchical import LGCP
    t = LGCP(grid=12)
    K = _grid_cov(12)
    gen = torch.Generator().manual_seed(6)
    f = t.mu + torch.randn(3, 144, generator=gen, dtype=torch.float64)
    want = multivariate_normal(mean=np.full(144, t.mu), cov=K).logpdf(f.numpy())
    assert np.allclose(t.prior_log_prob(f).numpy(), want, rtol=1e-10, atol=1e-8)


def test_lgcp_prior_full_grid():
    t = target("lgcp")
    K = _grid_cov(40)
    L = t._params["L"]
    assert np.allclose((L @ L.T).numpy(), K, rtol=0, atol=1e-12)
    gen = torch.Generator().manual_seed(7)
    f = (t.mu + L @ torch.randn(1600, 2, generator=gen, dtype=torch.float64)).T
    r = f.numpy() - t.mu
    _, logdet = np.linalg.slogdet(K)
    quad = (r * np.linalg.solve(K, r.T).T).sum(-1)
    want = -0.5 * (quad + logdet + 1600 * math.log(2 * math.pi))
    assert np.allclose(t.prior_log_prob(f).numpy(), want, rtol=1e-9, atol=1e-6)
    # log π̃ = prior + Σ c f − a Σ e^f
    c = t._params["counts"]
    full = t.log_prob(f)
    assert torch.allclose(full, torch.as_tensor(want) + (c * f).sum(-1) - torch.exp(f).sum(-1) / 1600)


# ------------------------------------------------------------------------------------------ missing data
def test_missing_data_file_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMPLEFLOW_DATA", str(tmp_path))
    with pytest.raises(data.DataFileError) as e:
        T.get("sonar")
    msg = str(e.value)
    assert "sonar_X.npy" in msg and "sampleflow data fetch" in msg
    with pytest.raises(data.DataFileError) as e:
        T.get("seeds")
    assert "seeds.csv" in str(e.value) and "sampleflow data fetch" in str(e.value)
    with pytest.raises(data.DataFileError) as e:
        sampleflow_dw4 = T.get("dw4")  # builds without data; the reference file is only read on demand
        sampleflow_dw4.reference_samples()
    assert "dw4_test.npy" in str(e.value) and "sampleflow data fetch" in str(e.value)
