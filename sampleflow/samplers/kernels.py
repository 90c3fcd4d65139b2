"""MCMC transition kernels as small pure functions (blackjax style: a state and a step).

Every kernel acts on a batch of C independent chains ``x`` of shape (C, d). The state carries
log π̃(x) and ∇log π̃(x), so one step costs one joint ``log_prob_and_score`` evaluation per chain
(HMC: one per leapfrog step). Step sizes are a float, a 0-d tensor or a per-chain (C,) tensor.
Every random draw takes an explicit ``torch.Generator``; device and dtype follow ``x``; nothing in a
step synchronises with the host (no ``.item()``, no Python branches on tensor values).

``log_prob_and_score`` is any callable x -> (log π̃(x) of shape (C,), ∇log π̃(x) of shape (C, d)),
e.g. ``Target.log_prob_and_score`` or a :class:`~sampleflow.samplers.base.CountingTarget`'s.

Also here: step-size adaptation by dual averaging (Hoffman & Gelman 2014, Algorithm 5) and a running
per-coordinate mean/variance (for a diagonal preconditioner / mass matrix estimated in warm-up).
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch

__all__ = ["MCMCState", "init_state", "ula_step", "mala_step", "hmc_step", "leapfrog",
           "DualAveragingState", "dual_averaging_init", "dual_averaging_update",
           "RunningMoments", "running_moments_init", "running_moments_update", "running_moments_var"]

LogProbAndScore = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class MCMCState(NamedTuple):
    """x (C, d); log_prob (C,) = log π̃(x); score (C, d) = ∇log π̃(x)."""

    x: torch.Tensor
    log_prob: torch.Tensor
    score: torch.Tensor


def init_state(x: torch.Tensor, log_prob_and_score: LogProbAndScore) -> MCMCState:
    """The state at ``x`` (one evaluation per chain)."""
    lp, g = log_prob_and_score(x)
    return MCMCState(x, lp, g)


def _per_chain(step_size, x: torch.Tensor) -> torch.Tensor:
    """A float / 0-d / (C,) step size as a tensor broadcastable against (C, d)."""
    h = torch.as_tensor(step_size, dtype=x.dtype, device=x.device)
    if h.ndim == 1:
        if h.shape[0] != x.shape[0]:
            raise ValueError(f"a per-chain step_size must have shape ({x.shape[0]},), got {tuple(h.shape)}")
        h = h[:, None]
    elif h.ndim != 0:
        raise ValueError(f"step_size must be a scalar or a (C,) tensor, got shape {tuple(h.shape)}")
    return h


def _vec(v, x: torch.Tensor) -> torch.Tensor:
    """Optional per-coordinate vector (d,) -> tensor on x's device/dtype (1.0 when None)."""
    if v is None:
        return torch.ones((), dtype=x.dtype, device=x.device)
    return torch.as_tensor(v, dtype=x.dtype, device=x.device)


