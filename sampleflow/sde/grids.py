"""Time grids and noise schedules of the reference processes.

Convention (used by every learned diffusion sampler): *generative* time t runs from 0 (the prior) to T
(the target); a grid is a 1-D tensor ``t_0 = 0 < t_1 < … < t_K = T``. Noising ("inference") processes run
the other way, in noising time s = T − t.
"""
from __future__ import annotations

import math

import torch

__all__ = ["uniform_grid", "vp_beta", "vp_beta_integral", "cosine_signal", "cosine_alphas"]


def _check_steps(n_steps) -> int:
    if not isinstance(n_steps, int) or isinstance(n_steps, bool) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
    return n_steps


def uniform_grid(n_steps: int, T: float = 1.0, *, dtype=torch.float32, device=None) -> torch.Tensor:
    """``n_steps + 1`` equally spaced times 0, T/K, …, T."""
    _check_steps(n_steps)
    if not T > 0:
        raise ValueError(f"T must be positive, got {T!r}")
    return torch.linspace(0.0, T, n_steps + 1, dtype=dtype, device=device)


def vp_beta(s, beta_min: float = 0.1, beta_max: float = 10.0, T: float = 1.0):
    """Linear VP noise rate β(s) = β_min + (β_max − β_min)·s/T in noising time s (Song et al. 2021, ICLR,
    "Score-based generative modeling through SDEs", eq. (11); the DIS default β from 0.1 to 10)."""
    return beta_min + (beta_max - beta_min) * s / T


def vp_beta_integral(s0, s1, beta_min: float = 0.1, beta_max: float = 10.0, T: float = 1.0):
    """∫_{s0}^{s1} β(s) ds for the linear schedule of :func:`vp_beta`."""
    return beta_min * (s1 - s0) + 0.5 * (beta_max - beta_min) * (s1 * s1 - s0 * s0) / T


def cosine_signal(s, offset: float = 0.008):
    """Cosine signal level ᾱ(s) = cos²(π/2·(s+o)/(1+o)) / cos²(π/2·o/(1+o)) for noising time s ∈ [0, 1]
    (Nichol & Dhariwal 2021, "Improved denoising diffusion probabilistic models", eq. (17)); ᾱ(0) = 1."""
    s = torch.as_tensor(s)
    f = torch.cos(0.5 * math.pi * (s + offset) / (1 + offset)) ** 2
    return f / math.cos(0.5 * math.pi * offset / (1 + offset)) ** 2


def cosine_alphas(n_steps: int, *, offset: float = 0.008, max_alpha: float = 0.999,
                  dtype=torch.float32, device=None) -> torch.Tensor:
    """Per-step noise fractions α_k of the DDS exponential integrator on the cosine schedule.

    Generative step k (from t_k = k/K to t_{k+1}) is the reverse of the noising step from
    s = 1 − t_{k+1} to s = 1 − t_k, whose exact OU transition keeps a fraction 1 − α_k of the signal
    variance: α_k = 1 − ᾱ(1 − t_k)/ᾱ(1 − t_{k+1}), clipped to ``max_alpha`` (Vargas, Grathwohl & Doucet
    2023, "Denoising diffusion samplers", §3 and App. on the cosine schedule). Large α near the prior
    (k = 0), small near the target."""
    _check_steps(n_steps)
    t = torch.linspace(0.0, 1.0, n_steps + 1, dtype=torch.float64)
    abar = cosine_signal(1.0 - t, offset).clamp_min(1e-12)
    alphas = (1.0 - abar[:-1] / abar[1:]).clamp(1e-8, max_alpha)
    return alphas.to(dtype=dtype, device=device)
