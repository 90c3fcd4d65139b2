"""Discrete-time path measures of the learned diffusion samplers and their Radon–Nikodym derivative.

Every sampler of Richter & Berner (ICLR 2024, "Improved sampling via learned diffusions") is a pair of
Markov chains on a time grid t_0 = 0 < … < t_K = T with Gaussian transitions:

* the **model** (generative, forward) chain  X_0 ~ p_0,  X_{k+1} ~ F_k(· | X_k) = N(m_F, s_F² I),
* the **target** (inference, backward) chain X_K ~ π,    X_k ~ B_k(· | X_{k+1}) = N(m_B, s_B² I),

where the means hold the learned controls. The per-trajectory log Radon–Nikodym derivative is

    log w = log π̃(X_K) − log p_0(X_0) + Σ_k [ log B_k(X_k | X_{k+1}) − log F_k(X_{k+1} | X_k) ],   (1)

and E_model[exp(log w)] = Z exactly, for *any* controls and any step size, because (1) is a ratio of two
normalised path densities times Z (this is the discrete-time form used by Vargas et al. 2023 (DDS),
Vargas et al. 2024 (CMCD) and Sendera et al. 2024; expanding the Gaussian log-ratio gives the
Euler–Maruyama discretisation of Girsanov's formula, Itô term included, so (1) converges to the
continuous-time log-RND of Richter & Berner as the step shrinks). A divergence never has to be computed.

A *path* here is pure math: given the control values at a point it returns the Gaussian transition
``(mean, std)``; networks, targets and the simulation loop live in :mod:`sampleflow.sde.simulate`.
Each path also gives the velocity of its probability-flow ODE, ½(f + b) with f the forward drift and
b the backward drift in the sense X_{t−h} ≈ X_t − b h + g √h ξ (Nelson's relation f − b = g²∇log p_t).

Control conventions (what ``u`` / ``v`` mean for each path) are in each class's docstring.
"""
from __future__ import annotations

import math

import torch

from .grids import cosine_alphas, uniform_grid, vp_beta, vp_beta_integral

__all__ = ["DiffusionPath", "PISPath", "VPPath", "DDSPath", "CMCDPath", "isotropic_gaussian_log_prob",
           "transition_log_ratio"]

LOG_2PI = math.log(2 * math.pi)


def isotropic_gaussian_log_prob(x: torch.Tensor, mean, std) -> torch.Tensor:
    """log N(x; mean, std² I) summed over the last dimension (std a scalar or broadcastable)."""
    d = x.shape[-1]
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device)
    z = (x - mean) / std
    return -0.5 * (z * z).sum(-1) - d * torch.log(std) - 0.5 * d * LOG_2PI


def _log_std(s, x) -> torch.Tensor | float:
    """d·log s for a std that is a float, a 0-d tensor, or stacked per step with shape (K, 1, 1)."""
    d = x.shape[-1]
    if not torch.is_tensor(s):
        return d * math.log(s)
    ls = d * torch.log(s)
    return ls.squeeze(-1) if ls.dim() > 0 else ls


def transition_log_ratio(x, x_next, fwd, bwd) -> torch.Tensor:
    """log B_k(x | x_next) − log F_k(x_next | x) for Gaussian transitions ``fwd = (m_F, s_F)`` and
    ``bwd = (m_B, s_B)`` (``bwd = None``: a deterministic backward step contributes only −log F_k).
    Works per step (x of shape (B, d)) and for a stack of steps (x of shape (K, B, d), stds of shape
    (K, 1, 1)). The 2π constants cancel analytically."""
    m_f, s_f = fwd
    zf = (x_next - m_f) / s_f
    out = 0.5 * (zf * zf).sum(-1) + _log_std(s_f, x)
    if bwd is None:
        return out + 0.5 * x.shape[-1] * LOG_2PI
    m_b, s_b = bwd
    zb = (x - m_b) / s_b
    return out - 0.5 * (zb * zb).sum(-1) - _log_std(s_b, x)


