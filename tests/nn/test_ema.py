import pytest
import torch
from torch import nn

from sampleflow.nn import EMA, TimeMLP


def _set(module, value):
    with torch.no_grad():
        for p in module.parameters():
            p.fill_(value)


def test_closed_form_average():
    d = 0.9
    net = nn.Linear(3, 2)
    _set(net, 1.0)  # theta_0
    ema = EMA(net, decay=d)
    values = [2.0, -1.0, 5.0, 0.5, 3.0]
    for v in values:
        _set(net, v)
        ema.update()
    k = len(values)
    expected = d**k * 1.0 + (1 - d) * sum(d ** (k - j) * v for j, v in enumerate(values, start=1))
    for name, s in ema.shadow().items():
        torch.testing.assert_close(s, torch.full_like(s, expected), rtol=1e-6, atol=1e-6)
    assert ema.num_updates == k
    # the live weights are the last values, untouched by the EMA
    assert torch.equal(net.weight, torch.full_like(net.weight, 3.0))


def test_closed_form_per_element_with_optimizer(gen):
    """Random parameter trajectory: the shadow equals the explicit weighted sum, element by element."""
    d = 0.8
    net = nn.Linear(4, 3).double()
    ema = EMA(net, decay=d)
    history = [net.weight.detach().clone()]
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x = torch.randn(16, 4, generator=gen, dtype=torch.float64)
    for _ in range(7):
        opt.zero_grad()
        net(x).pow(2).sum().backward()
        opt.step()
        ema.update()
        history.append(net.weight.detach().clone())
    k = len(history) - 1
    expected = d**k * history[0] + (1 - d) * sum(d ** (k - j) * history[j] for j in range(1, k + 1))
    torch.testing.assert_close(ema.shadow()["weight"], expected, rtol=1e-12, atol=1e-12)


def test_swapped_restores_live_weights(gen):
    net = TimeMLP(3, width=16, zero_init_last=False)
    ema = EMA(net, decay=0.5)
    live0 = {n: p.detach().clone() for n, p in net.named_parameters()}
    _set(net, 0.01)
    ema.update()
    live = {n: p.detach().clone() for n, p in net.named_parameters()}
    x = torch.randn(5, 3, generator=gen)
    out_live = net(x, 0.3)
    with ema.swapped() as m:
        assert m is net
        for n, p in net.named_parameters():
            torch.testing.assert_close(p, 0.5 * live0[n] + 0.5 * live[n])
        out_ema = net(x, 0.3)
    assert not torch.allclose(out_ema, out_live)
    for n, p in net.named_parameters():
        assert torch.equal(p, live[n])
    # also restored after an exception
    with pytest.raises(RuntimeError):
        with ema.swapped():
            raise RuntimeError("boom")
    for n, p in net.named_parameters():
        assert torch.equal(p, live[n])
    torch.testing.assert_close(net(x, 0.3), out_live)


def test_apply_to_copy_and_state_dict_round_trip(tmp_path):
    net = TimeMLP(2, width=8)
    ema = EMA(net, decay=0.7)
    for v in (0.3, -0.2, 0.9):
        _set(net, v)
        ema.update()
    other = TimeMLP(2, width=8)
    ema.apply_to(other)
    for n, p in other.named_parameters():
        assert torch.equal(p, ema.shadow()[n])
    path = tmp_path / "ema.pt"
    torch.save(ema.state_dict(), path)
    fresh = EMA(TimeMLP(2, width=8), decay=0.1)
    fresh.load_state_dict(torch.load(path))
    assert fresh.decay == 0.7 and fresh.num_updates == 3
    for n, s in ema.shadow().items():
        assert torch.equal(fresh.shadow()[n], s)
    # resumed updates continue identically
    _set(net, 1.0)
    _set(fresh.module, 1.0)
    ema.update()
    fresh.update()
    for n, s in ema.shadow().items():
        assert torch.equal(fresh.shadow()[n], s)
    with pytest.raises(ValueError, match="names"):
        EMA(TimeMLP(3, width=4, depth=3)).load_state_dict(ema.state_dict())
    with pytest.raises(ValueError, match="decay"):
        EMA(net, decay=1.5)
