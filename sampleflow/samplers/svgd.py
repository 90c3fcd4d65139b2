"""``svgd``: Stein variational gradient descent (Liu & Wang, "Stein variational gradient descent: a general
purpose Bayesian inference algorithm", NeurIPS 2016; reference code ``DartML/Stein-Variational-Gradient-Descent``,
``python/svgd.py``).

n interacting particles move along the direction that most decreases KL(q‖π) in the unit ball of the RBF
kernel's RKHS (paper eq. 8):

    φ(x_i) = (1/n) Σ_j [ k(x_j, x_i) ∇log π(x_j) + ∇_{x_j} k(x_j, x_i) ],      x_i ← x_i + ε φ(x_i),

with k(x, y) = exp(−|x − y|² / h). The bandwidth follows the paper's median heuristic (Sec. 5)

    h = med² / log n,   med = median of |x_i − x_j| over the pairs i < j,

recomputed from the current particles at every step. (The reference code uses med²/(2 log(n+1)) in
exp(−d²/(2σ²)), i.e. h = med²/log(n+1): the same up to log n vs log(n+1); here the paper's log n.) For
n > ``median_points`` the median is taken over the pairs among the first ``median_points`` particles (an
unbiased subsample, since the particles are exchangeable), which keeps the heuristic cheap next to the
O(n²) kernel sums; for n ≤ ``median_points`` (default 500, i.e. ≈ 125 000 pairs) it is exact.

Optimiser (``optimizer``):

* ``"adagrad"`` (default, as the reference code): "AdaGrad with momentum", per coordinate
  G₀ = φ₀², G_t = α G_{t−1} + (1 − α) φ_t² (α = 0.9), x ← x + ε φ_t / (10⁻⁶ + √G_t). Despite the name this
  is an RMSProp-style scaling; it makes the step insensitive to the scale of the score.
* ``"sgd"``: the plain update x ← x + ε φ (the paper's eq. 8 with a fixed step size).

Cost per step: one score evaluation per particle and O(n² d) time for the kernel sums, chunked over rows
(``chunk_size`` rows against all n columns at a time), so memory is O(chunk_size · n + n d) and n = 10⁴
fits; no n × n × d tensor is ever formed. Device and dtype follow the particles; the loop has no host
synchronisation except the occasional progress-bar postfix (only when the bar is shown).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

from ..progress import progress
from ..samples import Samples
from .base import CountingTarget, Sampler, Timer
from .registry import register

__all__ = ["SVGD", "SVGDConfig", "svgd_direction", "median_bandwidth"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class SVGDConfig:
    """n_steps: SVGD iterations. step_size: ε. optimizer: "adagrad" (the reference code's AdaGrad with
    momentum, ``momentum`` = α) or "sgd" (plain x + εφ). bandwidth: "median" (h = med²/log n, recomputed
    every step) or a fixed positive float h in k(x, y) = exp(−|x − y|²/h). median_points: the median is
    over the pairs among the first (at most) this many particles (None: all n, then O(n²) memory for the
    selection). init: "gaussian" (N(c, (init_scale · w/4)²) per coordinate, c and w the centre and width
    of the target's box) or "box" (uniform on c ± init_scale · w/2). chunk_size: rows per kernel block
    (None: all n at once). keep_trajectory: k > 0 stores the start and every k-th step's particles in
    ``Samples.trajectory`` (shape (1 + n_steps // k, n, d)); 0: none. dtype: "float32", "float64" or
    None (torch's default dtype)."""

    n_steps: int = 1000       # as the reference code's default n_iter
    step_size: float = 1e-2
    optimizer: str = "adagrad"
    momentum: float = 0.9
    bandwidth: str | float = "median"
    median_points: int | None = 500
    init: str = "gaussian"
    init_scale: float = 1.0
    chunk_size: int | None = 1024
    keep_trajectory: int = 0
    dtype: str | None = None

    def __post_init__(self):
        if not (_is_int(self.n_steps) and self.n_steps >= 0):
            raise ValueError(f"n_steps must be a non-negative integer, got {self.n_steps!r}")
        if not (_is_real(self.step_size) and math.isfinite(self.step_size) and self.step_size > 0):
            raise ValueError(f"step_size must be a positive finite number, got {self.step_size!r}")
        if self.optimizer not in ("adagrad", "sgd"):
            raise ValueError(f"optimizer must be 'adagrad' or 'sgd', got {self.optimizer!r}")
        if not (_is_real(self.momentum) and 0.0 <= self.momentum < 1.0):
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum!r}")
        if isinstance(self.bandwidth, str):
            if self.bandwidth != "median":
                raise ValueError(f"bandwidth must be 'median' or a positive float, got {self.bandwidth!r}")
        elif not (_is_real(self.bandwidth) and math.isfinite(self.bandwidth) and self.bandwidth > 0):
            raise ValueError(f"bandwidth must be 'median' or a positive float, got {self.bandwidth!r}")
        if self.median_points is not None and not (_is_int(self.median_points) and self.median_points >= 2):
            raise ValueError(f"median_points must be None or an integer >= 2, got {self.median_points!r}")
        if self.init not in ("gaussian", "box"):
            raise ValueError(f"init must be 'gaussian' or 'box', got {self.init!r}")
        if not (_is_real(self.init_scale) and math.isfinite(self.init_scale) and self.init_scale > 0):
            raise ValueError(f"init_scale must be a positive finite number, got {self.init_scale!r}")
        if self.chunk_size is not None and not (_is_int(self.chunk_size) and self.chunk_size >= 1):
            raise ValueError(f"chunk_size must be None or a positive integer, got {self.chunk_size!r}")
        if not (_is_int(self.keep_trajectory) and self.keep_trajectory >= 0):
            raise ValueError(f"keep_trajectory must be a non-negative integer (0: off), got {self.keep_trajectory!r}")
        if self.dtype is not None and self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be None, 'float32' or 'float64', got {self.dtype!r}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# ---------------------------------------------------------------------------------------------- the math
def svgd_direction(x: torch.Tensor, score: torch.Tensor, h, chunk_size: int | None = None) -> torch.Tensor:
    """The SVGD direction with the RBF kernel k(x, y) = exp(−|x − y|²/h) (Liu & Wang 2016, eq. 8):

        φ(x_i) = (1/n) Σ_j [ k(x_j, x_i) ∇log π(x_j) + ∇_{x_j} k(x_j, x_i) ]
               = (1/n) [ Σ_j k_ij s_j + (2/h) Σ_j k_ij (x_i − x_j) ]
               = (1/n) [ (K S)_i + (2/h) (x_i (K 1)_i − (K X)_i) ],

    since ∇_{x_j} exp(−|x_j − x_i|²/h) = (2/h) k_ij (x_i − x_j) (the repulsive term). ``x`` and ``score``
    are (n, d); ``h`` a positive float or 0-d tensor. Computed over blocks of ``chunk_size`` rows (a
    (chunk, n) kernel block and two matmuls each): O(n² d) time, O(chunk · n) memory. Returns (n, d)."""
    if x.ndim != 2 or score.shape != x.shape:
        raise ValueError(f"x and score must both have shape (n, d); got {tuple(x.shape)} and {tuple(score.shape)}")
    n = x.shape[0]
    h = torch.as_tensor(h, dtype=x.dtype, device=x.device)
    inv_h = 1.0 / h
    sq = (x * x).sum(1)
    step = n if chunk_size is None else max(1, int(chunk_size))
    out = []
    for a in range(0, n, step):
        xi = x[a:a + step]
        # |x_i − x_j|² = |x_i|² + |x_j|² − 2 x_i·x_j  (clamped: rounding can make it slightly negative)
        d2 = (sq[a:a + step, None] + sq[None, :]).addmm_(xi, x.T, alpha=-2.0).clamp_min_(0.0)
        K = torch.exp(d2.mul_(-inv_h))                               # (c, n), symmetric kernel rows
        drive = K @ score                                            # Σ_j k_ij s_j
        repulse = xi * K.sum(1, keepdim=True) - K @ x                 # Σ_j k_ij (x_i − x_j)
        out.append(drive + (2.0 * inv_h) * repulse)
    return torch.cat(out) / n


def median_bandwidth(x: torch.Tensor, max_points: int | None = None) -> torch.Tensor:
    """The median heuristic h = med² / log n (Liu & Wang 2016, Sec. 5), med = median of |x_i − x_j| over the
    pairs i < j (mean of the two middle values for an even count, as ``metrics.median_pairwise_distance``
    with ``include_diagonal=False``, which tests use as the reference), n = number of rows of ``x``.
    With ``max_points`` the median is over the pairs among the first ``max_points`` rows only (log n still
    uses the full n). Returns a 0-d tensor on the device of ``x`` (no host synchronisation); h = 1 for n < 2
    or all points equal (then the kernel is flat and the repulsion vanishes anyway)."""
    n = x.shape[0]
    z = x if max_points is None else x[:max_points]
    m = z.shape[0]
    if n < 2 or m < 2:
        return torch.ones((), dtype=x.dtype, device=x.device)
    D = torch.cdist(z, z, compute_mode="donot_use_mm_for_euclid_dist")  # exact zeros on the diagonal
    flat = D.flatten()
    # sorted full matrix = m diagonal zeros, then every pair value twice: the pair of 0-based rank r sits at
    # 0-based position m + 2r, i.e. it is the (m + 2r + 1)-th smallest (selection, no full sort)
    total = m * (m - 1) // 2
    k_lo, k_hi = (total - 1) // 2, total // 2
    lo = torch.kthvalue(flat, m + 2 * k_lo + 1).values
    if k_hi == k_lo:
        med = lo
    else:  # the next order statistic without a second selection: lo again if it repeats, else the next value
        repeats = (flat <= lo).sum() >= m + 2 * k_hi + 1
        nxt = flat.masked_fill(flat <= lo, math.inf).min()
        med = 0.5 * (lo + torch.where(repeats, lo, nxt))
    h = med * med / math.log(n)
    return torch.where(h > 0, h, torch.ones_like(h))


# ---------------------------------------------------------------------------------------------- sampler
@register
class SVGD(Sampler):
    """Stein variational gradient descent with the RBF kernel and the median heuristic: n particles, no
    weights; NFE = n score evaluations per step plus n log-density checks at the start."""

    name = "svgd"
    Config = SVGDConfig
    presets = {"default": {}, "cpu": {"n_steps": 500, "chunk_size": 512}}

    def initial_particles(self, n: int, generator, dtype, device) -> torch.Tensor:
        low, high = (b.to(device=device, dtype=dtype) for b in self.target.box)
        c, w = (low + high) / 2, high - low
        d = self.target.dim
        s = self.config.init_scale
        if self.config.init == "gaussian":
            return c + (s * w / 4) * torch.randn(n, d, generator=generator, dtype=dtype, device=device)
        u = torch.rand(n, d, generator=generator, dtype=dtype, device=device)
        return c + s * w * (u - 0.5)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Samples:
        n = self._check_n(n)
        c = self.config
        device, dtype = self._device_dtype(generator, c.dtype)
        counted = CountingTarget(self.target)
        traj = []
        with Timer() as t:
            x = self.initial_particles(n, generator, dtype, device)
            self.target.check_finite(x, "the initial SVGD particles")
            counted.nfe_log_prob += n  # the check evaluated log π̃ at the n start points
            counted.nfe += n
            if c.keep_trajectory:
                traj.append(x.clone())
            fixed_h = None if c.bandwidth == "median" else torch.as_tensor(float(c.bandwidth), dtype=dtype,
                                                                            device=device)
            h = fixed_h
            hist = None
            bar = progress(c.n_steps, desc=f"svgd n={n}")
            every = max(1, c.n_steps // 20)
            try:
                for step in range(c.n_steps):
                    h = median_bandwidth(x, c.median_points) if fixed_h is None else fixed_h
                    phi = svgd_direction(x, counted.score(x), h, c.chunk_size)
                    if c.optimizer == "adagrad":
                        g2 = phi * phi
                        hist = g2 if hist is None else hist.mul_(c.momentum).add_(g2, alpha=1 - c.momentum)
                        x = x + c.step_size * phi / (1e-6 + hist.sqrt())
                    else:
                        x = x + c.step_size * phi
                    if c.keep_trajectory and (step + 1) % c.keep_trajectory == 0:
                        traj.append(x.clone())
                    bar.update(1)
                    if not bar.disable and (step % every == 0 or step == c.n_steps - 1):
                        bar.set_postfix(h=f"{float(h):.3g}")  # the only host sync, and only when shown
            finally:
                bar.close()
        bad = ~torch.isfinite(x).all(1)
        n_bad = int(bad.sum())
        if n_bad:
            warnings.warn(f"svgd: {n_bad} of {n} particles are not finite after {c.n_steps} steps "
                          f"(step_size={c.step_size} may be too large)", RuntimeWarning, stacklevel=2)
        info = {"bandwidth": None if h is None else float(h), "bandwidth_rule":
                "median: h = med^2 / log n" if fixed_h is None else "fixed",
                "kernel": "exp(-|x-y|^2/h)", "steps": c.n_steps, "optimizer": c.optimizer,
                "step_size": c.step_size, "n_particles": n, "nfe_score": counted.nfe_score,
                "n_nonfinite": n_bad}
        return Samples(x=x, trajectory=torch.stack(traj) if traj else None, nfe=counted.nfe,
                       wall_time=t.seconds, sampler=self.name, target=self.target.name, info=info)
