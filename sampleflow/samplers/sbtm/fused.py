r"""The implicit-score-matching loss of a :class:`~sampleflow.nn.ResidualMLP` and its parameter gradient by a
hand-derived backward pass: plain matmuls and elementwise operations, no autograd graph (SBTM's hot loop).

Network (depth L, activation φ): with the tangent stack V (K, B, d) — the d basis vectors for the exact
divergence, or K Hutchinson probes —

    a₁ = x W₁ᵀ + b₁,  t₁ = V W₁ᵀ,   h₁ = φ(a₁) + x Pᵀ,   δ₁ = φ'(a₁) t₁ + V Pᵀ          (P = I when d = width)
    a_l = h_{l−1} W_lᵀ + b_l,  t_l = δ_{l−1} W_lᵀ,   h_l = φ(a_l) + h_{l−1},   δ_l = φ'(a_l) t_l + δ_{l−1}
    s = h_L W_oᵀ + b_o,   J V = δ_L W_oᵀ,

so ∇·s = Σ_k (J V)[k, :, k] (exact) or (1/K) Σ_k V_k·(J V)_k (Hutchinson), and
L = (1/B) Σᵢ [ |sᵢ|² + 2 ∇·s(xᵢ) ] — the same loss as :func:`.losses.ism_loss` with the "tangent" backend.

Backward (reverse mode by hand, ḡ = ∂L/∂·): ḡ_s = 2s/B, ḡ_{JV} = 2C/B with C[k, :, j] = δ_kj (exact) or
V[k, :, j]/K (Hutchinson); ḡ_{h_L} = ḡ_s W_o, ḡ_{δ_L} = ḡ_{JV} W_o, and for each residual layer, from the last:

    ḡ_a = φ'(a) ⊙ ḡ_h + φ''(a) ⊙ Σ_k t_k ⊙ ḡ_{δ,k},      ḡ_t = φ'(a) ⊙ ḡ_δ,
    ḡ_W = ḡ_aᵀ h_prev + Σ_k ḡ_{t,k}ᵀ δ_prev,k,   ḡ_b = Σᵢ ḡ_a,
    ḡ_{h_prev} = ḡ_h + ḡ_a W,   ḡ_{δ_prev} = ḡ_δ + ḡ_t W,

(first layer: ḡ_W₁ = ḡ_aᵀ x + Σ_k ḡ_{t,k}ᵀ V_k and ḡ_P = ḡ_hᵀ x + Σ_k ḡ_{δ,k}ᵀ V_k). The primal and tangent
rows travel as one stacked (B(1+K), width) matrix, so each hidden layer costs three matmuls of that height
(forward, ∂W, ∂input) — the whole FLOP count of an iteration — and everything else is elementwise.
The result equals autograd's through the same forward to float rounding (tests/samplers/test_sbtm.py).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["activation_derivatives", "activation_name", "resmlp_ism_value_and_grad", "resmlp_parameters", "supports", "adamw_",
           "ism_adamw_step", "unflatten", "resmlp_forward"]


def activation_derivatives(name: str, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(φ(z), φ'(z), φ''(z)) for ``name`` "softsign" (φ = z/(1+|z|), φ' = (1+|z|)⁻², φ'' = −2 sign(z)(1+|z|)⁻³)
    or "tanh" (φ' = 1 − φ², φ'' = −2φφ')."""
    if name == "softsign":
        r = 1.0 / (1.0 + z.abs())
        d1 = r * r
        return z * r, d1, -2.0 * torch.sign(z) * d1 * r
    if name == "tanh":
        y = torch.tanh(z)
        d1 = 1.0 - y * y
        return y, d1, -2.0 * y * d1
    raise ValueError(f"no hand-derived second derivative for activation {name!r}")


def _mm(a: Tensor, b: Tensor) -> Tensor:
    """a @ b, with the degenerate shapes of a d = 1 network as elementwise work: an inner dimension 1 is an
    outer product, an outer dimension 1 a row reduction (a BLAS call on such shapes costs more than the
    arithmetic; under ``torch.compile`` these fuse with their neighbours)."""
    if a.shape[1] == 1:
        return a * b
    if b.shape[1] == 1:
        return (a * b.t()).sum(1, keepdim=True)
    if a.shape[0] == 1:
        return (a.t() * b).sum(0, keepdim=True)
    return a @ b


def activation_name(net: nn.Module) -> str | None:
    """"softsign" or "tanh" for a network whose ``activation`` is that module, else None."""
    act = getattr(net, "activation", None)
    if type(act) is nn.Softsign:
        return "softsign"
    if type(act) is nn.Tanh:
        return "tanh"
    return None


