"""Score models: one wrapper for the score / noise (ε) / denoiser parametrisations, EDM preconditioning,
and a reference MLP with Gaussian Fourier time features.

For x_t = s x_0 + σ C ε (see :mod:`.sdes`; Σ = C Cᵀ, C = I by default), the three quantities a network
may predict are linked by (the conversions live only in the four functions below):

    ε̂(x_t)  = E[ε | x_t]                              (noise prediction, Ho et al. 2020)
    D(x_t)  = E[x_0 | x_t] = (x_t − σ C ε̂)/s            (denoiser)
    ∇log p_t(x_t) = −C⁻ᵀ ε̂ / σ                         (score; Vincent 2011)
    Σ ∇log p_t(x_t) = −C ε̂/σ = −(x_t − s D)/σ²        (Tweedie: D = (x_t + σ² Σ ∇log p_t)/s)
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..nn.mlp import MLP
from .sdes import SDE, _t, expand_like, flat_data

__all__ = [
    "PARAMETRISATIONS",
    "eps_to_score",
    "score_to_eps",
    "eps_to_denoiser",
    "denoiser_to_eps",
    "EDMPreconditioning",
    "edm_preconditioning",
    "estimate_sigma_data",
    "ScoreModel",
    "GaussianFourierFeatures",
    "ScoreMLP",
]

PARAMETRISATIONS = ("score", "eps", "denoiser")


# ---------------------------------------------------------------------------------------------- conversions
def eps_to_score(eps: Tensor, sigma: Tensor, sde: SDE | None = None) -> Tensor:
    """∇log p_t = −C⁻ᵀ ε̂ / σ (Vincent 2011; Song et al. 2021 eq. (7)); C = I when ``sde`` has none."""
    e = sde.solve_chol_T(eps) if sde is not None else eps
    return -e / expand_like(sigma, eps)


def score_to_eps(score: Tensor, sigma: Tensor, sde: SDE | None = None) -> Tensor:
    """ε̂ = −σ Cᵀ ∇log p_t (inverse of :func:`eps_to_score`)."""
    v = -expand_like(sigma, score) * score
    if sde is not None and sde.noise_chol is not None:
        v = sde._flat(v, lambda w, C: w @ C)  # rows: (Cᵀ v)ᵀ = vᵀ C
    return v


def eps_to_denoiser(eps: Tensor, x: Tensor, s: Tensor, sigma: Tensor, sde: SDE | None = None) -> Tensor:
    """D = (x − σ C ε̂)/s (Tweedie's formula; Karras et al. 2022 eq. (3) with scaling s)."""
    ce = sde.apply_chol(eps) if sde is not None else eps
    return (x - expand_like(sigma, x) * ce) / expand_like(s, x)


def denoiser_to_eps(D: Tensor, x: Tensor, s: Tensor, sigma: Tensor, sde: SDE | None = None) -> Tensor:
    """ε̂ = C⁻¹ (x − s D)/σ (inverse of :func:`eps_to_denoiser`)."""
    r = (x - expand_like(s, x) * D) / expand_like(sigma, x)
    return sde.solve_chol(r) if sde is not None else r


# ---------------------------------------------------------------------------------------------- EDM
class EDMPreconditioning:
    """Karras et al. 2022, Table 1 ("Preconditioning", EDM column), for the scaled noise level σ:

        c_skip = σ_d² / (σ² + σ_d²),   c_out = σ σ_d / √(σ² + σ_d²),
        c_in = 1 / √(σ² + σ_d²),       c_noise = ¼ ln σ,
        loss weight λ(σ) = (σ² + σ_d²) / (σ σ_d)²,

    so that D(x; σ) = c_skip x + c_out F(c_in x, c_noise). ``sigma_data`` σ_d (0.5 for images in
    [−1, 1]; estimate with :func:`estimate_sigma_data`)."""

    def __init__(self, sigma_data: float = 0.5):
        if not (isinstance(sigma_data, (int, float)) and math.isfinite(sigma_data) and sigma_data > 0):
            raise ValueError(f"sigma_data must be a positive number, got {sigma_data!r}")
        self.sigma_data = float(sigma_data)

    def c_skip(self, sigma: Tensor) -> Tensor:
        sd2 = self.sigma_data ** 2
        return sd2 / (sigma ** 2 + sd2)

    def c_out(self, sigma: Tensor) -> Tensor:
        sd = self.sigma_data
        return sigma * sd / torch.sqrt(sigma ** 2 + sd * sd)

    def c_in(self, sigma: Tensor) -> Tensor:
        return 1.0 / torch.sqrt(sigma ** 2 + self.sigma_data ** 2)

    def c_noise(self, sigma: Tensor) -> Tensor:
        return 0.25 * torch.log(sigma)

    def loss_weight(self, sigma: Tensor) -> Tensor:
        sd = self.sigma_data
        return (sigma ** 2 + sd * sd) / (sigma * sd) ** 2

    def __call__(self, sigma: Tensor):
        """(c_skip, c_out, c_in, c_noise) at ``sigma``."""
        return self.c_skip(sigma), self.c_out(sigma), self.c_in(sigma), self.c_noise(sigma)

    def __repr__(self) -> str:
        return f"EDMPreconditioning(sigma_data={self.sigma_data})"


def edm_preconditioning(sigma: Tensor, sigma_data: float = 0.5):
    """(c_skip, c_out, c_in, c_noise) of Karras et al. 2022, Table 1, at ``sigma``."""
    return EDMPreconditioning(sigma_data)(sigma)


def estimate_sigma_data(data) -> float:
    """σ_data for EDM preconditioning: the pooled standard deviation of all entries of ``data``
    (n, *event) about the per-coordinate mean, √(mean_{i,k} (x_ik − x̄_k)²)."""
    x = flat_data(data)
    return float((x - x.mean(0)).square().mean().sqrt())


# ---------------------------------------------------------------------------------------------- wrapper
class ScoreModel(nn.Module):
    """A network ``net(x_in, time_input)`` read as a score, noise or denoiser model of ``sde``.

    ``parametrisation``: what ``net`` predicts — ``"score"`` (∇log p_t), ``"eps"`` (ε̂) or
    ``"denoiser"`` (D ≈ E[x_0|x_t]). ``preconditioning``: ``None`` or an :class:`EDMPreconditioning`
    (requires ``"denoiser"``); then, with x̃ = x/s, σ̃ = σ/s (Karras et al. 2022, eq. (7) and §4),
    D(x_t) = c_skip(σ̃) x̃ + c_out(σ̃) net(c_in(σ̃) x̃, c_noise(σ̃)).
    ``time_input``: what ``net`` receives as its second argument when not preconditioned — ``"t"``
    (default), ``"sigma"`` (σ̃) or ``"log_sigma"`` (¼ ln σ̃, EDM's c_noise).

    ``score``, ``eps``, ``denoise`` and ``cov_score`` (Σ∇log p_t, the quantity the samplers need) accept
    ``t`` as a number, a 0-d tensor or ``(B,)``.
    """

    def __init__(self, net, sde: SDE, parametrisation: str = "eps", preconditioning: EDMPreconditioning | None = None,
                 time_input: str = "t"):
        super().__init__()
        if parametrisation not in PARAMETRISATIONS:
            raise ValueError(f"parametrisation must be one of {PARAMETRISATIONS}, got {parametrisation!r}")
        if preconditioning is not None:
            if not isinstance(preconditioning, EDMPreconditioning):
                raise ValueError(f"preconditioning must be None or an EDMPreconditioning, got {preconditioning!r}")
            if parametrisation != "denoiser":
                raise ValueError("preconditioning (EDM) requires parametrisation='denoiser'")
        if time_input not in ("t", "sigma", "log_sigma"):
            raise ValueError(f"time_input must be 't', 'sigma' or 'log_sigma', got {time_input!r}")
        if not callable(net):
            raise ValueError(f"net must be callable net(x, t), got {type(net).__name__}")
        self.net = net
        self.sde = sde
        self.parametrisation = parametrisation
        self.preconditioning = preconditioning
        self.time_input = time_input

    def _coefs(self, x: Tensor, t):
        if not isinstance(x, Tensor) or x.dim() < 2:
            raise ValueError(f"x must be a batched tensor (B, *event), got {getattr(x, 'shape', type(x).__name__)}")
        t = _t(t, x)
        if t.dim() > 1 or (t.dim() == 1 and t.shape[0] != x.shape[0]):
            raise ValueError(f"t must be a number, 0-d or of shape ({x.shape[0]},), got shape {tuple(t.shape)}")
        s, sigma = self.sde.marginal(t)
        return t, s, sigma

    def _raw(self, x: Tensor, t: Tensor, s: Tensor, sigma: Tensor) -> Tensor:
        st = sigma / s
        if self.preconditioning is not None:
            c_skip, c_out, c_in, c_noise = self.preconditioning(st)
            xt = x / expand_like(s, x)
            F = self.net(expand_like(c_in, x) * xt, c_noise)
            return expand_like(c_skip, x) * xt + expand_like(c_out, x) * F
        tin = t if self.time_input == "t" else (st if self.time_input == "sigma" else 0.25 * torch.log(st))
        out = self.net(x, tin)
        if not isinstance(out, Tensor) or out.shape != x.shape:
            raise ValueError(f"net(x, t) must return a tensor of x's shape {tuple(x.shape)}, "
                             f"got {getattr(out, 'shape', type(out).__name__)}")
        return out

    def eps(self, x: Tensor, t) -> Tensor:
        """ε̂(x_t, t) — the canonical quantity the others are derived from."""
        t, s, sigma = self._coefs(x, t)
        out = self._raw(x, t, s, sigma)
        if self.parametrisation == "eps":
            return out
        if self.parametrisation == "score":
            return score_to_eps(out, sigma, self.sde)
        return denoiser_to_eps(out, x, s, sigma, self.sde)

    def score(self, x: Tensor, t) -> Tensor:
        """∇_x log p_t(x)."""
        t, s, sigma = self._coefs(x, t)
        if self.parametrisation == "score" and self.preconditioning is None:
            return self._raw(x, t, s, sigma)
        return eps_to_score(self.eps(x, t), sigma, self.sde)

    def cov_score(self, x: Tensor, t) -> Tensor:
        """Σ ∇log p_t(x) = −C ε̂/σ (equals :meth:`score` when C = I)."""
        t, s, sigma = self._coefs(x, t)
        if self.sde.noise_chol is None:
            return self.score(x, t)
        return -self.sde.apply_chol(self.eps(x, t)) / expand_like(sigma, x)

    def denoise(self, x: Tensor, t) -> Tensor:
        """D(x_t) = E[x_0 | x_t] (Tweedie)."""
        t, s, sigma = self._coefs(x, t)
        if self.parametrisation == "denoiser":
            return self._raw(x, t, s, sigma)
        return eps_to_denoiser(self.eps(x, t), x, s, sigma, self.sde)

    def forward(self, x: Tensor, t) -> Tensor:
        return self.score(x, t)


# ---------------------------------------------------------------------------------------------- network
class GaussianFourierFeatures(nn.Module):
    """Random Fourier features of a scalar time (Tancik et al. 2020, "Fourier features let networks learn
    high frequency functions"; the time embedding of Song et al. 2021's NCSN++):
    γ(t) = [sin(2π W t), cos(2π W t)], W_k ~ N(0, scale²) fixed (a buffer), shape (..., 2K).
    ``generator`` makes W reproducible."""

    def __init__(self, n_features: int = 32, scale: float = 16.0, generator: torch.Generator | None = None):
        super().__init__()
        if n_features < 1:
            raise ValueError(f"n_features must be >= 1, got {n_features}")
        W = torch.randn(n_features, generator=generator) * scale
        self.register_buffer("W", W)
        self.out_features = 2 * n_features

    def forward(self, t) -> Tensor:
        t = _t(t, self.W)
        arg = 2 * math.pi * t.unsqueeze(-1) * self.W
        return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)


class ScoreMLP(nn.Module):
    """Reference network for low-dimensional data: out = MLP([x, γ(τ)]) with γ the
    :class:`GaussianFourierFeatures` of the time input τ (t, σ̃ or c_noise), built on
    :class:`sampleflow.nn.MLP` (``depth`` linear layers of width ``width``, SiLU).
    Call ``net(x, t)`` with x (B, dim) and t a number or (B,); returns (B, dim)."""

    def __init__(self, dim: int, width: int = 128, depth: int = 4, n_features: int = 32, scale: float = 16.0,
                 activation: str = "silu", generator: torch.Generator | None = None):
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim = int(dim)
        self.time_features = GaussianFourierFeatures(n_features, scale, generator)
        self.mlp = MLP(self.dim + self.time_features.out_features, self.dim, width=width, depth=depth,
                       activation=activation)

    def forward(self, x: Tensor, t) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (B, {self.dim}), got {tuple(x.shape)}")
        t = _t(t, x)
        emb = self.time_features(t.to(self.time_features.W.dtype)).to(x.dtype)
        if emb.dim() == 1:
            emb = emb.expand(x.shape[0], -1)
        return self.mlp(torch.cat([x, emb], dim=-1))
