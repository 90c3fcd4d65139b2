import math

import pytest
import torch

import sampleflow as sf
from sampleflow.targets import LogZ, Target, TargetInputError, UnknownTargetError


def gaussian_fn(scale=2.0):
    return lambda x: -0.5 * (x / scale).pow(2).sum(-1)


def test_from_log_prob_score_by_autograd():
    t = sf.Target.from_log_prob(gaussian_fn(2.0), dim=3)
    x = torch.randn(5, 3, dtype=torch.float64)
    assert torch.allclose(t.score(x), -x / 4.0)
    lp, s = t.log_prob_and_score(x)
    assert lp.shape == (5,) and torch.allclose(s, -x / 4.0)
    # batched over several leading dims, and inside no_grad
    with torch.no_grad():
        assert t.score(torch.zeros(2, 4, 3)).shape == (2, 4, 3)
    assert t.log_prob(torch.zeros(2, 4, 3)).shape == (2, 4)


def test_score_keeps_graph_when_input_requires_grad():
    t = sf.Target.from_log_prob(lambda x: -(x ** 4).sum(-1), dim=2)
    x = torch.tensor([[1.0, 2.0]], dtype=torch.float64, requires_grad=True)
    s = t.score(x)  # -4 x^3
    (h,) = torch.autograd.grad(s.sum(), x)  # -12 x^2
    assert torch.allclose(h, -12 * x.detach() ** 2)


def test_wrong_trailing_dimension_is_named():
    t = sf.Target.from_log_prob(gaussian_fn(), dim=3, name="g3")
    with pytest.raises(TargetInputError, match=r"shape \(\.\.\., 3\).*'g3'.*got \(5, 2\)"):
        t.log_prob(torch.zeros(5, 2))
    with pytest.raises(TargetInputError, match="x must have shape"):
        t.score(torch.zeros(()))


def test_user_function_with_wrong_output_shape():
    t = sf.Target.from_log_prob(lambda x: x.sum(-1, keepdim=True), dim=2, name="bad")
    with pytest.raises(TargetInputError, match=r"returned shape \(4, 1\).*expected \(4,\)"):
        t.log_prob(torch.zeros(4, 2))


def test_nan_at_start_points_is_reported():
    t = sf.Target.from_log_prob(lambda x: torch.log(x[..., 0]) - x[..., 1] ** 2, dim=2, name="logx")
    x0 = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [2.0, 1.0]])
    with pytest.raises(TargetInputError, match=r"not finite at 1 of 3 points of initial points \(first bad index 1"):
        t.check_finite(x0, "initial points")
    t.check_finite(x0[[0, 2]])


def test_bad_dim_and_box():
    with pytest.raises(TargetInputError, match="dim must be a positive integer"):
        sf.Target.from_log_prob(gaussian_fn(), dim=0)
    with pytest.raises(TargetInputError, match=r"box low must be a scalar or have shape \(3,\)"):
        sf.Target.from_log_prob(gaussian_fn(), dim=3, box=([0, 0], [1, 1, 1]))


def test_log_z_and_describe():
    t = sf.Target.from_log_prob(gaussian_fn(), dim=2, log_Z=1.5)
    assert t.log_Z == LogZ(1.5, 0.0, "closed form") and t.log_Z.exact
    d = t.describe()
    assert d["dim"] == 2 and d["log_Z"] == 1.5 and d["exact_sampler"] is False
    with pytest.raises(NotImplementedError, match="no exact sampler"):
        t.sample(3)
    with pytest.raises(NotImplementedError, match="no reference samples"):
        t.reference_samples()


def test_device_and_dtype_follow_input():
    class Shifted(Target):
        def __init__(self):
            super().__init__(2, name="shifted")
            self._register("m", [1.0, -1.0])

        def _log_prob(self, x):
            return -0.5 * (x - self._param("m", x)).pow(2).sum(-1)

    t = Shifted()
    for dtype in (torch.float32, torch.float64):
        x = torch.zeros(3, 2, dtype=dtype)
        assert t.log_prob(x).dtype == dtype and t.score(x).dtype == dtype
    assert torch.allclose(t.score(torch.zeros(1, 2)), torch.tensor([[1.0, -1.0]]))


def test_registry_lookup_and_errors():
    names = sf.targets.names()
    for expected in ("funnel", "gmm9", "gmm25", "manywell", "multiwell", "mos10", "mog40", "gaussian"):
        assert expected in names
    t = sf.targets.get("manywell", dim=32)
    assert t.dim == 32 and abs(t.log_Z.value - 164.6956753132) < 1e-6
    with pytest.raises(UnknownTargetError, match="unknown target 'funel'. Did you mean 'funnel'"):
        sf.targets.get("funel")
    with pytest.raises(TypeError, match=r"does not take parameter\(s\) \['bogus'\]"):
        sf.targets.get("funnel", bogus=1)


def test_exact_log_z_of_user_gaussian_by_importance_sampling():
    # N(0, 2^2 I) unnormalised in d=3: log Z = 3/2 log(2 pi 4)
    d = 3
    t = sf.Target.from_log_prob(gaussian_fn(2.0), dim=d, box=(-6, 6))
    s = sf.sample(t, "importance", n=20000, seed=0, proposal="student_t", scale=2.5)
    truth = 0.5 * d * math.log(2 * math.pi * 4.0)
    assert abs(s.log_Z() - truth) < 0.03
    assert 0.2 < s.ess() < 1.0
