"""Forward (noising) SDEs of score-based generative models.

Time convention (Song et al. 2021, "Score-based generative modeling through SDEs", ICLR): t runs from
0 (data) to T (prior). Every SDE here has a *linear, scalar* drift,

    dx = f(t) x dt + g(t) C dW_t,

so its marginal given x_0 is Gaussian, x_t = s(t) x_0 + σ(t) C ε, ε ~ N(0, I) (Karras et al. 2022,
"Elucidating the design space of diffusion-based generative models", eq. (4), with s = s(t)),

    s(t) = exp(∫_0^t f),      σ(t)² = s(t)² ∫_0^t g(u)² / s(u)² du    (+ σ(0)² for VE/EDM, see there).

``C`` is an optional fixed Cholesky factor of the noise covariance Σ = C Cᵀ (Hilbert-space diffusion,
Lim et al. 2023, "Score-based diffusion models in function space"): noise, marginals and prior are then
scaled by C (default: C = I). C acts on the flattened event: x of shape (B, *event) with prod(event) = d.

The *scaled noise level* σ̃(t) = σ(t)/s(t) and scaled state x̃ = x/s(t) satisfy x̃_t = x_0 + σ̃ C ε,
a VE process in "σ̃-time"; every SDE here therefore has the same probability-flow ODE in (x̃, σ̃)
(Karras et al. 2022, §3), used by the EDM Heun sampler.

All functions are pure; ``t`` may be a number, a 0-d tensor or one time per sample ``(B,)``;
``marginal`` returns tensors of ``t``'s shape (use :func:`expand_like` to broadcast them against x).
"""
from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

__all__ = ["SDE", "VPSDE", "SubVPSDE", "VESDE", "EDMSDE", "ve_sigma_max", "expand_like", "get_sde"]


def expand_like(c: Tensor, x: Tensor) -> Tensor:
    """Reshape a per-sample coefficient ``c`` (0-d or ``(B,)``) to broadcast against ``x`` ``(B, *event)``."""
    if c.dim() == 0:
        return c
    return c.reshape(c.shape + (1,) * (x.dim() - c.dim()))


def _t(t, like: Tensor | None = None, dtype=None) -> Tensor:
    if isinstance(t, Tensor):
        if like is not None:
            t = t.to(dtype=like.dtype, device=like.device)
        return t
    if isinstance(t, numbers.Real):
        if like is not None:
            return torch.tensor(float(t), dtype=like.dtype, device=like.device)
        return torch.tensor(float(t), dtype=dtype or torch.get_default_dtype())
    raise TypeError(f"t must be a number or a torch.Tensor, got {type(t).__name__}")


