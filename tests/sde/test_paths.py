"""Discrete path measures: E[exp(log w)] = Z for any control (eq. (1) of sampleflow.sde.paths), the
optimal control makes log w constant up to a discretisation error that shrinks with the step, and the
gradient modes build the graphs they promise."""
import math

import pytest
import torch

from sampleflow.sde import CMCDPath, DDSPath, PISPath, VPPath, cosine_alphas, simulate, uniform_grid
from sampleflow.sde.paths import isotropic_gaussian_log_prob, transition_log_ratio

from .gaussian_controls import FunctionControl, diagonal_gaussian, optimal_control

M, S = [1.0, -0.5], [0.5, 2.0]
LOG_Z = 0.0


def _paths(K, d=2, beta_max=2.0):
    return {"pis": PISPath(d, K), "dis": VPPath(d, K, beta_max=beta_max), "dds": DDSPath(d, K),
            "cmcd": CMCDPath(d, K, step=2.0 / K),
            "bridge": VPPath(d, K, beta_max=beta_max, learn_backward=True),
            "cmcd_learned": _cmcd_learned(d, K)}


def _cmcd_learned(d, K):
    """CMCD with per-step steps and a non-uniform schedule given as tensors with a graph (as when learned)."""
    g = torch.Generator().manual_seed(11)
    path = CMCDPath(d, K)
    path.set_step((2.0 / K) * torch.exp(0.5 * torch.randn(K, generator=g, dtype=torch.float64)).requires_grad_())
    inc = torch.rand(K, generator=g, dtype=torch.float64) + 0.2
    path.set_schedule(torch.cat([torch.zeros(1, dtype=torch.float64), inc.cumsum(0) / inc.sum()]).requires_grad_())
    return path


def _random_control(d, seed):
    g = torch.Generator().manual_seed(seed)
    A = 0.4 * torch.randn(d, d, generator=g, dtype=torch.float64)
    b = 0.3 * torch.randn(d, generator=g, dtype=torch.float64)
    return FunctionControl(lambda x, t: torch.tanh(x @ A.T) * math.cos(3 * t) + b * t)


@pytest.mark.parametrize("name", ["pis", "dis", "dds", "cmcd", "bridge", "cmcd_learned"])
def test_importance_weights_are_unbiased_for_any_control(name):
    """E_model[exp(log w)] = Z exactly, at a coarse step (8 steps), for a control that is not optimal
    (the optimum plus an arbitrary smooth perturbation; for the bridge also an arbitrary backward control)."""
    target, m, s = diagonal_gaussian(M, S)
    path = _paths(8)[name]
    n = 200_000
    oracle_path = {"bridge": VPPath(2, 8, beta_max=2.0), "cmcd_learned": CMCDPath(2, 8, step=2.0 / 8)}.get(name, path)
    opt, noise = optimal_control(oracle_path, m, s), _random_control(2, 1)
    control = FunctionControl(lambda x, t: opt(x, t) + noise(x, t))  # perturbed: far from optimal
    out = simulate(path, target, control, backward_control=_random_control(2, 2),
                   generator=torch.Generator().manual_seed(0), n=n, dtype=torch.float64)
    lw = out.log_w
    w = torch.exp(lw - lw.max())
    est = float(lw.max() + torch.log(w.mean()))
    se = float(w.std() / (w.mean() * math.sqrt(n)))
    ess = float(w.sum() ** 2 / (w * w).sum()) / n
    assert ess > 0.02, f"{name}: ESS fraction {ess:.3g} too small for a meaningful check"
    assert abs(est - LOG_Z) < 5 * se + 1e-3, f"{name}: log mean w = {est:.4f} ± {se:.4f}, log Z = {LOG_Z}"


