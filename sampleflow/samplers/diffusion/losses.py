"""Divergences between path measures, as pure functions of the per-trajectory log-RND log w
(log w = log dP_target-path/dP_model-path + log Z, so that E_model[exp(log w)] = Z).

Richter & Berner 2024 (ICLR, "Improved sampling via learned diffusions"), §3–4; Malkin et al. 2023
(ICLR, "GFlowNets and variational inference") for trajectory balance.
"""
from __future__ import annotations

import torch

__all__ = ["kl_loss", "log_variance_loss", "log_variance_per_start_loss", "trajectory_balance_loss",
           "LOSSES", "TRAJECTORY_MODE"]


def kl_loss(log_w: torch.Tensor) -> torch.Tensor:
    """Reverse KL: KL(P_model ‖ P_target) = E_model[−log w] + log Z. ``log_w`` must come from
    *reparametrised* trajectories (mode ``"reparam"``): its gradient flows through the solver."""
    return -log_w.mean()


def log_variance_loss(log_w: torch.Tensor) -> torch.Tensor:
    """Log-variance divergence Var_ref[log w] (Richter et al. 2020; Richter & Berner 2024, eq. (17)),
    the variance taken over the batch with the trajectories detached (mode ``"detached"``): the
    reference measure is the current model, no gradient flows through the solver, log Z cancels,
    and the loss is zero exactly when log w is constant, i.e. when the path measures agree."""
    return (log_w - log_w.mean()).square().mean()


def log_variance_per_start_loss(log_w: torch.Tensor, n_per_start: int) -> torch.Tensor:
    """Log-variance over the trajectories sharing a start point X_0, averaged over start points
    (the per-start-point variant, "VarGrad with local baselines"). ``log_w`` is ordered so that
    consecutive blocks of ``n_per_start`` rows share a start point."""
    if n_per_start < 2 or log_w.numel() % n_per_start:
        raise ValueError(f"n_per_start must be ≥ 2 and divide the batch ({log_w.numel()}), got {n_per_start}")
    g = log_w.reshape(-1, n_per_start)
    return (g - g.mean(1, keepdim=True)).square().mean()


def trajectory_balance_loss(log_w: torch.Tensor, log_Z: torch.Tensor) -> torch.Tensor:
    """Trajectory balance (Malkin et al. 2022; Malkin et al. 2023): E[(log Ẑ_θ − log w)²] with a learned
    scalar log Ẑ_θ; with detached trajectories its gradient in the control equals the log-variance
    gradient at the optimal log Ẑ = E[log w]."""
    return (log_Z - log_w).square().mean()


LOSSES = ("kl", "lv", "lv_start", "tb")
#: which simulation mode (see sampleflow.sde.simulate) each loss differentiates
TRAJECTORY_MODE = {"kl": "reparam", "lv": "detached", "lv_start": "detached", "tb": "detached"}