def supports(net: nn.Module) -> bool:
    """Whether :func:`resmlp_ism_value_and_grad` covers ``net``: a plain :class:`~sampleflow.nn.ResidualMLP`
    with the soft-sign or tanh activation, R^d → R^d (a score field, no potential)."""
    from ...nn import ResidualMLP
    return type(net) is ResidualMLP and activation_name(net) is not None and net.out_dim == net.in_dim


def resmlp_parameters(net: nn.Module) -> list[Tensor]:
    """The parameters of a ResidualMLP in the order :func:`resmlp_ism_value_and_grad` takes and returns them:
    W₁, b₁, …, W_L, b_L, [P,] W_o, b_o — which is also ``list(net.parameters())``'s order."""
    params = []
    for layer in net.hidden:
        params += [layer.weight, layer.bias]
    if net.projection is not None:
        params.append(net.projection.weight)
    params += [net.output_layer.weight, net.output_layer.bias]
    return params


def resmlp_forward(params: list[Tensor], x: Tensor, activation: str, depth: int, projection: bool) -> Tensor:
    """s(x) of the residual MLP with parameters ``params`` (order of :func:`resmlp_parameters`): the module's
    forward with the d = 1 products as elementwise work (:func:`_mm`), for the no-graph score evaluation."""
    Ws, bs = params[0:2 * depth:2], params[1:2 * depth:2]
    a = _mm(x, Ws[0].t()) + bs[0]
    y = a / (1.0 + a.abs()) if activation == "softsign" else torch.tanh(a)
    h = y + (_mm(x, params[2 * depth].t()) if projection else x)
    for l in range(1, depth):
        a = _mm(h, Ws[l].t()) + bs[l]
        h = (a / (1.0 + a.abs()) if activation == "softsign" else torch.tanh(a)) + h
    return _mm(h, params[-2].t()) + params[-1]


def resmlp_ism_value_and_grad(params: list[Tensor], x: Tensor, V: Tensor | None, activation: str,
                              depth: int, projection: bool) -> tuple[Tensor, list[Tensor]]:
    """The ISM loss L = (1/B) Σᵢ [|s(xᵢ)|² + 2 ∇·s(xᵢ)] of the residual MLP with parameters ``params`` (the
    order of :func:`resmlp_parameters`) on the rows of ``x`` (B, d), and its gradient with respect to each
    parameter (same order), by the hand-derived backward of the module docstring. ``V``: None for the exact
    divergence, or the (K, B, d) Hutchinson probes. Pure function of its inputs (no autograd needed; it runs
    under ``torch.no_grad()`` and under ``torch.compile``)."""
    B, d = x.shape
    exact = V is None
    Ws = params[0:2 * depth:2]
    bs = params[1:2 * depth:2]
    P = params[2 * depth] if projection else None
    Wo, bo = params[-2], params[-1]
    if exact:
        K = d
        V = torch.eye(d, dtype=x.dtype, device=x.device)[:, None, :].expand(d, B, d)
        C = V
    else:
        K = V.shape[0]
        C = V / K
    W1 = Ws[0]
    width = W1.shape[0]
    # layer 1 (input layer, with the projection skip)
    a = _mm(x, W1.t()) + bs[0]                                     # (B, w)
    t = _mm(V.reshape(K * B, d), W1.t()).view(K, B, width)         # (K, B, w)
    y, d1, d2 = activation_derivatives(activation, a)
    if P is None:
        h = y + x
        dh = d1 * t + V
    else:
        h = y + _mm(x, P.t())
        dh = d1 * t + _mm(V.reshape(K * B, d), P.t()).view(K, B, width)
    saved = [(t, d1, d2)]
    stacked = [torch.cat([h, dh.reshape(K * B, width)])]           # the input rows of layer 2, 3, ...
    for l in range(1, depth):
        S = stacked[-1]
        Z = S @ Ws[l].t()                                          # (B(1+K), w): primal and tangents at once
        a, t = Z[:B] + bs[l], Z[B:].view(K, B, width)
        y, d1, d2 = activation_derivatives(activation, a)
        h = y + S[:B]
        dh = d1 * t + S[B:].view(K, B, width)
        saved.append((t, d1, d2))
        stacked.append(torch.cat([h, dh.reshape(K * B, width)]))
    S = stacked[-1]
    out = _mm(S[:B], Wo.t()) + bo                                  # (B, d)
    jv = _mm(S[B:], Wo.t()).view(K, B, d)
    div = jv.diagonal(dim1=0, dim2=2).sum(-1) if exact else (V * jv).sum(-1).mean(0)
    loss = ((out * out).sum(-1) + 2.0 * div).mean()
    # backward
    g_out = out * (2.0 / B)                                        # (B, d)
    g_jv = C * (2.0 / B)                                           # (K, B, d)
    G = torch.cat([g_out, g_jv.reshape(K * B, d)])                 # (B(1+K), d)
    g_Wo = _mm(G.t(), S)                                           # (d, w)
    g_bo = g_out.sum(0)
    gS = _mm(G, Wo)                                                # (B(1+K), w): [ḡ_h; ḡ_δ]
    grads_W: list[Tensor] = [None] * depth                         # type: ignore[list-item]
    grads_b: list[Tensor] = [None] * depth                         # type: ignore[list-item]
    for l in range(depth - 1, 0, -1):
        t, d1, d2 = saved[l]
        g_h, g_dh = gS[:B], gS[B:].view(K, B, width)
        g_a = d1 * g_h + d2 * (t * g_dh).sum(0)
        g_t = d1 * g_dh
        gZ = torch.cat([g_a, g_t.reshape(K * B, width)])
        grads_W[l] = gZ.t() @ stacked[l - 1]
        grads_b[l] = g_a.sum(0)
        gS = gS + gZ @ Ws[l]
    t, d1, d2 = saved[0]
    g_h, g_dh = gS[:B], gS[B:].view(K, B, width)
    g_a = d1 * g_h + d2 * (t * g_dh).sum(0)
    g_t = d1 * g_dh
    XV = torch.cat([x, V.reshape(K * B, d)])                       # (B(1+K), d)
    grads_W[0] = _mm(torch.cat([g_a, g_t.reshape(K * B, width)]).t(), XV)
    grads_b[0] = g_a.sum(0)
    grads = []
    for gw, gb in zip(grads_W, grads_b):
        grads += [gw, gb]
    if P is not None:
        grads.append(_mm(gS.t(), XV))
    grads += [g_Wo, g_bo]
    return loss, grads


