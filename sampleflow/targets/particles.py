"""Particle-system targets: DW-4 and LJ-13 (Köhler, Klein & Noé 2020, "Equivariant flows"; Klein et al. 2023;
definitions and reference sets as in iDEM, Akhound-Sadegh et al. 2024, ``dem/energies``; TARGETS.md §2).

Coordinates are particle-major: (x₁, y₁, …) for DW-4, (x₁, y₁, z₁, x₂, …) for LJ-13. log π̃ = −E (temperature 1).

* DW-4 (4 particles in 2-D, d = 8): E(x) = Σ_{i<j} [a (r_ij − r₀)⁴ + b (r_ij − r₀)² + c], a = 0.9, b = −4, c = 0,
  r₀ = 4, r_ij the plain Euclidean distance.
* LJ-13 (13 particles in 3-D, d = 39): E(x) = Σ_{i≠j} ε[(r_m/r_ij)¹² − 2 (r_m/r_ij)⁶] + ½ Σ_i ‖x_i − x̄‖², ε = r_m = 1,
  over **ordered** pairs (each unordered pair counted twice, as iDEM/bgflow do), r_ij = sqrt(‖x_i − x_j‖² + 10⁻⁶).

Both energies are invariant under translations (DW-4 exactly, LJ-13 too: the harmonic term is about the centre of
mass) and rotations/permutations, so the densities are improper on R^d (flat along the translations); log_Z is None.

Reference samples (``reference_samples()``): the iDEM test split (``dw4_test.npy`` / ``lj13_test.npy``, 10000
rows, float32 on disk, returned as float64). With ``centre_reference=True`` (the default) each configuration has
its centre of mass subtracted, as iDEM does on loading — the DW-4 files are *not* centred (centres up to 16 from
0); the LJ-13 files already are. ``split`` chooses "test" (default), "val" or (DW-4 only) "train". The DW-4 splits
contain many repeated rows (MCMC rejections) shared across splits.
"""
from __future__ import annotations

import numpy as np
import torch

from . import data
from .base import Target, TargetInputError
from .registry import register

__all__ = ["DoubleWell4", "LennardJones13", "centre_of_mass_free"]


def centre_of_mass_free(x: torch.Tensor, n_particles: int, spatial_dim: int) -> torch.Tensor:
    """Subtract each configuration's centre of mass: (..., n·s) -> (..., n·s)."""
    p = x.reshape(*x.shape[:-1], n_particles, spatial_dim)
    return (p - p.mean(-2, keepdim=True)).reshape(x.shape)


class _ParticleTarget(Target):
    n_particles: int
    spatial_dim: int
    _files: dict

    def __init__(self, *, split: str, centre_reference: bool, box):
        if split not in self._files:
            raise TargetInputError(f"split must be one of {sorted(self._files)}, got {split!r}")
        super().__init__(self.n_particles * self.spatial_dim, log_Z=None, box=box)
        self.split = split
        self.centre_reference = bool(centre_reference)
        i, j = torch.triu_indices(self.n_particles, self.n_particles, offset=1)
        self._i, self._j = i, j

    def _pair_sq_dist(self, x):
        p = x.reshape(*x.shape[:-1], self.n_particles, self.spatial_dim)
        diff = p[..., self._i, :] - p[..., self._j, :]
        return (diff * diff).sum(-1)                                  # (..., n_pairs)

    def _reference_samples(self):
        x = torch.as_tensor(np.asarray(data.load_array(self._files[self.split]), dtype=np.float64))
        return centre_of_mass_free(x, self.n_particles, self.spatial_dim) if self.centre_reference else x


class DoubleWell4(_ParticleTarget):
    """DW-4: four particles in 2-D with a pairwise double-well potential, d = 8 (see the module docstring)."""

    name = "dw4"
    version = "1"
    n_particles, spatial_dim = 4, 2
    _files = {"test": "dw4_test.npy", "val": "dw4_val.npy", "train": "dw4_train.npy"}

    def __init__(self, split: str = "test", centre_reference: bool = True):
        self.a, self.b, self.c, self.r0 = 0.9, -4.0, 0.0, 4.0
        super().__init__(split=split, centre_reference=centre_reference, box=(-6.0, 6.0))

    def _log_prob(self, x):
        r = torch.sqrt(self._pair_sq_dist(x))
        u = r - self.r0
        u2 = u * u
        return -(self.a * u2 * u2 + self.b * u2 + self.c).sum(-1)


class LennardJones13(_ParticleTarget):
    """LJ-13: thirteen particles in 3-D, Lennard-Jones with a harmonic centre-of-mass term, d = 39 (see the module
    docstring; iDEM's double-counted pairs and 10⁻⁶ distance regulariser)."""

    name = "lj13"
    version = "1"
    n_particles, spatial_dim = 13, 3
    _files = {"test": "lj13_test.npy", "val": "lj13_val.npy"}

    def __init__(self, split: str = "test", centre_reference: bool = True):
        self.eps, self.rm, self.oscillator_scale, self.reg = 1.0, 1.0, 1.0, 1e-6
        super().__init__(split=split, centre_reference=centre_reference, box=(-3.0, 3.0))

    def _log_prob(self, x):
        r2 = self._pair_sq_dist(x) + self.reg
        s6 = (self.rm * self.rm / r2) ** 3                            # (r_m / r)^6
        lj = 2.0 * (self.eps * (s6 * s6 - 2.0 * s6)).sum(-1)          # ordered pairs: twice each i<j
        cx = centre_of_mass_free(x, self.n_particles, self.spatial_dim)
        harmonic = 0.5 * self.oscillator_scale * (cx * cx).sum(-1)
        return -(lj + harmonic)


register("dw4", DoubleWell4, "DW-4: 4 particles in 2-D, pairwise double well (Köhler et al. 2020; iDEM), d=8")
register("lj13", LennardJones13,
         "LJ-13: 13 particles in 3-D, Lennard-Jones + harmonic term (Köhler et al. 2020; iDEM), d=39")
