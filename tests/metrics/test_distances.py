"""Exact W2, Gaussian W2, MMD, energy distance, sliced W: numbers that could fail."""
import math

import numpy as np
import pytest
import scipy.stats
import torch

from tests.metrics.be_data import be_data
from sampleflow.metrics import distances as D
from sampleflow.metrics import (energy_distance, gaussian_w2, median_pairwise_distance, mmd, sliced_wasserstein,
                                wasserstein2)


def rng(seed=0):
    return np.random.default_rng(seed)


# ------------------------------------------------------------------------------------------------ exact W2
def test_w2_1d_equals_sorted_matching():
    r = rng(1)
    x, y = r.standard_normal((700, 1)), 0.5 + 2 * r.standard_normal((700, 1))
    exact = math.sqrt(np.mean((np.sort(x[:, 0]) - np.sort(y[:, 0])) ** 2))  # 1-D: the monotone coupling is optimal
    assert wasserstein2(x, y) == pytest.approx(exact, rel=1e-10)


def test_w2_translation_is_the_shift():
    r = rng(2)
    x = r.standard_normal((400, 3))
    s = np.array([0.3, -1.2, 2.0])
    assert wasserstein2(x, x + s) == pytest.approx(np.linalg.norm(s), rel=1e-10)
    assert wasserstein2(torch.as_tensor(x), torch.as_tensor(x)) == pytest.approx(0.0, abs=1e-12)


def test_w2_of_brenier_map_samples_matches_closed_form():
    # y_i = T(x_i) with T the optimal (symmetric, positive definite) Gaussian map: the identity coupling is
    # optimal for the empirical sets, so W2_emp = sqrt(mean |x − Tx|²) exactly, and E|x − Tx|² = W2² in closed form
    m1, m2 = np.array([0.0, 1.0]), np.array([2.0, -1.0])
    C1 = np.array([[2.0, 0.6], [0.6, 0.5]])
    C2 = np.array([[1.0, -0.4], [-0.4, 3.0]])

    def sqrtm(A):
        w, V = np.linalg.eigh(A)
        return (V * np.sqrt(w)) @ V.T

    s1 = sqrtm(C1)
    s1i = np.linalg.inv(s1)
    A = s1i @ sqrtm(s1 @ C2 @ s1) @ s1i
    np.testing.assert_allclose(A @ C1 @ A, C2, atol=1e-12)          # T pushes N(m1,C1) to N(m2,C2)
    x = m1 + rng(3).standard_normal((1000, 2)) @ s1
    y = m2 + (x - m1) @ A
    emp = wasserstein2(x, y)
    assert emp == pytest.approx(math.sqrt(np.mean(np.sum((x - y) ** 2, 1))), rel=1e-9)
    assert emp == pytest.approx(gaussian_w2(m1, C1, m2, C2), rel=0.03)   # LLN, n = 1000


def test_w2_independent_gaussian_samples_near_closed_form():
    # 1-D, n = 2000, N(0,1) vs N(1, 2²): W2 = sqrt(1 + 1). Over 40 seeds the empirical value has mean 1.430
    # (bias +0.016) and sd 0.043; tolerance 0.15 ≈ 3.5 sd
    r = rng(4)
    x, y = r.standard_normal((2000, 1)), 1 + 2 * r.standard_normal((2000, 1))
    assert abs(wasserstein2(x, y) - math.sqrt(2)) < 0.15


def test_gaussian_w2_hand_cases():
    # |m1−m2|² = 25; tr(I + 4I − 2 (2I·I·2I)^{1/2}) = tr(I) = 2  ->  W2² = 27
    assert gaussian_w2([0, 0], np.eye(2), [3, 4], 4 * np.eye(2)) == pytest.approx(math.sqrt(27), rel=1e-12)
    # 1-D: (m1−m2)² + (s1−s2)²
    assert gaussian_w2([1.0], [[4.0]], [-1.0], [[9.0]]) == pytest.approx(math.sqrt(4 + 1), rel=1e-12)
    # commuting diagonals: Σ (√a − √b)²; scalar / vector forms of the covariances
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 16.0])
    assert gaussian_w2(np.zeros(3), a, np.zeros(3), np.diag(b)) == pytest.approx(
        math.sqrt(np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)), rel=1e-12)
    assert gaussian_w2(np.zeros(2), 1.0, np.ones(2), 1.0) == pytest.approx(math.sqrt(2), rel=1e-12)
    # symmetric and zero on itself (non-commuting case)
    C1 = np.array([[2.0, 0.6], [0.6, 0.5]])
    C2 = np.array([[1.0, -0.4], [-0.4, 3.0]])
    assert gaussian_w2([0, 1], C1, [2, 0], C2) == pytest.approx(gaussian_w2([2, 0], C2, [0, 1], C1), rel=1e-10)
    assert gaussian_w2([0, 1], C1, [0, 1], C1) == pytest.approx(0.0, abs=1e-7)


def test_w2_size_limit_and_bad_input():
    x = np.zeros((11, 2))
    with pytest.raises(ValueError, match="max_points"):
        wasserstein2(x, x, max_points=10)
    with pytest.raises(ValueError, match="same dimension"):
        wasserstein2(np.zeros((3, 2)), np.zeros((3, 3)))
    bad = np.ones((5, 2))
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        wasserstein2(bad, np.ones((5, 2)))
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        mmd(np.ones(5), np.ones(5))


