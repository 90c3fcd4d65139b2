"""Denoising score matching (Vincent 2011, "A connection between score matching and denoising
autoencoders"; Song et al. 2021, "Score-based generative modeling through SDEs", eq. (7)):

    J(θ) = E_{t ~ p(t)} E_{x_0, ε} [ λ(t) ‖ s_θ(x_t, t) − ∇log p_{0t}(x_t | x_0) ‖²_Σ ],
    x_t = s(t) x_0 + σ(t) C ε,   ∇log p_{0t}(x_t | x_0) = −C⁻ᵀ ε / σ(t),

with ‖v‖²_Σ = ‖Cᵀ v‖² (the plain norm when C = I), so that ‖s_θ − ∇log p_{0t}‖²_Σ = ‖ε̂ − ε‖²/σ².
The squared norm is *summed* over the event and the batch *averaged* (Song et al.'s convention).

Weightings λ:
* ``"sigma2"``: λ = σ² (Song et al. 2021; equals the ε-prediction loss ‖ε̂ − ε‖² of Ho et al. 2020);
* ``"likelihood"``: λ = g(t)² (Song, Durkan, Murray & Ermon 2021, "Maximum likelihood training of
  score-based diffusion models": the loss then bounds the negative log-likelihood);
* ``"edm"``: λ(σ̃) = (σ̃² + σ_d²)/(σ̃ σ_d)² on the denoiser error ‖D − x_0‖² = σ̃² ‖ε̂ − ε‖²
  (Karras et al. 2022, Table 1), σ̃ = σ/s.

Time sampling p(t):
* ``"uniform"`` on [t_min, T];
* ``"lognormal"``: ln σ̃ ~ N(P_mean, P_std²) with P_mean = −1.2, P_std = 1.2 (Karras et al. 2022,
  Table 1), t = t(σ̃) clipped to [t_min, T];
* ``"importance"``: t ∝ g(t)²/σ(t)² on [t_min, T] (Song et al. 2021b, §5: the likelihood weighting's
  importance distribution), drawn by inverse CDF on a fine grid; each sample is then reweighted by
  1 / ((T − t_min) q(t)), so the loss is an unbiased estimate of the *uniform-time* objective with the
  same λ (lower variance for ``"likelihood"``).
For ``"uniform"`` and ``"lognormal"`` the objective is the expectation under p(t) itself.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .model import EDMPreconditioning, ScoreModel
from .sdes import SDE

__all__ = ["dsm_loss", "sample_times", "importance_time_density", "WEIGHTINGS", "TIME_SAMPLINGS"]

WEIGHTINGS = ("sigma2", "likelihood", "edm")
TIME_SAMPLINGS = ("uniform", "lognormal", "importance")


def _grid_cdf(sde: SDE, n_grid: int = 4096, dtype=torch.float64, device=None):
    """Grid u ∈ [0, 1] ↦ t = t_min + (T − t_min) u² (dense near t_min) and the normalised CDF of
    q(t) ∝ g²/σ² by the trapezoid rule."""
    u = torch.linspace(0, 1, n_grid, dtype=torch.float64)
    t = sde.t_min + (sde.T - sde.t_min) * u * u
    dens = sde.diffusion(t) ** 2 / sde.sigma(t) ** 2
    cdf = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(0.5 * (dens[1:] + dens[:-1]) * t.diff(), 0)])
    cdf = cdf / cdf[-1]
    return t.to(dtype=dtype, device=device), cdf.to(dtype=dtype, device=device)


def importance_time_density(sde: SDE, t: Tensor, n_grid: int = 4096) -> Tensor:
    """Density of the ``"importance"`` time sampler at ``t`` (piecewise constant: the derivative of the
    piecewise-linear CDF it inverts, so reweighting by it is exact)."""
    tg, cdf = _grid_cdf(sde, n_grid, t.dtype, t.device)
    i = torch.searchsorted(tg, t.contiguous()).clamp(1, tg.numel() - 1)
    return (cdf[i] - cdf[i - 1]) / (tg[i] - tg[i - 1])


def sample_times(sde: SDE, n: int, generator: torch.Generator | None = None, method: str = "uniform", *,
                 dtype=torch.float32, device=None, p_mean: float = -1.2, p_std: float = 1.2,
                 n_grid: int = 4096) -> tuple[Tensor, Tensor]:
    """(t, w): ``n`` times from the ``method`` time distribution (see module docstring) and the
    per-sample weights (1 except for ``"importance"``: 1/((T − t_min) q(t)))."""
    if method not in TIME_SAMPLINGS:
        raise ValueError(f"time_sampling must be one of {TIME_SAMPLINGS}, got {method!r}")
    gdev = generator.device if generator is not None else device
    if method == "uniform":
        u = torch.rand(n, generator=generator, dtype=dtype, device=gdev).to(device)
        t = sde.t_min + (sde.T - sde.t_min) * u
        return t, torch.ones_like(t)
    if method == "lognormal":
        z = torch.randn(n, generator=generator, dtype=dtype, device=gdev).to(device)
        sig = torch.exp(p_mean + p_std * z)
        t = sde.t_from_sigma_tilde(sig).clamp(sde.t_min, sde.T)
        return t, torch.ones_like(t)
    tg, cdf = _grid_cdf(sde, n_grid, torch.float64, device)
    u = torch.rand(n, generator=generator, dtype=torch.float64, device=gdev).to(device)
    i = torch.searchsorted(cdf, u).clamp(1, tg.numel() - 1)
    frac = (u - cdf[i - 1]) / (cdf[i] - cdf[i - 1])
    t = tg[i - 1] + frac * (tg[i] - tg[i - 1])
    q = (cdf[i] - cdf[i - 1]) / (tg[i] - tg[i - 1])
    w = 1.0 / ((sde.T - sde.t_min) * q)
    return t.to(dtype), w.to(dtype)


def dsm_loss(model: ScoreModel, x0: Tensor, generator: torch.Generator | None = None, *,
             weighting: str = "sigma2", time_sampling: str = "uniform", t: Tensor | float | None = None,
             sigma_data: float | None = None, reduce: bool = True) -> Tensor:
    """Denoising score-matching loss of ``model`` (a :class:`ScoreModel`) on data ``x0`` (B, *event).

    ``weighting``: ``"sigma2"`` | ``"likelihood"`` | ``"edm"``; ``time_sampling``: ``"uniform"`` |
    ``"lognormal"`` | ``"importance"`` (see the module docstring for the equations); ``t``: fixed time(s)
    instead (number or (B,)). ``sigma_data`` for ``"edm"`` (default: the model's preconditioning's σ_d,
    else 0.5). Returns the batch mean (``reduce``) or the per-sample losses (B,).
    Differentiable w.r.t. the model's parameters.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    if not isinstance(x0, Tensor) or x0.dim() < 2 or x0.shape[0] < 1:
        raise ValueError(f"x0 must be a batched tensor (B, *event), got {getattr(x0, 'shape', type(x0).__name__)}")
    if not torch.isfinite(x0).all():
        raise ValueError("x0 must be finite (found NaN or inf)")
    sde = model.sde
    B = x0.shape[0]
    if t is None:
        t, w = sample_times(sde, B, generator, time_sampling, dtype=x0.dtype, device=x0.device)
    else:
        t = torch.as_tensor(t, dtype=x0.dtype, device=x0.device)
        t = t.expand(B) if t.dim() == 0 else t
        if t.shape != (B,):
            raise ValueError(f"t must be a number or of shape ({B},), got {tuple(t.shape)}")
        w = torch.ones_like(t)
    xt, eps = sde.sample_marginal(x0, t, generator)
    s, sigma = sde.marginal(t)
    err = (model.eps(xt, t) - eps).reshape(B, -1).square().sum(-1)  # ‖ε̂ − ε‖²
    if weighting == "sigma2":
        lam = torch.ones_like(t)  # λ‖·‖²/σ² with λ = σ²
    elif weighting == "likelihood":
        lam = sde.diffusion(t) ** 2 / sigma ** 2
    else:
        if sigma_data is None:
            pc = getattr(model, "preconditioning", None)
            sigma_data = pc.sigma_data if pc is not None else 0.5
        st = sigma / s
        lam = EDMPreconditioning(sigma_data).loss_weight(st) * st ** 2
    loss = w * lam * err
    return loss.mean() if reduce else loss
