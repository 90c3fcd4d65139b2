import math

import pytest
import torch

from sampleflow.nn import SinusoidalTimeEmbedding, broadcast_time


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-5), (torch.float64, 1e-12)])
def test_shape_and_bounds(dtype, tol):
    emb = SinusoidalTimeEmbedding(16).to(dtype)
    t = torch.linspace(0, 1, 101, dtype=dtype)
    f = emb(t)
    assert f.shape == (101, 32) and f.dtype == dtype
    assert emb(0.5).shape == (32,)
    assert emb(torch.tensor(0.5)).shape == (32,)
    assert f.abs().max() <= 1.0
    # at phase 0: first half sin(ωt), second half cos(ωt)
    w = emb.frequencies
    # (float32: cos is computed as sin(θ + π/2), exact up to rounding of the argument θ ≤ 100)
    torch.testing.assert_close(f[:, :16], torch.sin(t[:, None] * w), atol=tol, rtol=0)
    torch.testing.assert_close(f[:, 16:], torch.cos(t[:, None] * w), atol=tol, rtol=0)
    # sin^2 + cos^2 = 1 per frequency
    one = torch.ones(101, 16, dtype=dtype)
    torch.testing.assert_close(f[:, :16] ** 2 + f[:, 16:] ** 2, one, atol=2 * tol, rtol=0)


def test_frequencies_linear_and_geometric():
    lin = SinusoidalTimeEmbedding(64)  # PIS/DIS: linspace(0.1, 100)
    assert float(lin.frequencies[0]) == pytest.approx(0.1)
    assert float(lin.frequencies[-1]) == pytest.approx(100.0)
    d = lin.frequencies.diff()
    torch.testing.assert_close(d, torch.full_like(d, (100 - 0.1) / 63), rtol=1e-4, atol=0)
    geo = SinusoidalTimeEmbedding(5, min_frequency=1.0, max_frequency=1e4, spacing="geometric")
    torch.testing.assert_close(geo.frequencies, torch.tensor([1.0, 10.0, 100.0, 1e3, 1e4]), rtol=1e-5, atol=0)
    with pytest.raises(ValueError, match="spacing"):
        SinusoidalTimeEmbedding(4, spacing="cubic")
    with pytest.raises(ValueError, match="min_frequency"):
        SinusoidalTimeEmbedding(4, min_frequency=0.0, spacing="geometric")


def test_distinct_and_smooth():
    emb = SinusoidalTimeEmbedding(64).double()
    t = torch.linspace(0, 1, 201, dtype=torch.float64)
    f = emb(t)
    dist = torch.cdist(f, f)
    dist.fill_diagonal_(math.inf)
    assert dist.min() > 1e-2  # different t give different features
    dt = 1e-6
    diff = (emb(t + dt) - f).abs().max()
    assert diff <= emb.frequencies.max() * dt * 1.0001  # Lipschitz with constant max frequency
    assert diff > 0


def test_learned_phase_shifts_features():
    emb = SinusoidalTimeEmbedding(3)
    with torch.no_grad():
        emb.phase.copy_(torch.tensor([0.5, 1.0, -2.0]))
    t = torch.tensor([0.0, 0.3])
    f = emb(t)
    arg = t[:, None] * emb.frequencies + emb.phase.detach()
    torch.testing.assert_close(f, torch.cat([arg.sin(), arg.cos()], -1), atol=1e-6, rtol=0)
    assert SinusoidalTimeEmbedding(3, learn_phase=False).phase is None


def test_broadcast_time_forms():
    x = torch.randn(4, 3)
    assert broadcast_time(0.2, x).shape == ()
    assert broadcast_time(torch.tensor(0.2), x).shape == ()
    assert broadcast_time(torch.tensor([0.2]), x).shape == ()
    assert broadcast_time(torch.rand(4), x).shape == (4,)
    assert broadcast_time(torch.rand(4, 1), x).shape == (4,)
    assert broadcast_time(torch.rand(4, 1, dtype=torch.float64), x).dtype == torch.float32
    with pytest.raises(ValueError, match="t has shape"):
        broadcast_time(torch.rand(3), x)
    with pytest.raises(TypeError, match="t must be"):
        broadcast_time("0.1", x)