class DiffusionPath:
    """Base class. Subclasses define the grid, the prior and the two transitions.

    Attributes: ``dim``, ``grid`` (K+1 times, float64 on the CPU; :meth:`times` casts), ``n_steps``,
    ``needs_score`` (whether the transitions themselves use ∇log π̃; score-informed *controls* need it
    too, which the simulation decides), ``has_backward_control``, ``prior_is_point`` (δ₀ prior)."""

    needs_score = False
    has_backward_control = False
    backward_uses_forward_control = False
    prior_is_point = False

    def __init__(self, dim: int, grid: torch.Tensor):
        self.dim = int(dim)
        self.grid = grid.to(torch.float64)
        self.n_steps = grid.numel() - 1
        self.T = float(self.grid[-1])
        self._cache: dict = {}

    def times(self, like: torch.Tensor) -> torch.Tensor:
        key = ("t", like.dtype, like.device)
        if key not in self._cache:
            self._cache[key] = self.grid.to(dtype=like.dtype, device=like.device)
        return self._cache[key]

    def coef(self, values, k, like: torch.Tensor):
        """Per-step coefficient ``values`` (a float64 tensor indexed by step) at step ``k``: a Python
        float for an integer k, a (K', 1, 1) tensor in ``like``'s dtype/device for a slice of steps
        (so that one formula serves a single step and a stack of steps)."""
        if isinstance(k, slice):
            key = (id(values), like.dtype, like.device)
            if key not in self._cache:
                self._cache[key] = values.to(dtype=like.dtype, device=like.device)
            return self._cache[key][k].reshape(-1, 1, 1)
        return float(values[k])

    def step_index(self, t: float) -> int:
        """The grid step k with t_k <= t < t_{k+1} (the last step for t = T)."""
        k = int(torch.searchsorted(self.grid, torch.tensor(float(t), dtype=torch.float64), right=True)) - 1
        return min(max(k, 0), self.n_steps - 1)

    @property
    def steps(self) -> torch.Tensor:
        """Step lengths h_k = t_{k+1} − t_k (float64)."""
        return self.grid[1:] - self.grid[:-1]

    # ---- prior p_0
    def prior_sample(self, n: int, generator, dtype, device) -> torch.Tensor:
        raise NotImplementedError

    def prior_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def prior_score(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # ---- transitions (k: a step index, or a slice of steps with stacked inputs of shape (K', B, d))
    def forward(self, k: int, x, score, u):
        """(mean, std) of F_k(· | x) at t_k."""
        raise NotImplementedError

    def backward(self, k: int, x_next, score_next, u_next, v_next):
        """(mean, std) of B_k(· | x_next) at t_{k+1}, or None for a deterministic step. ``u_next`` (the
        forward control at (x_next, t_{k+1})) is given only when ``backward_uses_forward_control``."""
        raise NotImplementedError

    def ode_velocity(self, t: float, x, score, u, v):
        """Velocity of the probability-flow ODE at generative time t (½(f + b))."""
        raise NotImplementedError(f"{type(self).__name__} has no probability-flow ODE")


class _GaussianPrior:
    """Mixin: p_0 = N(0, prior_scale² I)."""

    prior_scale = 1.0

    def prior_sample(self, n, generator, dtype, device):
        return self.prior_scale * torch.randn(n, self.dim, generator=generator, dtype=dtype, device=device)

    def prior_log_prob(self, x):
        return isotropic_gaussian_log_prob(x, 0.0, self.prior_scale)

    def prior_score(self, x):
        return -x / self.prior_scale ** 2


class PISPath(DiffusionPath):
    """Path integral sampler (Zhang & Chen 2022, ICLR, "Path integral sampler"; Richter & Berner 2024 §3).

    Model: X_0 = 0, dX = σ u dt + σ dW (Euler–Maruyama): F_k = N(x + σ u h, σ² h).
    Target: π at T and the Brownian bridge back to 0 (exact): B_k = N(x' t_k / t_{k+1}, σ² h t_k / t_{k+1});
    the last backward step into δ₀ (k = 0) is deterministic. The paper's normalisation σ² T = 1.
    With u = 0, log w = log π̃(X_K) − log N(X_K; 0, σ² T I): importance sampling from N(0, σ²T).
    ``u`` is the control (drift / σ).

    The deterministic last backward step into δ₀ (k = 0; X_0 = 0 on every trajectory) is written as the
    Gaussian N(0, (2π)⁻¹ I) evaluated at its mean 0, whose log-density is exactly 0: the step then
    contributes −log F_0 only, and every step has the same form."""

    prior_is_point = True

    def __init__(self, dim: int, n_steps: int = 200, T: float = 1.0, sigma: float | None = None):
        super().__init__(dim, uniform_grid(n_steps, T, dtype=torch.float64))
        self.sigma = float(sigma) if sigma is not None else 1.0 / math.sqrt(T)
        h = self.steps
        ratio = self.grid[:-1] / self.grid[1:]
        self._fwd_drift = self.sigma * h
        self._fwd_std = self.sigma * h.sqrt()
        self._bwd_ratio = ratio
        bwd_std = self.sigma * (h * ratio).sqrt()
        bwd_std[0] = 1.0 / math.sqrt(2 * math.pi)
        self._bwd_std = bwd_std

    def prior_sample(self, n, generator, dtype, device):
        return torch.zeros(n, self.dim, dtype=dtype, device=device)

    def prior_log_prob(self, x):
        return torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)

    def prior_score(self, x):
        raise ValueError("PIS starts at the point δ₀: it has no prior score")

    def forward(self, k, x, score, u):
        return x + self.coef(self._fwd_drift, k, x) * u, self.coef(self._fwd_std, k, x)

    def backward(self, k, x_next, score_next, u_next, v_next):
        return x_next * self.coef(self._bwd_ratio, k, x_next), self.coef(self._bwd_std, k, x_next)


