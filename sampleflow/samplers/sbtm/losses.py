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
Hutchinson's trace estimator ∇·s = E_v[vᵀ(∂s/∂x)v] with Rademacher v (Hutchinson 1989). Both go through a
*single* forward-mode product: the tangents are stacked along the batch axis, so k tangents cost one jvp on
k·n rows (:func:`jvp_rows`).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch.func import jvp

__all__ = ["jvp_rows", "exact_divergence", "hutchinson_divergence", "ism_loss", "denoising_ism_loss",
           "esm_loss", "relative_fisher", "rademacher"]

VectorField = Callable[[torch.Tensor], torch.Tensor]


def jvp_rows(s: VectorField, x: torch.Tensor, tangents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """s(x) and the Jacobian-vector products J_s(x) vₖ for k tangents at once.

    ``x`` (n, d), ``tangents`` (k, n, d). Returns (s(x) of shape (n, d), J v of shape (k, n, d)). A network
    with a ``forward_and_jvp(x, v)`` method (the MLPs of :mod:`sampleflow.nn`: tangents pushed through by
    hand, 2–3× cheaper on small batches) computes s(x) once and carries the k tangents along; otherwise the
    k copies of x are stacked into one (k·n, d) batch for a single ``torch.func.jvp`` (valid because rows of
    s are independent)."""
    k, n, d = tangents.shape
    pair = s.forward_and_jvp(x, tangents) if hasattr(s, "forward_and_jvp") else None
    if pair is not None:
        return pair
    out, jv = jvp(s, (x.repeat(k, 1),), (tangents.reshape(k * n, d),))
    return out[:n], jv.reshape(k, n, d)


def exact_divergence(s: VectorField, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """s(x) and ∇·s(x) = Σⱼ ∂sⱼ/∂xⱼ exactly, with the d basis vectors as tangents (cost ≈ d forward passes;
    meant for small d). Returns ((n, d), (n,))."""
    n, d = x.shape
    basis = torch.eye(d, dtype=x.dtype, device=x.device)[:, None, :].expand(d, n, d)
    out, jv = jvp_rows(s, x, basis)
    return out, jv.diagonal(dim1=0, dim2=2).sum(-1)      # Σ_j (J e_j)_j


def rademacher(shape, *, generator: torch.Generator | None = None, dtype=None, device=None) -> torch.Tensor:
    """Independent ±1 entries with probability ½ each."""
    bits = torch.randint(0, 2, shape, generator=generator, device=device)
    return (2 * bits - 1).to(dtype or torch.get_default_dtype())


def hutchinson_divergence(s: VectorField, x: torch.Tensor, probes: int = 1, *,
                          generator: torch.Generator | None = None,
                          tangents: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """s(x) and Hutchinson's unbiased estimate of ∇·s(x) = tr J_s(x):

        ∇·s(x) ≈ (1/k) Σₖ vₖᵀ J_s(x) vₖ,   vₖ i.i.d. Rademacher (E[v vᵀ] = I),

    (Hutchinson, "A stochastic estimator of the trace of the influence matrix...", 1989). Rademacher probes
    have the smallest variance among i.i.d. probe laws. ``tangents`` (k, n, d) fixes the probes (else k =
    ``probes`` fresh ones from ``generator``). Returns ((n, d), (n,))."""
    if tangents is None:
        if not (isinstance(probes, int) and probes >= 1):
            raise ValueError(f"probes must be a positive integer, got {probes!r}")
        tangents = rademacher((probes, *x.shape), generator=generator, dtype=x.dtype, device=x.device)
    out, jv = jvp_rows(s, x, tangents)
    return out, (tangents * jv).sum(-1).mean(0)


def ism_loss(s: VectorField, x: torch.Tensor, *, divergence: str = "exact", probes: int = 1,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Implicit score matching (Hyvärinen 2005), L(s) = (1/n) Σᵢ [ |s(xᵢ)|² + 2 ∇·s(xᵢ) ], with the
    divergence ``"exact"`` or ``"hutchinson"`` (``probes`` Rademacher probes, one jvp). Minimised by
    s = ∇log f for x ~ f; at the minimum L = −E_f|∇log f|²."""
    if divergence == "exact":
        out, div = exact_divergence(s, x)
    elif divergence == "hutchinson":
        out, div = hutchinson_divergence(s, x, probes, generator=generator)
    else:
        raise ValueError(f"divergence must be 'exact' or 'hutchinson', got {divergence!r}")
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
