"""PINN samplers (Sun et al., "Dynamical measure transport and neural PDE solvers for sampling", 2024):

* :mod:`.path` — the prescribed geometric path and its time derivative and score;
* :mod:`.residual` — the continuity-equation residual (a pure function);
* :mod:`.sampler` — the registered sampler ``pinn`` (training at collocation points, ODE sampling).
"""
from .path import GeometricPath
from .residual import continuity_residual
from .sampler import PINN, LogZPath, PINNConfig

__all__ = ["PINN", "PINNConfig", "GeometricPath", "LogZPath", "continuity_residual"]