class VPPath(_GaussianPrior, DiffusionPath):
    """Time reversal of the VP (Ornstein–Uhlenbeck) noising process: DIS, and the general bridge.

    Noising SDE in noising time s = T − t: dY = −½β(s) Y ds + √β(s) dW, β linear from β_min to β_max
    (Berner, Richter & Ullrich 2022, "An optimal control perspective on diffusion-based generative
    modeling"; Richter & Berner 2024 §3), prior p_0 = N(0, I).
    Model (Euler–Maruyama): f = ½β x + β u, so u plays the score ∇log p_t (DIS);
    F_k = N(x + h(½β x + β u), β h) with β = β(T − t_k).
    Target: B_k = N(x' − h(½β x' − β v), β h) with β = β(T − t_{k+1}); v = 0 is the EM step of the
    noising SDE (DIS); a learned v gives the general bridge (Richter & Berner 2024, eq. for the bridge
    with learned forward and backward controls). Nelson: u + v = ∇log p_t at the optimum.

    Both transitions of step k use β at the step's midpoint. (With β at each transition's own start,
    t_k forward and t_{k+1} backward, the two chains differ by O(β′h) per step: measured on a 2-d
    Gaussian with the exact optimal control, 50 steps, β up to 10, std(log w) = 2.2 against 0.15 with
    the midpoint; tests/sde/test_paths.py.)"""

    def __init__(self, dim: int, n_steps: int = 200, T: float = 1.0, beta_min: float = 0.1,
                 beta_max: float = 10.0, learn_backward: bool = False):
        super().__init__(dim, uniform_grid(n_steps, T, dtype=torch.float64))
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)
        self.has_backward_control = bool(learn_backward)
        h = self.steps
        beta = vp_beta(self.T - 0.5 * (self.grid[:-1] + self.grid[1:]), self.beta_min, self.beta_max, self.T)
        self._half_beta_h = 0.5 * beta * h
        self._beta_h = beta * h
        self._std = (beta * h).sqrt()

    def beta(self, t: float) -> float:
        """β at generative time t (noising time T − t)."""
        return float(vp_beta(self.T - t, self.beta_min, self.beta_max, self.T))

    def forward(self, k, x, score, u):
        return (x + self.coef(self._half_beta_h, k, x) * x + self.coef(self._beta_h, k, x) * u,
                self.coef(self._std, k, x))

    def backward(self, k, x_next, score_next, u_next, v_next):
        mean = x_next - self.coef(self._half_beta_h, k, x_next) * x_next
        if v_next is not None:
            mean = mean + self.coef(self._beta_h, k, x_next) * v_next
        return mean, self.coef(self._std, k, x_next)

    def ode_velocity(self, t, x, score, u, v):
        b = self.beta(t)
        return 0.5 * b * x + 0.5 * b * (u if v is None else u - v)

    def log_signal(self, t: float) -> float:
        """log of the signal coefficient of the exact noising transition from the target (t = T) to t:
        −½∫β, used by closed-form optimal controls in tests."""
        return -0.5 * float(vp_beta_integral(0.0, self.T - t, self.beta_min, self.beta_max, self.T))


class DDSPath(_GaussianPrior, DiffusionPath):
    """Denoising diffusion sampler (Vargas, Grathwohl & Doucet 2023, ICLR), exponential integrator.

    OU reference with stationary law N(0, σ² I) = p_0; per-step noise fractions α_k on the cosine
    schedule (:func:`~sampleflow.sde.grids.cosine_alphas`). With a_k = √(1 − α_k):
    Target (exact OU step): B_k = N(a_k x', σ² α_k);
    Model: F_k = N(a_k x + 2σ²(1 − a_k) u, σ² α_k), so u plays ∇log p_t + x/σ² (the score minus the
    reference score; u = 0 leaves the reference, a stationary chain, unchanged)."""

    def __init__(self, dim: int, n_steps: int = 200, T: float = 1.0, sigma: float = 1.0,
                 cosine_offset: float = 0.008, max_alpha: float = 0.999):
        super().__init__(dim, uniform_grid(n_steps, T, dtype=torch.float64))
        self.prior_scale = float(sigma)
        self.alphas = cosine_alphas(n_steps, offset=cosine_offset, max_alpha=max_alpha, dtype=torch.float64)
        self._a = (1.0 - self.alphas).sqrt()
        self._drift = 2 * self.prior_scale ** 2 * (1 - self._a)
        self._s = self.prior_scale * self.alphas.sqrt()

    def forward(self, k, x, score, u):
        return self.coef(self._a, k, x) * x + self.coef(self._drift, k, x) * u, self.coef(self._s, k, x)

    def backward(self, k, x_next, score_next, u_next, v_next):
        return self.coef(self._a, k, x_next) * x_next, self.coef(self._s, k, x_next)

    def rate(self, k: int) -> float:
        """Piecewise-constant OU rate λ_k on step k: 1 − α_k = exp(−2 λ_k h)."""
        return -math.log(1.0 - float(self.alphas[k])) / (2 * float(self.steps[k]))

    def ode_velocity(self, t, x, score, u, v):
        return (self.prior_scale ** 2 * self.rate(self.step_index(t))) * u


