"""evaluate(): keys, sensible values, reference rules, determinism, bad input."""
import math
import warnings

import numpy as np
import pytest
import torch

from sampleflow.metrics import METRICS, evaluate
from sampleflow.samples import Samples
from sampleflow.targets.base import Target

D = 2
MU = torch.tensor([1.0, -1.0], dtype=torch.float64)
LOG_Z = 2.5  # π̃ = exp(LOG_Z) · N(MU, I)


def log_normal(x):
    return -0.5 * ((x - MU.to(x.dtype)) ** 2).sum(-1) - 0.5 * D * math.log(2 * math.pi)


def make_target(**kw):
    return Target.from_log_prob(lambda x: log_normal(x) + LOG_Z, D, name="shifted_normal", log_Z=LOG_Z,
                                sample=lambda n, g: MU + torch.randn(n, D, generator=g, dtype=torch.float64), **kw)


def exact_samples(n, seed, shift=0.0, weighted=True):
    g = torch.Generator().manual_seed(seed)
    x = MU + shift + torch.randn(n, D, generator=g, dtype=torch.float64)
    lw = (log_normal(x) + LOG_Z) - log_normal(x - shift) if weighted else None  # log π̃ − log q
    fn = (lambda y: (log_normal(y) + LOG_Z) - log_normal(y - shift)) if weighted else None
    return Samples(x=x, log_weights=lw, nfe=n, wall_time=0.5, log_weight_fn=fn)


def test_exact_samples_give_exact_log_z_and_small_distances():
    t = make_target()
    out = evaluate(exact_samples(400, 1), t)
    for k in ("n", "dim", "nfe", "wall_time", "log_Z_is", "elbo", "ess", "log_Z_error", "log_Z_delta", "elbo_gap",
              "eubo", "eubo_gap", "sinkhorn", "mmd", "energy", "sliced_w2", "w2", "mean_error", "std_error",
              "n_eval", "n_ref"):
        assert k in out, k
    assert "emc" not in out                                      # not a mixture
    assert all(isinstance(v, float) and math.isfinite(v) for v in out.values())
    assert out["n"] == 400 and out["dim"] == 2 and out["nfe"] == 400 and out["wall_time"] == 0.5
    assert out["log_Z_is"] == pytest.approx(LOG_Z, abs=1e-12)    # constant log weights = log Z
    assert out["log_Z_error"] < 1e-12 and out["elbo_gap"] == pytest.approx(0.0, abs=1e-12)
    assert out["ess"] == pytest.approx(1.0) and out["eubo"] == pytest.approx(LOG_Z, abs=1e-12)
    assert out["n_eval"] == 400 and out["n_ref"] == 400           # min(n, 2000) exact reference draws
    # two independent exact sets of 400: distances at the noise level
    assert out["sinkhorn"] < 0.1 and out["energy"] < 0.03 and out["w2"] < 0.4 and out["mean_error"] < 0.3


def test_shifted_samples_are_further_away():
    t = make_target()
    good = evaluate(exact_samples(400, 1, weighted=False), t)
    bad = evaluate(exact_samples(400, 1, shift=1.5, weighted=False), t)
    for k in ("sinkhorn", "mmd", "energy", "sliced_w2", "w2", "mean_error"):
        assert bad[k] > 3 * good[k], k
    assert bad["sinkhorn"] == pytest.approx(2 * 1.5 ** 2, rel=0.25)   # ≈ |shift|² = 4.5 (plus sample noise)
    assert "log_Z_is" not in good                                  # no log weights: no log Z keys
    # weighted but shifted proposal: importance weights correct the shift
    wshift = evaluate(exact_samples(3000, 2, shift=0.7), t)
    assert wshift["log_Z_error"] < 0.1 and 0 < wshift["ess"] < 1 and wshift["elbo_gap"] > 0
    assert wshift["eubo_gap"] > 0
    assert wshift["n_eval"] == 2000 and wshift["n_ref"] == 2000    # the protocol size
    assert wshift["mean_error"] < 0.15                             # self-normalised weights


def test_reference_rules_determinism_and_subsets():
    t = make_target()
    s = exact_samples(300, 3, weighted=False)
    assert evaluate(s, t, seed=5) == evaluate(s, t, seed=5)
    assert evaluate(s, t, seed=5)["sinkhorn"] != evaluate(s, t, seed=6)["sinkhorn"]
    # a given reference wins over exact draws; a Samples object works too
    ref = MU + torch.randn(1000, D, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    a = evaluate(s, t, reference=ref.numpy(), metrics=["mmd", "mean_error"])
    b = evaluate(s, t, reference=Samples(ref), metrics=["mmd", "mean_error"])
    assert a == b and set(a) == {"n", "dim", "nfe", "wall_time", "n_eval", "n_ref", "mmd", "mean_error"}
    assert a["n_ref"] == 1000
    # no log Z, no sampler, no reference: only the basic keys, nothing NaN
    plain = Target.from_log_prob(log_normal, D)
    out = evaluate(s, plain)
    assert set(out) == {"n", "dim", "nfe", "wall_time"}
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate(s, t, metrics=["sinkhorn", "kl"])


def test_same_seed_exact_samples_are_not_compared_with_themselves():
    t = make_target()
    g = torch.Generator().manual_seed(0)
    x = t.sample(200, generator=g, dtype=torch.float64)
    out = evaluate(Samples(x), t, seed=0)
    assert out["w2"] > 1e-3


def test_mixture_target_gets_emc():
    mixtures = pytest.importorskip("sampleflow.targets.mixtures")
    t = mixtures.GaussianMixture(None, [[-6.0, 0.0], [6.0, 0.0]], 1.0)
    g = torch.Generator().manual_seed(0)
    out = evaluate(Samples(t.sample(400, generator=g)), t, metrics=["emc", "sinkhorn"])
    assert out["emc"] > 0.99 and "sinkhorn" in out
    one = evaluate(Samples(torch.randn(400, 2, dtype=torch.float64, generator=g) + torch.tensor([6.0, 0.0])), t,
                   metrics=["emc", "sinkhorn"])
    assert one["emc"] < 0.05 and one["sinkhorn"] > 10 * out["sinkhorn"]


def test_bad_input_is_reported_clearly():
    t = make_target()
    x = torch.randn(50, D, dtype=torch.float64)
    x[7, 1] = float("nan")
    with pytest.raises(ValueError, match=r"samples\.x"):
        evaluate(Samples(x), t)
    with pytest.raises(ValueError, match=r"samples\.x has dimension 3"):
        evaluate(Samples(torch.zeros(10, 3)), t)
    lw = torch.zeros(50)
    lw[0] = float("nan")
    with pytest.raises(ValueError, match=r"samples\.log_weights"):
        evaluate(Samples(torch.zeros(50, D), log_weights=lw), t)
    with pytest.raises(ValueError, match="reference"):
        evaluate(Samples(torch.zeros(50, D)), t, reference=np.full((10, D), np.inf))
    # a raw array is accepted; degenerate (identical) points do not crash evaluate
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = evaluate(np.ones((20, D)), t, reference=np.ones((20, D)))
    assert out["sinkhorn"] == pytest.approx(0.0, abs=1e-12) and "mmd" not in out   # MMD bandwidth 0: skipped
    assert set(METRICS) >= {"sinkhorn", "mmd", "emc", "eubo"}
