"""Estimators from log importance weights: log Z, ELBO, EUBO, effective sample size.

With samples x_i ~ q and log weights log w_i = log π̃(x_i) − log q(x_i):
* log Ẑ = log (1/n) Σ w_i (importance sampling; unbiased in Z, biased low in log Z),
* ELBO = (1/n) Σ log w_i ≤ log Z (Jensen),
* EUBO = E_π[log w] ≥ log Z, estimated with reference draws from π (Blessing et al., "Beyond ELBOs", 2024),
* ESS = (Σ w)² / (n Σ w²) ∈ (0, 1] (Kong 1992; normalised by n).
Computed in float64 through logsumexp.
"""
from __future__ import annotations

import math

import torch

__all__ = ["log_Z_importance", "elbo", "eubo", "ess", "log_mean_exp"]


def _as_weights(log_weights, name: str = "log_weights") -> torch.Tensor:
    lw = torch.as_tensor(log_weights).detach().to(torch.float64).flatten()
    if lw.numel() == 0:
        raise ValueError(f"{name} is empty")
    if torch.isnan(lw).any():
        raise ValueError(f"{name} contains NaN")
    return lw


def log_mean_exp(v: torch.Tensor) -> float:
    return float(torch.logsumexp(v, 0) - math.log(v.numel()))


def log_Z_importance(log_weights) -> float:
    """log Ẑ = log((1/n) Σ exp(log w_i))."""
    return log_mean_exp(_as_weights(log_weights))


def elbo(log_weights) -> float:
    """ELBO = mean of log w over draws from the model (lower bound on log Z); −inf weights give −inf."""
    return float(_as_weights(log_weights).mean())


def eubo(log_weights_on_reference) -> float:
    """EUBO = mean of log w over draws from the *target* (upper bound on log Z)."""
    return float(_as_weights(log_weights_on_reference, "log_weights_on_reference").mean())


def ess(log_weights) -> float:
    """Normalised ESS (Σw)²/(n Σw²) = exp(2 LSE(lw) − LSE(2 lw)) / n."""
    lw = _as_weights(log_weights)
    if not torch.isfinite(lw).any():
        return 0.0
    return float(torch.exp(2 * torch.logsumexp(lw, 0) - torch.logsumexp(2 * lw, 0)) / lw.numel())
