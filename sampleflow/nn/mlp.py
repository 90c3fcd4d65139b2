"""Multilayer perceptrons: a plain MLP, the time-conditioned control/score network and a network for
learned time-dependent coefficients.

Depth convention: ``depth`` counts the *linear layers* along the input-to-output path (a "4-layer
MLP" has 4 weight matrices), as in the "4-layer, width-64" networks of PIS (Zhang & Chen 2022) and of
Richter & Berner (ICLR 2024). ``depth >= 2``.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .time import SinusoidalTimeEmbedding, as_time_tensor, broadcast_time

__all__ = ["MLP", "ResidualMLP", "TimeMLP", "TimeScalar", "count_parameters", "make_activation"]

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "gelu": nn.GELU,
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "elu": nn.ELU,
    "softsign": nn.Softsign,
}


def make_activation(activation: str | nn.Module | Callable[[], nn.Module]) -> nn.Module:
    """An activation module from a name (``gelu``, ``gelu_tanh``, ``silu``/``swish``, ``relu``,
    ``tanh``, ``softplus``, ``elu``, ``softsign``), a module, or a zero-argument factory such as ``nn.GELU``."""
    if isinstance(activation, nn.Module):
        return activation
    if isinstance(activation, str):
        try:
            return _ACTIVATIONS[activation.lower()]()
        except KeyError:
            raise ValueError(
                f"activation must be one of {sorted(_ACTIVATIONS)}, a nn.Module or a factory; "
                f"got {activation!r}"
            ) from None
    if callable(activation):
        module = activation()
        if isinstance(module, nn.Module):
            return module
    raise TypeError(f"activation must be a name, a nn.Module or a factory returning one, got {activation!r}")


def activation_with_derivative(activation: nn.Module, z: torch.Tensor):
    """(φ(z), φ'(z)) for the built-in activations, or None for others — the elementwise chain rule of the
    hand-written forward-mode products below (one fused pass instead of ``torch.func.jvp``'s dual tensors,
    which costs 2–3× more on small batches)."""
    if isinstance(activation, nn.Softsign):
        a = 1.0 + z.abs()
        return z / a, 1.0 / (a * a)
    if isinstance(activation, nn.Tanh):
        y = torch.tanh(z)
        return y, 1.0 - y * y
    if isinstance(activation, nn.SiLU):
        sig = torch.sigmoid(z)
        return z * sig, sig * (1.0 + z * (1.0 - sig))
    if isinstance(activation, nn.Softplus) and activation.beta == 1 and activation.threshold >= 20:
        return nn.functional.softplus(z), torch.sigmoid(z)
    if isinstance(activation, nn.GELU) and activation.approximate == "none":
        cdf = 0.5 * (1.0 + torch.erf(z * 0.7071067811865476))
        pdf = torch.exp(-0.5 * z * z) * 0.3989422804014327
        return z * cdf, cdf + z * pdf
    if isinstance(activation, nn.ReLU):
        return torch.relu(z), (z > 0).to(z.dtype)
    return None


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of scalar parameters of ``module`` (only those with ``requires_grad`` by default)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def _check_depth(depth: int) -> None:
    if depth < 2:
        raise ValueError(f"depth (number of linear layers) must be >= 2, got {depth}")


def _zero_(layer: nn.Linear, bias: float = 0.0) -> nn.Linear:
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.fill_(bias)
    return layer


def _check_input(x: torch.Tensor, dim: int, weight: torch.Tensor, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 1 or x.shape[-1] != dim:
        raise ValueError(f"{name} must have shape (..., {dim}), got {tuple(x.shape)}")
    if x.dtype != weight.dtype:
        raise TypeError(
            f"{name} has dtype {x.dtype} but the network's parameters are {weight.dtype}; "
            f"convert one of them (e.g. net.to({x.dtype}))"
        )


class MLP(nn.Module):
    r"""Plain MLP ``R^in_dim -> R^out_dim``: ``depth`` linear layers, hidden width ``width``, an
    activation between them (none after the last), acting on the last axis of ``(..., in_dim)``.

    ``zero_init_last=True`` zeroes the last layer's weight and bias, so the fresh network is ≡ 0.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        width: int = 64,
        depth: int = 4,
        activation: str | nn.Module | Callable = "gelu",
        zero_init_last: bool = False,
    ):
        super().__init__()
        _check_depth(depth)
        self.in_dim, self.out_dim, self.width, self.depth = int(in_dim), int(out_dim), int(width), int(depth)
        layers: list[nn.Module] = [nn.Linear(in_dim, width)]
        for _ in range(depth - 2):
            layers += [make_activation(activation), nn.Linear(width, width)]
        layers += [make_activation(activation), nn.Linear(width, out_dim)]
        if zero_init_last:
            _zero_(layers[-1])
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def forward_and_jvp(self, x: torch.Tensor, v: torch.Tensor):
        """(f(x), J_f(x) v) by propagating the tangent v layer by layer (forward-mode AD by hand); ``x`` is
        (n, in_dim), ``v`` (n, in_dim) or a stack (k, n, in_dim) of tangents sharing one primal pass. None when
        an activation has no known derivative (callers then fall back to ``torch.func.jvp``)."""
        h, dh = x, v
        for layer in self.layers:
            if isinstance(layer, nn.Linear):
                h, dh = layer(h), nn.functional.linear(dh, layer.weight)
            else:
                pair = activation_with_derivative(layer, h)
                if pair is None:
                    return None
                h, dh = pair[0], pair[1] * dh
        return h, dh


