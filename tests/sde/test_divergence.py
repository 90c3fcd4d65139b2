import math

import pytest
import torch

from sampleflow.nn import MLP, GradientField, ResidualMLP

from sampleflow.sde.divergence import (
    divergence_exact,
    divergence_hutchinson,
    sample_probes,
    value_and_divergence,
)

DT = torch.float64


def _field(d, seed=0):
    """f(x) = A x + 0.5 sin(x) ⊙ b + tanh(C x) with rows independent; returns (f, A, b, C)."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(d, d, generator=g, dtype=DT)
    b = torch.randn(d, generator=g, dtype=DT)
    C = torch.randn(d, d, generator=g, dtype=DT) / math.sqrt(d)

    def f(x):
        return x @ A.T + 0.5 * torch.sin(x) * b + torch.tanh(x @ C.T)

    return f, A, b, C


def _explicit_jacobians(f, x):
    """Per-row Jacobians (B, d, d) from torch.autograd.functional.jacobian of the batched map."""
    J = torch.autograd.functional.jacobian(f, x)  # (B, d, B, d)
    idx = torch.arange(x.shape[0])
    return J[idx, :, idx, :]


@pytest.mark.parametrize("backend", ["auto", "autograd", "func"])
@pytest.mark.parametrize("grad_mode", [True, False])
def test_exact_matches_explicit_jacobian_trace(backend, grad_mode):
    d, B = 5, 7
    f, *_ = _field(d)
    x = torch.randn(B, d, generator=torch.Generator().manual_seed(1), dtype=DT)
    J = _explicit_jacobians(f, x)
    ref = J.diagonal(dim1=-2, dim2=-1).sum(-1)
    with torch.set_grad_enabled(grad_mode):
        div = divergence_exact(f, x, backend=backend)
        fx, div2 = value_and_divergence(f, x, backend=backend)
    assert div.shape == (B,)
    assert torch.allclose(div, ref, atol=1e-10, rtol=0), (div - ref).abs().max()
    assert torch.equal(div2, div)
    assert torch.allclose(fx, f(x), atol=1e-14, rtol=0)


def test_exact_with_event_shape():
    """(B, 2, 3) inputs: the divergence is over all non-batch dimensions."""
    f, *_ = _field(6, seed=3)
    x = torch.randn(4, 2, 3, generator=torch.Generator().manual_seed(2), dtype=DT)
    g = lambda z: f(z.reshape(z.shape[0], 6)).reshape(z.shape)  # noqa: E731
    ref = divergence_exact(f, x.reshape(4, 6))
    eps = sample_probes(x, 3, torch.Generator().manual_seed(0))
    h2 = divergence_hutchinson(f, x.reshape(4, 6), noise=eps.reshape(3, 4, 6))
    for backend in ("autograd", "func"):
        assert torch.allclose(divergence_exact(g, x, backend=backend), ref, atol=1e-12)
        h1 = divergence_hutchinson(g, x, noise=eps, backend=backend)
        assert torch.allclose(h1, h2, atol=1e-12)


@pytest.mark.parametrize("distribution", ["rademacher", "gaussian"])
def test_hutchinson_unbiased_within_5_sigma(distribution):
    d, B, n = 6, 3, 4000
    f, *_ = _field(d, seed=4)
    x = torch.randn(B, d, generator=torch.Generator().manual_seed(5), dtype=DT)
    exact = divergence_exact(f, x)
    # n independent single-probe estimates per row: replicate the rows
    X = x.repeat(n, 1)
    est = divergence_hutchinson(f, X, generator=torch.Generator().manual_seed(6), distribution=distribution)
    est = est.reshape(n, B)
    mean, std = est.mean(0), est.std(0)
    z = (mean - exact) / (std / math.sqrt(n))
    assert (z.abs() < 5).all(), f"z-scores {z.tolist()} (mean {mean.tolist()}, exact {exact.tolist()})"
    # the variance also matches theory: S = (J + Jᵀ)/2; Rademacher 2Σ_{k≠l}S_kl², Gaussian 2‖S‖_F²
    J = _explicit_jacobians(f, x)
    S = 0.5 * (J + J.transpose(-1, -2))
    var = 2 * S.square().sum((-1, -2))
    if distribution == "rademacher":
        var = var - 2 * S.diagonal(dim1=-1, dim2=-2).square().sum(-1)
    ratio = est.var(0) / var
    # relative sd of a sample variance of n=4000 draws is ~ sqrt(2/n)·(kurtosis factor) ≈ 3–6 %
    assert ((ratio - 1).abs() < 0.2).all(), ratio.tolist()


def test_hutchinson_many_probes_argument_reduces_to_mean():
    f, *_ = _field(4, seed=7)
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(8), dtype=DT)
    eps = sample_probes(x, 10, torch.Generator().manual_seed(9), "gaussian")
    many = divergence_hutchinson(f, x, noise=eps)
    assert torch.allclose(many, divergence_hutchinson(f, x, noise=eps, backend="func"), atol=1e-12)
    singles = torch.stack([divergence_hutchinson(f, x, noise=e) for e in eps])
    assert torch.allclose(many, singles.mean(0), atol=1e-12)
    # explicit quadratic form εᵀ J ε
    J = _explicit_jacobians(f, x)
    quad = torch.einsum("nbi,bij,nbj->nb", eps, J, eps).mean(0)
    assert torch.allclose(many, quad, atol=1e-10)


def test_rademacher_exact_for_diagonal_jacobian():
    w = torch.tensor([0.3, -1.2, 2.0, 0.7], dtype=DT)
    f = lambda x: torch.sin(x) * w + x**3  # noqa: E731  (elementwise: diagonal Jacobian)
    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(10), dtype=DT)
    exact = (torch.cos(x) * w + 3 * x**2).sum(-1)
    assert torch.allclose(divergence_exact(f, x), exact, atol=1e-12)
    h = divergence_hutchinson(f, x, n_probes=1, generator=torch.Generator().manual_seed(11))
    assert torch.allclose(h, exact, atol=1e-12)
    # Gaussian probes are not exact here
    hg = divergence_hutchinson(f, x, generator=torch.Generator().manual_seed(11), distribution="gaussian")
    assert (hg - exact).abs().max() > 1e-3


def test_probes_reproducible_and_distributed():
    x = torch.zeros(100, 10)
    a = sample_probes(x, 2, torch.Generator().manual_seed(0))
    b = sample_probes(x, 2, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == (2, 100, 10) and a.dtype == torch.float32
    assert set(a.unique().tolist()) == {-1.0, 1.0}
    assert abs(a.mean().item()) < 0.05


def _param_field():
    g = torch.Generator().manual_seed(12)
    W = torch.randn(3, 3, generator=g, dtype=DT).requires_grad_()
    v = torch.randn(3, generator=g, dtype=DT)

    def f(x):
        return torch.tanh(x @ W.T) * v + (x @ W) ** 2 * 0.1

    return f, W


@pytest.mark.parametrize("backend", ["auto", "autograd", "func"])
@pytest.mark.parametrize("method", ["exact", "hutchinson"])
def test_divergence_differentiable_wrt_parameters_and_x(method, backend):
    f, W = _param_field()
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(13), dtype=DT)
    eps = sample_probes(x, 2, torch.Generator().manual_seed(14))
    c = torch.linspace(0.5, 1.5, 6, dtype=DT)

    def loss(xx):
        return (value_and_divergence(f, xx, method=method, noise=eps, backend=backend)[1] * c).sum()

    xr = x.clone().requires_grad_()
    gW, gx = torch.autograd.grad(loss(xr), (W, xr))
    h = 1e-6
    fdW = torch.zeros_like(W)
    with torch.no_grad():
        for i in range(3):
            for j in range(3):
                W[i, j] += h
                up = loss(x)
                W[i, j] -= 2 * h
                dn = loss(x)
                W[i, j] += h
                fdW[i, j] = (up - dn) / (2 * h)
        fdx = torch.zeros_like(x)
        for i in range(6):
            for j in range(3):
                e = torch.zeros_like(x)
                e[i, j] = h
                fdx[i, j] = (loss(x + e) - loss(x - e)) / (2 * h)
    assert torch.allclose(gW, fdW, atol=1e-7, rtol=1e-6), (gW - fdW).abs().max()
    assert torch.allclose(gx, fdx, atol=1e-7, rtol=1e-6), (gx - fdx).abs().max()


def test_nn_module_implicit_score_matching_gradient():
    """The use case of SBTM: E|s|² + 2∇·s through a torch.nn network, float32, under grad mode."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
    x = torch.randn(32, 2)
    s, div = value_and_divergence(net, x)
    loss = (s.square().sum(-1) + 2 * div).mean()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    assert net[0].weight.grad.abs().sum() > 0  # the divergence depends on the first layer
    with torch.no_grad():
        s2, div2 = value_and_divergence(net, x)
    assert not div2.requires_grad and not s2.requires_grad
    assert torch.allclose(div2, div.detach(), atol=1e-6)


