"""``ula``, ``mala``, ``hmc``: gradient-based MCMC with many chains in parallel.

``sample(n, generator)`` runs n chains (one batch (n, d)) for ``n_warmup`` + ``n_steps`` iterations
and returns the n final states. The kernels (equations and papers) are in :mod:`.kernels`.

* ``ula``  unadjusted Langevin (Roberts & Tweedie 1996); fixed step; ``n_warmup`` is burn-in. Biased
  by O(h): the stationary law is not π.
* ``mala`` Metropolis-adjusted Langevin; step size tuned in warm-up to acceptance 0.574, the optimal
  rate for MALA as d → ∞ (Roberts & Rosenthal, JRSS-B 1998); optional log-uniform step jitter as for HMC.
* ``hmc``  Hamiltonian Monte Carlo with L leapfrog steps (Neal 2011); step size tuned in warm-up to
  acceptance 0.8 (Stan's default δ; the asymptotically optimal 0.651 of Beskos et al., Bernoulli 2013,
  is less robust on targets with varying curvature such as the funnel). The step is jittered per chain
  and iteration by a factor U(1 − jitter, 1 + jitter) (Neal 2011, §5.4.2.2) to avoid periodic orbits;
  optionally (``log_jitter`` > 0) also by a log-uniform factor exp(U(−log_jitter, log_jitter)), so that
  some iterations use a step small enough for the narrowest region (the funnel's neck). A step drawn
  independently of the state leaves π invariant (each fixed step gives a π-invariant kernel; the draw
  mixes them). During warm-up the dual averaging adapts the centre ε of the jitter distribution.

Step-size adaptation: dual averaging (Hoffman & Gelman, JMLR 2014, Algorithm 5; γ = 0.05, t₀ = 10,
κ = 0.75, μ = log(10 ε₀)) on the *mean acceptance probability over chains*: one step size shared by
all chains, so the adaptation statistic averages over n chains and is nearly noise-free. After
warm-up the step is ε̄ (the dual average) and fixed.

Optional diagonal preconditioner (ULA/MALA: x' = x + hS²∇log π + √(2h)Sξ with S = diag(std)) or
mass matrix (HMC: M⁻¹ = diag(var)), estimated Stan-style from the warm-up: the per-coordinate
variance over all chains and iterations of a window, in two windows: [W/4, W/2) (set at W/2, then
re-estimated in the new metric) and [W/2, 3W/4) (set at 3W/4) of the W warm-up iterations. After each
the dual averaging restarts from the step rescaled to the new metric, h ← h / min(std_new/std_old)^p
(p = 2 for Langevin, 1 for HMC); the final quarter tunes the step alone. Needs W >= 8.

Initial points (``init``): "box": N(centre, (width/4)²) of the target's box; "prior": N(0, init_scale² I);
or a tensor (n, d) / (d,). They are checked with ``target.check_finite`` (clear error if log π̃ is not
finite there).

NFE (joint log π̃ + ∇log π̃ evaluations, per chain): ULA and MALA n·(1 + n_warmup + n_steps);
HMC n·(1 + n_leapfrog·(n_warmup + n_steps)).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ..progress import progress
from ..samples import Samples
from . import kernels as K
from .base import CountingTarget, Sampler, Timer
from .registry import register

__all__ = ["ULA", "ULAConfig", "MALA", "MALAConfig", "HMC", "HMCConfig"]

DTYPES = {None: None, "float32": torch.float32, "float64": torch.float64}


def check_chain_config(c) -> None:
    """Validation shared by the chain samplers' configs; each error names the field."""
    if not (isinstance(c.step_size, (int, float)) and not isinstance(c.step_size, bool)
            and math.isfinite(c.step_size) and c.step_size > 0):
        raise ValueError(f"step_size must be a positive finite number, got {c.step_size!r}")
    for name, low in (("n_steps", 1), ("n_warmup", 0), ("thin", 1)):
        v = getattr(c, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
    if isinstance(c.init, str):
        if c.init not in ("box", "prior"):
            raise ValueError(f"init must be 'box', 'prior' or a tensor of initial points, got {c.init!r}")
    elif not isinstance(c.init, (torch.Tensor, list, tuple)):
        raise ValueError(f"init must be 'box', 'prior' or a tensor of initial points, got {type(c.init).__name__}")
    if not (isinstance(c.init_scale, (int, float)) and c.init_scale > 0 and math.isfinite(c.init_scale)):
        raise ValueError(f"init_scale must be a positive finite number, got {c.init_scale!r}")
    if c.dtype not in DTYPES:
        raise ValueError(f"dtype must be None, 'float32' or 'float64', got {c.dtype!r}")
    lj = getattr(c, "log_jitter", 0.0)
    if not (isinstance(lj, (int, float)) and not isinstance(lj, bool) and math.isfinite(lj) and lj >= 0.0):
        raise ValueError(f"log_jitter must be a finite number >= 0, got {lj!r}")
    ta = getattr(c, "target_accept", None)
    if ta is not None and not (isinstance(ta, (int, float)) and 0.0 < ta < 1.0):
        raise ValueError(f"target_accept must lie in (0, 1), got {ta!r}")


@dataclass
class ChainOptions:
    """Options shared by the chain samplers (ULA, MALA, HMC, PT): init: "box" | "prior" | tensor of
    initial points; init_scale: std of the "prior" init; keep_trajectory / thin: store every
    ``thin``-th state of the sampling phase; dtype: None (torch default), "float32", "float64"."""

    init: Any = "box"
    init_scale: float = 1.0
    keep_trajectory: bool = False
    thin: int = 10
    dtype: str | None = None


@dataclass
class ULAConfig(ChainOptions):
    """step_size: h (fixed). n_warmup: burn-in iterations. n_steps: iterations after burn-in.
    init: "box" | "prior" | tensor; init_scale: std of the "prior" init. adapt_preconditioner:
    estimate S = diag(std) in burn-in (h is then rescaled to h/min(std)², keeping
    the step on the narrowest coordinate). tamed: the coordinate-wise tamed drift (Brosse et al. 2019), for
    gradients that grow faster than linearly (funnels). keep_trajectory: store every
    ``thin``-th state of the sampling phase as Samples.trajectory, shape (n_steps // thin, n, d), on
    the chains' device (memory n_steps/thin · n · d numbers). dtype: None (torch default), "float32",
    "float64"."""

    step_size: float = 0.01
    n_warmup: int = 1000
    n_steps: int = 1000
    adapt_preconditioner: bool = False
    tamed: bool = False

    def __post_init__(self):
        check_chain_config(self)
        if not isinstance(self.tamed, bool):
            raise ValueError(f"tamed must be True or False, got {self.tamed!r}")


@dataclass
class MALAConfig(ChainOptions):
    """step_size: initial h (adapted in warm-up when adapt_step_size). target_accept: δ of the dual
    averaging (0.574, Roberts & Rosenthal 1998). log_jitter: multiply the per-chain step by
    exp(U(−log_jitter, log_jitter)) each iteration (0 = off; as for HMC, for targets whose curvature varies by
    orders of magnitude; h is a variance, so twice HMC's log range covers the same scales). Other fields as
    :class:`ULAConfig`."""

    step_size: float = 0.1
    n_warmup: int = 1000
    n_steps: int = 1000
    target_accept: float = 0.574
    adapt_step_size: bool = True
    adapt_preconditioner: bool = False
    log_jitter: float = 0.0

    def __post_init__(self):
        check_chain_config(self)


@dataclass
class HMCConfig(ChainOptions):
    """step_size: initial leapfrog step ε (adapted in warm-up when adapt_step_size). n_leapfrog: L.
    target_accept: δ (0.8, Stan's default). adapt_mass: estimate a diagonal inverse mass matrix
    M⁻¹ = diag(var) in warm-up. jitter: per-chain step ε·U(1 − jitter, 1 + jitter) each iteration.
    log_jitter: additionally multiply the per-chain step by exp(U(−log_jitter, log_jitter)) (0 = off, the
    default): a log-uniform random step spanning several scales, for targets whose curvature varies by orders
    of magnitude (Neal's funnel). Other fields as :class:`ULAConfig`."""

    step_size: float = 0.1
    n_leapfrog: int = 10
    n_warmup: int = 500
    n_steps: int = 500
    target_accept: float = 0.8
    adapt_step_size: bool = True
    adapt_mass: bool = False
    jitter: float = 0.1
    log_jitter: float = 0.0

    def __post_init__(self):
        check_chain_config(self)
        if not isinstance(self.n_leapfrog, int) or isinstance(self.n_leapfrog, bool) or self.n_leapfrog < 1:
            raise ValueError(f"n_leapfrog must be an integer >= 1, got {self.n_leapfrog!r}")
        if not (isinstance(self.jitter, (int, float)) and 0.0 <= self.jitter < 1.0):
            raise ValueError(f"jitter must lie in [0, 1), got {self.jitter!r}")


def _jittered(h, x, generator, *, jitter: float = 0.0, log_jitter: float = 0.0):
    """Per-chain random step h·U(1 − jitter, 1 + jitter)·exp(U(−log_jitter, log_jitter)), drawn independently of
    the state, so each draw's kernel is π-invariant and so is their mixture (Neal 2011, §5.4.2.2)."""
    def uniform():  # U(−1, 1) per chain
        return 2.0 * torch.rand(x.shape[0], generator=generator, dtype=x.dtype, device=x.device) - 1.0

    if jitter > 0:
        h = h * (1.0 + jitter * uniform())
    if log_jitter > 0:
        h = h * torch.exp(log_jitter * uniform())
    return h


class _MCMC(Sampler):
    """Shared loop: initial points, warm-up (adaptation), sampling, bookkeeping."""

    adapts_step: bool = False
    #: exponent p of the step rescaling h_new = h_old / min(std)^p when a preconditioner is set
    _precond_power: float = 2.0

    def _adapt_step(self) -> bool:
        return self.adapts_step and self.config.adapt_step_size

    def _adapt_precond(self) -> bool:
        return bool(self.config.adapt_preconditioner)

    def _step(self, state, f, h, precond_std, generator):  # -> (state, accept prob or None)
        raise NotImplementedError

    def _initial_points(self, n, generator, dtype, device) -> torch.Tensor:
        c, d = self.config, self.target.dim
        if isinstance(c.init, str):
            z = torch.randn(n, d, generator=generator, dtype=dtype, device=device)
            if c.init == "prior":
                return c.init_scale * z
            low, high = (b.to(dtype=dtype, device=device) for b in self.target.box)
            return (low + high) / 2 + (high - low) / 4 * z
        x0 = torch.as_tensor(c.init, dtype=dtype, device=device)
        if x0.shape == (d,):
            x0 = x0.expand(n, d).clone()
        if x0.shape != (n, d):
            raise ValueError(f"init given as points must have shape ({d},) or (n, d) = ({n}, {d}), "
                             f"got {tuple(x0.shape)}")
        return x0.clone()

    def sample(self, n: int, generator: torch.Generator | None = None) -> Samples:
        n = self._check_n(n)
        c = self.config
        device = generator.device if generator is not None else torch.device("cpu")
        dtype = DTYPES[c.dtype] or torch.get_default_dtype()
        counted = CountingTarget(self.target)
        f = counted.log_prob_and_score
        W, total = c.n_warmup, c.n_warmup + c.n_steps
        adapt_step, adapt_pre = self._adapt_step(), self._adapt_precond() and W >= 8
        # preconditioner windows (Stan-like): estimate over [W/4, W/2), set; re-estimate in the new
        # metric over [W/2, 3W/4), set; the last quarter only tunes the step size.
        windows = [(W // 4, W // 2), (W // 2, (3 * W) // 4)]
        with Timer() as timer:
            x0 = self._initial_points(n, generator, dtype, device)
            self.target.check_finite(x0, "initial points")
            state = K.init_state(x0, f)
            step = torch.tensor(float(c.step_size), dtype=dtype, device=device)
            da = K.dual_averaging_init(step)
            precond = None
            moments = None
            acc_sum = torch.zeros((), dtype=dtype, device=device)
            acc_warm = torch.zeros((), dtype=dtype, device=device)
            traj = []
            bar = progress(total, desc=self.name)
            try:
                for it in range(total):
                    state, alpha = self._step(state, f, step, precond, generator)
                    if it < W:
                        if alpha is not None:
                            acc_warm = acc_warm + alpha.mean()
                        if adapt_step:
                            da = K.dual_averaging_update(da, alpha.mean(), c.target_accept)
                            step = torch.exp(da.log_step)
                        for (w0, w1) in (windows if adapt_pre else ()):
                            if it == w0:
                                moments = K.running_moments_init(self.target.dim, x0)
                            if w0 <= it < w1:
                                moments = K.running_moments_update(moments, state.x)
                            if it == w1 - 1:
                                std = torch.sqrt(K.running_moments_var(moments)).clamp_min(1e-8)
                                current = torch.exp(da.log_step_avg) if adapt_step and da.count else step
                                new_rel = std if precond is None else std / precond
                                step = current / new_rel.min() ** self._precond_power
                                precond = std
                                da = K.dual_averaging_init(step)
                        if it == W - 1 and adapt_step:
                            step = torch.exp(da.log_step_avg)
                    else:
                        if alpha is not None:
                            acc_sum = acc_sum + alpha.mean()
                        if c.keep_trajectory and (it - W + 1) % c.thin == 0:
                            traj.append(state.x.clone())
                    bar.update(1)
            finally:
                bar.close()
        info = {"n_chains": n, "n_warmup": W, "n_steps": c.n_steps, "step_size": float(step)}
        if self.adapts_step:
            info["acceptance_rate"] = float(acc_sum) / c.n_steps
            info["warmup_acceptance_rate"] = float(acc_warm) / W if W else math.nan
            info["target_accept"] = c.target_accept
        if precond is not None:
            info["preconditioner_std"] = precond.tolist()
        n_bad = int((~torch.isfinite(state.log_prob)).sum())
        if n_bad:
            info["n_nonfinite_chains"] = n_bad
        return Samples(x=state.x, trajectory=torch.stack(traj) if traj else None, nfe=counted.nfe,
                       wall_time=timer.seconds, sampler=self.name, target=self.target.name, info=info)


@register
class ULA(_MCMC):
    """Unadjusted Langevin algorithm: n parallel chains, fixed step, biased by O(h)."""

    name = "ula"
    Config = ULAConfig
    presets = {"default": {}, "cpu": {"n_warmup": 200, "n_steps": 200}}

    def _step(self, state, f, h, precond_std, generator):
        return K.ula_step(state, f, h, generator, scale=precond_std, tamed=self.config.tamed), None


@register
class MALA(_MCMC):
    """Metropolis-adjusted Langevin: n parallel chains, step adapted to acceptance 0.574."""

    name = "mala"
    Config = MALAConfig
    presets = {"default": {}, "cpu": {"n_warmup": 300, "n_steps": 200}}
    adapts_step = True

    def _step(self, state, f, h, precond_std, generator):
        h = _jittered(h, state.x, generator, log_jitter=self.config.log_jitter)
        return K.mala_step(state, f, h, generator, scale=precond_std)


@register
class HMC(_MCMC):
    """Hamiltonian Monte Carlo: n parallel chains, L leapfrog steps, step adapted to acceptance 0.8."""

    name = "hmc"
    Config = HMCConfig
    presets = {"default": {}, "cpu": {"n_leapfrog": 5, "n_warmup": 100, "n_steps": 100}}
    adapts_step = True
    _precond_power = 1.0

    def _adapt_precond(self) -> bool:
        return bool(self.config.adapt_mass)

    def _step(self, state, f, h, precond_std, generator):
        c = self.config
        h = _jittered(h, state.x, generator, jitter=c.jitter, log_jitter=c.log_jitter)
        inv_mass = None if precond_std is None else precond_std * precond_std
        return K.hmc_step(state, f, h, c.n_leapfrog, generator, inv_mass=inv_mass)
