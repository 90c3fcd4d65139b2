"""Exact log-likelihood of a score model through the probability-flow ODE (Song et al. 2021,
"Score-based generative modeling through SDEs", §4.3 and App. D.2; Chen et al. 2018; Grathwohl et al. 2019).

Integrating dx/dt = v(x, t) = f(t) x − ½ g(t)² Σ∇log p_t(x) from t_min to T, with dℓ/dt = −∇·v
(instantaneous change of variables, see :mod:`sampleflow.sde.ode`), gives the encoding z = x_T and

    log p_{t_min}(x) = log p_T(z) − ℓ(T) = log p_T(z) + ∫_{t_min}^T ∇·v(x_t, t) dt,

with p_T the SDE's prior. The result is the density of the model's x_{t_min} marginal (≈ p_0 for small
t_min). The divergence is exact for d ≤ ``exact_max_dim`` and otherwise Hutchinson's estimator with
Rademacher probes drawn once per solve (fixed along the path: unbiased for log p).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from ..sde.ode import METHODS, odeint, odeint_with_logdet, rk45
from .samplers import probability_flow_drift
from .sdes import SDE

__all__ = ["LikelihoodResult", "log_likelihood", "encode", "bits_per_dim", "dequantization_offset"]


class LikelihoodResult(NamedTuple):
    """log_prob: (B,) log p(x) in nats; z: the encoding x_T; prior_log_prob: log p_T(z); delta_logp:
    ℓ(T) = −∫ ∇·v dt; nfe: ODE function evaluations."""

    log_prob: Tensor
    z: Tensor
    prior_log_prob: Tensor
    delta_logp: Tensor
    nfe: int


def _check_x(x) -> None:
    if not isinstance(x, Tensor) or x.dim() < 2:
        raise ValueError(f"x must be a batched tensor (B, *event), got {getattr(x, 'shape', type(x).__name__)}")
    if not torch.isfinite(x).all():
        raise ValueError("x must be finite (found NaN or inf)")


def log_likelihood(model, sde: SDE, x: Tensor, *, method: str = "rk45", steps: int = 100, rtol: float = 1e-5,
                   atol: float = 1e-5, divergence: str | None = None, exact_max_dim: int = 32, n_probes: int = 1,
                   generator: torch.Generator | None = None) -> LikelihoodResult:
    """log p_{t_min}(x) in nats for each row of ``x`` (B, *event) through the probability-flow ODE.

    ``method``: ``"rk45"`` (adaptive, ``rtol``/``atol``) or a fixed-grid scheme ``"euler"``, ``"heun"``,
    ``"rk4"`` with ``steps`` uniform steps. ``divergence``: ``"exact"`` or ``"hutchinson"``; default
    exact when the event size d ≤ ``exact_max_dim``. ``generator`` draws the Hutchinson probes.
    """
    _check_x(x)
    if method != "rk45" and method not in METHODS:
        raise ValueError(f"method must be 'rk45' or one of {tuple(METHODS)}, got {method!r}")
    d = x[0].numel()
    if divergence is None:
        divergence = "exact" if d <= exact_max_dim else "hutchinson"
    if divergence not in ("exact", "hutchinson"):
        raise ValueError(f"divergence must be 'exact' or 'hutchinson', got {divergence!r}")
    v = probability_flow_drift(model, sde)
    with torch.no_grad():
        if method == "rk45":
            res = rk45(v, x, sde.t_min, sde.T, rtol=rtol, atol=atol, logdet=True, divergence=divergence,
                       n_probes=n_probes, generator=generator)
            z, dlp, nfe = res.x, res.delta_logp, res.nfe
        else:
            if not isinstance(steps, int) or steps < 1:
                raise ValueError(f"steps must be a positive integer, got {steps!r}")
            grid = torch.linspace(sde.t_min, sde.T, steps + 1, dtype=x.dtype, device=x.device)
            stats: dict = {}
            z, dlp = odeint_with_logdet(v, x, grid, method=method, divergence=divergence, n_probes=n_probes,
                                        generator=generator, stats=stats)
            nfe = stats["nfe"]
        prior = sde.prior_log_prob(z)
    return LikelihoodResult(prior - dlp, z, prior, dlp, nfe)


def encode(model, sde: SDE, x: Tensor, *, method: str = "rk45", steps: int = 100, rtol: float = 1e-5,
           atol: float = 1e-5) -> Tensor:
    """The probability-flow encoding x ↦ z = x_T (deterministic, invertible by the reverse solve)."""
    _check_x(x)
    v = probability_flow_drift(model, sde)
    with torch.no_grad():
        if method == "rk45":
            return rk45(v, x, sde.t_min, sde.T, rtol=rtol, atol=atol).x
        if method not in METHODS:
            raise ValueError(f"method must be 'rk45' or one of {tuple(METHODS)}, got {method!r}")
        grid = torch.linspace(sde.t_min, sde.T, steps + 1, dtype=x.dtype, device=x.device)
        return odeint(v, x, grid, method=method)


def dequantization_offset(data_range: tuple[float, float] = (-1.0, 1.0), n_levels: int = 256) -> float:
    """Bits per dimension to add when the model's data are ``n_levels`` discrete levels (e.g. 8-bit pixels)
    rescaled to ``data_range`` with uniform dequantisation: log₂(n_levels / (hi − lo)).
    Example: [0, 1] with 256 levels → log₂ 256 = 8; [−1, 1] → log₂ 128 = 7.
    (A density in x units is 256/(hi − lo) times smaller per dimension in the integer-level units.)"""
    lo, hi = data_range
    if not hi > lo:
        raise ValueError(f"data_range must be (lo, hi) with hi > lo, got {data_range}")
    if not (isinstance(n_levels, int) and n_levels >= 2):
        raise ValueError(f"n_levels must be an integer >= 2, got {n_levels!r}")
    return math.log2(n_levels / (hi - lo))


def bits_per_dim(logp: Tensor, d: int, offset: float = 0.0) -> Tensor:
    """bpd = −log p / (d ln 2) + offset, with ``logp`` in nats of a density over d dimensions and
    ``offset`` from :func:`dequantization_offset` (0 for continuous data: then bpd is just the
    per-dimension negative log-likelihood in bits). E.g. 8-bit images scaled to [−1, 1] with uniform
    dequantisation: ``offset = 7``."""
    if not (isinstance(d, int) and d >= 1):
        raise ValueError(f"d must be a positive integer, got {d!r}")
    return -torch.as_tensor(logp) / (d * math.log(2.0)) + offset
