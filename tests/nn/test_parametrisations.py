import pytest
import torch

from sampleflow.nn import (
    InterpolatedScoreControl,
    PlainControl,
    ScoreInformedControl,
    TimeMLP,
    TimeScalar,
    build_control,
    clip_score,
)


def _score(gen, shape=(8, 4)):
    s = 50.0 * torch.randn(*shape, generator=gen)
    s[0, 0], s[1, 1] = 1e6, -3e5  # beyond the clip
    return s


def test_clip_score():
    s = torch.tensor([[-5.0, -1.0, 0.0, 2.0, 7.0]])
    assert torch.equal(clip_score(s, 3.0), torch.tensor([[-3.0, -1.0, 0.0, 2.0, 3.0]]))
    assert clip_score(s, None) is s


@pytest.mark.parametrize("c", [0.0, 1.0, -0.37])
def test_score_informed_fresh_equals_c_times_clipped_score(c, gen):
    ctrl = ScoreInformedControl(TimeMLP(4), TimeScalar(width=16, init=c), clip=100.0)
    x = torch.randn(8, 4, generator=gen)
    s = _score(gen)
    for t in (0.0, 0.4, torch.rand(8, generator=gen), torch.rand(8, 1, generator=gen)):
        u = ctrl(x, t, score=s)
        assert u.shape == (8, 4)
        assert torch.equal(u, c * s.clamp(-100.0, 100.0))
    assert u[0, 0] == c * 100.0 and u[1, 1] == -c * 100.0
    assert ctrl.needs_target_score and not ctrl.needs_prior_score


def test_score_informed_trained_net_adds(gen):
    net = TimeMLP(4, zero_init_last=False)
    ctrl = ScoreInformedControl(net, TimeScalar(width=16, out_dim=4, init=2.0), clip=None)
    x = torch.randn(8, 4, generator=gen)
    s = _score(gen)
    t = torch.rand(8, generator=gen)
    torch.testing.assert_close(ctrl(x, t, score=s), net(x, t) + 2.0 * s)
    with pytest.raises(ValueError, match="score"):
        ctrl(x, t)
    with pytest.raises(ValueError, match="shape of x"):
        ctrl(x, t, score=s[:, :3])


def test_interpolated_endpoints(gen):
    T = 2.5
    coef_init = 1.5
    ctrl = InterpolatedScoreControl(TimeMLP(4), TimeScalar(width=16, init=coef_init), T=T, clip=10.0)
    x = torch.randn(8, 4, generator=gen)
    s, p = _score(gen), -x
    u0 = ctrl(x, 0.0, score=s, prior_score=p)
    uT = ctrl(x, T, score=s, prior_score=p)
    assert torch.equal(u0, coef_init * p)  # prior score term only
    assert torch.equal(uT, coef_init * s.clamp(-10, 10))  # target score term only
    # per-sample times: row i interpolates with its own t_i / T
    t = torch.linspace(0, T, 8)
    u = ctrl(x, t, score=s, prior_score=p)
    lam = (t / T)[:, None]
    torch.testing.assert_close(u, coef_init * ((1 - lam) * p + lam * s.clamp(-10, 10)))
    assert torch.equal(u[0], u0[0]) and torch.equal(u[-1], uT[-1])
    assert ctrl.needs_target_score and ctrl.needs_prior_score
    with pytest.raises(ValueError, match="prior_score"):
        ctrl(x, 0.5, score=s)
    with pytest.raises(ValueError, match="T"):
        InterpolatedScoreControl(TimeMLP(4), TimeScalar(), T=0.0)


def test_plain_control_ignores_scores(gen):
    net = TimeMLP(3, zero_init_last=False)
    ctrl = PlainControl(net)
    x = torch.randn(5, 3, generator=gen)
    assert torch.equal(ctrl(x, 0.2), net(x, 0.2))
    assert torch.equal(ctrl(x, 0.2, score=x, prior_score=x), net(x, 0.2))
    assert not ctrl.needs_target_score and not ctrl.needs_prior_score


def test_build_control_and_gradients_reach_all_parts(gen):
    ctrl = build_control(3, "interpolated", width=16, T=1.0)
    assert isinstance(ctrl, InterpolatedScoreControl)
    x = torch.randn(16, 3, generator=gen)
    t = torch.rand(16, generator=gen)
    u = ctrl(x, t, score=-2 * x, prior_score=-x)
    torch.testing.assert_close(u, -(1 + t[:, None]) * x)  # coef 1: (1 - t)(-x) + t(-2x)
    u.pow(2).sum().backward()
    assert ctrl.net.output_layer.weight.grad.abs().sum() > 0
    assert ctrl.coef.mlp.layers[-1].bias.grad.abs() > 0
    with pytest.raises(ValueError, match="kind"):
        build_control(3, "bogus")


def test_float64_controls(gen):
    ctrl = build_control(3, "score", width=16, coef_init=0.5).double()
    x = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    u = ctrl(x, 0.3, score=x)
    assert u.dtype == torch.float64 and torch.equal(u, 0.5 * x)
