"""``evaluate(samples, target)``: every metric that applies, as a flat dict of floats.

Keys (short and stable: they become report columns). Present when they apply, absent otherwise (never NaN):

always            n, dim, nfe, wall_time
log weights       log_Z_is (log (1/n) Σ w_i), elbo (mean log w), ess (normalised, (Σw)²/(nΣw²))
 + known log Z    log_Z_error (|log_Z_is − log Z|), log_Z_delta (log_Z_is − log Z, signed),
                  elbo_gap (log Z − elbo, ≥ 0 in expectation)
reference set     sinkhorn, mmd, energy, sliced_w2, w2, mean_error, std_error,
                  n_eval, n_ref (the point counts the distances used; with any of the five distances)
 + log_weight_fn  eubo (mean of log_weight_fn over the reference points), eubo_gap (eubo − log Z, with log Z)
mixture target    emc

Reference set, in this order: ``reference`` (an (m, d) array/tensor or a Samples object, taken as
unweighted draws from the target), else
``target.reference_samples()`` (a data file), else ``n_reference`` exact draws ``target.sample`` (default
min(n, max_points)); none of them → the reference-based keys are absent.

Protocol of the sample-based distances (``max_points`` = 2000, the Beyond-ELBOs protocol size):
* the model side: samples with log weights are first resampled by their self-normalised weights
  (multinomial, min(n, max_points) draws); unweighted samples with n > max_points are subsampled without
  replacement; the reference side is subsampled without replacement to at most max_points. ``n_eval`` and
  ``n_ref`` record the sizes used (a distance depends on them: compare only equal sizes).
* sinkhorn: :func:`~sampleflow.metrics.distances.sinkhorn` defaults = what the Beyond-ELBOs/SCLD code
  computes (debiased, squared Euclidean, ε = 0.05·mean squared distance between the two sets; see
  distances.py for why this, not the ε = 1e-3 the paper writes); mmd: Beyond-ELBOs median-heuristic MMD
  (:func:`~sampleflow.metrics.distances.mmd`); energy: V-statistic energy distance (squared form);
  sliced_w2: sliced W2 with 500 projections (seeded); w2: exact W2 by EMD, only when both sides have
  ≤ 2000 points.
* mean_error / std_error use *all* samples (self-normalised importance weights when there are log
  weights, no resampling) against the moments of the whole reference set.
* emc: entropic mode coverage on all samples (weighted by the self-normalised weights if any).

Randomness (reference draws, subsampling, resampling, projections) comes from ``seed``: an int (turned
into a stream *derived* from it, so that exact samples drawn with seed 0 are not compared with exact
reference draws that are the very same points) or a torch.Generator (used as is). The same seed gives the
same numbers. A metric that fails on degenerate input (e.g. all points identical) is skipped with a
RuntimeWarning; non-finite samples raise a ValueError naming ``samples.x``.
"""
from __future__ import annotations

import warnings
from typing import Iterable

import numpy as np
import torch

from ..samples import Samples
from . import logz
from .distances import energy_distance, mmd, sinkhorn, sliced_wasserstein, wasserstein2
from .modes import entropic_mode_coverage
from .moments import moment_errors, weights_from_log

__all__ = ["evaluate", "METRICS"]

# every metric name evaluate() can produce (besides the always-present n, dim, nfe, wall_time)
METRICS = ("log_Z_is", "elbo", "ess", "log_Z_error", "log_Z_delta", "elbo_gap", "eubo", "eubo_gap",
           "sinkhorn", "mmd", "energy", "sliced_w2", "w2", "mean_error", "std_error", "emc")
_W2_MAX_POINTS = 2000
_SLICED_PROJECTIONS = 500


def _as_samples(samples) -> Samples:
    if isinstance(samples, Samples):
        return samples
    if isinstance(samples, (torch.Tensor, np.ndarray, list, tuple)):
        try:
            return Samples(x=torch.as_tensor(np.asarray(samples)) if not isinstance(samples, torch.Tensor) else samples)
        except ValueError as e:
            raise ValueError(f"samples: {e}") from e
    raise TypeError(f"samples must be a sampleflow Samples object or an (n, d) array, got {type(samples).__name__}")


