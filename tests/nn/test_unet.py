"""The image U-Net: flat in, flat out, starts at zero, conditions on time, treats samples independently,
trains, and rejects bad shapes."""
import pytest
import torch

from sampleflow.nn import UNet, count_parameters


@pytest.mark.parametrize("shape,mults", [((1, 8, 8), (1, 2)), ((1, 28, 28), (1, 2, 2)), ((3, 7, 5), (1, 2))])
def test_shapes_zero_start_time_conditioning_and_per_sample_independence(shape, mults):
    torch.manual_seed(0)
    net = UNet(shape, channels=8, channel_mults=mults)
    d = shape[0] * shape[1] * shape[2]
    x = torch.randn(4, d)
    assert torch.equal(net(x, torch.rand(4)), torch.zeros(4, d))          # zero-initialised output layer
    torch.nn.init.normal_(net.out.weight, std=0.1)
    for m in net.modules():                                               # wake the zero-initialised blocks
        if hasattr(m, "conv2"):
            torch.nn.init.normal_(m.conv2.weight, std=0.05)
    with torch.no_grad():
        check_outputs(net, x, d)


def check_outputs(net, x, d):
    y = net(x, 0.3)
    assert y.shape == (4, d) and float(y.abs().max()) > 1e-3
    assert float((net(x, 0.9) - y).abs().max()) > 1e-4                   # depends on t
    torch.testing.assert_close(net(x[1:2], 0.3), y[1:2], rtol=1e-5, atol=1e-6)   # no batch coupling
    assert net(torch.randn(2, 3, d), torch.rand(2, 3)).shape == (2, 3, d)        # leading batch shape


def test_fits_a_time_dependent_map():
    """A few dozen Adam steps fit y = (1 + t)·x on 8×8 inputs far better than the zero start."""
    torch.manual_seed(1)
    net = UNet((1, 8, 8), channels=8, channel_mults=(1, 2))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    x, t = torch.randn(64, 64), torch.rand(64)
    target = (1 + t)[:, None] * x
    first = float(((net(x, t) - target) ** 2).mean().detach())
    for _ in range(60):
        opt.zero_grad()
        loss = ((net(x, t) - target) ** 2).mean()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.2 * first, (first, float(loss.detach()))
    assert count_parameters(net) > 10_000


def test_bad_input():
    with pytest.raises(ValueError, match="image_shape"):
        UNet((8, 8))
    with pytest.raises(ValueError, match="channel_mults"):
        UNet((1, 8, 8), channel_mults=())
    with pytest.raises(ValueError, match="C·H·W = 64"):
        UNet((1, 8, 8))(torch.randn(2, 63), 0.5)
