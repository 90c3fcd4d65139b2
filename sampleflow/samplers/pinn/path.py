r"""The prescribed density path of the PINN sampler (Sun, Berner, Richter, Zeinhofer, Müller, Azizzadenesheli &
Anandkumar, "Dynamical measure transport and neural PDE solvers for sampling", 2024, §2–3): geometric
annealing from a Gaussian p₀ to the unnormalised target π̃,

    log p̃_t(x) = (1 − β_t) log p₀(x) + β_t log π̃(x),        p_t = p̃_t / Z_t,   Z_0 = 1, Z_1 = Z,

with a schedule β: [0, 1] → [0, 1], β_0 = 0, β_1 = 1. Its time derivative and score,

    ∂_t log p̃_t(x) = β'_t (log π̃(x) − log p₀(x)),     ∇log p̃_t(x) = (1 − β_t) ∇log p₀(x) + β_t ∇log π̃(x),

are what the continuity-equation residual needs (:mod:`.residual`). The Fokker–Planck residual also needs the
Laplacian

    Δlog p̃_t(x) = (1 − β_t) Δlog p₀(x) + β_t Δlog π̃(x),        Δlog p₀ = −Σ_i 1/std_i²,

with Δlog π̃ = ∇·∇log π̃ exact or by Hutchinson (:func:`sampleflow.sde.divergence.value_and_divergence`).
Every function takes t of shape (B,) (or a 0-d tensor) and x of shape (B, d), and returns per-row values; the
target is evaluated once per call (:meth:`GeometricPath.terms_with_laplacian`: once for log π̃ and once for the
divergence of its score).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ...sde.divergence import value_and_divergence

__all__ = ["GeometricPath"]

_SCHEDULES = ("linear", "cosine")


class GeometricPath:
    """Geometric annealing from p₀ = N(mean, diag(std²)) to ``target`` with β_t = t ("linear") or
    β_t = (1 − cos πt)/2 ("cosine": slower at both ends)."""

    def __init__(self, target, mean: Tensor, std: Tensor, schedule: str = "linear"):
        if schedule not in _SCHEDULES:
            raise ValueError(f"schedule must be one of {list(_SCHEDULES)}, got {schedule!r}")
        self.target, self.mean, self.std, self.schedule = target, mean, std, schedule

    def with_target(self, target) -> "GeometricPath":
        """The same path towards another target object (e.g. an NFE-counting wrapper of the same target)."""
        return GeometricPath(target, self.mean, self.std, self.schedule)

    def beta(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(β_t, β'_t)."""
        if self.schedule == "linear":
            return t, torch.ones_like(t)
        return 0.5 * (1 - torch.cos(math.pi * t)), 0.5 * math.pi * torch.sin(math.pi * t)

    def prior_log_prob_and_score(self, x: Tensor) -> tuple[Tensor, Tensor]:
        m, s = self.mean.to(x), self.std.to(x)
        z = (x - m) / s
        lp = -0.5 * (z * z).sum(-1) - torch.log(s).sum() - 0.5 * x.shape[-1] * math.log(2 * math.pi)
        return lp, -z / s

    def prior_sample(self, n: int, generator=None, dtype=None, device=None) -> Tensor:
        eps = torch.randn(n, self.mean.numel(), generator=generator, dtype=dtype, device=device)
        return self.mean.to(eps) + self.std.to(eps) * eps

    def terms(self, t: Tensor, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(log p̃_t(x), ∂_t log p̃_t(x), ∇log p̃_t(x)) with one target evaluation."""
        lp0, s0 = self.prior_log_prob_and_score(x)
        lpi, spi = self.target.log_prob_and_score(x)
        b, db = self.beta(torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[:-1]))
        log_p = (1 - b) * lp0 + b * lpi
        return log_p, db * (lpi - lp0), (1 - b)[..., None] * s0 + b[..., None] * spi

    def _time(self, t, x: Tensor) -> Tensor:
        return torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[:-1])

    def score(self, t: Tensor, x: Tensor) -> Tensor:
        """∇log p̃_t(x) = (1 − β_t)∇log p₀(x) + β_t∇log π̃(x) (one target score evaluation)."""
        _, s0 = self.prior_log_prob_and_score(x)
        b, _ = self.beta(self._time(t, x))
        return (1 - b)[..., None] * s0 + b[..., None] * self.target.score(x)

    def terms_with_laplacian(self, t: Tensor, x: Tensor, *, divergence: str = "exact", probes: int = 1,
                             generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(log p̃_t, ∂_t log p̃_t, ∇log p̃_t, Δlog p̃_t) at (t, x); Δlog π̃ is the divergence of the target's
        score, ``divergence`` "exact" or "hutchinson" with ``probes`` probes, by autograd through
        ``target.score`` (an analytic score must be written in differentiable torch operations; a score that
        does not depend on x differentiably reads as Δlog π̃ = 0). Nothing here depends on learned parameters,
        so no graph is kept."""
        with torch.no_grad():
            lp0, s0 = self.prior_log_prob_and_score(x)
            lpi = self.target.log_prob(x)
            spi, lap_pi = value_and_divergence(self.target.score, x, method=divergence, n_probes=probes,
                                               generator=generator)
            b, db = self.beta(self._time(t, x))
            lap0 = -(1 / self.std.to(x) ** 2).sum()
            return ((1 - b) * lp0 + b * lpi, db * (lpi - lp0), (1 - b)[..., None] * s0 + b[..., None] * spi,
                    (1 - b) * lap0 + b * lap_pi)
