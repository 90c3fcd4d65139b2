"""The Samples object every sampler returns."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .io import atomic_write

__all__ = ["Samples"]


@dataclass
class Samples:
    """Draws from a sampler, with what users of the field compare.

    x            (n, d) samples.
    log_weights  (n,) log importance weights log π̃(x) − log q(x), where the method has them
                 (unnormalised: their log-mean-exp estimates log Z).
    trajectory   optional (T, n', d) particle path (possibly subsampled).
    nfe          number of target evaluations (log-density and/or gradient) the method used.
    wall_time    seconds.
    log_weight_fn optional: x -> log w(x) for arbitrary points (lets evaluate() compute the EUBO on
                 reference samples). Not serialised.
    """

    x: torch.Tensor
    log_weights: torch.Tensor | None = None
    trajectory: torch.Tensor | None = None
    nfe: int = 0
    wall_time: float = 0.0
    sampler: str = ""
    target: str = ""
    info: dict = field(default_factory=dict)
    log_weight_fn: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, repr=False)

    def __post_init__(self):
        if not isinstance(self.x, torch.Tensor):
            self.x = torch.as_tensor(np.asarray(self.x))
        if self.x.ndim != 2:
            raise ValueError(f"Samples.x must have shape (n, d), got {tuple(self.x.shape)}")
        if self.log_weights is not None:
            if not isinstance(self.log_weights, torch.Tensor):
                self.log_weights = torch.as_tensor(np.asarray(self.log_weights))
            if self.log_weights.shape != self.x.shape[:1]:
                raise ValueError(f"Samples.log_weights must have shape ({self.x.shape[0]},), "
                                 f"got {tuple(self.log_weights.shape)}")

    @property
    def n(self) -> int:
        return self.x.shape[0]

    @property
    def dim(self) -> int:
        return self.x.shape[1]

    # ------------------------------------------------------------------ estimates
    def log_Z(self) -> float:
        """Importance-sampling estimate log((1/n) Σ w_i); NaN without log weights."""
        from .metrics.logz import log_Z_importance
        return math.nan if self.log_weights is None else log_Z_importance(self.log_weights)

    def elbo(self) -> float:
        """Mean log weight (a lower bound on log Z for samples from the proposal)."""
        from .metrics.logz import elbo
        return math.nan if self.log_weights is None else elbo(self.log_weights)

    def ess(self) -> float:
        """Normalised effective sample size (Σw)²/(n Σw²) ∈ (0, 1]; 1.0 for unweighted samples."""
        from .metrics.logz import ess
        return 1.0 if self.log_weights is None else ess(self.log_weights)

    def resample(self, n: int | None = None, generator: torch.Generator | None = None) -> "Samples":
        """Multinomial resampling by the weights → equally weighted Samples."""
        if self.log_weights is None:
            return self
        n = self.n if n is None else n
        p = torch.softmax(self.log_weights.double(), 0)
        idx = torch.multinomial(p.cpu(), n, replacement=True, generator=generator).to(self.x.device)
        return Samples(self.x[idx], None, None, self.nfe, self.wall_time, self.sampler, self.target,
                       dict(self.info, resampled_from=self.n))

    # ------------------------------------------------------------------ export
    def to_npz(self, path: str | Path) -> Path:
        """Write x, log_weights (if any), nfe, wall_time and metadata to ``path`` atomically."""
        path = Path(path)
        arrays = {"x": self.x.detach().cpu().numpy(), "nfe": np.asarray(self.nfe),
                  "wall_time": np.asarray(self.wall_time),
                  "meta": np.asarray(json.dumps({"sampler": self.sampler, "target": self.target,
                                                 "info": _jsonable(self.info)}))}
        if self.log_weights is not None:
            arrays["log_weights"] = self.log_weights.detach().cpu().numpy()
        if self.trajectory is not None:
            arrays["trajectory"] = self.trajectory.detach().cpu().numpy()

        def write(f):
            np.savez(f, **arrays)
        atomic_write(path, write, binary=True)
        return path

    @classmethod
    def from_npz(cls, path: str | Path) -> "Samples":
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"samples file not found: {path}")
        with np.load(path, allow_pickle=False) as z:
            if "x" not in z:
                raise ValueError(f"{path} holds no array 'x' (found {sorted(z.files)})")
            meta = json.loads(str(z["meta"])) if "meta" in z else {}
            return cls(x=torch.from_numpy(np.array(z["x"])),
                       log_weights=torch.from_numpy(np.array(z["log_weights"])) if "log_weights" in z else None,
                       trajectory=torch.from_numpy(np.array(z["trajectory"])) if "trajectory" in z else None,
                       nfe=int(z["nfe"]) if "nfe" in z else 0,
                       wall_time=float(z["wall_time"]) if "wall_time" in z else 0.0,
                       sampler=meta.get("sampler", ""), target=meta.get("target", ""),
                       info=meta.get("info", {}))

    def to_arviz(self, n_chains: int = 1):
        """ArviZ ``InferenceData``: posterior variable ``x`` with dims (chain, draw, x_dim); log weights,
        if any, under ``sample_stats.log_weight``. ``n_chains`` splits the draws into chains (rows are
        taken chain-major, as samplers running parallel chains store them)."""
        try:
            import arviz as az
        except ImportError as e:  # pragma: no cover - arviz is a dependency, but keep the message clear
            raise ImportError("to_arviz needs the 'arviz' package: pip install arviz") from e
        if self.n % n_chains:
            raise ValueError(f"n_chains={n_chains} must divide the number of samples {self.n}")
        x = self.x.detach().cpu().numpy().reshape(n_chains, self.n // n_chains, self.dim)
        stats = {}
        if self.log_weights is not None:
            stats["log_weight"] = self.log_weights.detach().cpu().numpy().reshape(n_chains, -1)
        return az.from_dict(posterior={"x": x}, sample_stats=stats or None,
                            dims={"x": ["x_dim"]}, coords={"x_dim": np.arange(self.dim)},
                            attrs={"sampler": self.sampler, "target": self.target, "nfe": self.nfe,
                                   "wall_time": self.wall_time})

    def __repr__(self) -> str:
        w = "" if self.log_weights is None else f", log_Z={self.log_Z():.4g}, ess={self.ess():.3g}"
        return (f"Samples(n={self.n}, dim={self.dim}, sampler={self.sampler!r}, target={self.target!r}, "
                f"nfe={self.nfe}, wall_time={self.wall_time:.3g}s{w})")


def _jsonable(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, torch.Tensor):
            v = v.tolist()
        elif isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, np.generic):
            v = v.item()
        elif isinstance(v, dict):
            v = _jsonable(v)
        try:
            json.dumps(v)
        except TypeError:
            v = repr(v)
        out[k] = v
    return out
