import pytest
import torch

from sampleflow.nn import MLP, TimeMLP, TimeScalar, build_control, count_parameters

DIS_PARAMS = 38_859  # Richter & Berner (ICLR 2024) DIS control at d = 10


def test_zero_init_then_moves_after_one_step(gen):
    net = TimeMLP(5)
    x = torch.randn(32, 5, generator=gen)
    t = torch.rand(32, generator=gen)
    out = net(x, t)
    assert out.shape == (32, 5)
    assert torch.equal(out, torch.zeros_like(out))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    loss = ((net(x, t) - x) ** 2).mean()
    loss.backward()
    opt.step()
    out2 = net(x, t)
    assert out2.abs().max() > 1e-4
    assert ((out2 - x) ** 2).mean() < loss  # the step went downhill


def test_parameter_counts():
    net = TimeMLP(10)  # width 64, depth 4, 64 frequencies
    assert count_parameters(net) == 129 * 10 + 20_864 == 22_154
    coef = TimeScalar()
    assert count_parameters(coef) == 16_705
    for kind in ("score", "interpolated"):
        ctrl = build_control(10, kind)
        n = count_parameters(ctrl)
        assert abs(n - DIS_PARAMS) <= 0.15 * DIS_PARAMS
        assert n == DIS_PARAMS  # same architecture as the paper's network + coefficient network
    assert count_parameters(build_control(10, "plain")) == 22_154
    frozen = TimeMLP(10)
    frozen.time_embedding.phase.requires_grad_(False)
    assert count_parameters(frozen) == 22_154 - 64
    assert count_parameters(frozen, trainable_only=False) == 22_154


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapes_time_forms_and_dtype(dtype, gen):
    net = TimeMLP(3, zero_init_last=False).to(dtype)
    B = 6
    x = torch.randn(B, 3, generator=gen, dtype=dtype)
    tb = torch.full((B,), 0.3, dtype=dtype)
    ref = net(x, tb)
    assert ref.shape == (B, 3) and ref.dtype == dtype and ref.device == x.device
    for t in (0.3, torch.tensor(0.3, dtype=dtype), torch.tensor(0.3, dtype=torch.float64), tb, tb[:, None], torch.tensor([0.3], dtype=dtype)):
        torch.testing.assert_close(net(x, t), ref, rtol=0, atol=1e-6 if dtype == torch.float32 else 1e-12)
    # per-sample times are used per sample
    tv = torch.linspace(0, 1, B, dtype=dtype)
    out = net(x, tv)
    for i in range(B):
        torch.testing.assert_close(out[i], net(x[i : i + 1], tv[i])[0])
    # arbitrary leading dims
    x3 = torch.randn(2, 4, 3, generator=gen, dtype=dtype)
    assert net(x3, 0.1).shape == (2, 4, 3)
    assert net(x3, torch.rand(2, 4, dtype=dtype)).shape == (2, 4, 3)
    assert net(x3, torch.rand(2, 4, 1, dtype=dtype)).shape == (2, 4, 3)
    assert net(x[0], 0.5).shape == (3,)


def test_bad_inputs_named():
    net = TimeMLP(3, out_dim=2)
    assert net(torch.randn(4, 3), 0.0).shape == (4, 2)
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 3\)"):
        net(torch.randn(4, 2), 0.0)
    with pytest.raises(TypeError, match="dtype"):
        net(torch.randn(4, 3, dtype=torch.float64), 0.0)
    with pytest.raises(ValueError, match="t has shape"):
        net(torch.randn(4, 3), torch.rand(5))
    with pytest.raises(ValueError, match="depth"):
        TimeMLP(3, depth=1)
    with pytest.raises(ValueError, match="activation"):
        MLP(2, 2, activation="nope")


def test_mlp(gen):
    m = MLP(3, 2, width=8, depth=3, activation="silu")
    assert count_parameters(m) == (3 * 8 + 8) + (8 * 8 + 8) + (8 * 2 + 2)
    assert m(torch.randn(5, 7, 3, generator=gen)).shape == (5, 7, 2)
    z = MLP(3, 2, zero_init_last=True)
    assert torch.equal(z(torch.randn(4, 3, generator=gen)), torch.zeros(4, 2))


def test_time_scalar_init_and_shapes():
    c = TimeScalar(width=16, init=0.7)
    t = torch.linspace(0, 1, 11)
    assert torch.equal(c(t), torch.full((11, 1), 0.7))
    assert torch.equal(c(0.3), torch.full((1,), 0.7))
    assert c(t[:, None]).shape == (11, 1)
    assert TimeScalar(width=16, out_dim=4)(t).shape == (11, 4)
    c64 = TimeScalar(width=16, init=-2.0).double()
    out = c64(torch.tensor([0.1, 0.9]))
    assert out.dtype == torch.float64 and torch.equal(out, torch.full((2, 1), -2.0, dtype=torch.float64))


def test_single_time_branch_is_broadcast_not_repeated(gen):
    """One scalar t: the time branch runs on a single row (cheap), same result as per-sample t."""
    net = TimeMLP(4, zero_init_last=False)
    calls = []
    h = net.time_mlp.register_forward_hook(lambda m, i, o: calls.append(o.shape))
    x = torch.randn(128, 4, generator=gen)
    a = net(x, 0.25)
    b = net(x, torch.full((128,), 0.25))
    h.remove()
    assert calls == [torch.Size([64]), torch.Size([128, 64])]
    torch.testing.assert_close(a, b)
