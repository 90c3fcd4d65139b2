"""Divergence (trace of the Jacobian) of a batched vector field, exact or by Hutchinson's estimator.

A *batched field* is a function ``f`` taking ``x`` of shape ``(B, *event)`` (usually ``(B, d)``) to a
tensor of the same shape, whose row ``i`` depends only on ``x[i]`` (a network applied row by row, a
score, a drift at a fixed time). Its divergence is, per row,

    (∇·f)(x_i) = tr J_f(x_i) = Σ_k ∂f_k/∂x_k (x_i),     shape (B,).

Two estimators are offered:

* :func:`divergence_exact` — the trace of the full per-row Jacobian (d vector–Jacobian products).
  For d up to a few tens this is what you want.
* :func:`divergence_hutchinson` — the unbiased estimator tr J = E[εᵀ J ε] for probes ε with
  E[ε εᵀ] = I (Hutchinson 1990, "A stochastic estimator of the trace of the influence matrix for
  Laplacian smoothing splines"; used for continuous normalising flows by Grathwohl et al. 2019,
  FFJORD). One Jacobian–vector (or vector–Jacobian) product per probe, whatever d. With Rademacher
  probes (ε_k = ±1) the variance is 2 Σ_{k≠l} S_kl² with S = (J + Jᵀ)/2, i.e. zero for a diagonal
  Jacobian; Gaussian probes add 2 Σ_k J_kk².

Backends (``backend=``): ``"autograd"`` — reverse mode through ``torch.autograd.grad`` (exact: the
D basis vjps e_kᵀJ, batched with ``is_grads_batched`` under ``torch.no_grad()``, one after the other
with ``create_graph`` under grad mode; Hutchinson: one vjp εᵀJ per probe, then ·ε); ``"func"`` —
``torch.func`` (exact: ``vmap`` over rows of ``jacrev``; Hutchinson: one forward-mode ``jvp`` J ε per
probe, vmapped over probes). ``"auto"`` (default) picks what we measured fastest (MLP of width 64,
batch 512, and a linear field at batch 64; one CPU thread; torch 2.13):

* Hutchinson → autograd vjp: 2–3× faster than ``torch.func.jvp`` in every case, with or without a
  backward pass on top (forward-mode jvp and jvp's over basis vectors were the slowest options).
* exact, event size D ≤ 32 → autograd: 1.5–4× less per-call overhead than ``vmap(jacrev)`` without
  grad (what matters in an ODE solve of thousands of small calls), and 1–2× faster with a
  differentiable result for D ≤ 20; it also avoids ``torch.func``'s one-off import of
  ``torch._dynamo`` (~3 s on first use).
* exact, D > 32 → ``vmap(jacrev)``: at D = 50 about 15 % faster than the autograd loop with a
  backward pass on top, and 2.9× faster than batched autograd double-backward.

* ``"tangent"`` — the field's own hand-written forward-mode product ``f.forward_and_jvp(x, V)`` (the MLPs
  of :mod:`sampleflow.nn` provide it: the tangents are pushed through each layer with the activation's
  known derivative, the primal pass is shared by all tangents). ``"auto"`` uses it whenever ``f`` has it
  and ``x`` is (B, d): for SBTM's implicit score matching on a 400 × 128 residual MLP it made a training
  iteration 2–3× cheaper than ``torch.func.jvp`` and ≈ 1.3× cheaper than the autograd double backward.

All backends give the same numbers to rounding.

Differentiability ("create_graph" behaviour) follows PyTorch's grad mode: under grad mode, when
``x`` or a tensor ``f`` closes over (a network's parameters) requires grad, the returned divergence
(and value) are differentiable with respect to them, as needed by implicit score matching
E[|s|² + 2∇·s] or by PINN residuals. Under ``torch.no_grad()`` nothing is recorded and the call is a
plain, cheap evaluation. (With the autograd backend, outputs computed under grad mode report
``requires_grad=True`` even when nothing upstream requires grad: they hang on an internal leaf and carry
no gradient anywhere.) With ``backend="func"`` (or ``"auto"`` exact with D > 32), ``f`` must be
``torch.func``-compatible (no in-place updates of captured tensors, no ``.item()``-dependent control
flow), which ordinary networks are; ``backend="autograd"`` has no such restriction.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor
from torch.func import jacrev, jvp, vmap

__all__ = [
    "divergence_exact",
    "divergence_hutchinson",
    "value_and_divergence",
    "sample_probes",
]

Field = Callable[[Tensor], Tensor]

_DISTRIBUTIONS = ("rademacher", "gaussian")
_METHODS = ("exact", "hutchinson")


def _check_x(x) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(f"x must be batched, of shape (B, d) (or (B, *event)); got shape {tuple(x.shape)}")
    if not (x.is_floating_point() or x.is_complex()):
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")


def _check_out(fx: Tensor, x: Tensor) -> None:
    if not isinstance(fx, Tensor) or fx.shape != x.shape:
        shape = tuple(fx.shape) if isinstance(fx, Tensor) else type(fx).__name__
        raise ValueError(f"f must map x of shape {tuple(x.shape)} to the same shape; it returned {shape}")


def sample_probes(
    x: Tensor,
    n_probes: int = 1,
    generator: torch.Generator | None = None,
    distribution: str = "rademacher",
) -> Tensor:
    """Probe vectors ε of shape ``(n_probes, *x.shape)`` with E[ε εᵀ] = I, dtype/device of ``x``.

    ``distribution``: ``"rademacher"`` (ε_k = ±1 with probability 1/2) or ``"gaussian"`` (N(0, I)).
    Draw them once and pass them as ``noise=`` to keep the probes fixed along an ODE solve (FFJORD).
    """
    if distribution not in _DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {_DISTRIBUTIONS}, got {distribution!r}")
    if not isinstance(n_probes, int) or isinstance(n_probes, bool) or n_probes < 1:
        raise ValueError(f"n_probes must be a positive integer, got {n_probes!r}")
    shape = (n_probes, *x.shape)
    if generator is not None and generator.device != x.device:
        # draw on the generator's device, then move: same seed -> same probes on every device
        dev = generator.device
    else:
        dev = x.device
    if distribution == "rademacher":
        eps = torch.randint(0, 2, shape, generator=generator, device=dev).to(x.dtype).mul_(2).sub_(1)
    else:
        eps = torch.randn(shape, generator=generator, device=dev, dtype=x.dtype)
    return eps.to(x.device)


def _exact_func(f: Field, x: Tensor) -> tuple[Tensor, Tensor]:
    D = math.prod(x.shape[1:])

    def row(xi: Tensor):
        y = f(xi.unsqueeze(0))
        _check_out(y, xi.unsqueeze(0))
        y = y.squeeze(0)
        return y, y

    J, fx = vmap(jacrev(row, has_aux=True))(x)  # J: (B, *event, *event)
    div = J.reshape(x.shape[0], D, D).diagonal(dim1=-2, dim2=-1).sum(-1)
    return fx, div


def _hutchinson_func(f: Field, x: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
    def one(v: Tensor):
        return jvp(f, (x,), (v,))

    fx, Jeps = vmap(one, out_dims=(None, 0))(eps)  # Jeps: (n_probes, B, *event)
    _check_out(fx, x)
    quad = (eps * Jeps).reshape(eps.shape[0], x.shape[0], -1).sum(-1)  # εᵀ J ε, (n_probes, B)
    return fx, quad.mean(0)


def _autograd(f: Field, x: Tensor, eps: Tensor | None) -> tuple[Tensor, Tensor]:
    """Reverse mode: exact (``eps is None``: the D basis vjps, batched) or Hutchinson (one vjp per
    probe). The graph is kept (create_graph) only under grad mode."""
    differentiable = torch.is_grad_enabled()
    B = x.shape[0]
    with torch.enable_grad():
        xr = x if (x.requires_grad and differentiable) else x.detach().requires_grad_(True)
        fx = f(xr)
        _check_out(fx, x)
        if not fx.requires_grad:  # f does not depend on anything differentiable: constant field
            div = torch.zeros(B, dtype=x.dtype, device=x.device)
        elif eps is None and not differentiable:
            D = math.prod(x.shape[1:])
            basis = torch.eye(D, dtype=x.dtype, device=x.device).reshape(D, 1, *x.shape[1:]).expand(D, *x.shape)
            (g,) = torch.autograd.grad(fx, xr, basis, is_grads_batched=True, allow_unused=True)
            if g is None:
                div = torch.zeros(B, dtype=x.dtype, device=x.device)
            else:  # g[k] = e_kᵀ J per row; the trace picks component k of g[k]
                div = g.reshape(D, B, D).diagonal(dim1=0, dim2=2).sum(-1)
        elif eps is None:
            # differentiable result: D vjps with create_graph (batched double-backward is slower)
            fflat = fx.reshape(B, -1)
            D = fflat.shape[1]
            div = torch.zeros(B, dtype=x.dtype, device=x.device)
            for k in range(D):
                (g,) = torch.autograd.grad(fflat[:, k].sum(), xr, create_graph=True, retain_graph=True,
                                           allow_unused=True)
                if g is not None:
                    div = div + g.reshape(B, -1)[:, k]
        else:
            n = eps.shape[0]
            div = 0.0
            for j in range(n):
                (g,) = torch.autograd.grad(
                    fx, xr, eps[j], retain_graph=(j < n - 1) or differentiable,
                    create_graph=differentiable, allow_unused=True,
                )
                if g is not None:
                    div = div + (g * eps[j]).reshape(B, -1).sum(-1)
            div = (div / n) if isinstance(div, Tensor) else torch.zeros(B, dtype=x.dtype, device=x.device)
    if not differentiable:
        fx, div = fx.detach(), div.detach()
    return fx, div


_BACKENDS = ("auto", "autograd", "func", "tangent")
_AUTO_JACREV_ABOVE = 32  # exact divergence: "auto" uses vmap(jacrev) for event sizes above this


def _tangent(f: Field, x: Tensor, eps: Tensor | None) -> tuple[Tensor, Tensor] | None:
    """Forward mode by the field's own ``forward_and_jvp(x, V)`` with the D basis vectors (exact) or the
    probes ``eps`` (Hutchinson) as the tangent stack V; None when the field cannot (unknown activation)."""
    B, D = x.shape
    exact = eps is None
    V = torch.eye(D, dtype=x.dtype, device=x.device)[:, None, :].expand(D, B, D) if exact else eps
    pair = f.forward_and_jvp(x, V)
    if pair is None:
        return None
    fx, jv = pair
    _check_out(fx, x)
    div = jv.diagonal(dim1=0, dim2=2).sum(-1) if exact else (V * jv).sum(-1).mean(0)
    return fx, div


def value_and_divergence(
    f: Field,
    x: Tensor,
    method: str = "exact",
    n_probes: int = 1,
    generator: torch.Generator | None = None,
    distribution: str = "rademacher",
    noise: Tensor | None = None,
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    """``(f(x), ∇·f(x))`` with one evaluation of the field: shapes ``x.shape`` and ``(B,)``.

    ``method``: ``"exact"`` (trace of the per-row Jacobian) or ``"hutchinson"`` (mean over
    ``n_probes`` probes of εᵀ J ε; probes drawn from ``distribution`` with ``generator``, or given
    as ``noise`` of shape ``(n_probes, *x.shape)`` or ``x.shape``). ``backend``: ``"auto"``,
    ``"autograd"`` or ``"func"``. See the module docstring for cost, variance, backends and
    differentiability.
    """
    _check_x(x)
    if torch.is_inference_mode_enabled():
        raise RuntimeError(
            "the divergence needs autograd, which torch.inference_mode() disables; "
            "use torch.no_grad() instead (it is as cheap here)"
        )
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    tangent = backend == "tangent" or (backend == "auto" and hasattr(f, "forward_and_jvp") and x.ndim == 2)
    if tangent and not (hasattr(f, "forward_and_jvp") and x.ndim == 2):
        raise ValueError("backend='tangent' needs a field with a forward_and_jvp(x, v) method and x of shape (B, d)")
    if method == "exact" and tangent:
        out = _tangent(f, x, None)
        if out is not None:
            return out
    if method == "exact":
        if backend == "func" or (backend == "auto" and math.prod(x.shape[1:]) > _AUTO_JACREV_ABOVE):
            return _exact_func(f, x)
        return _autograd(f, x, None)
    if noise is None:
        noise = sample_probes(x, n_probes, generator, distribution)
    else:
        if not isinstance(noise, Tensor):
            raise TypeError(f"noise must be a torch.Tensor, got {type(noise).__name__}")
        if noise.shape == x.shape:
            noise = noise.unsqueeze(0)
        if noise.shape[1:] != x.shape:
            raise ValueError(
                f"noise must have shape (n_probes, *x.shape) = (n, {', '.join(map(str, x.shape))}) "
                f"or x.shape; got {tuple(noise.shape)}"
            )
        noise = noise.to(dtype=x.dtype, device=x.device)
    if tangent:
        out = _tangent(f, x, noise)
        if out is not None:
            return out
    if backend == "func":
        return _hutchinson_func(f, x, noise)
    return _autograd(f, x, noise)


def divergence_exact(f: Field, x: Tensor, backend: str = "auto") -> Tensor:
    """Exact divergence tr J_f(x_i) for each row, shape ``(B,)``.

    ``f``: batched field ``(B, *event) -> (B, *event)`` whose rows depend only on their own input row.
    Differentiable w.r.t. ``x`` and ``f``'s parameters under grad mode (see module docstring).
    """
    return value_and_divergence(f, x, method="exact", backend=backend)[1]


def divergence_hutchinson(
    f: Field,
    x: Tensor,
    n_probes: int = 1,
    generator: torch.Generator | None = None,
    distribution: str = "rademacher",
    noise: Tensor | None = None,
    backend: str = "auto",
) -> Tensor:
    """Hutchinson estimate (1/n) Σ_j ε_jᵀ J_f(x_i) ε_j for each row, shape ``(B,)``; unbiased.

    One vjp (``backend="auto"``/``"autograd"``) or jvp (``"func"``) per probe. ``distribution`` ``"rademacher"`` (default,
    lower variance, exact for a diagonal Jacobian) or ``"gaussian"``; ``generator`` makes the probes
    reproducible; ``noise`` (shape ``(n_probes, *x.shape)`` or ``x.shape``) fixes them.
    """
    return value_and_divergence(
        f, x, method="hutchinson", n_probes=n_probes, generator=generator, distribution=distribution, noise=noise,
        backend=backend,
    )[1]
