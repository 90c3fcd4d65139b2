import math

import pytest
import torch

from sampleflow.sde.divergence import sample_probes
from sampleflow.sde.ode import RK45Result, fixed_grid_nfe, odeint, odeint_with_logdet, rk45

DT = torch.float64
ORDER = {"euler": 1, "heun": 2, "rk4": 4}


def _gauss_logpdf(x, cov):
    """log N(x; 0, cov) for x of shape (B, d)."""
    d = x.shape[-1]
    L = torch.linalg.cholesky(cov)
    z = torch.linalg.solve_triangular(L, x.T, upper=False).T
    return -0.5 * z.square().sum(-1) - L.diagonal().log().sum() - 0.5 * d * math.log(2 * math.pi)


def _linear_system(seed=0, d=3):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(d, d, generator=g, dtype=DT) * 0.7
    x0 = torch.randn(4, d, generator=g, dtype=DT)
    return A, x0


def _grid(n, T=1.0, dtype=DT):
    return torch.linspace(0.0, T, n + 1, dtype=dtype)


@pytest.mark.parametrize("method", ["euler", "heun", "rk4"])
@torch.no_grad()
def test_fixed_grid_convergence_order_linear(method):
    A, x0 = _linear_system()
    exact = x0 @ torch.linalg.matrix_exp(A).T
    seen_t = []

    def f(x, t):
        seen_t.append(t)
        return x @ A.T

    n = {"euler": 64, "heun": 16, "rk4": 8}[method]
    errs = [(odeint(f, x0, _grid(m), method=method) - exact).abs().max().item() for m in (n, 2 * n, 4 * n)]
    orders = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    p = ORDER[method]
    assert all(abs(o - p) < 0.5 for o in orders), f"{method}: errors {errs}, observed orders {orders}"
    # t is a 0-d tensor of x's dtype
    assert all(t.dim() == 0 and t.dtype == DT for t in seen_t)


@torch.no_grad()
def test_odeint_trajectory_stats_and_decreasing_grid():
    A, x0 = _linear_system(1)
    f = lambda x, t: x @ A.T  # noqa: E731
    stats = {}
    xK, traj = odeint(f, x0, _grid(50), method="rk4", return_trajectory=True, stats=stats)
    assert traj.shape == (51, *x0.shape) and torch.equal(traj[0], x0) and torch.equal(traj[-1], xK)
    assert stats == {"nfe": 200, "n_steps": 50} and fixed_grid_nfe("heun", 18) == 36
    mid = x0 @ torch.linalg.matrix_exp(0.5 * A).T
    assert torch.allclose(traj[25], mid, atol=1e-8)
    back = odeint(f, xK, _grid(50).flip(0), method="rk4")  # integrate from t=1 back to t=0
    assert torch.allclose(back, x0, atol=1e-8)
    # float32 and a grid given as a list follow x0's dtype
    A32 = A.float()
    x32 = odeint(lambda x, t: x @ A32.T, x0.float(), [0.0, 0.5, 1.0], method="euler")
    assert x32.dtype == torch.float32


def _time_linear(d=3, seed=2):
    """dx/dt = c(t) A0 x with c(t) = 1 + 0.5 cos 3t: commuting in time, flow map M = expm(C(t) A0)."""
    g = torch.Generator().manual_seed(seed)
    A0 = torch.randn(d, d, generator=g, dtype=DT) * 0.6

    def f(x, t):
        return (1 + 0.5 * torch.cos(3 * t)) * (x @ A0.T)

    def C(T):
        return T + 0.5 * math.sin(3 * T) / 3

    return f, A0, C


@torch.no_grad()
def test_logdet_linear_gaussian_pushforward_exact():
    f, A0, C = _time_linear()
    T = 1.0
    x0 = torch.randn(64, 3, generator=torch.Generator().manual_seed(3), dtype=DT)
    stats = {}
    xK, dlogp = odeint_with_logdet(f, x0, _grid(200, T), method="rk4", divergence="exact", stats=stats)
    M = torch.linalg.matrix_exp(C(T) * A0)
    assert stats["nfe"] == 800
    assert torch.allclose(xK, x0 @ M.T, atol=1e-9)
    logq0 = _gauss_logpdf(x0, torch.eye(3, dtype=DT))
    logqK = _gauss_logpdf(xK, M @ M.T)
    err = (logq0 + dlogp - logqK).abs().max().item()
    assert err < 1e-6, err
    assert torch.allclose(dlogp, torch.full_like(dlogp, -C(T) * A0.trace().item()), atol=1e-9)
    # the reverse solve (decreasing grid) undoes it: back to x0 with the opposite log-det
    x_back, dlogp_back = odeint_with_logdet(f, xK, _grid(200, T).flip(0), method="rk4")
    assert torch.allclose(x_back, x0, atol=1e-9) and torch.allclose(dlogp_back, -dlogp, atol=1e-9)


