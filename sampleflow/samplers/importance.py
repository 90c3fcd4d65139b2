"""``importance``: self-normalised importance sampling from a Gaussian or Student-t proposal.

x_i ~ q, log w_i = log π̃(x_i) − log q(x_i); (1/n)Σw_i is an unbiased estimate of Z (Kahn & Marshall
1953; e.g. Owen, "Monte Carlo theory, methods and examples", ch. 9). q is a product proposal with
per-coordinate location and scale: a Gaussian, or a multivariate Student-t with ``df`` degrees of
freedom (heavier tails keep the weights bounded when π has heavier tails than a Gaussian).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .._rng import numpy_rng
from ..samples import Samples
from .base import CountingTarget, Sampler, Timer
from .registry import register

__all__ = ["Importance", "ImportanceConfig", "gaussian_log_prob", "student_t_log_prob"]


@dataclass
class ImportanceConfig:
    """proposal: "gaussian" or "student_t". loc/scale: a float or a per-coordinate list; None takes the
    target's box (centre, and a quarter of its width). df: Student-t degrees of freedom.
    batch_size: points per target evaluation."""

    proposal: str = "gaussian"
    loc: float | list | None = None
    scale: float | list | None = None
    df: float = 5.0
    batch_size: int = 65536

    def __post_init__(self):
        if self.proposal not in ("gaussian", "student_t"):
            raise ValueError(f"proposal must be 'gaussian' or 'student_t', got {self.proposal!r}")
        if not self.df > 0:
            raise ValueError(f"df must be positive, got {self.df!r}")
        if not (isinstance(self.batch_size, int) and self.batch_size > 0):
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")


def gaussian_log_prob(z: torch.Tensor, log_scale_sum) -> torch.Tensor:
    """log N(x; μ, diag σ²) with z = (x − μ)/σ: −½|z|² − ½ d log 2π − Σ log σ."""
    d = z.shape[-1]
    return -0.5 * (z ** 2).sum(-1) - 0.5 * d * math.log(2 * math.pi) - log_scale_sum


def student_t_log_prob(z: torch.Tensor, df: float, log_scale_sum) -> torch.Tensor:
    """Multivariate t with ν = df, location μ, scale diag σ, z = (x − μ)/σ:
    log Γ((ν+d)/2) − log Γ(ν/2) − (d/2) log(νπ) − Σ log σ − (ν+d)/2 · log(1 + |z|²/ν)."""
    d = z.shape[-1]
    const = math.lgamma((df + d) / 2) - math.lgamma(df / 2) - 0.5 * d * math.log(df * math.pi)
    return const - log_scale_sum - 0.5 * (df + d) * torch.log1p((z ** 2).sum(-1) / df)


@register
class Importance(Sampler):
    """Importance sampling from a Gaussian or Student-t proposal: samples, log weights, log Z, ESS."""

    name = "importance"
    Config = ImportanceConfig
    presets = {"default": {}, "cpu": {}}

    def __init__(self, target, config=None):
        super().__init__(target, config)
        low, high = target.box
        c = self.config
        self.loc = self._vector(c.loc, (low + high) / 2, "loc")
        self.scale = self._vector(c.scale, (high - low) / 4, "scale")
        if not bool((self.scale > 0).all()):
            raise ValueError(f"scale must be positive, got {self.scale.tolist()}")

    def _vector(self, v, default, what) -> torch.Tensor:
        if v is None:
            return default.clone().double()
        t = torch.as_tensor(v, dtype=torch.float64).flatten()
        if t.numel() == 1:
            t = t.expand(self.target.dim).clone()
        if t.shape != (self.target.dim,):
            raise ValueError(f"{what} must be a float or have {self.target.dim} entries, got {t.numel()}")
        return t

    def proposal_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        loc, scale = self.loc.to(x), self.scale.to(x)
        z = (x - loc) / scale
        lss = torch.log(scale).sum()
        if self.config.proposal == "gaussian":
            return gaussian_log_prob(z, lss)
        return student_t_log_prob(z, self.config.df, lss)

    def log_weight(self, x: torch.Tensor) -> torch.Tensor:
        return self.target.log_prob(x) - self.proposal_log_prob(x)

    def _draw(self, n, generator, dtype, device):
        d = self.target.dim
        z = torch.randn(n, d, generator=generator, dtype=dtype, device=device)
        if self.config.proposal == "student_t":
            chi2 = numpy_rng(generator).chisquare(self.config.df, size=n)
            z = z / torch.sqrt(torch.as_tensor(chi2, dtype=dtype, device=device) / self.config.df)[:, None]
        return self.loc.to(z) + self.scale.to(z) * z

    def sample(self, n: int, generator: torch.Generator | None = None) -> Samples:
        n = self._check_n(n)
        device = generator.device if generator is not None else torch.device("cpu")
        counted = CountingTarget(self.target)
        with Timer() as t:
            x = self._draw(n, generator, torch.get_default_dtype(), device)
            lw = torch.cat([counted.log_prob(xb) - self.proposal_log_prob(xb)
                            for xb in x.split(self.config.batch_size)])
        return Samples(x=x, log_weights=lw, nfe=counted.nfe, wall_time=t.seconds, sampler=self.name,
                       target=self.target.name, info={"proposal": self.config.proposal},
                       log_weight_fn=self.log_weight)
