"""Distances between two sample sets: Sinkhorn divergence, exact W2, MMD, energy distance, sliced W.

Every function takes two point sets ``x`` (n, d) and ``y`` (m, d) as torch tensors or NumPy arrays (any
float dtype; computed in float64 on the CPU or the device of ``x``) and returns a Python float. Each
docstring states the exact definition, the estimator and the source, so that a number can be put beside a
published one only when the protocol matches.

Protocols (see ``../shared/PUBLISHED.md``):

* **Sinkhorn, Beyond-ELBOs protocol** (Blessing et al., "Beyond ELBOs", ICML 2024, code
  ``DenisBless/variational_sampling_methods``, ``algorithms/common/ipm_eval/optimal_transport.py``; reused
  by SCLD, ICLR 2025): debiased Sinkhorn divergence, squared Euclidean cost, 2000 vs 2000 points, computed
  with ott-jax 0.4.6 (pinned in that repository's requirements.txt) as
  ``sinkhorn_divergence(geom, x=geom.x, y=geom.y)`` with ``geom = PointCloud(gt, model, epsilon=1e-3)``.
  The protocol is quoted with ε = 1e-3, but that ε only reaches the geometry whose ``x``/``y`` are read
  back; ``sinkhorn_divergence`` rebuilds its three geometries *without* it, so ott-jax's default applies:
  ε = 0.05 · mean(C_xy) (the mean squared distance between the two sets, shared by the three terms).
  Verified by running that call with ott-jax 0.4.6 (it reports ε = 0.05·mean C_xy; tests/metrics hold the
  numbers). Evaluation code copied from it into later repositories makes the same call.
  :func:`sinkhorn` with its defaults reproduces what that code computes (``eps=None, eps_rel=0.05``);
  ``eps=1e-3`` gives the absolute ε as quoted (much slower to converge, and then S ≈ W2² of the two
  empirical sets).
* **Sinkhorn, Richter & Berner** (sde_sampler): Euclidean cost, ε = 1e-3, not debiased, value ⟨P, C⟩ of
  the entropic plan (their loop stops after at most 100 iterations; ours runs to convergence).
* **MMD, Beyond-ELBOs protocol** (same code, ``mmd_median.py``): see :func:`mmd`.
"""
from __future__ import annotations

import math
import warnings
from typing import Literal

import numpy as np
import torch

__all__ = ["sinkhorn", "entropic_ot", "wasserstein2", "gaussian_w2", "mmd", "median_pairwise_distance",
           "energy_distance", "sliced_wasserstein", "SINKHORN_PROTOCOLS", "SinkhornNotConverged"]

# float64 elements per temporary block in the chunked kernel sums (~64 MB)
_CHUNK_ELEMS = 1 << 23


class SinkhornNotConverged(RuntimeWarning):
    """Sinkhorn stopped at ``max_iter`` before the marginal error reached ``tol``."""


# ---------------------------------------------------------------------------------------------- inputs
def as_float64(v, name: str, device=None) -> torch.Tensor:
    """A detached float64 tensor from a tensor or array-like (on ``device``, else where it is), with an
    error naming ``name`` when it is not numeric. Shared input conversion of the metrics."""
    if isinstance(v, torch.Tensor):
        t = v.detach()
    else:
        try:
            t = torch.as_tensor(np.asarray(v, dtype=np.float64))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{name} must be an array of numbers, got {type(v).__name__}") from e
    return t.to(dtype=torch.float64, device=device if device is not None else t.device)


def _points(v, name: str, device=None) -> torch.Tensor:
    """(n, d) float64 tensor; clear errors for wrong shape, emptiness and non-finite values."""
    t = as_float64(v, name, device)
    if t.ndim == 1:
        raise ValueError(f"{name} must have shape (n, d), got {tuple(t.shape)} "
                         f"(for 1-D data pass a column: {name}[:, None])")
    if t.ndim != 2:
        raise ValueError(f"{name} must have shape (n, d), got {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)})")
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        rows = bad.any(1).nonzero().flatten()
        raise ValueError(f"{name} contains {int(bad.sum())} non-finite values (NaN or inf) in {rows.numel()} rows "
                         f"(first bad row {int(rows[0])})")
    return t


def _pair(x, y, names=("x", "y")) -> tuple[torch.Tensor, torch.Tensor]:
    x = _points(x, names[0])
    y = _points(y, names[1], device=x.device)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"{names[0]} and {names[1]} must have the same dimension, got {x.shape[1]} and {y.shape[1]}")
    return x, y


