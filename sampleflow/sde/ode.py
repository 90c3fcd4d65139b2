"""ODE integration with log-density tracking (probability-flow ODE, continuous normalising flow).

For dx/dt = f(x, t) the density of x_t evolves by the instantaneous change of variables
(Chen et al. 2018, "Neural ordinary differential equations", Thm. 1; Song et al. 2021,
"Score-based generative modeling through SDEs", §4.3 and App. D.2)

    d/dt log q_t(x_t) = −(∇·f)(x_t, t),

so integrating the augmented state (x, ℓ) with dℓ/dt = −∇·f(x, t), ℓ(t_0) = 0, gives

    log q_K(x_K) = log q_0(x_0) + ℓ(t_K),     ℓ(t_K) = delta_logp = −∫ ∇·f(x_t, t) dt.

This holds for increasing and decreasing time grids alike (for a decreasing grid dt < 0).

Conventions:

* ``f(x, t)`` takes ``x`` of shape ``(B, *event)`` (usually ``(B, d)``) and ``t`` as a 0-d tensor of
  ``x``'s dtype and device, and returns a tensor of ``x``'s shape; rows must not interact (needed
  for the divergence only).
* Grids are 1-D tensors (or sequences) t_0, …, t_K, strictly increasing or strictly decreasing;
  they are moved to ``x0``'s dtype/device. Everything follows ``x0``'s dtype and device.
* The schemes are the explicit Euler, Heun (explicit trapezoid / improved Euler, 2nd order) and
  classical Runge–Kutta (4th order) methods; :func:`rk45` is the adaptive Dormand–Prince 5(4) pair.
* The log-density increment is integrated with the *same* scheme as x (an augmented state), so it
  inherits the scheme's order. Hutchinson probes are drawn once per solve and kept fixed along the
  path (FFJORD, Grathwohl et al. 2019): the ODE stays deterministic and the estimate is unbiased.
* Differentiability follows grad mode: call under ``torch.no_grad()`` for sampling / likelihood
  evaluation (cheaper: no graph is kept, and the exact divergence uses batched autograd vjps, which
  have the least per-call overhead; see :mod:`sampleflow.sde.divergence`); under grad mode the
  solution is differentiable w.r.t. ``x0`` and ``f``'s parameters (backpropagation through the
  solver). The step-size control of :func:`rk45` is never differentiated.
* Number of function evaluations (NFE): fixed-grid solvers evaluate f ``stages × K`` times (Euler 1,
  Heun 2, RK4 4 per step; see :func:`fixed_grid_nfe`); pass a dict as ``stats=`` to have ``"nfe"``
  and ``"n_steps"`` written into it. :func:`rk45` returns its NFE in its result.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch
from torch import Tensor

from .divergence import sample_probes, value_and_divergence

__all__ = [
    "odeint",
    "odeint_with_logdet",
    "rk45",
    "RK45Result",
    "fixed_grid_nfe",
    "METHODS",
]

ODEFunc = Callable[[Tensor, Tensor], Tensor]

#: fixed-grid schemes and their number of stages (f evaluations per step)
METHODS = {"euler": 1, "heun": 2, "rk4": 4}


# ----------------------------------------------------------------------------------------------
# validation helpers
# ----------------------------------------------------------------------------------------------
def _check_x0(x0) -> None:
    if not isinstance(x0, Tensor):
        raise TypeError(f"x0 must be a torch.Tensor, got {type(x0).__name__}")
    if not x0.is_floating_point():
        raise TypeError(f"x0 must be a floating-point tensor, got dtype {x0.dtype}")


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {tuple(METHODS)}, got {method!r}")


def _as_grid(grid, x0: Tensor) -> Tensor:
    if not isinstance(grid, Tensor):
        try:
            grid = torch.as_tensor(grid, dtype=x0.dtype)
        except Exception as e:  # noqa: BLE001
            raise TypeError(f"grid must be a 1-D tensor of times, got {type(grid).__name__}") from e
    if grid.dim() != 1 or grid.numel() < 2:
        raise ValueError(f"grid must be a 1-D tensor of at least 2 times, got shape {tuple(grid.shape)}")
    grid = grid.to(dtype=x0.dtype, device=x0.device)
    if not torch.isfinite(grid).all():
        raise ValueError("grid must contain finite times only")
    dt = grid[1:] - grid[:-1]
    if not ((dt > 0).all() or (dt < 0).all()):
        raise ValueError("grid must be strictly increasing or strictly decreasing")
    return grid


def _checked_call(f: ODEFunc, x: Tensor, t: Tensor) -> Tensor:
    y = f(x, t)
    if not isinstance(y, Tensor) or y.shape != x.shape:
        shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise ValueError(f"f(x, t) must return a tensor of x's shape {tuple(x.shape)}; got {shape}")
    return y


def fixed_grid_nfe(method: str, grid) -> int:
    """Number of f evaluations of :func:`odeint` / :func:`odeint_with_logdet` on ``grid``
    (``grid`` a 1-D tensor/sequence of times, or the number of steps K as an int)."""
    _check_method(method)
    n_steps = grid if isinstance(grid, int) else len(grid) - 1
    return METHODS[method] * n_steps


# ----------------------------------------------------------------------------------------------
# one step of the fixed-grid schemes, for a state that is a tuple of tensors
# ----------------------------------------------------------------------------------------------
def _axpy(y: tuple, h, k: tuple) -> tuple:
    return tuple(a + h * b for a, b in zip(y, k))


def _step(rhs, method: str, y: tuple, t: Tensor, h: Tensor) -> tuple:
    """Advance the state tuple ``y`` from t to t + h; ``rhs(y, t)`` returns the derivative tuple."""
    if method == "euler":
        return _axpy(y, h, rhs(y, t))
    if method == "heun":
        k1 = rhs(y, t)
        k2 = rhs(_axpy(y, h, k1), t + h)
        return tuple(a + 0.5 * h * (b + c) for a, b, c in zip(y, k1, k2))
    # classical RK4
    half = 0.5 * h
    k1 = rhs(y, t)
    k2 = rhs(_axpy(y, half, k1), t + half)
    k3 = rhs(_axpy(y, half, k2), t + half)
    k4 = rhs(_axpy(y, h, k3), t + h)
    return tuple(a + (h / 6.0) * (b + 2.0 * c + 2.0 * d + e) for a, b, c, d, e in zip(y, k1, k2, k3, k4))


def _integrate(rhs, method: str, y0: tuple, grid: Tensor, return_trajectory: bool):
    y = y0
    traj = [y0] if return_trajectory else None
    for k in range(grid.numel() - 1):
        t = grid[k]
        y = _step(rhs, method, y, t, grid[k + 1] - t)
        if return_trajectory:
            traj.append(y)
    return y, traj


# ----------------------------------------------------------------------------------------------
# public fixed-grid solvers
# ----------------------------------------------------------------------------------------------
def odeint(
    f: ODEFunc,
    x0: Tensor,
    grid,
    method: str = "heun",
    return_trajectory: bool = False,
    stats: dict | None = None,
):
    """Integrate dx/dt = f(x, t) from ``grid[0]`` to ``grid[-1]`` on the fixed grid.

    Returns x_K (shape of ``x0``), or ``(x_K, trajectory)`` with ``trajectory`` of shape
    ``(K + 1, *x0.shape)`` (x at every grid time, x0 first) when ``return_trajectory``.
    ``method``: ``"euler"`` (order 1), ``"heun"`` (order 2), ``"rk4"`` (order 4).
    ``stats``: optional dict; ``"nfe"`` and ``"n_steps"`` are written into it.
    """
    _check_x0(x0)
    _check_method(method)
    grid = _as_grid(grid, x0)

    def rhs(y, t):
        return (_checked_call(f, y[0], t),)

    (xK,), traj = _integrate(rhs, method, (x0,), grid, return_trajectory)
    if stats is not None:
        stats["nfe"] = fixed_grid_nfe(method, grid.numel() - 1)
        stats["n_steps"] = grid.numel() - 1
    if return_trajectory:
        return xK, torch.stack([y[0] for y in traj])
    return xK


def _logdet_rhs(f: ODEFunc, divergence: str, noise: Tensor | None):
    def rhs(y, t):
        x = y[0]
        fx, div = value_and_divergence(lambda z: _checked_call(f, z, t), x, method=divergence, noise=noise)
        return fx, -div

    return rhs


def _probes(x0, divergence, n_probes, generator, distribution):
    if divergence not in ("exact", "hutchinson"):
        raise ValueError(f"divergence must be 'exact' or 'hutchinson', got {divergence!r}")
    if x0.dim() < 2:
        raise ValueError(f"x0 must be batched, of shape (B, d) (or (B, *event)); got shape {tuple(x0.shape)}")
    if divergence == "hutchinson":
        return sample_probes(x0, n_probes, generator, distribution)
    return None


def odeint_with_logdet(
    f: ODEFunc,
    x0: Tensor,
    grid,
    method: str = "heun",
    divergence: str = "exact",
    n_probes: int = 1,
    generator: torch.Generator | None = None,
    distribution: str = "rademacher",
    return_trajectory: bool = False,
    stats: dict | None = None,
):
    """Integrate dx/dt = f(x, t) jointly with dℓ/dt = −∇·f(x, t), ℓ(t_0) = 0, on the fixed grid.

    Returns ``(x_K, delta_logp)`` with ``delta_logp`` of shape ``(B,)`` such that
    log q_K(x_K) = log q_0(x_0) + delta_logp (instantaneous change of variables).
    ``divergence``: ``"exact"`` or ``"hutchinson"`` (``n_probes`` probes per sample from
    ``distribution``, drawn once with ``generator`` and fixed along the path).
    With ``return_trajectory``: ``(x_K, delta_logp, x_traj, delta_logp_traj)``, the trajectories of
    shapes ``(K + 1, *x0.shape)`` and ``(K + 1, B)``.
    ``stats``: optional dict receiving ``"nfe"`` and ``"n_steps"``.
    """
    _check_x0(x0)
    _check_method(method)
    grid = _as_grid(grid, x0)
    noise = _probes(x0, divergence, n_probes, generator, distribution)
    rhs = _logdet_rhs(f, divergence, noise)
    ell0 = x0.new_zeros(x0.shape[0])
    (xK, ell), traj = _integrate(rhs, method, (x0, ell0), grid, return_trajectory)
    if stats is not None:
        stats["nfe"] = fixed_grid_nfe(method, grid.numel() - 1)
        stats["n_steps"] = grid.numel() - 1
    if return_trajectory:
        return xK, ell, torch.stack([y[0] for y in traj]), torch.stack([y[1] for y in traj])
    return xK, ell


# ----------------------------------------------------------------------------------------------
# adaptive Dormand–Prince 5(4)
# ----------------------------------------------------------------------------------------------
# Butcher tableau of Dormand & Prince (1980), "A family of embedded Runge-Kutta formulae",
# J. Comput. Appl. Math. 6(1): the 5th-order weights are the last row of A (FSAL), and the
# 4th-order embedded weights give the error estimate.
_DP_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_DP_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_DP_B5 = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_DP_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
_DP_E = tuple(b5 - b4 for b5, b4 in zip(_DP_B5, _DP_B4))


class RK45Result(NamedTuple):
    """Result of :func:`rk45`.

    x: solution at t1 (shape of x0); delta_logp: (B,) log-density increment, or None when
    ``logdet=False``; nfe: number of f evaluations (including the 2 of the initial step-size
    selection when ``h0`` is not given); n_accepted / n_rejected: step counts.
    """

    x: Tensor
    delta_logp: Tensor | None
    nfe: int
    n_accepted: int
    n_rejected: int


def _err_norm(err: tuple, y0: tuple, y1: tuple, rtol: float, atol: float) -> Tensor:
    """max over the batch of the per-sample RMS of err / (atol + rtol·max(|y0|, |y1|))
    (Hairer, Nørsett & Wanner, Solving ODEs I, II.4, eq. 4.11, taken per sample)."""
    sq_sum = 0.0
    n = 0
    for e, a, b in zip(err, y0, y1):
        scale = atol + rtol * torch.maximum(a.abs(), b.abs())
        r = (e.detach() / scale.detach()).reshape(e.shape[0], -1)
        sq_sum = sq_sum + r.square().sum(-1)
        n += r.shape[1]
    return (sq_sum / n).sqrt().max()


def _rms_norm(y: tuple, scale_from: tuple, rtol: float, atol: float) -> Tensor:
    sq_sum = 0.0
    n = 0
    for v, a in zip(y, scale_from):
        r = (v.detach() / (atol + rtol * a.detach().abs())).reshape(v.shape[0], -1)
        sq_sum = sq_sum + r.square().sum(-1)
        n += r.shape[1]
    return (sq_sum / n).sqrt().max()


def rk45(
    f: ODEFunc,
    x0: Tensor,
    t0: float,
    t1: float,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    logdet: bool = False,
    divergence: str = "exact",
    n_probes: int = 1,
    generator: torch.Generator | None = None,
    distribution: str = "rademacher",
    h0: float | None = None,
    max_steps: int = 100_000,
    safety: float = 0.9,
    min_factor: float = 0.2,
    max_factor: float = 10.0,
) -> RK45Result:
    """Adaptive Dormand–Prince 5(4) integration of dx/dt = f(x, t) from ``t0`` to ``t1``.

    Local extrapolation (the 5th-order solution is propagated), FSAL (6 new evaluations per
    step), error estimate from the embedded 4th-order solution, standard step-size control
    h ← h · clip(safety · err^(−1/5), min_factor, max_factor) with no growth right after a rejection
    (Hairer, Nørsett & Wanner, Solving ODEs I, II.4–II.5). The step size is shared by the whole
    batch; the error norm is the *largest* per-sample RMS of err / (atol + rtol·|y|), so every sample
    meets the tolerance (the batch advances at the pace of its hardest sample). ``t1 < t0`` is
    allowed. The initial step is chosen by Hairer's algorithm (II.4, 2 extra evaluations) unless
    ``h0`` (its magnitude) is given. A step whose error is not finite is rejected and h divided by 5.

    With ``logdet=True`` the state is augmented with ℓ, dℓ/dt = −∇·f (``divergence`` "exact" or
    "hutchinson", probes drawn once with ``generator`` and fixed), ℓ is part of the error control,
    and ``delta_logp`` is returned (log q_1(x_1) = log q_0(x_0) + delta_logp).

    Returns :class:`RK45Result` ``(x, delta_logp, nfe, n_accepted, n_rejected)``.
    Raises RuntimeError after ``max_steps`` attempted steps or if h underflows.
    """
    _check_x0(x0)
    if not (rtol > 0 and atol >= 0) and not (rtol >= 0 and atol > 0):
        raise ValueError(f"rtol and atol must be non-negative and not both zero, got rtol={rtol}, atol={atol}")
    if not (math.isfinite(float(t0)) and math.isfinite(float(t1))):
        raise ValueError(f"t0 and t1 must be finite, got t0={t0}, t1={t1}")
    t0 = float(t0)
    t1 = float(t1)
    nfe = 0
    if logdet:
        noise = _probes(x0, divergence, n_probes, generator, distribution)
        rhs_raw = _logdet_rhs(f, divergence, noise)
        y = (x0, x0.new_zeros(x0.shape[0]))
    else:

        def rhs_raw(y, t):
            return (_checked_call(f, y[0], t),)

        y = (x0,)

    def rhs(y, t: float):
        nonlocal nfe
        nfe += 1
        return rhs_raw(y, torch.tensor(t, dtype=x0.dtype, device=x0.device))

    if t1 == t0:
        return RK45Result(x0, y[1] if logdet else None, 0, 0, 0)
    direction = 1.0 if t1 > t0 else -1.0
    span = abs(t1 - t0)

    k1 = rhs(y, t0)
    if h0 is None:
        # Hairer, Nørsett & Wanner I, II.4 "starting step size" (order p = 5 -> exponent 1/(p+1))
        d0 = float(_rms_norm(y, y, rtol, atol))
        d1 = float(_rms_norm(k1, y, rtol, atol))
        h_a = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
        h_a = min(h_a, span)
        y_a = _axpy(y, direction * h_a, k1)
        k_a = rhs(y_a, t0 + direction * h_a)
        d2 = float(_rms_norm(tuple(b - a for a, b in zip(k1, k_a)), y, rtol, atol)) / h_a
        if max(d1, d2) <= 1e-15:
            h_b = max(1e-6, h_a * 1e-3)
        else:
            h_b = (0.01 / max(d1, d2)) ** (1 / 5)
        h = min(100 * h_a, h_b, span)
    else:
        h = min(abs(float(h0)), span)
        if h <= 0:
            raise ValueError(f"h0 must be non-zero, got {h0}")

    t = t0
    n_acc = n_rej = 0
    just_rejected = False
    while direction * (t1 - t) > 0:
        if n_acc + n_rej >= max_steps:
            raise RuntimeError(
                f"rk45: reached max_steps={max_steps} before t1={t1} (t={t}, h={h:.3g}); "
                "the problem may be too stiff for an explicit method or the tolerance too tight"
            )
        last = h >= abs(t1 - t)
        if last:
            h = abs(t1 - t)
        if h < 1e-14 * max(1.0, abs(t)):
            raise RuntimeError(f"rk45: step size underflow at t={t} (h={h:.3g})")
        hs = direction * h
        ks = [k1]
        for i in range(1, 7):
            yi = y
            for j, a in enumerate(_DP_A[i]):
                if a != 0.0:
                    yi = _axpy(yi, hs * a, ks[j])
            ks.append(rhs(yi, t1 if (last and _DP_C[i] == 1.0) else t + hs * _DP_C[i]))
        # with FSAL, stage 7 is evaluated at y_new = y + h Σ b5 k (the stage-6 input row of A is b5)
        y_new = yi
        err = tuple(
            hs * sum(e * k[c] for e, k in zip(_DP_E, ks) if e != 0.0) for c in range(len(y))
        )
        en = float(_err_norm(err, y, y_new, rtol, atol))
        if not math.isfinite(en):
            n_rej += 1
            just_rejected = True
            h *= 0.2
            continue
        if en <= 1.0:
            n_acc += 1
            t = t1 if last else t + hs
            y = y_new
            k1 = ks[6]
            fac = max_factor if not just_rejected else 1.0
            just_rejected = False
            h = h * min(fac, max(min_factor, safety * (en ** -0.2 if en > 0 else max_factor / safety)))
        else:
            n_rej += 1
            just_rejected = True
            h = h * min(1.0, max(min_factor, safety * en ** -0.2))
    return RK45Result(y[0], y[1] if logdet else None, nfe, n_acc, n_rej)