# ------------------------------------------------------------------------------------------------ MMD
def test_mmd_matches_beyond_elbos_code():
    # reference numbers from running the Beyond-ELBOs mmd_median (jax, float64) on the same arrays
    gt, model, gt2, model2 = be_data()
    v, info = mmd(gt2, model2, return_info=True)
    assert info["h"] == pytest.approx(2.3507288886971995, rel=1e-12)
    assert v == pytest.approx(0.5570397231100419, rel=1e-10)
    v, info = mmd(gt, model, return_info=True)
    assert info["h"] == pytest.approx(5.045950156624055, rel=1e-12)
    assert v == pytest.approx(0.21424867927596564, rel=1e-10)


def test_mmd_self_and_same_distribution_floor():
    r = rng(5)
    x = r.standard_normal((300, 2))
    n = x.shape[0]
    # with itself: the diagonal-kept estimator gives 2 Σ K_XX / (n²(n−1)), not 0
    h = median_pairwise_distance(np.concatenate([x, x]))
    K = np.exp(-np.sum((x[:, None] - x[None]) ** 2, -1) / (2 * h * h))
    assert mmd(x, x) == pytest.approx(math.sqrt(2 * K.sum() / (n * n * (n - 1))), rel=1e-10)
    # independent sets from one distribution: MMD² ≈ 1/(n−1) + 1/(m−1) (U-statistic mean 0)
    y = r.standard_normal((300, 2))
    _, info = mmd(x, y, return_info=True)
    assert info["mmd2"] == pytest.approx(2 / (n - 1), rel=0.5)


def test_mmd_grows_with_shift():
    r = rng(6)
    x, y = r.standard_normal((400, 3)), r.standard_normal((400, 3))
    vals = [mmd(x, y + s) for s in (0.0, 0.5, 1.0, 2.0)]
    assert vals[0] < 0.1 < vals[1] < vals[2] < vals[3]


def test_median_two_pass_selection_is_exact(monkeypatch):
    z = rng(7).standard_normal((301, 3))
    d = np.sqrt(np.sum((z[:, None] - z[None]) ** 2, -1))
    iu = np.triu_indices(301)
    iu1 = np.triu_indices(301, 1)
    direct = median_pairwise_distance(z)
    assert direct == pytest.approx(np.median(d[iu]), rel=1e-13)
    assert median_pairwise_distance(z, include_diagonal=False) == pytest.approx(np.median(d[iu1]), rel=1e-13)
    monkeypatch.setattr(D, "_CHUNK_ELEMS", 1000)   # force the chunked histogram path
    assert median_pairwise_distance(z) == pytest.approx(np.median(d[iu]), rel=1e-13)
    assert median_pairwise_distance(z[:300], include_diagonal=False) == pytest.approx(
        np.median(np.sqrt(np.sum((z[:300, None] - z[None, :300]) ** 2, -1))[np.triu_indices(300, 1)]), rel=1e-13)


def test_mmd_chunked_equals_unchunked(monkeypatch):
    r = rng(8)
    x, y = r.standard_normal((150, 2)), r.standard_normal((120, 2)) + 0.3
    full = mmd(x, y)
    monkeypatch.setattr(D, "_CHUNK_ELEMS", 500)
    assert mmd(x, y) == pytest.approx(full, rel=1e-12)


# ------------------------------------------------------------------------------------------------ energy
def test_energy_distance_zero_on_itself_and_matches_scipy_1d():
    r = rng(9)
    x = r.standard_normal((300, 4))
    assert energy_distance(x, x) == pytest.approx(0.0, abs=1e-12)
    a, b = r.standard_normal(400), 0.7 + 1.5 * r.standard_normal(300)
    # scipy returns the square root of 2E|X−Y| − E|X−X'| − E|Y−Y'| (V-statistic)
    assert energy_distance(a[:, None], b[:, None]) == pytest.approx(scipy.stats.energy_distance(a, b) ** 2, rel=1e-10)


def test_energy_distance_grows_with_shift_and_weights_mean_duplicates():
    r = rng(10)
    x, y = r.standard_normal((200, 2)), r.standard_normal((200, 2))
    vals = [energy_distance(x, y + s) for s in (0.0, 0.5, 1.0, 2.0)]
    assert vals[0] < 0.05 < vals[1] < vals[2] < vals[3]
    # weight 2 on a point == that point twice
    w = np.ones(200)
    w[:50] = 2.0
    dup = np.concatenate([x, x[:50]])
    assert energy_distance(x, y, x_weights=w) == pytest.approx(energy_distance(dup, y), rel=1e-12)
    u = energy_distance(x, y, unbiased=True)
    assert u < vals[0]  # the U-statistic removes the positive self-pair bias


# ------------------------------------------------------------------------------------------------ sliced W
def test_sliced_wasserstein_deterministic_and_exact_in_1d():
    r = rng(11)
    x = r.standard_normal((300, 1))
    assert sliced_wasserstein(x, x + 1.5, 20) == pytest.approx(1.5, rel=1e-12)  # θ = ±1: W2 of a shift
    x3, y3 = r.standard_normal((300, 3)), r.standard_normal((300, 3))
    assert sliced_wasserstein(x3, y3, seed=3) == sliced_wasserstein(x3, y3, seed=3)
    assert sliced_wasserstein(x3, y3, seed=3) != sliced_wasserstein(x3, y3, seed=4)
    # translation by s in d dims: SW2² = E_θ (θ·s)² = |s|²/d
    s = np.array([2.0, 0.0, 0.0])
    assert sliced_wasserstein(x3, x3 + s, 4000, seed=0) == pytest.approx(2.0 / math.sqrt(3), rel=0.03)