def _weights(w, n: int, name: str, like: torch.Tensor) -> torch.Tensor:
    """Probability vector (n,): uniform for None, else the given non-negative weights normalised."""
    if w is None:
        return torch.full((n,), 1.0 / n, dtype=torch.float64, device=like.device)
    t = torch.as_tensor(w.detach() if isinstance(w, torch.Tensor) else np.asarray(w, dtype=np.float64))
    t = t.to(dtype=torch.float64, device=like.device).flatten()
    if t.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) (one weight per point), got {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
        raise ValueError(f"{name} must be finite and non-negative")
    s = float(t.sum())
    if s <= 0:
        raise ValueError(f"{name} sums to zero")
    return t / s


def _sq_dists(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Exact pairwise squared Euclidean distances (direct differences, no |x|²+|y|²−2x·y cancellation)."""
    return torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist").square_()


def _cost(x: torch.Tensor, y: torch.Tensor, cost: str) -> torch.Tensor:
    if cost == "sqeuclidean":
        return _sq_dists(x, y)
    if cost == "euclidean":
        return torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist")
    raise ValueError(f"cost must be 'sqeuclidean' or 'euclidean', got {cost!r}")


def _row_blocks(n_rows: int, per_row: int):
    step = max(1, _CHUNK_ELEMS // max(1, per_row))
    return [slice(i, min(i + step, n_rows)) for i in range(0, n_rows, step)]


# ---------------------------------------------------------------------------------------------- Sinkhorn
SINKHORN_PROTOCOLS = {
    # what the Beyond-ELBOs / SCLD code computes (ott-jax 0.4.6 default ε, see the module docstring)
    "be": dict(eps=None, eps_rel=0.05, eps_rel_to="mean", cost="sqeuclidean", debiased=True, value="entropic"),
    # the same divergence with the absolute ε = 1e-3 that the Beyond-ELBOs paper states
    "be_eps1e-3": dict(eps=1e-3, cost="sqeuclidean", debiased=True, value="entropic"),
    # Richter & Berner, sde_sampler: Euclidean cost, ε = 1e-3, not debiased, <P, C>
    "rb": dict(eps=1e-3, cost="euclidean", debiased=False, value="linear"),
}


def _lse_potential(h: torch.Tensor, C: torch.Tensor, eps: float, transpose: bool = False) -> torch.Tensor:
    """−ε log Σ_j exp(h_j − C_ij/ε) row by row (the c-transform in the log domain), chunked."""
    Cm = C.T if transpose else C
    out = torch.empty(Cm.shape[0], dtype=C.dtype, device=C.device)
    for sl in _row_blocks(Cm.shape[0], Cm.shape[1]):
        A = torch.sub(h[None, :], Cm[sl], alpha=1.0 / eps)
        out[sl] = torch.logsumexp(A, 1)
    return -eps * out


def _kernel(f, g, C, eps, la, lb) -> torch.Tensor:
    """K̃_ij = a_i b_j exp((f_i + g_j − C_ij)/ε) (the plan of potentials f, g)."""
    K = torch.sub((f / eps + la)[:, None] + (g / eps + lb)[None, :], C, alpha=1.0 / eps)
    return K.exp_()


def entropic_ot(C, a=None, b=None, eps: float = 1e-3, *, symmetric: bool = False, tol: float = 1e-3,
                max_iter: int = 10_000, eps_scaling: float = 0.5, iters_per_level: int = 10,
                check_every: int = 10, warn: bool = True, omega: float = 1.8) -> dict:
    """Entropic optimal transport between discrete measures a (n,) and b (m,) with cost matrix C (n, m).

    Solves  OT_ε(a, b) = min_{P ∈ Π(a,b)} ⟨P, C⟩ + ε KL(P ‖ a⊗b)  (Cuturi 2013; Peyré & Cuturi,
    "Computational OT", 2019, eq. 4.2 with the KL form of eq. 4.7) by Sinkhorn's algorithm in the
    stabilised scaling form with log-domain absorption and ε-scaling (Schmitzer, "Stabilized sparse scaling
    algorithms for entropy regularized transport problems", SIAM J. Sci. Comput. 2019): potentials f, g,
    plan P = diag(u) K̃ diag(v) with K̃_ij = a_i b_j exp((f_i + g_j − C_ij)/ε); u, v are absorbed into f, g
    whenever they leave [1e-30, 1e30]. When max C > 500 ε, ε decreases geometrically by ``eps_scaling``
    from max C to the target (``iters_per_level`` iterations per level); the first kernel is built from
    exact log-domain c-transforms, and a row that underflows anyway sends the solver back to them. Plain
    Sinkhorn (u = a/Kv) underflows and needs O(max C/ε) iterations when ε ≪ max C. At the target ε the
    updates are over-relaxed, u ← u^{1−ω} (a/Kv)^ω with ω = ``omega`` (Thibault, Chizat, Dossal &
    Papadakis, "Overrelaxed Sinkhorn–Knopp algorithm", Algorithms 2021), ω halved towards 1 whenever the
    marginal error grows, and one plain iteration ends the loop. For ``symmetric=True`` (C symmetric,
    a = b: the OT_ε(x, x) terms of the debiased divergence) the update is the averaged one
    f ← ½(f + T_ε(f)) of Feydy et al., AISTATS 2019, eq. 25. a and b must be strictly positive.

    Stops when the L1 marginal error ‖P1 − a‖₁ (after the column update, Pᵀ1 = b exactly) is ≤ ``tol``
    (ott-jax uses the same L1 criterion with threshold 1e-3), or after ``max_iter`` iterations at the final
    ε (then a :class:`SinkhornNotConverged` warning, and ``converged=False``).

    Returns a dict with
      ``value``   the dual objective ⟨a, f⟩ + ⟨b, g⟩ − ε(Σ P − 1), which equals OT_ε at convergence and is
                  a lower bound on it at any iterate (weak duality); this is ott-jax's ``reg_ot_cost``;
      ``linear``  ⟨P, C⟩ of the final plan (POT's ``sinkhorn2`` value; sde_sampler's "Sinkhorn");
      ``eps``, ``iterations``, ``marginal_error``, ``converged``, ``f``, ``g``.
    """
    C = torch.as_tensor(C).to(torch.float64)
    n, m = C.shape
    dev = C.device
    a = torch.full((n,), 1.0 / n, dtype=torch.float64, device=dev) if a is None else \
        torch.as_tensor(a).to(dtype=torch.float64, device=dev).flatten()
    b = torch.full((m,), 1.0 / m, dtype=torch.float64, device=dev) if b is None else \
        torch.as_tensor(b).to(dtype=torch.float64, device=dev).flatten()
    if a.shape != (n,) or b.shape != (m,):
        raise ValueError(f"a and b must have shapes ({n},) and ({m},) to match C, "
                         f"got {tuple(a.shape)} and {tuple(b.shape)}")
    if not (bool((a > 0).all()) and bool((b > 0).all())):
        raise ValueError("entropic_ot needs strictly positive weights a and b (drop zero-weight points)")
    if abs(float(a.sum()) - float(b.sum())) > 1e-9 * float(a.sum()):
        raise ValueError(f"a and b must have the same total mass, got {float(a.sum())} and {float(b.sum())}")
    if symmetric and (n != m):
        raise ValueError("symmetric=True needs a square cost matrix")
    if not (eps > 0 and math.isfinite(eps)):
        raise ValueError(f"eps must be a positive finite number, got {eps}")
    la, lb = a.log(), b.log()
    cmax = float(C.max()) if C.numel() else 0.0
    f = torch.zeros(n, dtype=torch.float64, device=dev)
    g = torch.zeros(m, dtype=torch.float64, device=dev)
    e = max(cmax, eps) if cmax > 500 * eps else eps
    lo, hi = 1e-30, 1e30
    it_final = 0
    it_total = 0
    err = math.inf
    first = True
    while True:
        final = e <= eps
        if first:
            # exact log-domain c-transforms: every kernel row then sums to a_i, whatever the cost scale
            if symmetric:
                f = 0.5 * (f + _lse_potential(f / e + la, C, e))
                g = f
            else:
                f = _lse_potential(g / e + lb, C, e)
                g = _lse_potential(f / e + la, C, e, transpose=True)
            first = False
        K = _kernel(f, g, C, e, la, lb)
        u = torch.ones(n, dtype=torch.float64, device=dev)
        v = u if symmetric else torch.ones(m, dtype=torch.float64, device=dev)
        k = 0
        while True:
            if symmetric:
                u = torch.sqrt(u * a / (K @ u))
                v = u
            elif final and omega != 1.0:
                u = u.pow(1 - omega) * (a / (K @ v)).pow(omega)
                v = v.pow(1 - omega) * (b / (K.T @ u)).pow(omega)
            else:
                u = a / (K @ v)
                v = b / (K.T @ u)
            k += 1
            it_total += 1
            if final:
                it_final += 1
            if not (bool(torch.isfinite(u).all()) and bool(torch.isfinite(v).all())
                    and float(u.min()) > 0 and float(v.min()) > 0):
                # a row underflowed: drop u, v and restart from exact log-domain c-transforms of f, g
                if symmetric:
                    f = _lse_potential(f / e + la, C, e)
                    g = f
                else:
                    f = _lse_potential(g / e + lb, C, e)
                    g = _lse_potential(f / e + la, C, e, transpose=True)
                K = _kernel(f, g, C, e, la, lb)
                u = torch.ones(n, dtype=torch.float64, device=dev)
                v = u if symmetric else torch.ones(m, dtype=torch.float64, device=dev)
                continue
            if float(u.max()) > hi or float(u.min()) < lo or float(v.max()) > hi or float(v.min()) < lo:
                f = f + e * u.log()
                g = f if symmetric else g + e * v.log()
                K = _kernel(f, g, C, e, la, lb)
                u = torch.ones(n, dtype=torch.float64, device=dev)
                v = u if symmetric else torch.ones(m, dtype=torch.float64, device=dev)
            if not final:
                if k >= iters_per_level:
                    break
                continue
            if it_final % check_every == 0 or it_final >= max_iter:
                err_prev, err = err, float((u * (K @ v) - a).abs().sum())
                if omega != 1.0 and not symmetric:  # over-relaxed columns are not exact either
                    err += float((v * (K.T @ u) - b).abs().sum())
                if err <= tol or it_final >= max_iter:
                    break
                if err > err_prev and omega > 1.0:  # safeguard: over-relaxation not helping, back off
                    omega = max(1.0, 1.0 + 0.5 * (omega - 1.0))
        if final and not symmetric:
            # one plain iteration: exact column marginals, so the dual value below is ⟨a,f⟩ + ⟨b,g⟩
            u = a / (K @ v)
            v = b / (K.T @ u)
            err = float((u * (K @ v) - a).abs().sum())
        f = f + e * u.log()
        g = f if symmetric else g + e * v.log()
        if final:
            break
        e = max(e * eps_scaling, eps)
    converged = err <= tol
    if not converged and warn:
        warnings.warn(f"Sinkhorn (eps={eps:.3g}) stopped after {max_iter} iterations with L1 marginal error "
                      f"{err:.2e} > tol={tol:.1e}; the value is a lower bound on OT_eps. Raise max_iter or tol, or "
                      f"use a larger eps.", SinkhornNotConverged, stacklevel=3)
    P = _kernel(f, g, C, eps, la, lb)
    mass = float(P.sum())
    value = float((a * f).sum() + (b * g).sum()) - eps * (mass - 1.0)
    linear = float((P * C).sum() / mass)
    return dict(value=value, linear=linear, eps=eps, iterations=it_final, total_iterations=it_total,
                marginal_error=err, converged=converged, f=f, g=g)


def sinkhorn(x, y, eps: float | None = None, *, eps_rel: float = 0.05,
             eps_rel_to: Literal["mean", "std"] = "mean",
             cost: Literal["sqeuclidean", "euclidean"] = "sqeuclidean", debiased: bool = True,
             value: Literal["entropic", "linear"] = "entropic", x_weights=None, y_weights=None,
             tol: float = 1e-3, max_iter: int = 10_000, return_info: bool = False):
    """Sinkhorn divergence between the sample sets x (n, d) and y (m, d). Defaults: Beyond-ELBOs protocol.

    Definition (Genevay, Peyré & Cuturi, AISTATS 2018; Feydy et al., AISTATS 2019, eq. 3):

        OT_ε(α, β) = min_{P ∈ Π(α,β)} ⟨P, C⟩ + ε KL(P ‖ α⊗β),     C_ij = |x_i − y_j|²  (or |x_i − y_j|)
        S_ε(α, β)  = OT_ε(α, β) − ½ OT_ε(α, α) − ½ OT_ε(β, β)      (debiased=True; ≥ 0, = 0 iff α = β)

    with α = Σ a_i δ_{x_i}, β = Σ b_j δ_{y_j} (uniform unless weights are given).

    * ``value="entropic"`` returns OT_ε itself (the dual objective at convergence, ott-jax's
      ``reg_ot_cost``) for each term. This is what the Beyond-ELBOs code reports, and only with it is the
      debiased S_ε guaranteed ≥ 0, = 0 iff α = β (the proof of Feydy et al. uses the entropic objective,
      not its linear part). ``value="linear"`` uses ⟨P_ε, C⟩ of the entropic plan instead (POT's
      ``sinkhorn2`` value; sde_sampler's "Sinkhorn" with ``debiased=False``).
    * ε: absolute when ``eps`` is given; otherwise ε = ``eps_rel`` · mean(C_xy) (``eps_rel_to="mean"``,
      the ott-jax 0.4.1–0.4.6 default, checked against 0.4.6; shared by the three terms: this is what the
      Beyond-ELBOs code computes) or · std(C_xy) (``"std"``, meant to mirror the default of later ott-jax
      releases; not checked against them). Mean and std are taken under the weights a⊗b (the plain mean
      over all pairs for unweighted sets, as ott-jax). The defaults (``eps=None``,
      ``eps_rel=0.05``, squared Euclidean, debiased, entropic) reproduce the Beyond-ELBOs/SCLD numbers,
      which use 2000 points on each side (:func:`sampleflow.metrics.evaluate` subsamples to that).
    * With a small absolute ε (e.g. the ε = 1e-3 the Beyond-ELBOs paper states) every OT_ε lies within
      [W, W + ε log min(n, m)] of the exact OT cost W (the optimal plan P₀ is feasible and
      KL(P₀‖α⊗β) ≤ log min(n,m)), so S_ε ≈ W2²(α, β) of the empirical sets up to ± ε log n (≈ 0.008 at
      n = 2000). Convergence is then slow: thousands of iterations, ≈ 15 s at 2000 × 2000 on 2 cores for
      standard-normal-like sets, and for costs in the 10³–10⁵ range (GMM-40 d=50, Funnel) not within the
      default ``max_iter`` (≈ 60–75 s, then a warning; the returned lower bound was within 3e-4 relative of
      W2² there). ``wasserstein2(x, y)**2`` is then the cheaper number with the same meaning.

    Solver: :func:`entropic_ot` (own torch implementation, float64, stabilised + ε-scaling; the symmetric
    terms with Feydy's averaged update). Stops at L1 marginal error ``tol``; a
    :class:`SinkhornNotConverged` warning is raised if ``max_iter`` is reached (the value is then a lower
    bound of OT_ε). Points with zero weight are dropped. Returns a float, or ``(float, info)`` with
    ``return_info=True`` (ε used, iterations, marginal errors and the three terms).
    """
    x, y = _pair(x, y)
    a = _weights(x_weights, x.shape[0], "x_weights", x)
    b = _weights(y_weights, y.shape[0], "y_weights", x)
    if x_weights is not None:
        keep = a > 0
        x, a = x[keep], a[keep]
    if y_weights is not None:
        keep = b > 0
        y, b = y[keep], b[keep]
    if value not in ("entropic", "linear"):
        raise ValueError(f"value must be 'entropic' or 'linear', got {value!r}")
    Cxy = _cost(x, y, cost)
    if eps is None:
        if eps_rel_to == "mean":
            stat = float((a[:, None] * Cxy * b[None, :]).sum())
        elif eps_rel_to == "std":
            mu = float((a[:, None] * Cxy * b[None, :]).sum())
            stat = math.sqrt(max(float((a[:, None] * (Cxy - mu).square() * b[None, :]).sum()), 0.0))
        else:
            raise ValueError(f"eps_rel_to must be 'mean' or 'std', got {eps_rel_to!r}")
        if not (eps_rel > 0):
            raise ValueError(f"eps_rel must be positive, got {eps_rel}")
        eps_abs = eps_rel * stat
        if eps_abs <= 0:  # all points coincide: every cost is 0 and so is the divergence
            eps_abs = 1.0
    else:
        eps_abs = float(eps)
        if not (eps_abs > 0 and math.isfinite(eps_abs)):
            raise ValueError(f"eps must be a positive finite number, got {eps}")
    key = "value" if value == "entropic" else "linear"
    kw = dict(tol=tol, max_iter=max_iter)
    rxy = entropic_ot(Cxy, a, b, eps_abs, **kw)
    del Cxy
    info = {"eps": eps_abs, "xy": _strip(rxy)}
    out = rxy[key]
    if debiased:
        rxx = entropic_ot(_cost(x, x, cost), a, a, eps_abs, symmetric=True, **kw)
        ryy = entropic_ot(_cost(y, y, cost), b, b, eps_abs, symmetric=True, **kw)
        info["xx"], info["yy"] = _strip(rxx), _strip(ryy)
        out = out - 0.5 * rxx[key] - 0.5 * ryy[key]
    info["converged"] = all(info[k]["converged"] for k in ("xy", "xx", "yy") if k in info)
    return (out, info) if return_info else out


def _strip(r: dict) -> dict:
    return {k: v for k, v in r.items() if k not in ("f", "g")}


# ---------------------------------------------------------------------------------------------- exact W2
def wasserstein2(x, y, *, x_weights=None, y_weights=None, max_points: int = 5000) -> float:
    """Exact 2-Wasserstein distance between the empirical measures of x and y.

    W2(α, β) = ( min_{P ∈ Π(a,b)} Σ_ij P_ij |x_i − y_j|² )^{1/2}, solved exactly by the network simplex
    (POT ``ot.emd2``, Bonneel et al. 2011) on the squared Euclidean cost; uniform weights unless given.
    Returns the distance (not its square). This is the "W2" of the DW-4 / LJ-13 tables (AS/ASBS protocol:
    W2 between sample sets on the particle coordinates). Memory and time grow as n·m and ~n³: above
    ``max_points`` points on either side a ValueError is raised (subsample first)."""
    import ot

    x, y = _pair(x, y)
    n, m = x.shape[0], y.shape[0]
    if max(n, m) > max_points:
        raise ValueError(f"wasserstein2: exact EMD on {n} x {m} points exceeds max_points={max_points}; "
                         f"subsample both sets (or raise max_points)")
    a = _weights(x_weights, n, "x_weights", x).cpu().numpy()
    b = _weights(y_weights, m, "y_weights", x).cpu().numpy()
    M = _sq_dists(x, y).cpu().numpy()
    cost, log = ot.emd2(a, b, M, numItermax=max(100_000, 50 * n * m), log=True, check_marginals=False)
    if log.get("warning"):
        raise RuntimeError(f"wasserstein2: exact OT did not converge: {log['warning']}")
    return math.sqrt(max(float(cost), 0.0))


def _sqrtm_psd(A: torch.Tensor) -> torch.Tensor:
    A = 0.5 * (A + A.T)
    w, V = torch.linalg.eigh(A)
    return (V * w.clamp_min(0).sqrt()) @ V.T


def gaussian_w2(m1, C1, m2, C2) -> float:
    """W2 between N(m1, C1) and N(m2, C2) in closed form (Dowson & Landau 1982; Olkin & Pukelsheim 1982):

        W2² = |m1 − m2|² + tr(C1 + C2 − 2 (C2^{½} C1 C2^{½})^{½})      (Bures metric for the covariances).

    Returns W2 (the square root). Covariances may be (d, d) matrices, (d,) diagonals or scalars (isotropic).
    Matrix square roots by symmetric eigendecomposition (negative round-off eigenvalues clipped to 0)."""
    m1 = torch.as_tensor(np.asarray(m1, dtype=np.float64) if not isinstance(m1, torch.Tensor) else m1,
                         dtype=torch.float64).flatten()
    m2 = torch.as_tensor(np.asarray(m2, dtype=np.float64) if not isinstance(m2, torch.Tensor) else m2,
                         dtype=torch.float64).flatten()
    d = m1.numel()
    if m2.numel() != d:
        raise ValueError(f"m1 and m2 must have the same length, got {d} and {m2.numel()}")

    def cov(C, name):
        C = torch.as_tensor(np.asarray(C, dtype=np.float64) if not isinstance(C, torch.Tensor) else C,
                            dtype=torch.float64)
        if C.ndim == 0:
            return C * torch.eye(d, dtype=torch.float64)
        if C.ndim == 1:
            if C.numel() != d:
                raise ValueError(f"{name} as a diagonal must have length {d}, got {C.numel()}")
            return torch.diag(C)
        if C.shape != (d, d):
            raise ValueError(f"{name} must have shape ({d}, {d}), got {tuple(C.shape)}")
        return C

    C1, C2 = cov(C1, "C1"), cov(C2, "C2")
    s2 = _sqrtm_psd(C2)
    cross = _sqrtm_psd(s2 @ C1 @ s2)
    w2sq = float((m1 - m2).square().sum() + torch.trace(C1 + C2 - 2 * cross))
    return math.sqrt(max(w2sq, 0.0))


# ---------------------------------------------------------------------------------------------- MMD
def median_pairwise_distance(z, *, include_diagonal: bool = True) -> float:
    """Median of the Euclidean distances |z_i − z_j| over the pairs i ≤ j of the rows of z (N, d).

    ``include_diagonal=True`` counts the N zero self-distances, exactly as the Beyond-ELBOs code
    (``jnp.median(D[jnp.triu_indices(N)])``, whose triu includes the diagonal); False takes i < j only.
    For an even count the median is the mean of the two middle values (NumPy/JAX convention).
    Exact for any N with O(chunk) memory: up to 2²³ distances are sorted directly; beyond, random pairs give
    a bracket around the middle ranks and one pass counts the distances below it and keeps those inside."""
    z = _points(z, "z")
    N = z.shape[0]
    total = N * (N + 1) // 2 if include_diagonal else N * (N - 1) // 2
    if total == 0:
        raise ValueError("median_pairwise_distance needs at least 2 points when the diagonal is excluded")
    k_lo, k_hi = (total - 1) // 2, total // 2  # 0-based ranks of the middle value(s)

    def blocks():
        # rows sl against columns sl.start: (only the upper triangle is needed), masked on the diagonal block
        for sl in _row_blocks(N, N):
            D = torch.cdist(z[sl], z[sl.start:], compute_mode="donot_use_mm_for_euclid_dist")
            rows = torch.arange(sl.stop - sl.start, device=z.device)[:, None]
            cols = torch.arange(N - sl.start, device=z.device)[None, :]
            yield D[cols >= rows] if include_diagonal else D[cols > rows]

    if total <= _CHUNK_ELEMS:
        vals = torch.cat(list(blocks()))
        s = torch.sort(vals).values
        return float(0.5 * (s[k_lo] + s[k_hi]))
    # exact selection in two passes: a bracket [lo, hi] around the median from random pairs, then one pass that
    # counts the distances below lo and keeps those inside (widened and repeated if it missed: still exact)
    gen = torch.Generator().manual_seed(0)
    i = torch.randint(0, N, (200_000,), generator=gen).to(z.device)
    j = torch.randint(0, N, (200_000,), generator=gen).to(z.device)
    sample = torch.sort((z[i] - z[j]).norm(dim=1)).values
    margin = 0.005
    while True:
        q_lo, q_hi = max(0.0, 0.5 - margin), min(1.0, 0.5 + margin)
        lo = float(sample[int(q_lo * (sample.numel() - 1))]) if q_lo > 0 else -math.inf
        hi = float(sample[int(q_hi * (sample.numel() - 1))]) if q_hi < 1 else math.inf
        below, kept = 0, []
        for v in blocks():
            below += int((v < lo).sum())
            kept.append(v[(v >= lo) & (v <= hi)])
        kept = torch.sort(torch.cat(kept)).values
        if below <= k_lo and below + kept.numel() > k_hi:
            return float(0.5 * (kept[k_lo - below] + kept[k_hi - below]))
        margin *= 4


def _kernel_sum(x: torch.Tensor, y: torch.Tensor, inv_two_h2: float) -> float:
    """Σ_ij exp(−|x_i − y_j|² / (2h²)), chunked over rows."""
    tot = 0.0
    for sl in _row_blocks(x.shape[0], y.shape[0]):
        tot += float(torch.exp(_sq_dists(x[sl], y).mul_(-inv_two_h2)).sum())
    return tot


def mmd(x, y, *, bandwidth: float | None = None, return_info: bool = False):
    """Maximum mean discrepancy, Beyond-ELBOs protocol (Blessing et al. 2024, ``mmd_median.py``, after
    Schrab's ``mmdfuse``), with a Gaussian kernel and the median heuristic:

        k(u, v) = exp(−|u − v|² / (2h²)),   h = median of |z_i − z_j| over i ≤ j in the pooled set
                                            z = [x; y] (diagonal zeros included, as that code does),
        MMD² = Σ_{i,i'} k(x_i, x_i') / (n(n−1)) + Σ_{j,j'} k(y_j, y_j') / (m(m−1)) − 2 · mean_{i,j} k(x_i, y_j),
        reported value = √max(MMD², 1e-20).

    The XX and YY sums keep the diagonal (k = 1) while dividing by n(n−1): this is the unbiased U-statistic
    plus 1/(n−1) + 1/(m−1). Two independent sets from the *same* distribution therefore give
    MMD² ≈ 1/(n−1) + 1/(m−1) (≈ 0.0316 reported at n = m = 2000), and ``mmd(x, x)`` =
    √(2 Σ k(x_i, x_i') / (n²(n−1))) > 0, not 0. (The original divides the XX sum by the size of Y and vice
    versa; identical for the protocol's equal sizes, here each by its own size.) ``bandwidth`` overrides h.
    Kernel sums are chunked (memory O(chunk), time O((n+m)²d)). Returns a float (or (float, {"h": h,
    "mmd2": MMD²}) with ``return_info``)."""
    x, y = _pair(x, y)
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        raise ValueError(f"mmd needs at least 2 points in each set, got {n} and {m}")
    h = median_pairwise_distance(torch.cat([x, y])) if bandwidth is None else float(bandwidth)
    if not h > 0:
        raise ValueError(f"mmd bandwidth must be positive; got h = {h} (are all points identical?)")
    c = 1.0 / (2 * h * h)
    kxx, kyy, kxy = _kernel_sum(x, x, c), _kernel_sum(y, y, c), _kernel_sum(x, y, c)
    mmd2 = kxx / (n * (n - 1)) + kyy / (m * (m - 1)) - 2 * kxy / (n * m)
    val = math.sqrt(max(mmd2, 1e-20))
    return (val, {"h": h, "mmd2": mmd2}) if return_info else val


# ---------------------------------------------------------------------------------------------- energy
def _dist_sum(x, y, wx, wy) -> float:
    """Σ_ij wx_i wy_j |x_i − y_j|, chunked."""
    tot = 0.0
    for sl in _row_blocks(x.shape[0], y.shape[0]):
        D = torch.cdist(x[sl], y, compute_mode="donot_use_mm_for_euclid_dist")
        tot += float((wx[sl] @ D) @ wy)
    return tot


def energy_distance(x, y, *, x_weights=None, y_weights=None, unbiased: bool = False) -> float:
    """Energy distance (Székely & Rizzo, "Energy statistics", 2013, eq. 2.1, squared form):

        D²(F, G) = 2 E|X − Y| − E|X − X'| − E|Y − Y'|,

    estimated by the V-statistic (all pairs, self-pairs included, optionally weighted): always ≥ 0 and exactly
    0 for identical sets. ``unbiased=True`` uses the U-statistic for the within-set terms (divides by
    n(n−1), unweighted only): unbiased, but can be negative. Returns D² itself (not its square root; note
    ``scipy.stats.energy_distance`` returns √D² in 1-D). Chunked: memory O(chunk), time O((n+m)² d)."""
    x, y = _pair(x, y)
    n, m = x.shape[0], y.shape[0]
    wx = _weights(x_weights, n, "x_weights", x)
    wy = _weights(y_weights, m, "y_weights", x)
    exy = _dist_sum(x, y, wx, wy)
    exx = _dist_sum(x, x, wx, wx)
    eyy = _dist_sum(y, y, wy, wy)
    if unbiased:
        if x_weights is not None or y_weights is not None:
            raise ValueError("energy_distance: unbiased=True is defined for unweighted samples only")
        if n < 2 or m < 2:
            raise ValueError("energy_distance: unbiased=True needs at least 2 points in each set")
        exx *= n / (n - 1)
        eyy *= m / (m - 1)
    return 2 * exy - exx - eyy


# ---------------------------------------------------------------------------------------------- sliced W
def sliced_wasserstein(x, y, n_projections: int = 500, p: int = 2, *, seed: int | torch.Generator = 0,
                       x_weights=None, y_weights=None) -> float:
    """Sliced p-Wasserstein distance (Rabin et al. 2011; Bonneel et al. 2015):

        SW_p(α, β) = ( E_θ [ W_p^p(θ#α, θ#β) ] )^{1/p},  θ ~ uniform on the unit sphere S^{d−1},

    Monte Carlo over ``n_projections`` directions drawn from a torch.Generator seeded with ``seed`` (the same
    seed gives the same number); each 1-D W_p^p is exact (quantile functions) via POT
    ``ot.sliced_wasserstein_distance`` with these fixed projections. Returns SW_p (not its p-th power)."""
    import ot

    x, y = _pair(x, y)
    d = x.shape[1]
    if not (isinstance(n_projections, int) and n_projections >= 1):
        raise ValueError(f"n_projections must be a positive integer, got {n_projections!r}")
    if isinstance(seed, torch.Generator):
        g = seed
    else:
        g = torch.Generator().manual_seed(int(seed))
    theta = torch.randn(d, n_projections, generator=g, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    a = _weights(x_weights, x.shape[0], "x_weights", x).cpu().numpy()
    b = _weights(y_weights, y.shape[0], "y_weights", x).cpu().numpy()
    return float(ot.sliced_wasserstein_distance(x.cpu().numpy(), y.cpu().numpy(), a, b,
                                                n_projections=n_projections, p=p,
                                                projections=theta.numpy()))