def _langevin_mean(state: MCMCState, h: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    return state.x + h * s2 * state.score


def ula_step(state: MCMCState, log_prob_and_score: LogProbAndScore, step_size,
             generator: torch.Generator | None, scale=None, tamed: bool = False) -> MCMCState:
    """One step of the unadjusted Langevin algorithm (Roberts & Tweedie, Bernoulli 1996):

        x' = x + h S² ∇log π(x) + √(2h) S ξ,   ξ ~ N(0, I),  S = diag(scale) (identity when None),

    the Euler–Maruyama discretisation of the preconditioned Langevin diffusion
    dX = S²∇log π(X) dt + √2 S dW. No accept/reject: its stationary law is biased by O(h)
    (for N(0, σ²) and S = 1 the stationary variance is σ²/(1 − h/(2σ²))).

    ``tamed=True``: the coordinate-wise tamed drift of Brosse, Durmus, Moulines & Sabanis (Stoch. Proc.
    Appl. 2019, "tULAc"), h S²∇log π / (1 + h |S²∇log π|) per coordinate, which cannot overshoot where the
    gradient is not globally Lipschitz (a funnel's neck: plain ULA there blows up and flings chains out)."""
    x = state.x
    h, s = _per_chain(step_size, x), _vec(scale, x)
    xi = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    drift = h * s * s * state.score
    if tamed:
        drift = drift / (1 + drift.abs())
    x_new = x + drift + torch.sqrt(2 * h) * s * xi
    return init_state(x_new, log_prob_and_score)


def _log_q(x_to: torch.Tensor, mean_from: torch.Tensor, h: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """log N(x_to; mean_from, 2h S²) up to a constant that cancels in the MH ratio (same h, S both ways)."""
    return -((x_to - mean_from) ** 2 / (4 * h * s2)).sum(-1)


def _mh_accept(state: MCMCState, prop: MCMCState, log_ratio: torch.Tensor,
               generator: torch.Generator | None) -> tuple[MCMCState, torch.Tensor]:
    """Metropolis–Hastings: accept per chain with probability α = min(1, exp(log_ratio)); a NaN or −∞
    ratio (e.g. a non-finite log π̃ at the proposal) is a rejection. Returns (new state, α)."""
    log_ratio = torch.where(torch.isnan(log_ratio), torch.full_like(log_ratio, -math.inf), log_ratio)
    log_alpha = torch.clamp(log_ratio, max=0.0)
    u = torch.rand(log_alpha.shape, generator=generator, dtype=log_alpha.dtype, device=log_alpha.device)
    accept = torch.log(u) < log_alpha
    a = accept[:, None]
    new = MCMCState(torch.where(a, prop.x, state.x), torch.where(accept, prop.log_prob, state.log_prob),
                    torch.where(a, prop.score, state.score))
    return new, torch.exp(log_alpha)


def mala_step(state: MCMCState, log_prob_and_score: LogProbAndScore, step_size,
              generator: torch.Generator | None, scale=None) -> tuple[MCMCState, torch.Tensor]:
    """One step of the Metropolis-adjusted Langevin algorithm (Roberts & Tweedie, Bernoulli 1996;
    Roberts & Rosenthal, JRSS-B 1998). Proposal: the ULA step

        x' ~ q(·|x) = N(x + h S²∇log π(x), 2h S²),

    accepted per chain with probability α = min(1, π(x') q(x|x') / (π(x) q(x'|x))). Returns the new
    state and α (C,), the acceptance probabilities (the statistic step-size adaptation targets)."""
    x = state.x
    h, s = _per_chain(step_size, x), _vec(scale, x)
    s2 = s * s
    xi = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    mean_fwd = _langevin_mean(state, h, s2)
    prop = init_state(mean_fwd + torch.sqrt(2 * h) * s * xi, log_prob_and_score)
    mean_bwd = _langevin_mean(prop, h, s2)
    log_ratio = (prop.log_prob - state.log_prob
                 + _log_q(state.x, mean_bwd, h, s2) - _log_q(prop.x, mean_fwd, h, s2))
    return _mh_accept(state, prop, log_ratio, generator)


def leapfrog(state: MCMCState, p: torch.Tensor, log_prob_and_score: LogProbAndScore, step_size,
             n_leapfrog: int, inv_mass=None) -> tuple[MCMCState, torch.Tensor]:
    """``n_leapfrog`` leapfrog (Störmer–Verlet) steps for H(x, p) = −log π(x) + ½ pᵀM⁻¹p
    (Neal, "MCMC using Hamiltonian dynamics", Handbook of MCMC 2011, eq. 5.18–5.20):

        p ← p + (h/2)∇log π(x);  x ← x + h M⁻¹p;  p ← p + (h/2)∇log π(x),

    with the inner half-steps of momentum merged. One evaluation per leapfrog step."""
    h = _per_chain(step_size, state.x)
    m_inv = _vec(inv_mass, state.x)
    p = p + 0.5 * h * state.score
    x = state.x
    for i in range(n_leapfrog):
        x = x + h * m_inv * p
        lp, g = log_prob_and_score(x)
        p = p + (h if i < n_leapfrog - 1 else 0.5 * h) * g
    return MCMCState(x, lp, g), p


def hmc_step(state: MCMCState, log_prob_and_score: LogProbAndScore, step_size, n_leapfrog: int,
             generator: torch.Generator | None, inv_mass=None) -> tuple[MCMCState, torch.Tensor]:
    """One step of Hamiltonian Monte Carlo (Duane et al. 1987; Neal 2011) with a diagonal mass matrix
    M = diag(1/inv_mass) (identity when None): draw p ~ N(0, M), run ``n_leapfrog`` leapfrog steps,
    accept per chain with probability α = min(1, exp(H(x, p) − H(x', p'))), H = −log π + ½ pᵀM⁻¹p.
    Returns the new state and α (C,). Costs ``n_leapfrog`` evaluations per chain."""
    x = state.x
    m_inv = _vec(inv_mass, x)
    xi = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    p0 = xi / torch.sqrt(m_inv)
    prop, p1 = leapfrog(state, p0, log_prob_and_score, step_size, n_leapfrog, m_inv)
    h0 = -state.log_prob + 0.5 * (m_inv * p0 * p0).sum(-1)
    h1 = -prop.log_prob + 0.5 * (m_inv * p1 * p1).sum(-1)
    return _mh_accept(state, prop, h0 - h1, generator)


# ---------------------------------------------------------------------- step-size adaptation
class DualAveragingState(NamedTuple):
    """Dual averaging (Nesterov 2009) as used for step sizes by Hoffman & Gelman (JMLR 2014, Alg. 5).
    Tensors (0-d or per-chain), so updates never synchronise with the host."""

    log_step: torch.Tensor      # log ε_m, the step used during warm-up
    log_step_avg: torch.Tensor  # log ε̄_m, the step used after warm-up
    h_bar: torch.Tensor         # H̄_m, running average of (δ − α)
    mu: torch.Tensor            # shrinkage point log(10 ε₀)
    count: int                  # m


def dual_averaging_init(step_size: torch.Tensor) -> DualAveragingState:
    """Start from ε₀ = ``step_size`` (tensor): μ = log(10 ε₀), H̄₀ = 0, log ε̄₀ = 0."""
    log_step = torch.log(step_size)
    return DualAveragingState(log_step, torch.zeros_like(log_step), torch.zeros_like(log_step),
                              math.log(10.0) + log_step, 0)


def dual_averaging_update(da: DualAveragingState, accept_prob: torch.Tensor, target_accept: float,
                          gamma: float = 0.05, t0: float = 10.0, kappa: float = 0.75) -> DualAveragingState:
    """One iteration m ← m + 1 of Hoffman & Gelman (2014), Algorithm 5:

        H̄_m = (1 − 1/(m + t₀)) H̄_{m−1} + (δ − α_m)/(m + t₀)
        log ε_m = μ − (√m / γ) H̄_m
        log ε̄_m = m^{−κ} log ε_m + (1 − m^{−κ}) log ε̄_{m−1}

    δ = ``target_accept``; α_m the acceptance statistic (a 0-d tensor, or per-chain); γ = 0.05,
    t₀ = 10, κ = 0.75 are the paper's values."""
    m = da.count + 1
    w = 1.0 / (m + t0)
    h_bar = (1.0 - w) * da.h_bar + w * (target_accept - accept_prob)
    log_step = da.mu - (math.sqrt(m) / gamma) * h_bar
    eta = m ** (-kappa)
    log_step_avg = eta * log_step + (1.0 - eta) * da.log_step_avg
    return DualAveragingState(log_step, log_step_avg, h_bar, da.mu, m)


# ---------------------------------------------------------------------- running moments
class RunningMoments(NamedTuple):
    """Per-coordinate count, mean and sum of squared deviations (Chan, Golub & LeVeque 1979 merge)."""

    count: int
    mean: torch.Tensor
    m2: torch.Tensor


def running_moments_init(d: int, like: torch.Tensor) -> RunningMoments:
    z = torch.zeros(d, dtype=like.dtype, device=like.device)
    return RunningMoments(0, z, z.clone())


def running_moments_update(rm: RunningMoments, x: torch.Tensor) -> RunningMoments:
    """Merge the batch ``x`` (C, d) into the running moments (parallel Welford update)."""
    nb = x.shape[0]
    mb = x.mean(0)
    m2b = ((x - mb) ** 2).sum(0)
    n = rm.count + nb
    delta = mb - rm.mean
    mean = rm.mean + delta * (nb / n)
    m2 = rm.m2 + m2b + delta * delta * (rm.count * nb / n)
    return RunningMoments(n, mean, m2)


def running_moments_var(rm: RunningMoments) -> torch.Tensor:
    """Unbiased per-coordinate variance."""
    return rm.m2 / max(rm.count - 1, 1)
