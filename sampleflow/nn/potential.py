r"""A vector field parametrised as the gradient of a learned scalar potential.

A score is a gradient field, s = ∇log f; parametrising ``s(x) = ∇ₓ φ_θ(x)`` with a scalar network φ_θ makes
the learned score curl-free by construction (Boffi & Vanden-Eijnden, "Probability flow solution of the
Fokker–Planck equation", 2023, discuss both the direct and the potential parametrisation; Ilin et al.
2025 use the direct one by default). The cost is one extra backward pass per evaluation and a second-order
derivative inside score-matching losses (the divergence becomes the Laplacian Δφ).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.func import grad

__all__ = ["GradientField"]


class GradientField(nn.Module):
    """``s(x) = ∇ₓ φ(x)`` for a network ``potential`` mapping ``(..., d) -> (..., 1)`` (or ``(...)``).

    Rows are independent (no batch coupling inside φ), so the gradient of Σᵢ φ(xᵢ) is the row-wise gradient.
    Implemented with ``torch.func.grad``: it composes with ``torch.func.jvp``/``vmap`` (the divergences of
    the score-matching losses), gives the gradient even under ``torch.no_grad``, and stays differentiable
    with respect to the parameters of φ for training."""

    def __init__(self, potential: nn.Module):
        super().__init__()
        self.potential = potential

    def _sum(self, x: torch.Tensor) -> torch.Tensor:
        return self.potential(x).sum()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return grad(self._sum)(x)
