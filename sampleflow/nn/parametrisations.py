r"""Control parametrisations for the learned diffusion samplers.

A sampler simulates :math:`dX_t = (\mu(X_t, t) + \sigma(t)\,u(X_t, t))\,dt + \sigma(t)\,dW_t` and
learns the control :math:`u`. The parametrisation of :math:`u` matters a great deal in practice
(Zhang & Chen, "Path Integral Sampler", ICLR 2022, §"Langevin-informed" network; Berner, Richter &
Ullrich, DIS 2022; Vargas, Grathwohl & Doucet, DDS 2023; Richter & Berner, "Improved sampling via
learned diffusions", ICLR 2024): adding a learned, time-dependent multiple of the target's score
:math:`\nabla\log\pi` gives the network a good starting point and lets it learn only a correction.

All controls here share one call signature::

    u = control(x, t, score=None, prior_score=None)       # (..., d)

``score`` = :math:`\nabla\log\pi(x)` and ``prior_score`` = :math:`\nabla\log p_{\text{prior}}(x)` are
computed by the caller (the sampler already evaluates the target, and this keeps the network free of
target calls, e.g. for ``torch.func`` transforms); ``needs_target_score`` / ``needs_prior_score`` say
which of them a control reads, so a sampler can skip computing the others. Scaling by the diffusion
coefficient :math:`\sigma(t)` or subtracting a reference drift is the sampler's business.
"""
from __future__ import annotations

import torch
from torch import nn

from .mlp import TimeMLP, TimeScalar
from .time import broadcast_time

__all__ = [
    "PlainControl",
    "ScoreInformedControl",
    "InterpolatedScoreControl",
    "clip_score",
    "build_control",
]


def clip_score(score: torch.Tensor, clip: float | None) -> torch.Tensor:
    """Clamp each component of ``score`` to ``[-clip, clip]`` (no-op for ``clip=None``).

    PIS and the sde_sampler code of Richter & Berner clip the target gradient (default bound 1e4) so
    that a few points far in the tails, where :math:`\\nabla\\log\\pi` is huge (e.g. the funnel's neck),
    cannot blow up the control. NaNs are left as they are (the sampler's non-finite check sees them).
    """
    if clip is None:
        return score
    return score.clamp(-clip, clip)


def _require(arg: torch.Tensor | None, name: str, x: torch.Tensor, who: str) -> torch.Tensor:
    if arg is None:
        raise ValueError(f"{who} needs `{name}` (the {name.replace('_', ' ')} at x); got None")
    if arg.shape != x.shape:
        raise ValueError(f"{who}: `{name}` must have the shape of x {tuple(x.shape)}, got {tuple(arg.shape)}")
    return arg


