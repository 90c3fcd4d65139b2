"""Reference processes, time grids, discrete path measures with their log Radon–Nikodym derivative,
and ODE integrators with log-density tracking."""
from .grids import cosine_alphas, cosine_signal, uniform_grid, vp_beta, vp_beta_integral
from .paths import (CMCDPath, DDSPath, DiffusionPath, PISPath, VPPath, isotropic_gaussian_log_prob,
                    transition_log_ratio)
from .simulate import MODES, PathSample, simulate, simulate_backward
from .divergence import divergence_exact, divergence_hutchinson, value_and_divergence
from .ode import odeint, odeint_with_logdet, rk45

__all__ = ["uniform_grid", "vp_beta", "vp_beta_integral", "cosine_signal", "cosine_alphas", "DiffusionPath",
           "PISPath", "VPPath", "DDSPath", "CMCDPath", "isotropic_gaussian_log_prob", "transition_log_ratio",
           "PathSample", "simulate", "simulate_backward", "MODES", "divergence_exact", "divergence_hutchinson",
           "value_and_divergence", "odeint", "odeint_with_logdet", "rk45"]
