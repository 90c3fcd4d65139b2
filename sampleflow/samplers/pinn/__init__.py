"""PINN samplers (Sun et al., "Dynamical measure transport and neural PDE solvers for sampling", 2024):

* :mod:`.path` — the prescribed geometric path and its time derivative, score and Laplacian;
* :mod:`.residual` — the continuity, Fokker–Planck and Hamilton–Jacobi residuals (pure functions);
* :mod:`.learned_path` — the learned log-density V and potential Φ of the learned-path variant, and the
  ∂_t / ∇ / Δ of scalar networks;
* :mod:`.collocation` — annealed Langevin collocation points;
* :mod:`.sde_sampling` — Euler–Maruyama sampling with path-space log weights for the SDE variants;
* :mod:`.sampler` — the registered sampler ``pinn`` (training at collocation points, ODE/SDE sampling).
"""
from .collocation import annealed_langevin_points
from .learned_path import LearnedLogDensity, PotentialVelocity, scalar_field_derivatives
from .path import GeometricPath
from .residual import (continuity_residual, fokker_planck_residual, hamilton_jacobi_residual, learned_path_residuals,
                       transport_residual)
from .sampler import PINN, LogZPath, PINNConfig
from .sde_sampling import euler_maruyama_log_ratio

__all__ = ["PINN", "PINNConfig", "GeometricPath", "LogZPath", "continuity_residual", "fokker_planck_residual",
           "hamilton_jacobi_residual", "learned_path_residuals", "transport_residual", "scalar_field_derivatives",
           "LearnedLogDensity", "PotentialVelocity", "annealed_langevin_points", "euler_maruyama_log_ratio"]
