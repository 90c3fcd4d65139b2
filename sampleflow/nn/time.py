"""Time inputs for networks: normalising ``t`` against a batch, and sin/cos time features.

Conventions used by every network in :mod:`sampleflow.nn`:

* ``x`` has shape ``(..., d)``; ``t`` is a Python number, a 0-d tensor, a tensor of the leading shape
  ``x.shape[:-1]`` (e.g. ``(B,)``), or the same with a trailing singleton (e.g. ``(B, 1)``), or any
  tensor with a single element. :func:`broadcast_time` turns all of these into one tensor whose shape
  *broadcasts* against ``x.shape[:-1]`` (a single time stays 0-d, so networks can compute their time
  branch once and broadcast it over the batch instead of once per sample).
* ``t`` takes the dtype and device of ``x`` (or of the parameters, when there is no ``x``).
"""
from __future__ import annotations

import math
import numbers

import torch
from torch import nn

__all__ = ["SinusoidalTimeEmbedding", "broadcast_time", "as_time_tensor"]


def as_time_tensor(t, like: torch.Tensor) -> torch.Tensor:
    """``t`` (number or tensor) as a floating tensor with the dtype and device of ``like``."""
    if isinstance(t, torch.Tensor):
        if t.dtype != like.dtype or t.device != like.device:
            t = t.to(dtype=like.dtype, device=like.device)
        return t
    if isinstance(t, numbers.Real):
        return torch.tensor(float(t), dtype=like.dtype, device=like.device)
    raise TypeError(f"t must be a number or a torch.Tensor, got {type(t).__name__}")


def broadcast_time(t, x: torch.Tensor) -> torch.Tensor:
    """Normalise the time argument ``t`` against the batch ``x`` of shape ``(..., d)``.

    Returns a tensor of shape ``()`` (one time for the whole batch) or ``x.shape[:-1]`` (one time per
    sample), with ``x``'s dtype and device. Accepted ``t``: a number, a 0-d tensor, any one-element
    tensor, a tensor of shape ``x.shape[:-1]``, or of shape ``x.shape[:-1] + (1,)``, or a tensor with
    as many axes as ``x.shape[:-1]`` that broadcasts to it (e.g. ``(K, 1)`` for a stack of K batches:
    the time branch then runs once per row, not once per sample).
    Only shapes are inspected, so this works under ``torch.func.vmap`` and ``torch.compile``.
    """
    t = as_time_tensor(t, x)
    lead = x.shape[:-1]
    if t.dim() == 0:
        return t
    if t.shape == lead:
        return t
    if t.dim() == x.dim() and t.shape[-1] == 1 and t.shape[:-1] == lead:
        return t.squeeze(-1)
    if t.numel() == 1:
        return t.reshape(())
    if t.dim() == len(lead) and all(a == b or a == 1 for a, b in zip(t.shape, lead)):
        return t  # broadcastable, e.g. (K, 1) for x of shape (K, B, d): one time per row of a stack
    raise ValueError(
        f"t has shape {tuple(t.shape)}; for x of shape {tuple(x.shape)} expected a number, a 0-d or "
        f"one-element tensor, shape {tuple(lead)} or shape {tuple(lead) + (1,)}"
    )


