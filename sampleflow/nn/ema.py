r"""Exponential moving average (EMA) of a module's weights, for evaluation.

After each optimiser step, :meth:`EMA.update` sets

.. math:: \bar\theta_k = d\,\bar\theta_{k-1} + (1 - d)\,\theta_k, \qquad \bar\theta_0 = \theta_0,

so that :math:`\bar\theta_k = d^k\theta_0 + (1-d)\sum_{j=1}^k d^{k-j}\theta_j` (Polyak averaging with
exponential forgetting; with ``warmup=True`` the k-th update uses d_k = min(d, (1 + k)/(10 + k)), the
num_updates rule of TensorFlow's ExponentialMovingAverage, so that short runs are not dominated by the
initial weights; used for evaluation by PIS, DIS/DDS and Richter & Berner 2024, and by the
score-based generative models of Song et al. 2021 and Karras et al. 2022).

Floating-point parameters are averaged; buffers are copied as they are at each update (they are not
trained by the optimiser — e.g. fixed frequency tables); integer tensors are always copied.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """Shadow copy of ``module``'s parameters and buffers, averaged with ``decay``.

    * ``update()`` — after each optimiser step;
    * ``with ema.swapped(): ...`` — evaluate ``module`` with the EMA weights; the live weights are
      restored on exit (also after an exception);
    * ``apply_to(other)`` — copy the EMA weights into ``other`` (e.g. a separate evaluation copy of the
      same architecture; ``apply_to()`` without argument overwrites the tracked module itself);
    * ``state_dict()`` / ``load_state_dict(sd)`` — for checkpoints and resume.

    The shadow lives on the module's device, in its dtypes; no gradient flows into it.
    """

    def __init__(self, module: nn.Module, decay: float = 0.999, warmup: bool = False):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {decay}")
        self.module = module
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.num_updates = 0
        with torch.no_grad():
            self._params = {n: p.detach().clone() for n, p in module.named_parameters()}
            self._buffers = {n: b.detach().clone() for n, b in module.named_buffers()}
        # names of parameters averaged in one fused call (floating point only)
        self._avg_names = [n for n, p in self._params.items() if p.is_floating_point() or p.is_complex()]

    # ------------------------------------------------------------------ averaging
    @torch.no_grad()
    def update(self) -> None:
        """One EMA step: ``shadow ← d·shadow + (1 − d)·live`` for floating parameters (d = decay, or
        the warm-up rule)."""
        live = dict(self.module.named_parameters())
        if live.keys() != self._params.keys():
            raise RuntimeError("EMA.update: the module's parameters changed since the EMA was created")
        if self._avg_names:
            shadow = [self._params[n] for n in self._avg_names]
            current = [live[n].detach() for n in self._avg_names]
            # lerp: s + w (p − s) = d s + (1 − d) p with w = 1 − d
            if hasattr(torch, "_foreach_lerp_"):
                torch._foreach_lerp_(shadow, current, 1.0 - self.current_decay)
            else:  # pragma: no cover - older torch
                for s, c in zip(shadow, current):
                    s.lerp_(c, 1.0 - self.current_decay)
        for n, p in self._params.items():
            if not (p.is_floating_point() or p.is_complex()):
                p.copy_(live[n])
        for n, b in self.module.named_buffers():
            if n in self._buffers:
                self._buffers[n].copy_(b)
        self.num_updates += 1

    @property
    def current_decay(self) -> float:
        """The decay the next update uses."""
        if not self.warmup:
            return self.decay
        k = self.num_updates + 1
        return min(self.decay, (1.0 + k) / (10.0 + k))

    # ------------------------------------------------------------------ using the average
    def shadow(self) -> dict[str, torch.Tensor]:
        """The averaged tensors by name (parameters and buffers); do not modify them in place."""
        return {**self._params, **self._buffers}

    @torch.no_grad()
    def apply_to(self, module: nn.Module | None = None) -> nn.Module:
        """Copy the EMA parameters and buffers into ``module`` (default: the tracked module)."""
        module = self.module if module is None else module
        params = dict(module.named_parameters())
        buffers = dict(module.named_buffers())
        missing = [n for n in self._params if n not in params] + [n for n in self._buffers if n not in buffers]
        if missing or len(params) != len(self._params):
            raise ValueError(f"apply_to: module does not match the EMA's architecture (missing: {missing[:5]})")
        for n, s in self._params.items():
            params[n].copy_(s)
        for n, s in self._buffers.items():
            buffers[n].copy_(s)
        return module

    @contextlib.contextmanager
    def swapped(self) -> Iterator[nn.Module]:
        """Context manager: the tracked module holds the EMA weights inside, its own weights after."""
        with torch.no_grad():
            backup_p = {n: p.detach().clone() for n, p in self.module.named_parameters()}
            backup_b = {n: b.detach().clone() for n, b in self.module.named_buffers()}
        self.apply_to(self.module)
        try:
            yield self.module
        finally:
            with torch.no_grad():
                for n, p in self.module.named_parameters():
                    p.copy_(backup_p[n])
                for n, b in self.module.named_buffers():
                    b.copy_(backup_b[n])

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict:
        return {
            "decay": self.decay,
            "num_updates": self.num_updates,
            "params": {n: t.clone() for n, t in self._params.items()},
            "buffers": {n: t.clone() for n, t in self._buffers.items()},
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        for key in ("decay", "num_updates", "params", "buffers"):
            if key not in state:
                raise KeyError(f"EMA.load_state_dict: missing key {key!r}")
        if state["params"].keys() != self._params.keys():
            extra = sorted(set(state["params"]) ^ set(self._params))
            raise ValueError(f"EMA.load_state_dict: parameter names do not match the module ({extra[:5]})")
        for n, t in state["params"].items():
            if t.shape != self._params[n].shape:
                raise ValueError(
                    f"EMA.load_state_dict: {n!r} has shape {tuple(t.shape)}, module has "
                    f"{tuple(self._params[n].shape)}"
                )
            self._params[n].copy_(t)
        for n, t in state["buffers"].items():
            if n in self._buffers:
                self._buffers[n].copy_(t)
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])

    def __repr__(self) -> str:
        return f"EMA(decay={self.decay}, num_updates={self.num_updates}, tensors={len(self._params) + len(self._buffers)})"