def _positive(name, v):
    if not (isinstance(v, numbers.Real) and math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a positive finite number, got {v!r}")
    return float(v)


class SDE:
    """Common interface. Subclasses define ``log_mean_scale(t)`` (log s), ``sigma(t)`` (σ),
    ``drift_coef(t)`` (f), ``diffusion(t)`` (g), ``t_from_sigma_tilde``; the rest is shared.

    ``noise_chol``: optional (d, d) lower-triangular Cholesky factor C of the noise covariance.
    """

    T: float = 1.0
    t_min: float = 1e-3

    def __init__(self, noise_chol: Tensor | None = None):
        if noise_chol is not None:
            if not isinstance(noise_chol, Tensor) or noise_chol.dim() != 2 or noise_chol.shape[0] != noise_chol.shape[1]:
                raise ValueError(
                    f"noise_chol must be a square (d, d) tensor (a Cholesky factor), got "
                    f"{tuple(noise_chol.shape) if isinstance(noise_chol, Tensor) else type(noise_chol).__name__}"
                )
            if not torch.isfinite(noise_chol).all() or not (noise_chol.diagonal() > 0).all():
                raise ValueError("noise_chol must be finite with a positive diagonal (lower-triangular Cholesky factor)")
            noise_chol = torch.tril(noise_chol)
        self.noise_chol = noise_chol

    # ------------------------------------------------------------------ to be defined by subclasses
    def log_mean_scale(self, t) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def sigma(self, t) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def drift_coef(self, t) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def diffusion(self, t) -> Tensor:  # pragma: no cover - abstract
        """g(t)."""
        raise NotImplementedError

    def t_from_sigma_tilde(self, sigma_tilde) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ shared
    def mean_scale(self, t) -> Tensor:
        return torch.exp(self.log_mean_scale(t))

    def marginal(self, t) -> tuple[Tensor, Tensor]:
        """(s(t), σ(t)) with x_t = s(t) x_0 + σ(t) C ε."""
        return self.mean_scale(t), self.sigma(t)

    def sigma_tilde(self, t) -> Tensor:
        """Scaled noise level σ̃(t) = σ(t)/s(t) (Karras et al. 2022, eq. (4))."""
        return self.sigma(t) / self.mean_scale(t)

    def drift(self, x: Tensor, t) -> Tensor:
        """f(t) x."""
        return expand_like(self.drift_coef(_t(t, x)), x) * x

    # -- the noise covariance Σ = C Cᵀ acting on the flattened event
    def _flat(self, v: Tensor, fn) -> Tensor:
        if self.noise_chol is None:
            return v
        C = self.noise_chol.to(dtype=v.dtype, device=v.device)
        flat = v.reshape(v.shape[0], -1) if v.dim() > 1 else v.reshape(1, -1)
        if flat.shape[-1] != C.shape[0]:
            raise ValueError(f"x has {flat.shape[-1]} entries per sample but noise_chol is {tuple(C.shape)}")
        return fn(flat, C).reshape(v.shape)

    def apply_chol(self, eps: Tensor) -> Tensor:
        """C ε (rows of ``eps`` are samples)."""
        return self._flat(eps, lambda v, C: v @ C.T)

    def apply_cov(self, v: Tensor) -> Tensor:
        """Σ v = C Cᵀ v."""
        return self._flat(v, lambda v, C: (v @ C) @ C.T)

    def solve_chol(self, v: Tensor) -> Tensor:
        """C⁻¹ v."""
        return self._flat(v, lambda v, C: torch.linalg.solve_triangular(C, v.T, upper=False).T)

    def solve_chol_T(self, v: Tensor) -> Tensor:
        """C⁻ᵀ v."""
        return self._flat(v, lambda v, C: torch.linalg.solve_triangular(C.T, v.T, upper=True).T)

    def log_det_chol(self, like: Tensor) -> Tensor:
        if self.noise_chol is None:
            return like.new_zeros(())
        return self.noise_chol.to(dtype=like.dtype, device=like.device).diagonal().log().sum()

    def prior_std(self) -> float:
        """Standard deviation (before C) of the prior N(0, prior_std² Σ) at t = T."""
        return float(self.sigma(torch.tensor(self.T, dtype=torch.float64)))

    def prior_sample(self, shape, generator: torch.Generator | None = None, *, dtype=torch.float32,
                     device=None) -> Tensor:
        """x_T ~ N(0, prior_std² Σ) of shape ``shape`` = (B, *event)."""
        shape = _check_shape(shape)
        eps = torch.randn(shape, generator=generator, dtype=dtype,
                          device=generator.device if generator is not None else device)
        if device is not None:
            eps = eps.to(device)
        return self.prior_std() * self.apply_chol(eps)

    def prior_log_prob(self, x: Tensor) -> Tensor:
        """log N(x; 0, prior_std² Σ), summed over the event, shape (B,)."""
        if not isinstance(x, Tensor) or x.dim() < 2:
            raise ValueError(f"x must be a batched tensor (B, *event), got {getattr(x, 'shape', type(x).__name__)}")
        sd = self.prior_std()
        z = self.solve_chol(x) / sd
        d = z[0].numel()
        z = z.reshape(z.shape[0], -1)
        return -0.5 * z.square().sum(-1) - d * (math.log(sd) + 0.5 * math.log(2 * math.pi)) - self.log_det_chol(x)

    def sample_marginal(self, x0: Tensor, t, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(x_t, ε) with x_t = s(t) x0 + σ(t) C ε."""
        t = _t(t, x0)
        s, sig = self.marginal(t)
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype,
                          device=generator.device if generator is not None else x0.device).to(x0.device)
        return expand_like(s, x0) * x0 + expand_like(sig, x0) * self.apply_chol(eps), eps

    def transition(self, t_from, t_to) -> tuple[Tensor, Tensor]:
        """Exact forward transition from t_from < t_to: x_to = a x_from + G C ε with
        a = s(t_to)/s(t_from), G² = σ(t_to)² − a² σ(t_from)²."""
        a = torch.exp(self.log_mean_scale(t_to) - self.log_mean_scale(t_from))
        G2 = self.sigma(t_to) ** 2 - (a * self.sigma(t_from)) ** 2
        return a, G2.clamp_min(0).sqrt()

    def __repr__(self) -> str:
        extra = ", noise_chol" if self.noise_chol is not None else ""
        return f"{type(self).__name__}(T={self.T}, t_min={self.t_min}{extra})"


def _check_shape(shape) -> tuple:
    if isinstance(shape, int) or not all(isinstance(s, int) and s >= 1 for s in shape) or len(shape) < 2:
        raise ValueError(f"shape must be a tuple (n, *event) of positive integers, got {shape!r}")
    return tuple(shape)


class VPSDE(SDE):
    """Variance-preserving SDE (Song et al. 2021, eq. (11); the continuous DDPM):

        dx = −½ β(t) x dt + √β(t) C dW,   β(t) = β_min + t (β_max − β_min),  T = 1,

    s(t) = exp(−½ B(t)), σ(t)² = 1 − exp(−B(t)), B(t) = ∫_0^t β = β_min t + ½ (β_max − β_min) t².
    Defaults β_min = 0.1, β_max = 20, t_min = 1e-3 (Song et al.'s sampling ε). Prior N(0, Σ).
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, T: float = 1.0, t_min: float = 1e-3,
                 noise_chol: Tensor | None = None):
        super().__init__(noise_chol)
        self.beta_min = _positive("beta_min", beta_min)
        self.beta_max = _positive("beta_max", beta_max)
        if self.beta_max < self.beta_min:
            raise ValueError(f"beta_max must be >= beta_min, got {beta_max} < {beta_min}")
        self.T = _positive("T", T)
        self.t_min = _positive("t_min", t_min)
        if self.t_min >= self.T:
            raise ValueError(f"t_min must be < T, got t_min={t_min}, T={T}")

    def beta(self, t) -> Tensor:
        t = _t(t)
        return self.beta_min + t * (self.beta_max - self.beta_min) / self.T

    def beta_integral(self, t) -> Tensor:
        t = _t(t)
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t * t / self.T

    def log_mean_scale(self, t) -> Tensor:
        return -0.5 * self.beta_integral(t)

    def sigma(self, t) -> Tensor:
        return (-torch.expm1(-self.beta_integral(t))).sqrt()

    def drift_coef(self, t) -> Tensor:
        return -0.5 * self.beta(t)

    def diffusion(self, t) -> Tensor:
        return self.beta(t).sqrt()

    def _t_from_integral(self, B: Tensor) -> Tensor:
        # solve β_min t + ½ (β_max − β_min) t² / T = B for t >= 0
        a = 0.5 * (self.beta_max - self.beta_min) / self.T
        if a == 0:
            return B / self.beta_min
        return (-self.beta_min + torch.sqrt(self.beta_min ** 2 + 4 * a * B)) / (2 * a)

    def t_from_sigma_tilde(self, sigma_tilde) -> Tensor:
        """σ̃² = e^{B(t)} − 1  ⇒  B = log(1 + σ̃²)."""
        st = _t(sigma_tilde)
        return self._t_from_integral(torch.log1p(st * st))


class SubVPSDE(VPSDE):
    """sub-VP SDE (Song et al. 2021, eq. (12)):

        dx = −½ β(t) x dt + √(β(t) (1 − e^{−2B(t)})) C dW,

    s(t) = exp(−½ B(t)) and marginal *variance* σ(t)² = (1 − e^{−B(t)})², i.e. the standard deviation
    is σ(t) = 1 − e^{−B(t)} (not its square root). Prior N(0, Σ) (σ(T)² ≈ 1).
    """

    def sigma(self, t) -> Tensor:
        return -torch.expm1(-self.beta_integral(t))

    def diffusion(self, t) -> Tensor:
        return (self.beta(t) * (-torch.expm1(-2 * self.beta_integral(t)))).sqrt()

    def t_from_sigma_tilde(self, sigma_tilde) -> Tensor:
        """σ̃ = (1 − α²)/α with α = e^{−B/2}: α = (−σ̃ + √(σ̃² + 4))/2."""
        st = _t(sigma_tilde)
        alpha = 0.5 * (torch.sqrt(st * st + 4) - st)
        return self._t_from_integral(-2 * torch.log(alpha))


class VESDE(SDE):
    """Variance-exploding SDE (Song et al. 2021, eq. (9); the continuous NCSN of Song & Ermon 2019):

        dx = σ(t) √(2 log(σ_max/σ_min)) C dW,    σ(t) = σ_min (σ_max/σ_min)^t,  T = 1,

    s(t) = 1 and marginal std σ(t) (so dσ²/dt = g²). As in Song et al., σ(0) = σ_min ≠ 0: x_0 denotes the
    data smoothed by N(0, σ_min² Σ). Prior N(0, σ_max² Σ). Choose σ_max with :func:`ve_sigma_max`
    (Song & Ermon 2020, technique 1). Default t_min = 1e-5 (Song et al.'s VE ε).
    """

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, T: float = 1.0, t_min: float = 1e-5,
                 noise_chol: Tensor | None = None):
        super().__init__(noise_chol)
        self.sigma_min = _positive("sigma_min", sigma_min)
        self.sigma_max = _positive("sigma_max", sigma_max)
        if self.sigma_max <= self.sigma_min:
            raise ValueError(f"sigma_max must be > sigma_min, got sigma_max={sigma_max}, sigma_min={sigma_min}")
        self.T = _positive("T", T)
        self.t_min = _positive("t_min", t_min)
        if self.t_min >= self.T:
            raise ValueError(f"t_min must be < T, got t_min={t_min}, T={T}")
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)

    def log_mean_scale(self, t) -> Tensor:
        return torch.zeros_like(_t(t))

    def sigma(self, t) -> Tensor:
        return self.sigma_min * torch.exp(_t(t) / self.T * self._log_ratio)

    def drift_coef(self, t) -> Tensor:
        return torch.zeros_like(_t(t))

    def diffusion(self, t) -> Tensor:
        return self.sigma(t) * math.sqrt(2 * self._log_ratio / self.T)

    def t_from_sigma_tilde(self, sigma_tilde) -> Tensor:
        return self.T * torch.log(_t(sigma_tilde) / self.sigma_min) / self._log_ratio