@pytest.mark.parametrize("name", ["pis", "dis", "dds", "cmcd"])
def test_optimal_control_makes_log_weights_constant(name):
    """With the closed-form optimal control, std(log w) is small and shrinks as the step shrinks.
    (VP: β up to 20, so that the noised target is close to the N(0, I) prior: the prior mismatch is
    the one error that does not shrink with the step.)"""
    target, m, s = diagonal_gaussian(M, S)
    stds = []
    for K in (25, 100):
        path = _paths(K, beta_max=20.0)[name]
        out = simulate(path, target, optimal_control(path, m, s), generator=torch.Generator().manual_seed(3),
                       n=4000, dtype=torch.float64)
        stds.append(float(out.log_w.std()))
        mean_lw = float(out.log_w.mean())
    # an uncontrolled run for scale
    path = _paths(100, beta_max=20.0)[name]
    zero = FunctionControl(lambda x, t: torch.zeros_like(x))
    base = float(simulate(path, target, zero, generator=torch.Generator().manual_seed(3), n=4000,
                          dtype=torch.float64).log_w.std())
    assert stds[1] < 0.6 * stds[0], f"{name}: std(log w) {stds} does not shrink with the step"
    assert stds[1] < 0.1 * base + 0.02, f"{name}: optimal std {stds[1]:.4f} vs uncontrolled {base:.4f}"
    assert abs(mean_lw - LOG_Z) < 0.05, f"{name}: mean log w {mean_lw:.4f} with the optimal control"


def test_detached_mode_builds_no_graph_through_the_solver():
    """Log-variance mode: each step's graph starts at a detached point, so no gradient reaches X_0's
    drift through later states, and the returned states carry no graph."""
    target, _, _ = diagonal_gaussian(M, S)
    path = VPPath(2, 10, beta_max=2.0)
    w = torch.nn.Parameter(torch.tensor(0.3, dtype=torch.float64))
    seen = []

    class Ctl(torch.nn.Module):
        needs_target_score = False

        def forward(self, x, t, score=None, prior_score=None):
            seen.append(x.requires_grad)
            return w * x

    out = simulate(path, target, Ctl(), generator=torch.Generator().manual_seed(0), n=64, mode="detached",
                   dtype=torch.float64)
    assert not any(seen), "a control saw a point that carries a graph in detached mode"
    assert out.log_w.requires_grad and not out.x.requires_grad
    seen.clear()
    out = simulate(path, target, Ctl(), generator=torch.Generator().manual_seed(0), n=64, mode="reparam",
                   dtype=torch.float64)
    assert sum(seen) == len(seen) - 1, "reparam mode: every point after X_0 should carry the graph"


def test_modes_give_the_same_values():
    target, m, s = diagonal_gaussian(M, S)
    path = DDSPath(2, 12)
    ctl = _random_control(2, 5)
    vals = [simulate(path, target, ctl, generator=torch.Generator().manual_seed(9), n=32, mode=mo,
                     dtype=torch.float64).log_w.detach() for mo in ("none", "detached", "reparam")]
    torch.testing.assert_close(vals[0], vals[1])
    torch.testing.assert_close(vals[0], vals[2])


def test_transition_log_ratio_matches_gaussian_log_densities():
    g = torch.Generator().manual_seed(0)
    x, xn, mf, mb = (torch.randn(5, 3, generator=g, dtype=torch.float64) for _ in range(4))
    got = transition_log_ratio(x, xn, (mf, 0.7), (mb, 1.3))
    want = isotropic_gaussian_log_prob(x, mb, 1.3) - isotropic_gaussian_log_prob(xn, mf, 0.7)
    torch.testing.assert_close(got, want)
    got = transition_log_ratio(x, xn, (mf, 0.7), None)
    torch.testing.assert_close(got, -isotropic_gaussian_log_prob(xn, mf, 0.7))


def test_grids_and_bad_input():
    g = uniform_grid(4, 2.0)
    assert torch.allclose(g, torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0]))
    a = cosine_alphas(50)
    assert a[0] > 0.9 and a[-1] < 0.01 and bool((a[:-1] >= a[1:]).all()), "alphas must fall towards the target"
    with pytest.raises(ValueError, match="n_steps"):
        uniform_grid(0)
    target, _, _ = diagonal_gaussian(M, S)
    with pytest.raises(ValueError, match="x0 must have shape"):
        simulate(PISPath(2, 4), target, _random_control(2, 0), x0=torch.zeros(3, 5))
    with pytest.raises(ValueError, match="backward_control"):
        simulate(VPPath(2, 4, learn_backward=True), target, _random_control(2, 0), n=3)
    with pytest.raises(ValueError, match="mode must be"):
        simulate(PISPath(2, 4), target, _random_control(2, 0), n=3, mode="kl")


