"""The Target protocol: an unnormalised density log π̃ on R^d.

A target is what every sampler in sampleflow consumes. It is deliberately small:

* ``log_prob(x)``  batched over any leading dimensions, returns ``x.shape[:-1]``;
* ``score(x)``     ∇ log π̃(x), analytic where cheap, autograd otherwise;
* ``log_Z``        a :class:`LogZ` (value, error, provenance) or ``None``;
* ``sample(n, generator)`` exact draws where an exact sampler exists;
* ``reference_samples()`` reference draws shipped as a data file, where one exists;
* ``box``          a (low, high) pair of ``(dim,)`` tensors for plots and collocation;
* ``name`` and ``version``.

Targets keep their parameters in float64 on the CPU and hand them out converted to the dtype and
device of the input (``self._param(name, like=x)``, cached), so the device follows the input.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

__all__ = ["LogZ", "Target", "FunctionTarget", "TargetInputError"]


class TargetInputError(ValueError):
    """Raised for points or user functions that do not fit a target (shape, dim, NaN)."""


@dataclass(frozen=True)
class LogZ:
    """A normalising constant with its provenance.

    ``value`` is log Z = log ∫ π̃; ``error`` its standard error (0.0 for a closed form or a quadrature
    accurate to float64); ``source`` says where the number comes from ("closed form",
    "1-D quadrature (scipy.integrate.quad)", "SMC, 64 runs", ...).
    """

    value: float
    error: float = 0.0
    source: str = "closed form"

    @property
    def exact(self) -> bool:
        return self.error == 0.0


class Target:
    """Base class of every target. Subclasses implement ``_log_prob`` (and optionally ``_score``,
    ``_sample``, ``_reference_samples``); the public methods validate input and handle devices."""

    name: str = "target"
    version: str = "1"

    def __init__(self, dim: int, *, name: str | None = None, version: str | None = None,
                 log_Z: LogZ | float | None = None, box: tuple | None = None):
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
            raise TargetInputError(f"dim must be a positive integer, got {dim!r}")
        self.dim = dim
        if name is not None:
            self.name = name
        if version is not None:
            self.version = version
        if isinstance(log_Z, (int, float)):
            log_Z = LogZ(float(log_Z))
        self._log_Z = log_Z
        self._params: dict[str, torch.Tensor] = {}
        self._param_cache: dict[tuple, torch.Tensor] = {}
        if box is None:
            box = (-5.0, 5.0)
        low, high = box
        self._box = (self._as_vector(low, "box low"), self._as_vector(high, "box high"))

    # ------------------------------------------------------------------ parameters and devices
    def _as_vector(self, v, what: str) -> torch.Tensor:
        t = torch.as_tensor(v, dtype=torch.float64).flatten()
        if t.numel() == 1:
            t = t.expand(self.dim).clone()
        if t.shape != (self.dim,):
            raise TargetInputError(f"{what} must be a scalar or have shape ({self.dim},), got {tuple(t.shape)}")
        return t

    def _register(self, name: str, value) -> torch.Tensor:
        """Store a parameter (float64, CPU); returns it."""
        t = torch.as_tensor(value, dtype=torch.float64).clone()
        self._params[name] = t
        self._param_cache = {k: v for k, v in self._param_cache.items() if k[0] != name}
        return t

    def _param(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """Parameter ``name`` in the dtype and on the device of ``like`` (cached)."""
        dtype = like.dtype if like.dtype.is_floating_point else torch.get_default_dtype()
        key = (name, like.device, dtype)
        t = self._param_cache.get(key)
        if t is None:
            t = self._params[name].to(device=like.device, dtype=dtype)
            self._param_cache[key] = t
        return t

    # ------------------------------------------------------------------ validation
    def _check_points(self, x, argname: str = "x") -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(x, dtype=torch.get_default_dtype())
        if x.ndim == 0 or x.shape[-1] != self.dim:
            raise TargetInputError(
                f"{argname} must have shape (..., {self.dim}) for target '{self.name}' (dim={self.dim}), "
                f"got {tuple(x.shape)}")
        if not x.dtype.is_floating_point:
            x = x.to(torch.get_default_dtype())
        return x

    # ------------------------------------------------------------------ the protocol
    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Unnormalised log-density log π̃(x), batched: shape ``x.shape[:-1]``."""
        return self._log_prob(self._check_points(x))

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """∇ₓ log π̃(x), shape ``x.shape``."""
        return self._score(self._check_points(x))

    def log_prob_and_score(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both at once (one autograd pass where the score is not analytic)."""
        x = self._check_points(x)
        if type(self)._score is not Target._score:
            return self._log_prob(x), self._score(x)
        return _autograd_log_prob_and_score(self._log_prob, x)

    @property
    def log_Z(self) -> LogZ | None:
        return self._log_Z

    @property
    def has_exact_sampler(self) -> bool:
        return type(self)._sample is not Target._sample

    @property
    def has_reference_samples(self) -> bool:
        return type(self)._reference_samples is not Target._reference_samples

    def sample(self, n: int, generator: torch.Generator | None = None, *,
               dtype: torch.dtype | None = None, device=None) -> torch.Tensor:
        """``n`` exact draws, shape ``(n, dim)``. Raises NotImplementedError when there is no exact sampler."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise TargetInputError(f"n must be a non-negative integer, got {n!r}")
        if not self.has_exact_sampler:
            raise NotImplementedError(f"target '{self.name}' has no exact sampler")
        if generator is not None and device is not None and torch.device(device) != generator.device:
            raise TargetInputError(f"generator is on {generator.device} but device={device}")
        device = generator.device if generator is not None and device is None else device
        x = self._sample(n, generator, torch.device(device or "cpu"))
        return x.to(dtype or torch.get_default_dtype())

    def reference_samples(self) -> torch.Tensor:
        """Reference draws from a data file (float64, CPU), where the target has them."""
        if not self.has_reference_samples:
            raise NotImplementedError(f"target '{self.name}' has no reference samples")
        return self._reference_samples()

    def reference_points(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor | None:
        """Points to draw samples against: ``n`` exact draws where the target has an exact sampler, else up to
        ``n`` of its reference samples (a random subset when there are more), else None."""
        if self.has_exact_sampler:
            return self.sample(n, generator=generator)
        if self.has_reference_samples:
            x = torch.as_tensor(self.reference_samples())
            if x.shape[0] > n:
                x = x[torch.randperm(x.shape[0], generator=generator)[:n]]
            return x
        return None

    @property
    def box(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(low, high), each of shape (dim,): a region holding most of the mass, for plots and collocation."""
        return self._box

    # ------------------------------------------------------------------ for subclasses
    def _log_prob(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _score(self, x: torch.Tensor) -> torch.Tensor:
        return _autograd_log_prob_and_score(self._log_prob, x)[1]

    def _sample(self, n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
        raise NotImplementedError

    def _reference_samples(self) -> torch.Tensor:
        raise NotImplementedError

    # ------------------------------------------------------------------ user targets
    @staticmethod
    def from_log_prob(fn: Callable[[torch.Tensor], torch.Tensor], dim: int, *, name: str = "user",
                      score: Callable[[torch.Tensor], torch.Tensor] | None = None,
                      log_Z: LogZ | float | None = None, box: tuple | None = None,
                      sample: Callable | None = None) -> "FunctionTarget":
        """A target from a plain batched function ``fn(x) -> log π̃(x)``; score by autograd unless given."""
        return FunctionTarget(fn, dim, name=name, score=score, log_Z=log_Z, box=box, sample=sample)

    def check_finite(self, x: torch.Tensor, argname: str = "x") -> None:
        """Raise a clear error if log π̃ is not finite at the points ``x`` (e.g. a sampler's start points)."""
        lp = self.log_prob(x)
        bad = ~torch.isfinite(lp)
        if bool(bad.any()):
            i = int(bad.flatten().nonzero()[0])
            raise TargetInputError(
                f"log_prob of target '{self.name}' is not finite at {int(bad.sum())} of {bad.numel()} points "
                f"of {argname} (first bad index {i}, value {lp.flatten()[i].item()})")

    def describe(self) -> dict:
        """A flat description for listings and reports."""
        lz = self.log_Z
        return {"name": self.name, "version": self.version, "dim": self.dim,
                "log_Z": None if lz is None else lz.value,
                "log_Z_error": None if lz is None else lz.error,
                "log_Z_source": None if lz is None else lz.source,
                "exact_sampler": self.has_exact_sampler,
                "reference_samples": self.has_reference_samples}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"


def _autograd_log_prob_and_score(log_prob: Callable, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log π̃(x) and ∇ log π̃(x) by one reverse-mode pass; works inside ``torch.no_grad``.

    Rows are independent, so the gradient of the sum is the per-row gradient. When ``x`` itself requires
    grad, the graph is kept (create_graph) so that callers can differentiate the score further."""
    with torch.enable_grad():
        if x.requires_grad:
            lp = log_prob(x)
            (g,) = torch.autograd.grad(lp.sum(), x, create_graph=True)
            return lp, g
        xg = x.detach().requires_grad_(True)
        lp = log_prob(xg)
        (g,) = torch.autograd.grad(lp.sum(), xg)
    return lp.detach(), g


class FunctionTarget(Target):
    """A user's log-density as a Target. ``fn`` must be batched: (..., dim) -> (...)."""

    def __init__(self, fn: Callable, dim: int, *, name: str = "user", score: Callable | None = None,
                 log_Z: LogZ | float | None = None, box: tuple | None = None, sample: Callable | None = None):
        if not callable(fn):
            raise TargetInputError(f"fn must be a callable log-density, got {type(fn).__name__}")
        super().__init__(dim, name=name, log_Z=log_Z, box=box)
        self._fn = fn
        self._score_fn = score
        self._sample_fn = sample

    def _log_prob(self, x):
        lp = self._fn(x)
        if not isinstance(lp, torch.Tensor):
            raise TargetInputError(f"log_prob function of target '{self.name}' must return a torch.Tensor, "
                                   f"got {type(lp).__name__}")
        if lp.shape != x.shape[:-1]:
            raise TargetInputError(
                f"log_prob function of target '{self.name}' returned shape {tuple(lp.shape)} for input of shape "
                f"{tuple(x.shape)}; expected {tuple(x.shape[:-1])} (one value per point, batched over leading dims)")
        return lp

    def _score(self, x):
        if self._score_fn is None:
            return super()._score(x)
        s = self._score_fn(x)
        if s.shape != x.shape:
            raise TargetInputError(f"score function of target '{self.name}' returned shape {tuple(s.shape)}, "
                                   f"expected {tuple(x.shape)}")
        return s

    @property
    def has_exact_sampler(self) -> bool:
        return self._sample_fn is not None

    def _sample(self, n, generator, device):
        return self._sample_fn(n, generator)


def log_normal_const(dim: int, log_det_cov: float = 0.0) -> float:
    """log of the N(0, Σ) normaliser: −½(d log 2π + log|Σ|)."""
    return -0.5 * (dim * math.log(2 * math.pi) + log_det_cov)