@torch.no_grad()
def test_logdet_with_event_shape_and_float32():
    """x of shape (B, 2, 2) (an 'image'): the divergence runs over all non-batch dimensions."""
    A = torch.tensor([[-0.5, 1.0], [-1.0, 0.2]])
    f = lambda x, t: x @ A.T  # noqa: E731  (acts on the last axis of each 2x2 'image')
    x0 = torch.randn(5, 2, 2, generator=torch.Generator().manual_seed(30))
    for divergence in ("exact", "hutchinson"):
        xK, dl = odeint_with_logdet(f, x0, _grid(20, dtype=torch.float32), method="heun", divergence=divergence,
                                    generator=torch.Generator().manual_seed(0))
        assert xK.shape == x0.shape and dl.shape == (5,) and dl.dtype == torch.float32
        if divergence == "exact":  # ∇·f = 2 tr A (the field acts on both rows of each sample)
            assert torch.allclose(dl, torch.full((5,), -2 * A.trace().item()), atol=1e-5)
    assert torch.allclose(xK, x0 @ torch.linalg.matrix_exp(A).T, atol=1e-3)


@pytest.mark.parametrize("method", ["heun", "rk4"])
@torch.no_grad()
def test_logdet_converges_with_scheme_order(method):
    """ℓ is integrated jointly with x, so the log-density error has the scheme's order."""
    f, A0, C = _time_linear(seed=4)
    x0 = torch.randn(8, 3, generator=torch.Generator().manual_seed(5), dtype=DT)
    exact = -C(1.0) * A0.trace().item()
    n = {"heun": 16, "rk4": 4}[method]
    errs = [(odeint_with_logdet(f, x0, _grid(m), method=method)[1] - exact).abs().max().item() for m in (n, 2 * n)]
    order = math.log2(errs[0] / errs[1])
    assert abs(order - ORDER[method]) < 0.5, (errs, order)


@torch.no_grad()
def test_logdet_hutchinson_fixed_probes_and_unbiased():
    f, A0, C = _time_linear(seed=6)
    T, B = 1.0, 4000
    x0 = torch.randn(B, 3, generator=torch.Generator().manual_seed(7), dtype=DT)
    xK, dlogp = odeint_with_logdet(f, x0, _grid(40, T), method="rk4", divergence="hutchinson",
                                   generator=torch.Generator().manual_seed(8))
    exact = -C(T) * A0.trace().item()
    # probes are drawn once and fixed along the path: for a linear field ℓ̂ = −εᵀ (∫A dt) ε exactly
    eps = sample_probes(x0, 1, torch.Generator().manual_seed(8))[0]
    quad = -torch.einsum("bi,ij,bj->b", eps, C(T) * A0, eps)
    assert torch.allclose(dlogp, quad, atol=1e-7)
    # unbiased: mean over the batch within 5 standard errors of the exact value
    se = dlogp.std().item() / math.sqrt(B)
    assert abs(dlogp.mean().item() - exact) < 5 * se, (dlogp.mean().item(), exact, se)
    # positions do not depend on the divergence estimator
    assert torch.allclose(xK, odeint(f, x0, _grid(40, T), method="rk4"), atol=1e-12)
    # several probes average: variance shrinks about as 1/n_probes
    _, d4 = odeint_with_logdet(f, x0, _grid(40, T), method="rk4", divergence="hutchinson", n_probes=4,
                               generator=torch.Generator().manual_seed(9))
    ratio = d4.var().item() / dlogp.var().item()
    assert 0.15 < ratio < 0.35, ratio


@torch.no_grad()
def test_nonlinear_scalar_riccati():
    """dx/dt = x²: x_T = x0 / (1 − T x0), delta_logp = 2 log(1 − T x0); q_0 = N(0, 1)."""
    T = 0.5
    x0 = torch.linspace(-1.0, 1.0, 41, dtype=DT).unsqueeze(-1)
    f = lambda x, t: x * x  # noqa: E731
    xK, dlogp = odeint_with_logdet(f, x0, _grid(400, T), method="rk4")
    assert torch.allclose(xK, x0 / (1 - T * x0), atol=1e-9)
    assert torch.allclose(dlogp, 2 * torch.log1p(-T * x0[:, 0]), atol=1e-9)
    # log q_T(y) = log q_0(y / (1 + T y)) − 2 log(1 + T y), the exact push-forward density
    y = xK[:, 0]
    log_qT = -0.5 * (y / (1 + T * y)) ** 2 - 0.5 * math.log(2 * math.pi) - 2 * torch.log1p(T * y)
    log_q0 = -0.5 * x0[:, 0] ** 2 - 0.5 * math.log(2 * math.pi)
    assert torch.allclose(log_q0 + dlogp, log_qT, atol=1e-8)