class EDMSDE(SDE):
    """The EDM schedule (Karras et al. 2022, Table 1): σ(t) = t, s(t) = 1, i.e.

        dx = √(2t) C dW,   t ∈ [σ_min, σ_max] = [0.002, 80],

    so T = σ_max, t_min = σ_min and σ̃ = t. As for VE, x_0 at t = σ_min is the data smoothed by
    N(0, σ_min² Σ). Prior N(0, σ_max² Σ).
    """

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0, noise_chol: Tensor | None = None):
        super().__init__(noise_chol)
        self.sigma_min = _positive("sigma_min", sigma_min)
        self.sigma_max = _positive("sigma_max", sigma_max)
        if self.sigma_max <= self.sigma_min:
            raise ValueError(f"sigma_max must be > sigma_min, got sigma_max={sigma_max}, sigma_min={sigma_min}")
        self.T = self.sigma_max
        self.t_min = self.sigma_min

    def log_mean_scale(self, t) -> Tensor:
        return torch.zeros_like(_t(t))

    def sigma(self, t) -> Tensor:
        return _t(t).clone()

    def drift_coef(self, t) -> Tensor:
        return torch.zeros_like(_t(t))

    def diffusion(self, t) -> Tensor:
        return (2 * _t(t)).sqrt()

    def t_from_sigma_tilde(self, sigma_tilde) -> Tensor:
        return _t(sigma_tilde).clone()