def test_bad_input_clear_errors():
    f = lambda x: x  # noqa: E731
    with pytest.raises(ValueError, match="x must be batched"):
        divergence_exact(f, torch.zeros(3))
    with pytest.raises(ValueError, match="method"):
        value_and_divergence(f, torch.zeros(2, 3), method="nope")
    with pytest.raises(ValueError, match="distribution"):
        divergence_hutchinson(f, torch.zeros(2, 3), distribution="uniform")
    with pytest.raises(ValueError, match="n_probes"):
        divergence_hutchinson(f, torch.zeros(2, 3), n_probes=0)
    with pytest.raises(ValueError, match="same shape"):
        divergence_exact(lambda x: x[:, :2], torch.zeros(2, 3))
    with pytest.raises(ValueError, match="same shape"):
        divergence_hutchinson(lambda x: x[:, :2], torch.zeros(2, 3))
    with pytest.raises(ValueError, match="backend"):
        divergence_exact(f, torch.zeros(2, 3), backend="jax")
    with pytest.raises(ValueError, match="noise"):
        divergence_hutchinson(f, torch.zeros(2, 3), noise=torch.zeros(4, 3))
    assert torch.allclose(divergence_exact(f, torch.zeros(2, 3)), torch.full((2,), 3.0))
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        divergence_exact(f, torch.zeros(2, 3))
    # a constant field (no dependence on x) has zero divergence, with every backend
    for backend in ("autograd", "func"):
        for method in ("exact", "hutchinson"):
            fx, div = value_and_divergence(lambda x: torch.ones_like(x), torch.zeros(2, 3), method=method,
                                           backend=backend)
            assert torch.equal(div, torch.zeros(2)) and torch.equal(fx, torch.ones(2, 3))