class CMCDPath(_GaussianPrior, DiffusionPath):
    """Controlled Monte Carlo diffusion (Vargas, Padhy, Blessing & Nüsken 2024, ICLR, "Transport meets
    variational inference: controlled Monte Carlo diffusions").

    Geometric annealing log π_t = (1 − β_t) log p_0 + β_t log π̃, p_0 = N(0, σ_0² I), on the grid t_k with
    β_k = t_k/T unless a schedule is set. Langevin steps of size δ_k with a control u correcting them:
    F_k = N(x + δ_k(∇log π_{t_k}(x) + u), 2δ_k),  B_k = N(x' + δ_k(∇log π_{t_{k+1}}(x') − u(x', t_{k+1})), 2δ_k).
    With u = 0 this is annealed Langevin with the reversed-ULA backward kernel (MCD / uncorrected AIS).
    The step (a scalar or one per grid step) and the schedule (β_0 = 0 < … < β_K = 1) may be tensors with a
    graph, learned with the control as in the paper (:meth:`set_step`, :meth:`set_schedule`); any δ_k > 0 and
    any monotone β keep E[w] = Z. The probability-flow ODE moves points by δ_k u per grid step."""

    needs_score = True
    backward_uses_forward_control = True

    def __init__(self, dim: int, n_steps: int = 200, T: float = 1.0, prior_scale: float = 1.0,
                 step: float = 0.05):
        super().__init__(dim, uniform_grid(n_steps, T, dtype=torch.float64))
        self.prior_scale = float(prior_scale)
        self.step = step
        self._fixed_beta = self._beta = self.grid / self.T

    def set_step(self, step) -> None:
        """Use ``step``: a float, a positive scalar tensor, or a tensor of K per-step values (may carry a graph)."""
        self.step = step

    def set_schedule(self, beta) -> None:
        """Use ``beta`` (K + 1 values from 0 to 1, increasing; may carry a graph) instead of β_k = t_k/T."""
        self._beta = beta

    def _at(self, values, k, like):
        """``values`` at step k: the fixed grid schedule through :meth:`coef` (cached per dtype/device); set
        tensors (new each simulation, maybe with a graph) indexed directly; scalars as they are."""
        if values is self._fixed_beta:
            return self.coef(values, k, like)
        if not torch.is_tensor(values) or values.dim() == 0:
            return values
        v = values.to(like.dtype)[k]
        return v.reshape(-1, 1, 1) if isinstance(k, slice) else v

    def annealed_score(self, k, x, score):
        """∇log π_{t_k}(x) (k a grid index or a slice of grid indices)."""
        beta = self._at(self._beta, k, x)
        return (1 - beta) * self.prior_score(x) + beta * score

    @staticmethod
    def _shift(k, by=1):
        return slice(k.start + by, k.stop + by) if isinstance(k, slice) else k + by

    def _langevin_std(self, d, like):
        return torch.sqrt(2 * torch.as_tensor(d, dtype=like.dtype, device=like.device))

    def forward(self, k, x, score, u):
        d = self._at(self.step, k, x)
        return x + d * (self.annealed_score(k, x, score) + u), self._langevin_std(d, x)

    def backward(self, k, x_next, score_next, u_next, v_next):
        d = self._at(self.step, k, x_next)
        return (x_next + d * (self.annealed_score(self._shift(k), x_next, score_next) - u_next),
                self._langevin_std(d, x_next))

    def ode_velocity(self, t, x, score, u, v):
        step = self.step.detach() if torch.is_tensor(self.step) else torch.as_tensor(self.step)
        if step.dim() > 0:
            step = step[self.step_index(t)]
        return (float(step) * self.n_steps / self.T) * u
