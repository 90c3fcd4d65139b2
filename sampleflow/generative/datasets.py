"""Data sets for score-based generative modelling: 2-D toy sets, Gaussian mixtures with an analytic score
at every noise level, the 8×8 digits, and a loader for user arrays / files.

The 2-D generators follow scikit-learn's ``make_moons`` / ``make_circles`` / ``make_swiss_roll``
(Pedregosa et al. 2011) but are written in torch (scikit-learn is not a dependency) and draw from an
explicit ``torch.Generator``; outputs are shuffled, shape (n, 2).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .sdes import SDE, _t

__all__ = ["make_moons", "make_circles", "make_swiss_roll", "GaussianMixture", "load_digits", "load_data",
           "TOY_DATASETS", "toy_dataset"]


def _n(n) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    return n


def _finish(x: Tensor, noise: float, generator, dtype) -> Tensor:
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    if noise > 0:
        x = x + noise * torch.randn(x.shape, generator=generator, dtype=torch.float64)
    perm = torch.randperm(x.shape[0], generator=generator)
    return x[perm].to(dtype)


def make_moons(n: int, noise: float = 0.05, generator: torch.Generator | None = None, dtype=torch.float32) -> Tensor:
    """Two interleaving half circles (sklearn ``make_moons``): outer (cos θ, sin θ), inner
    (1 − cos θ, 1/2 − sin θ), θ ∈ [0, π] evenly, plus N(0, noise²) noise."""
    n = _n(n)
    n_out = n // 2
    n_in = n - n_out
    a = torch.linspace(0, math.pi, n_out, dtype=torch.float64)
    b = torch.linspace(0, math.pi, n_in, dtype=torch.float64)
    x = torch.cat([torch.stack([a.cos(), a.sin()], -1), torch.stack([1 - b.cos(), 0.5 - b.sin()], -1)])
    return _finish(x, noise, generator, dtype)


def make_circles(n: int, noise: float = 0.05, factor: float = 0.5, generator: torch.Generator | None = None,
                 dtype=torch.float32) -> Tensor:
    """Two concentric circles of radii 1 and ``factor`` (sklearn ``make_circles``), angles evenly spaced
    on [0, 2π), plus N(0, noise²) noise."""
    n = _n(n)
    if not 0 < factor < 1:
        raise ValueError(f"factor must be in (0, 1), got {factor}")
    n_out = n // 2
    n_in = n - n_out
    a = torch.arange(n_out, dtype=torch.float64) * (2 * math.pi / n_out)
    b = torch.arange(n_in, dtype=torch.float64) * (2 * math.pi / n_in)
    x = torch.cat([torch.stack([a.cos(), a.sin()], -1), factor * torch.stack([b.cos(), b.sin()], -1)])
    return _finish(x, noise, generator, dtype)


def make_swiss_roll(n: int, noise: float = 0.5, generator: torch.Generator | None = None, scale: float = 0.2,
                    dtype=torch.float32) -> Tensor:
    """2-D swiss roll: the (x, z) coordinates of sklearn's ``make_swiss_roll``, (u cos u, u sin u),
    u = 1.5π (1 + 2 U), U ~ Uniform(0, 1), plus N(0, noise²) noise, times ``scale`` (0.2 gives a
    spread of about ±3)."""
    n = _n(n)
    u = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=generator, dtype=torch.float64))
    x = torch.stack([u * u.cos(), u * u.sin()], -1)
    return _finish(x, noise, generator, dtype) * scale


TOY_DATASETS = {"moons": make_moons, "circles": make_circles, "swiss_roll": make_swiss_roll}


def toy_dataset(name: str, n: int, generator: torch.Generator | None = None, **kwargs) -> Tensor:
    """A 2-D toy data set by name: ``moons``, ``circles``, ``swiss_roll``."""
    if name not in TOY_DATASETS:
        raise ValueError(f"name must be one of {sorted(TOY_DATASETS)}, got {name!r}")
    return TOY_DATASETS[name](n, generator=generator, **kwargs)


# ---------------------------------------------------------------------------------------------- mixtures
class GaussianMixture:
    """p_0 = Σ_k w_k N(m_k, S_k) with analytic log-density and score at every noise level of an SDE.

    Under x_t = s x_0 + σ C ε the noised marginal is again a mixture,
    p_t = Σ_k w_k N(s m_k, s² S_k + σ² Σ), Σ = C Cᵀ, so log p_t and ∇log p_t are exact (used as the
    ground-truth score in tests). ``weights`` (K,), ``means`` (K, d), ``covs`` (K, d, d) or (K,) isotropic
    variances; float64 internally, results in x's dtype.
    """

    def __init__(self, weights, means, covs):
        means = torch.as_tensor(means, dtype=torch.float64)
        if means.dim() != 2:
            raise ValueError(f"means must have shape (K, d), got {tuple(means.shape)}")
        K, d = means.shape
        weights = torch.as_tensor(weights, dtype=torch.float64)
        if weights.shape != (K,) or not (weights > 0).all():
            raise ValueError(f"weights must be ({K},) and positive, got {tuple(weights.shape)}")
        covs = torch.as_tensor(covs, dtype=torch.float64)
        if covs.shape == (K,):
            covs = covs[:, None, None] * torch.eye(d, dtype=torch.float64)
        if covs.shape != (K, d, d):
            raise ValueError(f"covs must have shape ({K}, {d}, {d}) or ({K},), got {tuple(covs.shape)}")
        torch.linalg.cholesky(covs)  # raises if not positive definite
        self.weights = weights / weights.sum()
        self.means, self.covs = means, covs
        self.dim = d

    def sample(self, n: int, generator: torch.Generator | None = None, dtype=torch.float32) -> Tensor:
        n = _n(n)
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        L = torch.linalg.cholesky(self.covs)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return (self.means[k] + (L[k] @ z.unsqueeze(-1)).squeeze(-1)).to(dtype)

    def _noised(self, x: Tensor, sde: SDE | None, t):
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (B, {self.dim}), got {getattr(x, 'shape', type(x).__name__)}")
        if sde is None:
            return self.means.to(x.device), self.covs.to(x.device), False
        t = _t(t, x).to(torch.float64)
        s, sig = sde.marginal(t)
        Sig = torch.eye(self.dim, dtype=torch.float64, device=x.device)
        if sde.noise_chol is not None:
            C = sde.noise_chol.to(dtype=torch.float64, device=x.device)
            Sig = C @ C.T
        m, S = self.means.to(x.device), self.covs.to(x.device)
        if t.dim() == 0:
            return s * m, s * s * S + sig * sig * Sig, False
        # per-sample times: (B, K, d) and (B, K, d, d)
        mt = s[:, None, None] * m
        St = (s * s)[:, None, None, None] * S + (sig * sig)[:, None, None, None] * Sig
        return mt, St, True

    def _comp(self, x: Tensor, sde, t):
        m, S, per = self._noised(x, sde, t)
        xd = x.to(torch.float64)
        L = torch.linalg.cholesky(S)
        eye = torch.eye(self.dim, dtype=torch.float64, device=x.device)
        Linv = torch.linalg.solve_triangular(L, eye.expand(L.shape), upper=False)  # (…, K, d, d), tiny
        diff = xd.unsqueeze(-2) - m  # (B, K, d)
        z = torch.einsum("...kij,...kj->...ki", Linv, diff)  # L⁻¹ (x − m)
        logdet = L.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        logc = (self.weights.to(x.device).log() - 0.5 * z.square().sum(-1) - logdet
                - 0.5 * self.dim * math.log(2 * math.pi))  # (B, K)
        prec_diff = torch.einsum("...kji,...kj->...ki", Linv, z)  # S⁻¹ (x − m) = L⁻ᵀ L⁻¹ (x − m)
        return logc, prec_diff

    def log_prob(self, x: Tensor, sde: SDE | None = None, t=None) -> Tensor:
        """log p_t(x) (log p_0 when ``sde`` is None), shape (B,)."""
        logc, _ = self._comp(x, sde, t)
        return torch.logsumexp(logc, -1).to(x.dtype)

    def score(self, x: Tensor, sde: SDE | None = None, t=None) -> Tensor:
        """∇_x log p_t(x) = −Σ_k r_k(x) S_k(t)⁻¹ (x − m_k(t)), r = posterior responsibilities; (B, d)."""
        logc, prec_diff = self._comp(x, sde, t)
        r = torch.softmax(logc, -1)
        return -(r.unsqueeze(-1) * prec_diff).sum(-2).to(x.dtype)

    def score_fn(self, sde: SDE):
        """``net(x, t) -> ∇log p_t(x)``: plug into ``ScoreModel(..., parametrisation="score")``."""
        return lambda x, t: self.score(x, sde, t)

    @classmethod
    def grid(cls, n_side: int = 3, spacing: float = 2.0, var: float = 0.1):
        """n_side² equal-weight isotropic components on a square grid centred at 0."""
        c = (torch.arange(n_side, dtype=torch.float64) - (n_side - 1) / 2) * spacing
        m = torch.cartesian_prod(c, c)
        return cls(torch.ones(m.shape[0]), m, torch.full((m.shape[0],), var, dtype=torch.float64))


# ---------------------------------------------------------------------------------------------- real data
def load_digits(dtype=torch.float32) -> Tensor:
    """scikit-learn's bundled 8×8 digits (UCI optical recognition of handwritten digits, 1797 images,
    values 0..16) as (1797, 64), scaled to [−1, 1] by x/8 − 1. Needs scikit-learn."""
    try:
        from sklearn.datasets import load_digits as _ld
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("load_digits needs scikit-learn (pip install scikit-learn)") from e
    x = torch.as_tensor(_ld().data, dtype=torch.float64)
    return (x / 8.0 - 1.0).to(dtype)


def _check_array(a: np.ndarray, name: str, dim) -> np.ndarray:
    if a.dtype == object or not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
    if a.ndim == 1:
        raise ValueError(f"{name} must have shape (n, d) (or (n, *event)), got a 1-D array of shape {a.shape}; "
                         "reshape(-1, 1) for 1-D data")
    if a.ndim < 2 or a.shape[0] < 1:
        raise ValueError(f"{name} must have shape (n, d) with n >= 1, got {a.shape}")
    if dim is not None and int(np.prod(a.shape[1:])) != dim:
        raise ValueError(f"{name} must have {dim} features per sample, got shape {a.shape}")
    bad = ~np.isfinite(a)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])[:5].tolist()
        raise ValueError(f"{name} contains NaN or inf ({int(bad.sum())} entries; first rows {rows})")
    return a


def load_data(source, *, key: str | None = None, dim: int | None = None, dtype=torch.float32) -> Tensor:
    """Training data as a tensor (n, *event) from an array / tensor or a ``.npy`` / ``.npz`` / ``.csv``
    file. ``.npz``: the array ``key`` (or the only array). ``.csv``: comma-separated numbers, an optional
    header line of names is skipped. ``dim``: required number of features per sample.
    Raises ValueError on wrong shape, NaN/inf or non-numeric content; FileNotFoundError on a missing file."""
    name = "data"
    if isinstance(source, Tensor):
        a = source.detach().cpu().numpy()
    elif isinstance(source, np.ndarray):
        a = source
    elif isinstance(source, (str, Path)):
        p = Path(source)
        name = f"data file {p}"
        if not p.is_file():
            raise FileNotFoundError(f"data file not found: {p}")
        suffix = p.suffix.lower()
        if suffix == ".npy":
            a = np.load(p, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                keys = list(z.keys())
                if key is None:
                    if len(keys) != 1:
                        raise ValueError(f"{name} holds arrays {keys}; pass key= to choose one")
                    key = keys[0]
                if key not in keys:
                    raise ValueError(f"key {key!r} not in {name} (arrays: {keys})")
                a = z[key]
        elif suffix == ".csv":
            with open(p) as fh:
                first = fh.readline()
            skip = 0
            try:
                [float(v) for v in first.strip().split(",") if v.strip()]
            except ValueError:
                skip = 1
            try:
                a = np.loadtxt(p, delimiter=",", skiprows=skip, ndmin=2)
            except ValueError as e:
                raise ValueError(f"{name}: could not parse numbers ({e})") from None
        else:
            raise ValueError(f"data file must end in .npy, .npz or .csv, got {p.name!r}")
    else:
        try:
            a = np.asarray(source)
        except Exception:  # noqa: BLE001
            raise ValueError(f"data must be an array, a tensor or a file path, got {type(source).__name__}") from None
    a = _check_array(np.asarray(a), name, dim)
    return torch.as_tensor(np.ascontiguousarray(a)).to(dtype)