def _spiral():
    """f(x) = ½(1 − r²) x + r² J x (logistic radial flow + differential rotation) in 2-D.
    With u = r²: u_T = u0 e^T / (1 − u0 + u0 e^T), θ_T = θ0 + log(1 − u0 + u0 e^T),
    ∇·f = 1 − 2r², so delta_logp = −T + 2 log(1 − u0 + u0 e^T)."""

    def f(x, t):
        u = x.square().sum(-1, keepdim=True)
        rot = torch.stack([-x[:, 1], x[:, 0]], -1)
        return 0.5 * (1 - u) * x + u * rot

    def flow(x0, T):
        u0 = x0.square().sum(-1)
        den = 1 - u0 + u0 * math.exp(T)
        r = torch.sqrt(u0 * math.exp(T) / den)
        th = torch.atan2(x0[:, 1], x0[:, 0]) + torch.log(den)
        return torch.stack([r * torch.cos(th), r * torch.sin(th)], -1), -T + 2 * torch.log(den)

    return f, flow


def test_nonlinear_spiral_positions_and_logdensity():
    f, flow = _spiral()
    T = 1.0
    x0 = torch.randn(30, 2, generator=torch.Generator().manual_seed(10), dtype=DT) * 0.8
    with torch.no_grad():
        xK, dlogp = odeint_with_logdet(f, x0, _grid(300, T), method="rk4")
    x_ex, dl_ex = flow(x0, T)
    assert torch.allclose(xK, x_ex, atol=1e-8), (xK - x_ex).abs().max()
    assert torch.allclose(dlogp, dl_ex, atol=1e-8), (dlogp - dl_ex).abs().max()
    # independent check of the formula: −log|det ∂Φ_T/∂x0| of the closed-form map by autograd
    J = torch.autograd.functional.jacobian(lambda z: flow(z, T)[0], x0)
    idx = torch.arange(30)
    logdet = torch.linalg.slogdet(J[idx, :, idx, :])[1]
    assert torch.allclose(dlogp, -logdet, atol=1e-8)


def test_odeint_differentiable_through_solver():
    a = torch.tensor(0.7, dtype=DT, requires_grad=True)
    x0 = torch.tensor([[1.0, -2.0]], dtype=DT, requires_grad=True)
    f = lambda x, t: a * torch.sin(x) + t  # noqa: E731
    grid = _grid(20)
    xK, dl = odeint_with_logdet(f, x0, grid, method="heun")
    ga, gx = torch.autograd.grad(xK.sum() + dl.sum(), (a, x0))
    h = 1e-6
    with torch.no_grad():
        def L(aa, xx):
            g = lambda x, t: aa * torch.sin(x) + t  # noqa: E731
            xk, d = odeint_with_logdet(g, xx, grid, method="heun")
            return (xk.sum() + d.sum()).item()
        fd_a = (L(a + h, x0) - L(a - h, x0)) / (2 * h)
        e = torch.tensor([[h, 0.0]], dtype=DT)
        fd_x = (L(a, x0 + e) - L(a, x0 - e)) / (2 * h)
    assert abs(ga.item() - fd_a) < 1e-6 and abs(gx[0, 0].item() - fd_x) < 1e-6, (ga, fd_a, gx, fd_x)
    with torch.no_grad():
        xK2, dl2 = odeint_with_logdet(f, x0, grid, method="heun")
    assert not xK2.requires_grad and not dl2.requires_grad


@torch.no_grad()
def test_rk45_accuracy_linear_with_logdet_and_nfe_bookkeeping():
    f, A0, C = _time_linear(seed=11)
    x0 = torch.randn(16, 3, generator=torch.Generator().manual_seed(12), dtype=DT)
    res = rk45(f, x0, 0.0, 1.5, rtol=1e-8, atol=1e-8, logdet=True)
    assert isinstance(res, RK45Result)
    M = torch.linalg.matrix_exp(C(1.5) * A0)
    assert torch.allclose(res.x, x0 @ M.T, atol=1e-6), (res.x - x0 @ M.T).abs().max()
    assert torch.allclose(res.delta_logp, torch.full((16,), -C(1.5) * A0.trace().item(), dtype=DT), atol=1e-6)
    # FSAL: 1 initial evaluation (reused by the starting-step choice) + 1 more for the starting
    # step size + 6 per attempted step
    assert res.nfe == 2 + 6 * (res.n_accepted + res.n_rejected)
    # backwards in time returns to x0 and reverses the log-det
    back = rk45(f, res.x, 1.5, 0.0, rtol=1e-8, atol=1e-8, logdet=True)
    assert torch.allclose(back.x, x0, atol=1e-6) and torch.allclose(back.delta_logp, -res.delta_logp, atol=1e-6)
    # without logdet; h0 given: no starting-step evaluations
    r2 = rk45(f, x0, 0.0, 1.5, rtol=1e-8, atol=1e-8, h0=0.01)
    assert r2.delta_logp is None and r2.nfe == 1 + 6 * (r2.n_accepted + r2.n_rejected)
    assert torch.allclose(r2.x, x0 @ M.T, atol=1e-6)
    # tighter tolerance: smaller error, more evaluations
    loose = rk45(f, x0, 0.0, 1.5, rtol=1e-4, atol=1e-4)
    assert loose.nfe < r2.nfe
    assert (loose.x - x0 @ M.T).abs().max() > (r2.x - x0 @ M.T).abs().max()


