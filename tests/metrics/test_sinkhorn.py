"""Sinkhorn divergence / entropic OT: agreement with the Beyond-ELBOs code, with POT, with exact OT."""
import math
import warnings

import numpy as np
import ot
import pytest
import torch

from tests.metrics.be_data import be_data
from sampleflow.metrics import SINKHORN_PROTOCOLS, SinkhornNotConverged, entropic_ot, sinkhorn


def rng(seed=0):
    return np.random.default_rng(seed)


def test_defaults_reproduce_beyond_elbos_code():
    # reference: ott-jax 0.4.6 (the Beyond-ELBOs requirement), called exactly as their optimal_transport.SD:
    # sinkhorn_divergence(PointCloud(gt, model, epsilon=1e-3), x=geom.x, y=geom.y).divergence, float64.
    # Their geometries ignore the 1e-3 and use ε = 0.05·mean|x−y|² (printed by ott: 0.6075790885223025,
    # 1.4320782626430082); ott stops at L1 marginal error 1e-3, hence rel=1e-5.
    gt, model, gt2, model2 = be_data()
    v, info = sinkhorn(gt2, model2, return_info=True)
    assert info["eps"] == pytest.approx(0.6075790885223025, rel=1e-12)
    assert v == pytest.approx(6.467508567444694, rel=1e-5)
    v, info = sinkhorn(gt, model, return_info=True)
    assert info["eps"] == pytest.approx(1.4320782626430082, rel=1e-12)
    assert v == pytest.approx(5.310703094231114, rel=1e-5)
    assert info["converged"]


def test_entropic_ot_matches_pot_log_sinkhorn():
    r = rng(1)
    x, y = r.standard_normal((120, 3)), r.standard_normal((90, 3)) + 0.7
    C = ot.dist(x, y)
    a, b = np.full(120, 1 / 120), np.full(90, 1 / 90)
    for eps in (1.0, 0.1):
        P = ot.sinkhorn(a, b, C, eps, method="sinkhorn_log", numItermax=100000, stopThr=1e-13)
        lin = float(np.sum(P * C))
        ent = lin + eps * float(np.sum(P * np.log(P / np.outer(a, b))))
        res = entropic_ot(torch.as_tensor(C), eps=eps, tol=1e-11)
        assert res["converged"]
        assert res["value"] == pytest.approx(ent, rel=1e-8)
        assert res["linear"] == pytest.approx(lin, rel=1e-8)


def test_small_eps_brackets_exact_ot():
    # OT_0 ≤ OT_ε ≤ OT_0 + ε KL(P0 ‖ a⊗b) ≤ OT_0 + ε log n  (P0 the EMD plan)
    r = rng(2)
    x, y = r.standard_normal((200, 2)), r.standard_normal((200, 2)) + 1.0
    C = ot.dist(x, y)
    W = ot.emd2(np.full(200, 0.005), np.full(200, 0.005), C)
    eps = 1e-3
    res = entropic_ot(torch.as_tensor(C), eps=eps)
    assert res["converged"]
    assert W - 1e-9 <= res["value"] <= W + eps * math.log(200) + 1e-9
    # the debiased divergence is W2² of the empirical sets up to ± ε log n
    s = sinkhorn(x, y, eps=eps)
    assert abs(s - W) <= eps * math.log(200)


def test_divergence_of_a_set_with_itself_is_zero_and_values_are_nonnegative():
    r = rng(3)
    x = r.standard_normal((300, 4))
    assert abs(sinkhorn(x, x)) < 1e-6
    assert abs(sinkhorn(x, x, eps=1e-3)) < 1e-6
    for seed in range(3):
        rr = rng(10 + seed)
        a, b = rr.standard_normal((150, 2)), rr.standard_normal((170, 2)) * rr.uniform(0.5, 2)
        assert sinkhorn(a, b) >= -1e-7
        assert sinkhorn(a, b, eps=0.01) >= -1e-7


def test_translation_gives_the_squared_shift_for_every_eps():
    # C_ij(x, x+s) = |x_i − x_j|² − 2 s·(x_i − x_j) + |s|²: the middle term is absorbed by the potentials,
    # so OT_ε(α, α+s) = OT_ε(α, α) + |s|² and S_ε = |s|² exactly, whatever ε
    x = rng(4).standard_normal((250, 3))
    s = np.array([1.0, -0.5, 0.25])
    for kw in ({}, {"eps": 0.1}, {"eps": 1e-3}):
        assert sinkhorn(x, x + s, **kw) == pytest.approx(float(s @ s), rel=1e-5)


def test_euclidean_linear_protocol_and_sqeuclidean_agree_with_exact_ot():
    r = rng(5)
    x, y = r.standard_normal((150, 2)), r.standard_normal((150, 2)) * 0.7 + np.array([2.0, 0.0])
    a = np.full(150, 1 / 150)
    W1 = ot.emd2(a, a, ot.dist(x, y, metric="euclidean"))
    W2sq = ot.emd2(a, a, ot.dist(x, y))
    rb = sinkhorn(x, y, **SINKHORN_PROTOCOLS["rb"])   # Euclidean cost, ε = 1e-3, not debiased, <P, C>
    assert rb == pytest.approx(W1, rel=1e-3)
    assert rb >= W1 - 1e-9                             # <P_ε, C> of a coupling is ≥ the exact OT cost
    assert sinkhorn(x, y, eps=1e-3) == pytest.approx(W2sq, abs=1e-3 * math.log(150))
    # Euclidean costs are distances, squared Euclidean their squares: different numbers for the same sets
    assert sinkhorn(x, y, cost="euclidean") < sinkhorn(x, y)
    # translation under the Euclidean cost: W1 = |s|
    s = np.array([3.0, 4.0])
    assert sinkhorn(x, x + s, **SINKHORN_PROTOCOLS["rb"]) == pytest.approx(5.0, rel=1e-4)


def test_weights_equal_duplicated_points_and_std_rule():
    r = rng(6)
    x, y = r.standard_normal((80, 2)), r.standard_normal((90, 2)) + 0.5
    w = np.ones(80)
    w[:20] = 3.0
    dup = np.concatenate([x, x[:20], x[:20]])
    assert sinkhorn(x, y, x_weights=w) == pytest.approx(sinkhorn(dup, y), rel=1e-6)
    _, info = sinkhorn(x, y, eps_rel_to="std", return_info=True)
    C = ot.dist(x, y)
    assert info["eps"] == pytest.approx(0.05 * C.std(), rel=1e-10)


def test_not_converged_warns_and_reports():
    r = rng(7)
    x, y = r.standard_normal((100, 2)), r.standard_normal((100, 2)) + 1
    with pytest.warns(SinkhornNotConverged):
        v, info = sinkhorn(x, y, eps=1e-4, max_iter=3, return_info=True)
    assert not info["converged"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, info = sinkhorn(x, y, return_info=True)
    assert info["converged"]


def test_bad_arguments():
    x = np.zeros((5, 2))
    with pytest.raises(ValueError, match="cost"):
        sinkhorn(x, x + 1, cost="l1")
    with pytest.raises(ValueError, match="eps"):
        sinkhorn(x, x + 1, eps=-1.0)
    with pytest.raises(ValueError, match="value"):
        sinkhorn(x, x + 1, value="dual")
    with pytest.raises(ValueError, match="x_weights"):
        sinkhorn(x, x + 1, x_weights=np.ones(4))
    assert sinkhorn(x, x) == pytest.approx(0.0, abs=1e-12)   # all points identical: every cost is 0