class PlainControl(nn.Module):
    r""":math:`u(x, t) = f_\theta(x, t)`: the network alone; scores are accepted and ignored."""

    needs_target_score = False
    needs_prior_score = False

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def time_cache(self, times: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Everything that depends on t only, for all ``times`` (shape (K,)) at once; row k is the
        ``cache`` argument of :meth:`forward` at ``times[k]``."""
        return (self.net.time_features(times),)

    def forward(self, x: torch.Tensor, t, score: torch.Tensor | None = None, prior_score: torch.Tensor | None = None,
                cache: tuple | None = None):
        return self.net(x, t, time_features=None if cache is None else cache[0])


class ScoreInformedControl(nn.Module):
    r"""Score-informed ("Langevin-informed") control (Zhang & Chen 2022, PIS; Richter & Berner 2024):

    .. math:: u(x, t) = f_\theta(x, t) + c_\theta(t)\,\operatorname{clip}(\nabla\log\pi(x))

    with :math:`f_\theta` a :class:`TimeMLP` (zero-initialised last layer), :math:`c_\theta` a
    :class:`TimeScalar` (``out_dim`` 1, or d for a per-coordinate coefficient) and ``clip``
    the componentwise clamp to ``[-clip, clip]`` (:func:`clip_score`; ``None`` disables it).
    With a fresh network and ``coef`` initialised to c the control is exactly ``c · clip(score)``.
    """

    needs_target_score = True
    needs_prior_score = False

    def __init__(self, net: nn.Module, coef: nn.Module, clip: float | None = 1e4):
        super().__init__()
        self.net = net
        self.coef = coef
        self.clip = None if clip is None else float(clip)

    def time_cache(self, times: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(time branch of the network, coefficient) for all ``times`` (shape (K,)) at once."""
        return self.net.time_features(times), self.coef(times.unsqueeze(-1))

    def forward(self, x: torch.Tensor, t, score: torch.Tensor | None = None, prior_score: torch.Tensor | None = None,
                cache: tuple | None = None):
        score = _require(score, "score", x, type(self).__name__)
        if cache is not None:
            return self.net(x, t, time_features=cache[0]) + cache[1] * clip_score(score, self.clip)
        t = broadcast_time(t, x)
        return self.net(x, t) + self.coef(t.unsqueeze(-1)) * clip_score(score, self.clip)


class InterpolatedScoreControl(nn.Module):
    r"""Control with the interpolated score, for DIS (Berner, Richter & Ullrich 2022; Richter & Berner
    ICLR 2024, the "lerp" parametrisation):

    .. math::
        u(x, t) = f_\theta(x, t) + c_\theta(t)\Big[\big(1 - \tfrac{t}{T}\big)\nabla\log p_{\text{prior}}(x)
                  + \tfrac{t}{T}\,\operatorname{clip}(\nabla\log\pi(x))\Big]

    **Time convention: generative time**, running from ``t = 0`` (the prior, where the bracket is the
    prior's score exactly) to ``t = T`` (the target, where it is the clipped target score exactly).
    ``T`` is fixed at construction. (The sde_sampler code clips the interpolated vector; here only the
    target score is clipped — the prior's is analytic, typically :math:`-x` for N(0, I).)
    """

    needs_target_score = True
    needs_prior_score = True

    def __init__(self, net: nn.Module, coef: nn.Module, T: float = 1.0, clip: float | None = 1e4):
        super().__init__()
        if not T > 0:
            raise ValueError(f"T (terminal time) must be > 0, got {T}")
        self.net = net
        self.coef = coef
        self.T = float(T)
        self.clip = None if clip is None else float(clip)

    def interpolated_score(self, x: torch.Tensor, t, score: torch.Tensor, prior_score: torch.Tensor) -> torch.Tensor:
        """``(1 − t/T)·prior_score + (t/T)·clip(score)``, exact at both ends."""
        t = broadcast_time(t, x)
        lam = (t / self.T).unsqueeze(-1)
        return (1.0 - lam) * prior_score + lam * clip_score(score, self.clip)

    def time_cache(self, times: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(time branch of the network, coefficient) for all ``times`` (shape (K,)) at once."""
        return self.net.time_features(times), self.coef(times.unsqueeze(-1))

    def forward(self, x: torch.Tensor, t, score: torch.Tensor | None = None, prior_score: torch.Tensor | None = None,
                cache: tuple | None = None):
        who = type(self).__name__
        score = _require(score, "score", x, who)
        prior_score = _require(prior_score, "prior_score", x, who)
        t = broadcast_time(t, x)
        if cache is not None:
            return (self.net(x, t, time_features=cache[0])
                    + cache[1] * self.interpolated_score(x, t, score, prior_score))
        return self.net(x, t) + self.coef(t.unsqueeze(-1)) * self.interpolated_score(x, t, score, prior_score)


def build_control(
    dim: int,
    kind: str = "score",
    width: int = 64,
    depth: int = 4,
    coef_init: float = 1.0,
    coef_out_dim: int = 1,
    T: float = 1.0,
    clip: float | None = 1e4,
    **net_kwargs,
) -> nn.Module:
    """A control of the given ``kind`` with the paper's networks (Richter & Berner ICLR 2024 defaults:
    width 64, 4 layers, GELU, sin/cos time features, zero-initialised output, score coefficient
    initialised to ``coef_init`` = 1).

    ``kind``: ``"plain"`` (:class:`PlainControl`), ``"score"`` (:class:`ScoreInformedControl`) or
    ``"interpolated"`` (:class:`InterpolatedScoreControl`, terminal time ``T``). At dim = 10 the
    ``"score"`` and ``"interpolated"`` controls have 38,859 parameters, ``"plain"`` 22,154.
    ``net_kwargs`` go to :class:`TimeMLP`.
    """
    net = TimeMLP(dim, width=width, depth=depth, **net_kwargs)
    if kind == "plain":
        return PlainControl(net)
    coef = TimeScalar(width=width, depth=depth, out_dim=coef_out_dim, init=coef_init)
    if kind == "score":
        return ScoreInformedControl(net, coef, clip=clip)
    if kind == "interpolated":
        return InterpolatedScoreControl(net, coef, T=T, clip=clip)
    raise ValueError(f"kind must be 'plain', 'score' or 'interpolated', got {kind!r}")