def unflatten(flat: Tensor, shapes: list[torch.Size]) -> list[Tensor]:
    """Views of the consecutive blocks of the 1-D ``flat`` with the given shapes."""
    out, i = [], 0
    for shape in shapes:
        n = shape.numel()
        out.append(flat[i:i + n].view(shape))
        i += n
    return out


def adamw_(p: Tensor, g: Tensor, m: Tensor, v: Tensor, step: Tensor, lr: float, beta1: float, beta2: float,
           eps: float, weight_decay: float) -> None:
    """One AdamW update (Loshchilov & Hutter, "Decoupled weight decay regularization", 2019) in place, as
    ``torch.optim.AdamW``: step += 1; p ← p(1 − lr·λ); m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²;
    p ← p − (lr/(1−β₁^step)) · m / (√v/√(1−β₂^step) + ε). ``step`` is a float64 tensor of shape (1,) (a
    tensor: no recompilation as it grows; not 0-d: torch 2.13's ``torch.compile`` drops in-place updates of a
    0-d float64 CPU input); p, g, m, v are tensors of one shape (here the flat parameter vector). The bias
    corrections are computed in float64, the vector arithmetic in p's dtype."""
    step.add_(1)
    step_size = (lr / (1 - beta1 ** step)).to(p.dtype)
    bc2_sqrt = (1 - beta2 ** step).sqrt().to(p.dtype)
    p.mul_(1 - lr * weight_decay)
    m.lerp_(g, 1 - beta1)
    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    p.sub_(step_size * m / (v.sqrt() / bc2_sqrt + eps))


def ism_adamw_step(flat: Tensor, m: Tensor, v: Tensor, step: Tensor, x: Tensor, batch: Tensor,
                   probes: Tensor | None, shapes: list[torch.Size], activation: str, depth: int,
                   projection: bool, lr: float, beta1: float, beta2: float, eps: float,
                   weight_decay: float) -> Tensor:
    """One SBTM training iteration on the minibatch ``x[batch]``: the ISM loss and gradient of
    :func:`resmlp_ism_value_and_grad` (with the Hutchinson ``probes``, or exact when None) and an
    :func:`adamw_` step of the flat parameter vector ``flat`` (optimiser moments ``m``, ``v``, counter
    ``step``), all in place; returns the loss. Pure tensor code, so ``torch.compile`` makes it one graph
    (gather, forward, tangents, backward and AdamW fused around the matmuls)."""
    params = unflatten(flat, shapes)
    loss, grads = resmlp_ism_value_and_grad(params, x[batch], probes, activation, depth, projection)
    adamw_(flat, torch.cat([g.reshape(-1) for g in grads]), m, v, step, lr, beta1, beta2, eps, weight_decay)
    return loss