class ResidualMLP(nn.Module):
    r"""Residual MLP ``R^in_dim -> R^out_dim`` with ``depth`` hidden layers of width ``width``:

    .. math::
        h_1 = \phi(W_1 x + b_1) + P x,\qquad h_{l+1} = \phi(W_{l+1} h_l + b_{l+1}) + h_l,\qquad
        f(x) = W_{\text{out}} h_{\text{depth}} + b_{\text{out}},

    with a learned linear projection :math:`P` (no bias) carrying the input into the first skip connection
    (the identity when ``in_dim == width``). This is the score network shape of Ilin et al., "Score-based
    deterministic density sampling" (2025): two residual hidden layers of width 128 with the soft-sign
    activation φ(z) = z/(1+|z|) (the defaults here); at in_dim = out_dim = 1 it has 17,025 parameters.
    Works under ``torch.func`` (``jvp``, ``vmap``, ``grad``).
    """

    def __init__(self, in_dim: int, out_dim: int | None = None, width: int = 128, depth: int = 2,
                 activation: str | nn.Module | Callable = "softsign", zero_init_last: bool = False):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth (number of hidden layers) must be >= 1, got {depth}")
        self.in_dim, self.width, self.depth = int(in_dim), int(width), int(depth)
        self.out_dim = self.in_dim if out_dim is None else int(out_dim)
        self.hidden = nn.ModuleList([nn.Linear(self.in_dim if i == 0 else width, width) for i in range(depth)])
        self.projection = None if self.in_dim == width else nn.Linear(self.in_dim, width, bias=False)
        self.activation = make_activation(activation)
        self.output_layer = nn.Linear(width, self.out_dim)
        if zero_init_last:
            _zero_(self.output_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.projection is None else self.projection(x)
        h = self.activation(self.hidden[0](x)) + skip
        for layer in self.hidden[1:]:
            h = self.activation(layer(h)) + h
        return self.output_layer(h)

    def forward_and_jvp(self, x: torch.Tensor, v: torch.Tensor):
        """(f(x), J_f(x) v) by propagating the tangent v through the layers (forward-mode AD by hand); ``x`` is
        (n, in_dim), ``v`` (n, in_dim) or a stack (k, n, in_dim) of tangents sharing one primal pass. None
        when the activation has no known derivative (callers then fall back to ``torch.func.jvp``)."""
        linear = nn.functional.linear
        first = self.hidden[0]
        pair = activation_with_derivative(self.activation, first(x))
        if pair is None:
            return None
        if self.projection is None:
            h, dh = pair[0] + x, pair[1] * linear(v, first.weight) + v
        else:
            h = pair[0] + self.projection(x)
            dh = pair[1] * linear(v, first.weight) + linear(v, self.projection.weight)
        for layer in self.hidden[1:]:
            y, dy = activation_with_derivative(self.activation, layer(h))
            h, dh = y + h, dy * linear(dh, layer.weight) + dh
        return self.output_layer(h), linear(dh, self.output_layer.weight)


class TimeMLP(nn.Module):
    r"""Time-conditioned network :math:`f_\theta(x, t) \in \mathbb{R}^{\text{out\_dim}}` — the control
    (or score) network of the learned diffusion samplers.

    .. math::
        h_0 = W_x x + b_x + g(\gamma(t)),\qquad
        h_{l} = W_l\,\mathrm{GELU}(h_{l-1}) + b_l\ (l = 1..\text{depth}-2),\qquad
        f = W_{\text{out}}\,\mathrm{GELU}(h_{\text{depth}-2}) + b_{\text{out}}

    with :math:`\gamma` the sin/cos time features (:class:`SinusoidalTimeEmbedding`, K frequencies,
    linearly spread in [0.1, 100] with learned phases) and :math:`g` a two-layer MLP
    ``Linear(2K, width) → GELU → Linear(width, width)``. This is the "Fourier MLP" of PIS (Zhang &
    Chen 2022) and of Berner, Richter & Ullrich (DIS, 2022) / Richter & Berner (ICLR 2024).

    The output layer is zero-initialised (``zero_init_last=True``): a fresh network outputs exactly 0,
    so training starts from the uncontrolled process.

    Parameters at ``width=64, depth=4, n_frequencies=64``: ``129·dim + 20,864`` when ``out_dim = dim``
    (22,154 at dim=10). With the learned score coefficient :class:`TimeScalar` (16,705 parameters at
    its defaults) this is the Richter & Berner DIS control of 38,859 parameters at dim=10.

    Call: ``net(x, t)`` with ``x`` of shape ``(..., dim)`` and ``t`` a number, a 0-d tensor, or of
    shape ``x.shape[:-1]`` or ``x.shape[:-1] + (1,)``; returns ``(..., out_dim)`` with ``x``'s dtype and
    device. A single time is embedded once and broadcast over the batch. Works under
    ``torch.func.functional_call`` / ``vmap`` / ``jacrev`` / ``jvp``.
    """

    def __init__(
        self,
        dim: int,
        out_dim: int | None = None,
        width: int = 64,
        depth: int = 4,
        n_frequencies: int | None = None,
        max_frequency: float = 100.0,
        min_frequency: float = 0.1,
        spacing: str = "linear",
        activation: str | nn.Module | Callable = "gelu",
        zero_init_last: bool = True,
    ):
        super().__init__()
        _check_depth(depth)
        self.dim = int(dim)
        self.out_dim = int(out_dim) if out_dim is not None else self.dim
        self.width, self.depth = int(width), int(depth)
        n_frequencies = self.width if n_frequencies is None else int(n_frequencies)
        self.time_embedding = SinusoidalTimeEmbedding(
            n_frequencies, max_frequency=max_frequency, min_frequency=min_frequency, spacing=spacing
        )
        self.time_mlp = nn.Sequential(
            nn.Linear(self.time_embedding.out_features, width), make_activation(activation), nn.Linear(width, width)
        )
        self.input_layer = nn.Linear(self.dim, width)
        hidden: list[nn.Module] = []
        for _ in range(depth - 2):
            hidden += [make_activation(activation), nn.Linear(width, width)]
        hidden.append(make_activation(activation))
        self.hidden = nn.Sequential(*hidden)
        self.output_layer = nn.Linear(width, self.out_dim)
        if zero_init_last:
            _zero_(self.output_layer)

    def time_features(self, t) -> torch.Tensor:
        """``g(γ(t))``: the width-dimensional time branch, shape ``t.shape + (width,)``."""
        return self.time_mlp(self.time_embedding(t))

    def forward(self, x: torch.Tensor, t, time_features: torch.Tensor | None = None) -> torch.Tensor:
        """``time_features``: the time branch ``g(γ(t))`` computed beforehand (see :meth:`time_features`),
        e.g. once for all steps of a time grid; ``t`` is then ignored."""
        _check_input(x, self.dim, self.input_layer.weight)
        if time_features is None:
            time_features = self.time_features(broadcast_time(t, x))
        h = self.input_layer(x) + time_features
        return self.output_layer(self.hidden(h))


class TimeScalar(nn.Module):
    r"""Small network :math:`t \mapsto c_\theta(t) \in \mathbb{R}^{\text{out\_dim}}` for learned
    time-dependent coefficients (e.g. the multiple of :math:`\nabla\log\pi` in a score-informed control,
    Zhang & Chen 2022 PIS; Richter & Berner ICLR 2024).

    .. math:: c(t) = W_{\text{out}}\,\mathrm{GELU}(\dots\mathrm{GELU}(W_1 \gamma(t) + b_1)\dots) + b_{\text{out}}

    ``depth`` linear layers (the first on the 2K sin/cos features, the last to ``out_dim``). The last
    layer has zero weight and bias ``init``, so a fresh network returns exactly ``init`` at every t.
    16,705 parameters at the defaults (width 64, depth 4, K = 64, out_dim 1).

    Call: ``c(t)`` with ``t`` a number or a tensor of shape ``(...)`` (a trailing singleton of a tensor
    with ≥ 2 axes, e.g. ``(B, 1)``, is read as a column of times) -> ``(..., out_dim)``, in the dtype and
    device of the parameters.
    """

    def __init__(
        self,
        width: int = 64,
        depth: int = 4,
        n_frequencies: int | None = None,
        out_dim: int = 1,
        init: float = 0.0,
        max_frequency: float = 100.0,
        min_frequency: float = 0.1,
        spacing: str = "linear",
        activation: str | nn.Module | Callable = "gelu",
    ):
        super().__init__()
        _check_depth(depth)
        self.width, self.depth, self.out_dim = int(width), int(depth), int(out_dim)
        self.init = float(init)
        n_frequencies = self.width if n_frequencies is None else int(n_frequencies)
        self.time_embedding = SinusoidalTimeEmbedding(
            n_frequencies, max_frequency=max_frequency, min_frequency=min_frequency, spacing=spacing
        )
        self.mlp = MLP(
            self.time_embedding.out_features, self.out_dim, width=width, depth=depth, activation=activation
        )
        _zero_(self.mlp.layers[-1], bias=self.init)

    def forward(self, t) -> torch.Tensor:
        t = as_time_tensor(t, self.mlp.layers[-1].weight)
        if t.dim() >= 2 and t.shape[-1] == 1:
            t = t.squeeze(-1)
        return self.mlp(self.time_embedding(t))
