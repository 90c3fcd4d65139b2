"""torch.func compatibility: the divergence of a network output w.r.t. x is taken with these transforms."""
import pytest
import torch
from torch.func import functional_call, jacrev, jvp, vmap

from sampleflow.nn import TimeMLP, build_control

# torch's own functorch internals warn about torch.jit.script on first use; not ours.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


def _net(dim=3):
    torch.manual_seed(0)
    return TimeMLP(dim, width=16, zero_init_last=False).double()


def _autograd_jacobian(net, x, t):
    B, d = x.shape
    x = x.clone().requires_grad_(True)
    out = net(x, t)
    rows = [torch.autograd.grad(out[:, i].sum(), x, retain_graph=True)[0] for i in range(d)]
    return torch.stack(rows, dim=1)  # (B, d_out, d_in)


def test_functional_call_vmap_jacrev_matches_autograd(gen):
    net = _net()
    params = {k: v.detach() for k, v in net.named_parameters()}
    x = torch.randn(7, 3, generator=gen, dtype=torch.float64)
    t = torch.rand(7, generator=gen, dtype=torch.float64)

    def f(xi, ti):
        return functional_call(net, params, (xi, ti))

    torch.testing.assert_close(vmap(f)(x, t), net(x, t))
    jac = vmap(jacrev(f))(x, t)
    assert jac.shape == (7, 3, 3)
    ref = _autograd_jacobian(net, x, t)
    torch.testing.assert_close(jac, ref, rtol=1e-10, atol=1e-12)
    div = torch.diagonal(jac, dim1=-2, dim2=-1).sum(-1)
    torch.testing.assert_close(div, torch.diagonal(ref, dim1=-2, dim2=-1).sum(-1))
    # a single, shared scalar time (vmap over x only)
    jac_s = vmap(jacrev(f), in_dims=(0, None))(x, torch.tensor(0.4, dtype=torch.float64))
    torch.testing.assert_close(jac_s, _autograd_jacobian(net, x, 0.4), rtol=1e-10, atol=1e-12)


def test_jvp_hutchinson_direction(gen):
    net = _net()
    x = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    v = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    _, jv = jvp(lambda y: net(y, 0.7), (x,), (v,))
    ref = torch.einsum("bij,bj->bi", _autograd_jacobian(net, x, 0.7), v)
    torch.testing.assert_close(jv, ref, rtol=1e-10, atol=1e-12)


def test_grad_wrt_params_through_functional_call(gen):
    ctrl = build_control(3, "score", width=16, coef_init=1.0).double()
    params = {k: v.detach().clone().requires_grad_(True) for k, v in ctrl.named_parameters()}
    x = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    out = functional_call(ctrl, params, (x, 0.5), {"score": -x})
    torch.testing.assert_close(out, -x)
    out.sum().backward()
    assert params["net.output_layer.weight"].grad.abs().sum() > 0