class _LinearControl(torch.nn.Module):
    needs_target_score = True

    def __init__(self, d):
        super().__init__()
        g = torch.Generator().manual_seed(4)
        self.A = torch.nn.Parameter(0.2 * torch.randn(d, d, generator=g, dtype=torch.float64))
        self.c = torch.nn.Parameter(torch.tensor(0.3, dtype=torch.float64))

    def forward(self, x, t, score=None, prior_score=None):
        t = torch.as_tensor(t, dtype=x.dtype)
        t = t.unsqueeze(-1) if t.dim() else t
        return torch.tanh(x @ self.A.T) * (1 + t) + self.c * score


@pytest.mark.parametrize("name", ["pis", "dis", "dds", "cmcd", "bridge", "cmcd_learned"])
def test_replayed_log_weights_and_gradients_match_a_step_by_step_graph(name):
    """Detached mode replays log w on the stored points in one stack (optionally in checkpointed
    chunks); its value and its gradient in the control's parameters equal those of log w accumulated
    step by step with each step's control evaluated (with a graph) at the same fixed points."""
    target, _, _ = diagonal_gaussian(M, S)
    path = _paths(7)[name]
    ctl, bctl = _LinearControl(2), _LinearControl(2)
    params = list(ctl.parameters()) + (list(bctl.parameters()) if path.has_backward_control else [])
    params += [v for v in (getattr(path, "step", None), getattr(path, "_beta", None))   # learned CMCD step, β
               if torch.is_tensor(v) and v.requires_grad]
    grads, values = [], []
    for chunk in (None, 3):
        out = simulate(path, target, ctl, backward_control=bctl, generator=torch.Generator().manual_seed(2), n=16,
                       mode="detached", dtype=torch.float64, replay_chunk=chunk, return_trajectory=True)
        values.append(out.log_w.detach())
        grads.append(torch.autograd.grad(out.log_w.square().sum(), params))
    xs = out.trajectory
    # reference: step by step on the same points
    lw = -path.prior_log_prob(xs[0]) + target.log_prob(xs[-1])
    times = path.times(xs)
    for k in range(path.n_steps):
        x, xn = xs[k], xs[k + 1]
        s, sn = target.score(x), target.score(xn)
        fwd = path.forward(k, x, s, ctl(x, times[k], score=s))
        un = ctl(xn, times[k + 1], score=sn) if path.backward_uses_forward_control else None
        vn = bctl(xn, times[k + 1], score=sn) if path.has_backward_control else None
        lw = lw + transition_log_ratio(x, xn, fwd, path.backward(k, xn, sn, un, vn))
    ref_grad = torch.autograd.grad(lw.square().sum(), params)
    torch.testing.assert_close(values[0], lw.detach())
    torch.testing.assert_close(values[1], lw.detach())
    for g0, g1, gr in zip(grads[0], grads[1], ref_grad):
        torch.testing.assert_close(g0, gr)
        torch.testing.assert_close(g1, gr)


@pytest.mark.parametrize("name", ["pis", "dis", "dds", "cmcd"])
def test_backward_simulation_gives_the_eubo(name):
    """Along the target chain from exact draws of π, mean log w is the EUBO ≥ log Z: near log Z with the
    optimal control, clearly above it with no control; the ELBO from the model chain sits below."""
    from sampleflow.sde import simulate_backward
    target, m, s = diagonal_gaussian(M, S)
    path = _paths(50, beta_max=10.0)[name]
    xr = m + s.sqrt() * torch.randn(4000, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    opt = optimal_control(path, m, s)
    eubo = float(simulate_backward(path, target, opt, xr, generator=torch.Generator().manual_seed(0)).mean())
    elbo = float(simulate(path, target, opt, n=4000, generator=torch.Generator().manual_seed(0),
                          dtype=torch.float64).log_w.mean())
    zero = FunctionControl(lambda x, t: torch.zeros_like(x))
    eubo0 = float(simulate_backward(path, target, zero, xr, generator=torch.Generator().manual_seed(0)).mean())
    assert elbo <= LOG_Z + 0.01 and LOG_Z - 0.01 <= eubo < LOG_Z + 0.05, (elbo, eubo)
    assert eubo0 > LOG_Z + 0.3, eubo0