def test_auto_uses_jacrev_for_large_event_and_agrees():
    d = 40
    A = torch.randn(d, d, generator=torch.Generator().manual_seed(20), dtype=DT)
    f = lambda x: x @ A.T + torch.tanh(x)  # noqa: E731
    x = torch.randn(3, d, generator=torch.Generator().manual_seed(21), dtype=DT)
    ref = A.trace() + (1 - torch.tanh(x) ** 2).sum(-1)
    with torch.no_grad():
        for backend in ("auto", "autograd", "func"):
            assert torch.allclose(divergence_exact(f, x, backend=backend), ref, atol=1e-10)


def _jacobian_trace(f, x):
    d = x.shape[1]
    return torch.stack([torch.autograd.functional.jacobian(f, xi[None]).reshape(d, d).trace() for xi in x])


@pytest.mark.parametrize("make", [lambda: ResidualMLP(3, width=16), lambda: ResidualMLP(16, width=16, activation="tanh"),
                                  lambda: MLP(3, 3, 16, 3, "gelu"), lambda: MLP(3, 3, 16, 3, "silu"),
                                  lambda: MLP(3, 3, 16, 3, "softplus"), lambda: MLP(3, 3, 16, 3, "relu"),
                                  lambda: GradientField(MLP(3, 1, 16, 3, "softplus")), lambda: MLP(3, 3, 16, 3, "elu")])
def test_tangent_backend_matches_the_jacobian(make):
    """The hand-written forward-mode products of the nn MLPs (used by "auto" when a field has them; elu has
    no hand-written derivative and a GradientField no such method, so those fall back) give the exact
    divergence, a differentiable one under grad mode, and Hutchinson's quadratic form for fixed probes."""
    torch.manual_seed(0)
    net = make().double()
    d = 16 if getattr(net, "in_dim", 3) == 16 else 3
    x = torch.randn(6, d, dtype=torch.float64)
    fx, div = value_and_divergence(net, x)
    torch.testing.assert_close(fx, net(x))
    torch.testing.assert_close(div, _jacobian_trace(net, x), rtol=1e-10, atol=1e-10)
    eps = sample_probes(x, 3, torch.Generator().manual_seed(1))
    _, hut = value_and_divergence(net, x, method="hutchinson", noise=eps)
    J = torch.stack([torch.autograd.functional.jacobian(net, xi[None]).reshape(d, d) for xi in x])
    want = torch.einsum("kbi,bij,kbj->kb", eps, J, eps).mean(0)
    torch.testing.assert_close(hut, want, rtol=1e-10, atol=1e-10)
    params = [p for p in net.parameters()]
    g = torch.autograd.grad(div.sum(), params[0])[0]
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_tangent_backend_errors():
    with pytest.raises(ValueError, match="forward_and_jvp"):
        value_and_divergence(lambda y: -y, torch.zeros(2, 3), backend="tangent")