@torch.no_grad()
def test_rk45_hutchinson_matches_fixed_probe_quadratic_form():
    f, A0, C = _time_linear(seed=13)
    x0 = torch.randn(10, 3, generator=torch.Generator().manual_seed(14), dtype=DT)
    res = rk45(f, x0, 0.0, 1.0, rtol=1e-9, atol=1e-9, logdet=True, divergence="hutchinson",
               generator=torch.Generator().manual_seed(15))
    eps = sample_probes(x0, 1, torch.Generator().manual_seed(15))[0]
    quad = -torch.einsum("bi,ij,bj->b", eps, C(1.0) * A0, eps)
    assert torch.allclose(res.delta_logp, quad, atol=1e-6)


@torch.no_grad()
def test_rk45_beats_fixed_rk4_on_stiffish_problem():
    """x' = −λ(x − sin t) + cos t, λ = 30: a fast transient e^{−λt} then a slow sine; exact
    x(t) = sin t + x0 e^{−λt}. Adaptive steps resolve the transient and then grow."""
    lam, T = 30.0, 5.0
    f = lambda x, t: -lam * (x - torch.sin(t)) + torch.cos(t)  # noqa: E731
    x0 = torch.tensor([[1.0], [2.0], [-1.0]], dtype=DT)
    exact = math.sin(T) + x0 * math.exp(-lam * T)
    res = rk45(f, x0, 0.0, T, rtol=1e-6, atol=1e-6)
    err45 = (res.x - exact).abs().max().item()
    assert err45 < 5e-6, err45  # reaches the requested tolerance (global error ~ tol)
    n_same_budget = res.nfe // 4  # rk4 steps with the same number of evaluations
    err4_same = (odeint(f, x0, _grid(n_same_budget, T), method="rk4") - exact).abs().max().item()
    # smallest rk4 grid (in 10 % increments) reaching rk45's accuracy
    n = n_same_budget
    while (odeint(f, x0, _grid(n, T), method="rk4") - exact).abs().max().item() > err45:
        n = int(n * 1.1) + 1
    msg = (f"rk45: err {err45:.2e} with NFE {res.nfe} ({res.n_accepted} accepted, {res.n_rejected} rejected); "
           f"rk4 with the same NFE: err {err4_same:.2e}; rk4 needs NFE {4 * n} for err <= {err45:.2e}")
    assert err4_same > err45 and 4 * n > 1.2 * res.nfe, msg


def test_bad_input_clear_errors():
    f = lambda x, t: x  # noqa: E731
    x0 = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="method"):
        odeint(f, x0, _grid(3), method="rk2")
    with pytest.raises(ValueError, match="grid"):
        odeint(f, x0, torch.tensor([0.0, 1.0, 0.5]))
    with pytest.raises(ValueError, match="grid"):
        odeint(f, x0, torch.tensor([0.0]))
    with pytest.raises(ValueError, match="grid"):
        odeint(f, x0, torch.zeros(2, 2))
    with pytest.raises(TypeError, match="x0"):
        odeint(f, [[0.0]], _grid(3))
    with pytest.raises(ValueError, match="x's shape"):
        odeint(lambda x, t: x[:, :1], x0, _grid(3))
    with pytest.raises(ValueError, match="divergence"):
        odeint_with_logdet(f, x0, _grid(3), divergence="nope")
    with pytest.raises(ValueError, match="batched"):
        odeint_with_logdet(f, torch.zeros(3), _grid(3))
    with pytest.raises(ValueError, match="rtol"):
        rk45(f, x0, 0.0, 1.0, rtol=0.0, atol=0.0)
    with pytest.raises(RuntimeError, match="max_steps"):
        rk45(lambda x, t: -1000.0 * x, x0 + 1, 0.0, 10.0, max_steps=20)
    r = rk45(f, x0, 1.0, 1.0)
    assert r.nfe == 0 and torch.equal(r.x, x0)
