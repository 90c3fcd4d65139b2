"""Neal's funnel (Neal, "Slice sampling", Annals of Statistics 2003).

x₀ ~ N(0, σ²) with σ = 3, and x_i | x₀ ~ N(0, e^{x₀}) for i = 1..d−1 (variance e^{x₀}):

log π(x) = log N(x₀; 0, σ²) + Σ_{i≥1} log N(x_i; 0, e^{x₀})
         = −x₀²/(2σ²) − ½ log(2πσ²) − (d−1)/2 · (x₀ + log 2π) − ½ e^{−x₀} Σ_{i≥1} x_i².

Normalised: log Z = 0. The benchmark is d = 10 (Beyond-ELBOs ``targets/funnel.py``; gfn-diffusion
``hard_funnel.py``); BE clips its *reference samples* to [−30, 30], the density is not clipped here.
Exact draws: x₀ = σ z₀, x_i = e^{x₀/2} z_i.
"""
from __future__ import annotations

import math

import torch

from .base import LogZ, Target, TargetInputError
from .registry import register

__all__ = ["Funnel"]

_LOG_2PI = math.log(2 * math.pi)


class Funnel(Target):
    """Neal's funnel in ``dim`` dimensions (x₀ the "neck" coordinate), normalised (log Z = 0)."""

    name = "funnel"
    version = "1"

    def __init__(self, dim: int = 10, sigma: float = 3.0):
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 2:
            raise TargetInputError(f"dim of the funnel must be an integer >= 2, got {dim!r}")
        sigma = float(sigma)
        if not (sigma > 0 and math.isfinite(sigma)):
            raise TargetInputError(f"sigma must be positive, got {sigma!r}")
        low = [-10.0] + [-30.0] * (dim - 1)
        high = [10.0] + [30.0] * (dim - 1)
        super().__init__(dim, log_Z=LogZ(0.0, 0.0, "closed form (normalised density)"), box=(low, high))
        self.sigma = sigma
        self._c0 = -0.5 * (_LOG_2PI + 2 * math.log(sigma))

    def _log_prob(self, x):
        x0, xr = x[..., 0], x[..., 1:]
        n = self.dim - 1
        return (-0.5 * x0 * x0 / self.sigma ** 2 + self._c0
                - 0.5 * n * (x0 + _LOG_2PI) - 0.5 * torch.exp(-x0) * (xr * xr).sum(-1))

    def _score(self, x):
        x0, xr = x[..., :1], x[..., 1:]
        n = self.dim - 1
        e = torch.exp(-x0)
        g0 = -x0 / self.sigma ** 2 - 0.5 * n + 0.5 * e * (xr * xr).sum(-1, keepdim=True)
        return torch.cat([g0, -xr * e], -1)

    def _sample(self, n, generator, device):
        z = torch.randn(n, self.dim, generator=generator, device=device, dtype=torch.float64)
        x0 = self.sigma * z[:, :1]
        return torch.cat([x0, torch.exp(0.5 * x0) * z[:, 1:]], -1)


register("funnel", Funnel, "Neal's funnel, x₀ ~ N(0, 3²), x_i | x₀ ~ N(0, e^{x₀}) (Neal 2003); log Z = 0",
         variants=({"dim": 10},))
