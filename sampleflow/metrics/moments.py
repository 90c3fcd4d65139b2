"""Moment errors: how far the sample mean and the marginal standard deviations are from the reference.

Definitions (the ones sde_sampler reports, Richter & Berner, ICLR 2024, ``sde_sampler/eval/metrics.py``, for
the standard deviations; the mean error is its Euclidean analogue):

    mean_error = | μ̂ − μ_ref |₂                         (Euclidean norm over the d coordinates)
    std_error  = (1/d) Σ_k | σ̂_k − σ_ref,k |            (mean absolute error of the marginal std devs,
                                                         sde_sampler's ``error/avg_marginal_stddev``)

With importance weights w_i (e.g. exp(log_weights)) the estimates are self-normalised:
μ̂ = Σ w_i x_i / Σ w_i, σ̂_k² = Σ w_i (x_ik − μ̂_k)² / Σ w_i. Standard deviations are the population ones
(ddof = 0) with or without weights (they differ from Bessel-corrected ones by √(n/(n−1))).
The reference is either reference samples (n_ref, d) or analytic moments ``(mean, std)``.
"""
from __future__ import annotations

import torch

from .distances import _points, _weights

__all__ = ["weighted_mean_std", "mean_error", "std_error", "moment_errors", "weights_from_log"]


def weights_from_log(log_weights) -> torch.Tensor:
    """Self-normalised importance weights softmax(log w) (float64); −inf entries get weight 0."""
    lw = torch.as_tensor(log_weights).detach().to(torch.float64).flatten()
    if bool(torch.isnan(lw).any()):
        raise ValueError("log_weights contains NaN")
    if not bool(torch.isfinite(lw).any()):
        raise ValueError("log_weights has no finite entry (every weight is zero)")
    return torch.softmax(lw, 0)


def weighted_mean_std(x, weights=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean (d,), std (d,)) of the rows of x, self-normalised by ``weights`` if given (ddof = 0)."""
    x = _points(x, "x")
    w = _weights(weights, x.shape[0], "weights", x)
    mu = w @ x
    var = w @ (x - mu).square()
    return mu, var.clamp_min(0).sqrt()


def _reference(ref, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(ref, (tuple, list)) and len(ref) == 2:
        mu = torch.as_tensor(ref[0], dtype=torch.float64).flatten()
        sd = torch.as_tensor(ref[1], dtype=torch.float64).flatten()
        if mu.numel() == 1:
            mu = mu.expand(d)
        if sd.numel() == 1:
            sd = sd.expand(d)
        if mu.shape != (d,) or sd.shape != (d,):
            raise ValueError(f"reference moments must have shape ({d},), got {tuple(mu.shape)} and {tuple(sd.shape)}")
        return mu, sd
    r = _points(ref, "reference")
    if r.shape[1] != d:
        raise ValueError(f"reference has dimension {r.shape[1]}, samples have {d}")
    return weighted_mean_std(r)


def moment_errors(x, reference, *, weights=None) -> dict[str, float]:
    """{"mean_error": |μ̂ − μ_ref|₂, "std_error": mean_k |σ̂_k − σ_ref,k|} (see the module docstring).

    ``reference``: reference samples (n_ref, d), or a pair ``(mean, std)`` of analytic moments (scalars are
    broadcast). ``weights``: optional importance weights for x (not logs; see :func:`weights_from_log`)."""
    x = _points(x, "x")
    mu, sd = weighted_mean_std(x, weights)
    mu_r, sd_r = _reference(reference, x.shape[1])
    mu_r, sd_r = mu_r.to(mu.device), sd_r.to(mu.device)
    return {"mean_error": float((mu - mu_r).norm()),
            "std_error": float((sd - sd_r).abs().mean())}


def mean_error(x, reference, *, weights=None) -> float:
    """|μ̂ − μ_ref|₂ (see :func:`moment_errors`)."""
    return moment_errors(x, reference, weights=weights)["mean_error"]


def std_error(x, reference, *, weights=None) -> float:
    """(1/d) Σ_k |σ̂_k − σ_ref,k| (see :func:`moment_errors`)."""
    return moment_errors(x, reference, weights=weights)["std_error"]

