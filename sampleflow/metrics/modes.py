"""Mode coverage for mixture targets: the entropic mode coverage (EMC) of Blessing et al. 2024.

Definition (Blessing, Jia, Esslinger, Vargas & Neumann, "Beyond ELBOs: a large-scale evaluation of variational
methods for sampling", ICML 2024, Sec. 4 and code ``targets/gmm40.py`` / ``student_t_mixture.py``,
``entropy()``): every sample is assigned to the component of largest *component* log-density,

    k_i = argmax_k log p_k(x_i)          (p_k the k-th component density, without the mixture weight),

the assignments are histogrammed, p_k = #{i : k_i = k} / n, and

    EMC = − Σ_k p_k log p_k / log K  ∈ [0, 1]

(0: every sample in one mode; 1: the samples spread evenly over all K modes). Targets expose
``component_log_probs(x) -> (..., K)`` (the ``sampleflow.targets.mixtures`` convention: without the weights,
as in that code) and ``n_components``. For equal-weight mixtures (every benchmark mixture of that paper)
the argmax equals the argmax of the responsibilities.
"""
from __future__ import annotations

import math

import torch

from .distances import _points, _weights

__all__ = ["entropic_mode_coverage", "mode_histogram"]


def _component_log_probs(target, x: torch.Tensor) -> torch.Tensor:
    if not hasattr(target, "component_log_probs"):
        raise ValueError(f"target {getattr(target, 'name', target)!r} is not a mixture: it has no "
                         "component_log_probs(x), so mode coverage is not defined")
    with torch.no_grad():
        lp = target.component_log_probs(x)
    lp = torch.as_tensor(lp).to(torch.float64)
    K = int(getattr(target, "n_components", lp.shape[-1]))
    if lp.shape != (x.shape[0], K):
        raise ValueError(f"target.component_log_probs returned shape {tuple(lp.shape)}, expected ({x.shape[0]}, {K})")
    return lp


def mode_histogram(x, target, *, weights=None, assignment: str = "hard") -> torch.Tensor:
    """(K,) fraction of the samples per mixture component (float64, sums to 1).

    ``assignment="hard"``: p_k = Σ_i w_i 1[k_i = k] with k_i = argmax_k component_log_probs (the published
    EMC); ``"soft"``: p_k = Σ_i w_i r_ik with the responsibilities r = ``target.responsibilities(x)`` (with the
    mixture weights) where the target has them, else softmax of the component log-densities. ``weights``:
    optional non-negative sample weights (e.g. self-normalised importance weights); uniform by default."""
    x = _points(x, "x")
    lp = _component_log_probs(target, x)
    n, K = lp.shape
    w = _weights(weights, n, "weights", x).to(lp.device)
    if assignment == "hard":
        # rows where every component is −inf (points at overflow distance) fall to component 0 deterministically
        idx = torch.nan_to_num(lp, nan=-math.inf).argmax(-1)
        p = torch.zeros(K, dtype=torch.float64, device=lp.device).index_add_(0, idx, w)
    elif assignment == "soft":
        if hasattr(target, "responsibilities"):
            with torch.no_grad():
                r = torch.as_tensor(target.responsibilities(x)).to(torch.float64)
        else:
            r = torch.softmax(lp.clamp_min(torch.finfo(lp.dtype).min), -1)
        p = w @ r
    else:
        raise ValueError(f"assignment must be 'hard' or 'soft', got {assignment!r}")
    return p / p.sum()


def entropic_mode_coverage(x, target, *, weights=None, assignment: str = "hard") -> float:
    """Entropic mode coverage EMC = −Σ_k p_k log p_k / log K ∈ [0, 1] (Blessing et al. 2024; see the module
    docstring), with p = :func:`mode_histogram` (hard argmax assignment by default, as published; ``"soft"``
    averages the responsibilities instead). 0·log 0 = 0. Needs a mixture target with K ≥ 2 components
    (``component_log_probs``, ``n_components``); raises ValueError otherwise."""
    p = mode_histogram(x, target, weights=weights, assignment=assignment)
    K = p.numel()
    if K < 2:
        raise ValueError(f"entropic mode coverage needs at least 2 mixture components, target has {K}")
    h = -float(torch.special.xlogy(p, p).sum())
    return h / math.log(K) + 0.0  # + 0.0: no '-0.0'