def flat_data(data) -> Tensor:
    """``data`` (n, *event), n >= 2, finite, as a float64 (n, d) matrix; a clear error otherwise."""
    x = torch.as_tensor(data)
    if x.dim() < 2 or x.shape[0] < 2:
        raise ValueError(f"data must have shape (n, *event) with n >= 2, got {tuple(x.shape)}")
    x = x.reshape(x.shape[0], -1).to(torch.float64)
    if not torch.isfinite(x).all():
        raise ValueError("data must be finite (found NaN or inf)")
    return x


def ve_sigma_max(data, chunk_size: int = 1024) -> float:
    """Largest pairwise Euclidean distance between the rows of ``data`` (n, *event) — the σ_max of a VE
    SDE recommended by Song & Ermon 2020, "Improved techniques for training score-based generative
    models", technique 1. Computed in row blocks of ``chunk_size`` (memory O(chunk_size · n)), so 10⁴
    points of any dimension fit; O(n²d) time."""
    x = flat_data(data)
    best = 0.0
    for i in range(0, x.shape[0], chunk_size):
        d = torch.cdist(x[i:i + chunk_size], x)
        best = max(best, float(d.max()))
    return best


_SDES = {"vp": VPSDE, "subvp": SubVPSDE, "sub-vp": SubVPSDE, "ve": VESDE, "edm": EDMSDE}


def get_sde(name: str, **kwargs) -> SDE:
    """An SDE by name: ``vp``, ``subvp`` (``sub-vp``), ``ve``, ``edm``."""
    try:
        return _SDES[name.lower()](**kwargs)
    except KeyError:
        raise ValueError(f"sde must be one of {sorted(set(_SDES))}, got {name!r}") from None
