r"""Score-matching losses and divergence estimators for SBTM, as pure functions of a vector field ``s``.

``s`` is any callable ``(n, d) -> (n, d)`` whose rows are independent (a network, ``GradientField``, ...).
Every loss returns a 0-d tensor differentiable with respect to the parameters ``s`` closes over.

Implicit score matching (Hyvärinen, "Estimation of non-normalized statistical models by score matching",
JMLR 2005): for particles x ~ f,

    E_f |s − ∇log f|² = E_f [ |s|² + 2 ∇·s ] + E_f |∇log f|²,

so minimising L_ISM(s) = E_f[|s(x)|² + 2 ∇·s(x)] learns ∇log f from samples alone (the last term does
not depend on s). This is the per-step loss of SBTM (Ilin et al., "Score-based deterministic density
sampling", 2025; Boffi & Vanden-Eijnden, "Probability flow solution of the Fokker–Planck equation", 2023).
The divergence is exact (one Jacobian-vector product per coordinate, for small d) or estimated with
Hutchinson's trace estimator ∇·s = E_v[vᵀ(∂s/∂x)v] with Rademacher v (Hutchinson 1989), both from
:func:`sampleflow.sde.divergence.value_and_divergence`; for the MLPs of :mod:`sampleflow.nn` it uses their
hand-written forward-mode products (one primal pass shared by all tangents).
"""
from __future__ import annotations

from typing import Callable

import torch
from ...sde.divergence import value_and_divergence

__all__ = ["ism_loss", "denoising_ism_loss", "esm_loss", "relative_fisher"]

VectorField = Callable[[torch.Tensor], torch.Tensor]


def ism_loss(s: VectorField, x: torch.Tensor, *, divergence: str = "exact", probes: int = 1,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Implicit score matching (Hyvärinen 2005), L(s) = (1/n) Σᵢ [ |s(xᵢ)|² + 2 ∇·s(xᵢ) ], with the
    divergence ``"exact"`` or ``"hutchinson"`` (``probes`` Rademacher probes, one jvp). Minimised by
    s = ∇log f for x ~ f; at the minimum L = −E_f|∇log f|²."""
    if divergence not in ("exact", "hutchinson"):
        raise ValueError(f"divergence must be 'exact' or 'hutchinson', got {divergence!r}")
    out, div = value_and_divergence(s, x, method=divergence, n_probes=probes, generator=generator)
    return ((out * out).sum(-1) + 2 * div).mean()


def denoising_ism_loss(s: VectorField, x: torch.Tensor, sigma: float = 0.1, *,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Antithetic (denoising) form of implicit score matching, without any derivative of s:

        L_σ(s) = (1/n) Σᵢ [ |s(xᵢ)|² + (s(xᵢ + σξᵢ) − s(xᵢ − σξᵢ))·ξᵢ / σ ],     ξᵢ ~ N(0, I).

    A Taylor expansion gives (s(x+σξ) − s(x−σξ))·ξ/σ = 2 ξᵀJ_s(x)ξ + O(σ²), whose mean over ξ is 2 ∇·s(x):
    L_σ = L_ISM + O(σ²), exact in expectation for a linear s; the antithetic pair cancels the O(1/σ) noise a
    one-sided difference would have (Boffi & Vanden-Eijnden 2023, the "denoising" loss of their SBTM code;
    Ilin et al. 2025). The three evaluations go through the network as one batch of 3n rows."""
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma!r}")
    xi = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    n = x.shape[0]
    out = s(torch.cat([x, x + sigma * xi, x - sigma * xi]))
    centre, plus, minus = out[:n], out[n:2 * n], out[2 * n:]
    return ((centre * centre).sum(-1) + ((plus - minus) * xi).sum(-1) / sigma).mean()


def esm_loss(s: VectorField, x: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    """Explicit score matching (1/n) Σᵢ |s(xᵢ) − ∇log f(xᵢ)|² against a known score (the initial fit of
    SBTM to the score of its starting law f₀)."""
    diff = s(x) - score
    return (diff * diff).sum(-1).mean()


def relative_fisher(learned: torch.Tensor, target_score: torch.Tensor) -> torch.Tensor:
    """The particle estimate (1/n) Σᵢ |s(xᵢ) − ∇log π(xᵢ)|² of the relative Fisher information
    I(f‖π) = E_f|∇log f − ∇log π|². Along the exact Wasserstein gradient flow of KL(f_t‖π) (the
    Fokker–Planck/Langevin marginals that SBTM follows) dKL(f_t‖π)/dt = −I(f_t‖π) (Jordan, Kinderlehrer &
    Otto 1998; Ilin et al. 2025, eq. for the KL dissipation), so this is the KL decay rate."""
    diff = learned - target_score
    return (diff * diff).sum(-1).mean()