def _check_x(x: torch.Tensor, dim: int, name: str, target_name: str) -> None:
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (n, d), got {tuple(x.shape)}")
    if x.shape[1] != dim:
        raise ValueError(f"{name} has dimension {x.shape[1]} but target '{target_name}' has dim={dim}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    if not x.dtype.is_floating_point:
        return
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        rows = bad.any(1).nonzero().flatten()
        raise ValueError(f"{name} contains {int(bad.sum())} non-finite values (NaN or inf) in {rows.numel()} of "
                         f"{x.shape[0]} rows (first bad row {int(rows[0])}); evaluate needs finite samples")


def _derived_seed(seed) -> int:
    """A seed for evaluate's own stream, derived from ``seed`` but different from it: a sampler run with
    seed=0 and an exact reference drawn with seed=0 would otherwise be the very same points."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an integer or a torch.Generator, got {seed!r}")
    return int(np.random.SeedSequence([int(seed) % 2**63, 0x5EED_E7A1]).generate_state(1, np.uint64)[0] >> 1)


def _subsample(x: torch.Tensor, k: int, g: torch.Generator) -> torch.Tensor:
    if x.shape[0] <= k:
        return x
    idx = torch.randperm(x.shape[0], generator=g)[:k].to(x.device)
    return x[idx]


def _skip(name: str, err: Exception) -> None:
    warnings.warn(f"evaluate: metric '{name}' skipped: {err}", RuntimeWarning, stacklevel=3)


def evaluate(samples, target, *, reference=None, n_reference: int | None = None,
             seed: int | torch.Generator = 0, metrics: Iterable[str] | None = None,
             max_points: int = 2000) -> dict[str, float]:
    """Every metric that applies to ``samples`` (a Samples object or an (n, d) array) for ``target``, as a
    flat dict of floats. See the module docstring for the keys, the reference set and the protocols.

    ``metrics``: a subset of :data:`METRICS` to compute (default: all that apply; n, dim, nfe and wall_time
    are always returned). ``max_points``: points per side for the sample distances (2000 = Beyond ELBOs)."""
    s = _as_samples(samples)
    tname = getattr(target, "name", "target")
    dim = int(getattr(target, "dim", s.dim))
    _check_x(s.x, dim, "samples.x", tname)
    want = set(METRICS) if metrics is None else set(metrics)
    unknown = want - set(METRICS)
    if unknown:
        raise ValueError(f"unknown metric(s) {sorted(unknown)}; choose from {list(METRICS)}")
    if not (isinstance(max_points, int) and max_points >= 2):
        raise ValueError(f"max_points must be an integer >= 2, got {max_points!r}")
    g = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(_derived_seed(seed))

    out: dict[str, float] = {"n": float(s.n), "dim": float(s.dim), "nfe": float(s.nfe),
                             "wall_time": float(s.wall_time)}
    x = s.x.detach().to(torch.float64)
    true = getattr(target, "log_Z", None)
    true_val = None if true is None else float(getattr(true, "value", true))

    # ---------------------------------------------------------------- log weights
    w = None
    if s.log_weights is not None:
        lw = s.log_weights.detach().to(torch.float64).flatten()
        if bool(torch.isnan(lw).any()):
            raise ValueError(f"samples.log_weights contains {int(torch.isnan(lw).sum())} NaN values")
        if not bool(torch.isfinite(lw).any()):
            raise ValueError("samples.log_weights has no finite entry (every importance weight is zero)")
        w = weights_from_log(lw)
        est = logz.log_Z_importance(lw)
        el = logz.elbo(lw)
        vals = {"log_Z_is": est, "elbo": el, "ess": logz.ess(lw)}
        if true_val is not None:
            vals.update(log_Z_error=abs(est - true_val), log_Z_delta=est - true_val, elbo_gap=true_val - el)
        out.update({k: float(v) for k, v in vals.items() if k in want})

    # ---------------------------------------------------------------- reference set
    ref_keys = {"sinkhorn", "mmd", "energy", "sliced_w2", "w2", "mean_error", "std_error", "eubo", "eubo_gap"}
    ref = None
    if want & ref_keys:
        ref = _reference(reference, target, n_reference, min(s.n, max_points), g)
    if ref is not None:
        _check_x(ref, dim, "reference", tname)
        ref = ref.detach().to(torch.float64).to(x.device)
        # the model side of the sample distances
        if w is not None:
            k = min(s.n, max_points)
            idx = torch.multinomial(w.cpu(), k, replacement=True, generator=g).to(x.device)
            xs = x[idx]
        else:
            xs = _subsample(x, max_points, g)
        xr = _subsample(ref, max_points, g)
        if want & {"sinkhorn", "mmd", "energy", "sliced_w2", "w2"}:
            out["n_eval"], out["n_ref"] = float(xs.shape[0]), float(xr.shape[0])
        enough = xs.shape[0] >= 2 and xr.shape[0] >= 2
        sample_metrics = {
            "sinkhorn": lambda: sinkhorn(xs, xr),
            "mmd": lambda: mmd(xs, xr),
            "energy": lambda: energy_distance(xs, xr),
            "sliced_w2": lambda: sliced_wasserstein(xs, xr, _SLICED_PROJECTIONS, 2,
                                                    seed=int(torch.randint(0, 2**62, (1,), generator=g))),
        }
        if xs.shape[0] <= _W2_MAX_POINTS and xr.shape[0] <= _W2_MAX_POINTS:
            sample_metrics["w2"] = lambda: wasserstein2(xs, xr)
        for name, fn in sample_metrics.items():
            if name in want and enough:
                try:
                    out[name] = float(fn())
                except (ValueError, RuntimeError) as e:
                    _skip(name, e)
        if want & {"mean_error", "std_error"}:
            me = moment_errors(x, ref, weights=w)
            out.update({k: v for k, v in me.items() if k in want})
        if s.log_weight_fn is not None and want & {"eubo", "eubo_gap"}:
            try:
                with torch.no_grad():
                    lw_ref = s.log_weight_fn(xr.to(s.x.dtype))
                e = logz.eubo(lw_ref)
                if "eubo" in want:
                    out["eubo"] = float(e)
                if true_val is not None and "eubo_gap" in want:
                    out["eubo_gap"] = float(e) - true_val
            except (ValueError, RuntimeError) as err:
                _skip("eubo", err)

    # ---------------------------------------------------------------- modes
    if "emc" in want and hasattr(target, "component_log_probs") and int(getattr(target, "n_components", 0)) >= 2:
        try:
            out["emc"] = float(entropic_mode_coverage(x, target, weights=w))
        except (ValueError, RuntimeError) as e:
            _skip("emc", e)
    return out


def _reference(reference, target, n_reference, default_n: int, g: torch.Generator) -> torch.Tensor | None:
    """The reference point set (see the module docstring), or None when there is none."""
    if reference is not None:
        if isinstance(reference, Samples):
            return reference.x
        if isinstance(reference, torch.Tensor):
            return reference
        try:
            return torch.as_tensor(np.asarray(reference, dtype=np.float64))
        except (TypeError, ValueError) as e:
            raise ValueError(f"reference must be an (m, d) array, a tensor or a Samples object: {e}") from e
    if getattr(target, "has_reference_samples", False):
        try:
            return torch.as_tensor(target.reference_samples())
        except (FileNotFoundError, OSError, NotImplementedError) as e:
            warnings.warn(f"evaluate: reference samples of target '{getattr(target, 'name', '?')}' unavailable "
                          f"({e}); reference-based metrics skipped", RuntimeWarning, stacklevel=3)
            return None
    if getattr(target, "has_exact_sampler", False):
        n_ref = default_n if n_reference is None else int(n_reference)
        if n_ref < 1:
            raise ValueError(f"n_reference must be a positive integer, got {n_reference!r}")
        return target.sample(n_ref, generator=g, dtype=torch.float64)
    return None