class SinusoidalTimeEmbedding(nn.Module):
    r"""Sin/cos features of a scalar time, :math:`t \mapsto (\sin(\omega_k t + \varphi_k),
    \cos(\omega_k t + \varphi_k))_{k=1..K}`, shape ``(..., 2K)``.

    The Fourier time features of the Transformer / DDPM positional encoding (Vaswani et al. 2017;
    Ho et al. 2020) as used for the control networks of PIS (Zhang & Chen, "Path Integral Sampler",
    ICLR 2022) and of DIS / the learned-diffusion samplers (Berner, Richter & Ullrich 2022; Richter &
    Berner, ICLR 2024): there the coefficients are ``ω = linspace(0.1, 100, K)`` (no factor 2π) and
    each frequency has a learned phase ``φ_k``; time runs over ``[0, T]`` with ``T = 1``.

    Frequencies (registered as a non-persistent buffer, so they follow ``.to(device, dtype)``):

    * ``spacing="linear"`` (default, PIS/DIS): ``ω_k = linspace(min_frequency, max_frequency, K)``;
    * ``spacing="geometric"`` (Transformer/DDPM): ``ω_k = geomspace(min_frequency, max_frequency, K)``,
      i.e. log-uniformly spread, which resolves both slow and fast variation with few features.

    ``learn_phase=True`` adds the K phases as a parameter, initialised to 0 (so a fresh embedding is
    the plain sin/cos encoding; PIS draws them at random — any value is learnable). The features are
    bounded by 1 in absolute value and ``max_frequency``-Lipschitz in ``t``.

    Implementation: ``cos(θ) = sin(θ + π/2)``, so all 2K features come from a single ``sin`` over
    ``t·[ω, ω] + [φ, φ + π/2]`` (one kernel, no concatenation).
    """

    def __init__(
        self,
        n_frequencies: int = 64,
        max_frequency: float = 100.0,
        min_frequency: float = 0.1,
        spacing: str = "linear",
        learn_phase: bool = True,
    ):
        super().__init__()
        if n_frequencies < 1:
            raise ValueError(f"n_frequencies must be >= 1, got {n_frequencies}")
        positive_min = min_frequency > 0 if spacing == "geometric" else min_frequency >= 0
        if not (positive_min and min_frequency <= max_frequency):
            raise ValueError(
                f"need {'0 <' if spacing == 'geometric' else '0 <='} min_frequency <= max_frequency, "
                f"got min_frequency={min_frequency}, max_frequency={max_frequency}"
            )
        if spacing == "linear":
            freq = torch.linspace(min_frequency, max_frequency, n_frequencies, dtype=torch.float64)
        elif spacing == "geometric":
            freq = torch.logspace(
                math.log10(min_frequency), math.log10(max_frequency), n_frequencies, dtype=torch.float64
            )
        else:
            raise ValueError(f"spacing must be 'linear' or 'geometric', got {spacing!r}")
        self.n_frequencies = int(n_frequencies)
        self.out_features = 2 * self.n_frequencies
        self.spacing = spacing
        dtype = torch.get_default_dtype()
        offset = torch.cat(
            [torch.zeros(n_frequencies, dtype=torch.float64), torch.full((n_frequencies,), math.pi / 2, dtype=torch.float64)]
        )
        # float64 masters: the buffers are re-derived from them whenever the module changes dtype or
        # device, so a float32 module converted to float64 has exact float64 frequencies and offsets.
        self._masters = {"frequencies": freq, "_freq2": torch.cat([freq, freq]), "_offset": offset}
        for name, value in self._masters.items():
            self.register_buffer(name, value.to(dtype), persistent=False)
        self.phase = nn.Parameter(torch.zeros(n_frequencies, dtype=dtype)) if learn_phase else None

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        for name, value in self._masters.items():
            buf = getattr(self, name)
            setattr(self, name, value.to(device=buf.device, dtype=buf.dtype))
        return self

    def forward(self, t) -> torch.Tensor:
        """``t``: number or tensor of shape ``(...)`` -> features of shape ``(..., 2K)``."""
        t = as_time_tensor(t, self._freq2)
        arg = t.unsqueeze(-1) * self._freq2
        if self.phase is not None:
            arg = arg + (self.phase.repeat(2) + self._offset)
        else:
            arg = arg + self._offset
        return torch.sin(arg)

    def extra_repr(self) -> str:
        f = self.frequencies
        return (
            f"n_frequencies={self.n_frequencies}, spacing={self.spacing!r}, "
            f"frequencies=[{float(f[0]):g}..{float(f[-1]):g}], learn_phase={self.phase is not None}"
        )
