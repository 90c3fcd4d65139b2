"""``ais`` and ``smc``: annealed importance sampling and adaptive tempered sequential Monte Carlo.

Both move n particles along the geometric path from a normalised Gaussian reference p₀ to the
unnormalised target π̃ (Neal, "Annealed importance sampling", Stat. Comput. 2001; Del Moral, Doucet &
Jasra, "Sequential Monte Carlo samplers", JRSS-B 2006):

    log γ_β(x) = (1 − β) log p₀(x) + β log π̃(x),    0 = β₀ < β₁ < … < β_T = 1,

so Z_{β=0} = 1 and Z_{β=1} = Z. p₀ = N(loc, diag scale²); by default loc = the centre of the target's
box and scale = a quarter of its width (``ref_loc`` / ``ref_scale`` override; a float or a (d,) list).
With δ(x) = log π̃(x) − log p₀(x), the step β_{t−1} → β_t multiplies particle i's weight by the
incremental weight

    w_i^{(t)} = γ_{β_t}(x_i) / γ_{β_{t−1}}(x_i) = exp((β_t − β_{t−1}) δ(x_i)),

after which every particle makes ``n_mcmc_steps`` MCMC moves leaving γ_{β_t} invariant (MALA by
default, or HMC with ``n_leapfrog`` steps; :mod:`.kernels` applied to the tempered density, whose
score is (1 − β)∇log p₀ + β∇log π̃).

* ``ais``: a fixed schedule ("linear": β_t = t/T; "geometric": β_1..β_T log-spaced from ``beta_min``
  to 1), no resampling. Final log weights log w_i = Σ_t (β_t − β_{t−1}) δ(x_i^{(t−1→t)}); their
  log-mean-exp is the (Z-unbiased) AIS estimate of log Z.
* ``smc``: β_t chosen adaptively so that the conditional ESS (Zhou, Johansen & Aston, JCGS 2016)
  of the incremental weights equals ``cess_target``·n (bisection, :func:`next_temperature`);
  systematic resampling (:func:`systematic_resample`) whenever the ESS of the current weights drops
  below ``resample_threshold``·n. log Ẑ = Σ_t log Σ_i W_i^{(t−1)} w_i^{(t)} (:func:`log_Z_increment`,
  W the normalised weights before step t). The returned log weights are log Ẑ + log(n W_i), so
  their log-mean-exp equals log Ẑ (after a final resampling all equal log Ẑ).

Step size: one step size shared by all particles, adapted *between* MCMC moves by the multiplicative
(Robbins–Monro-type) rule log h ← log h + ``adapt_rate``·(ᾱ − δ), ᾱ the acceptance probability
averaged over particles in the move just made, δ = ``target_accept`` (0.574 for MALA, Roberts &
Rosenthal 1998; 0.8 for HMC). The step carries over from one temperature to the next, so it tracks
the changing scale of γ_β along the path. (The step used at a move depends on earlier particles; as
usual in adaptive SMC this leaves the estimators consistent, with a negligible bias.)

Target evaluations: the target's log π̃ and ∇log π̃ at each particle are tracked alongside the
tempered state, so changing β costs no evaluation. NFE (joint evaluations of the target, counted by
:class:`~.base.CountingTarget`; the reference p₀ is not counted): n·(1 + T·n_mcmc_steps) for MALA,
n·(1 + T·n_mcmc_steps·n_leapfrog) for HMC.
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
from .mcmc import DTYPES
from .registry import register

__all__ = ["AIS", "AISConfig", "SMC", "SMCConfig", "systematic_resample", "conditional_ess", "ess_fraction",
           "next_temperature", "log_Z_increment", "GaussianReference"]


# ---------------------------------------------------------------------- pure functions
def _log_normalise(log_weights: torch.Tensor) -> torch.Tensor:
    """log W_i = log w_i − log Σ_j w_j (float64; NaN treated as −∞)."""
    lw = log_weights.to(torch.float64)
    lw = torch.where(torch.isnan(lw), torch.full_like(lw, -math.inf), lw)
    return lw - torch.logsumexp(lw, 0)


def systematic_resample(log_weights: torch.Tensor, generator: torch.Generator | None = None,
                        n: int | None = None) -> torch.Tensor:
    """Systematic resampling (Kitagawa 1996; Carpenter, Clifford & Fearnhead 1999): one U ~ U(0, 1),
    positions u_k = (U + k)/n for k = 0..n−1, and ancestor a_k = the i with C_{i−1} ≤ u_k < C_i,
    C_i = Σ_{j≤i} W_j the cumulative normalised weights. Each particle i is copied ⌊nW_i⌋ or ⌈nW_i⌉
    times (unbiased: E[count_i] = nW_i). Returns the (n,) ancestor indices (long), in increasing order.
    ``n`` defaults to the number of weights."""
    lw = _log_normalise(torch.as_tensor(log_weights).flatten())
    m = lw.numel()
    n = m if n is None else int(n)
    if not torch.isfinite(lw).any():
        raise ValueError("systematic_resample: all weights are zero (log weights all −inf or NaN)")
    device = log_weights.device
    cum = torch.cumsum(torch.exp(lw), 0)
    cum = cum / cum[-1]
    u = (torch.rand((), generator=generator, dtype=torch.float64, device=device)
         + torch.arange(n, dtype=torch.float64, device=device)) / n
    return torch.searchsorted(cum, u, right=True).clamp_(max=m - 1)


def ess_fraction(log_weights: torch.Tensor) -> float:
    """Normalised effective sample size (Σ w)² / (n Σ w²) ∈ (0, 1] (Kong 1992)."""
    lw = _log_normalise(torch.as_tensor(log_weights).flatten())
    return float(torch.exp(-torch.logsumexp(2 * lw, 0)) / lw.numel())


def conditional_ess(log_W: torch.Tensor, log_incremental: torch.Tensor) -> float:
    """Normalised conditional ESS of Zhou, Johansen & Aston (JCGS 2016, eq. 3.16):

        CESS / n = (Σ_i W_i w_i)² / Σ_i W_i w_i²  ∈ (0, 1]   (Σ_i W_i = 1),

    W the current normalised weights (``log_W`` need not be normalised), w the incremental weights
    (``log_incremental``). With equal W it is the ESS of w; unlike the ESS of the updated weights it
    measures only the degeneracy introduced by the new step. NaN increments count as weight 0."""
    lW = _log_normalise(torch.as_tensor(log_W).flatten())
    li = torch.as_tensor(log_incremental).flatten().to(torch.float64)
    li = torch.where(torch.isnan(li), torch.full_like(li, -math.inf), li)
    a = torch.logsumexp(lW + li, 0)
    b = torch.logsumexp(lW + 2 * li, 0)
    if not torch.isfinite(a):
        return 0.0
    return float(torch.exp(2 * a - b))


def next_temperature(log_W: torch.Tensor, delta: torch.Tensor, beta: float, cess_target: float,
                     tol: float = 1e-8, max_iter: int = 100) -> float:
    """The next inverse temperature β' ∈ (β, 1] of adaptive tempered SMC: 1.0 if the whole remaining
    step keeps CESS/n ≥ ``cess_target``, else the β' solving

        CESS(β')/n = (Σ W_i e^{(β'−β) δ_i})² / Σ W_i e^{2(β'−β) δ_i} = cess_target

    by bisection on [β, 1] until the bracket is narrower than ``tol`` (CESS is non-increasing in
    β' − β; the lower end of the bracket, where CESS ≥ target, is returned; never less than
    β + tol, so the schedule always advances). δ_i = log π̃(x_i) − log p₀(x_i)."""
    if not 0.0 < cess_target < 1.0:
        raise ValueError(f"cess_target must lie in (0, 1), got {cess_target!r}")
    d = torch.as_tensor(delta).flatten().to(torch.float64)
    lW = _log_normalise(torch.as_tensor(log_W).flatten())

    def cess(b: float) -> float:
        return conditional_ess(lW, (b - beta) * d)

    if cess(1.0) >= cess_target:
        return 1.0
    lo, hi = beta, 1.0
    for _ in range(max_iter):
        if hi - lo <= tol:
            break
        mid = 0.5 * (lo + hi)
        if cess(mid) >= cess_target:
            lo = mid
        else:
            hi = mid
    return min(max(lo, beta + tol), 1.0)


def log_Z_increment(log_W: torch.Tensor, log_incremental: torch.Tensor) -> float:
    """log(Z_{β_t} / Z_{β_{t−1}}) estimated by log Σ_i W_i^{(t−1)} w_i^{(t)} (W normalised; ``log_W``
    need not be). Summed over t this is the SMC estimate of log Z (unbiased in Z; Del Moral 2004)."""
    lW = _log_normalise(torch.as_tensor(log_W).flatten())
    li = torch.as_tensor(log_incremental).flatten().to(torch.float64)
    li = torch.where(torch.isnan(li), torch.full_like(li, -math.inf), li)
    return float(torch.logsumexp(lW + li, 0))


class GaussianReference:
    """Normalised p₀ = N(loc, diag scale²): exact draws, log density and score (not counted as NFE)."""

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor):
        self.loc, self.scale = loc, scale
        self.dim = loc.shape[-1]
        self._log_norm = -float(torch.log(scale).sum()) - 0.5 * self.dim * math.log(2 * math.pi)

    def sample(self, n: int, generator, dtype, device) -> torch.Tensor:
        z = torch.randn(n, self.dim, generator=generator, dtype=dtype, device=device)
        return self.loc.to(dtype) + self.scale.to(dtype) * z

    def log_prob_and_score(self, x: torch.Tensor):
        loc, scale = self.loc.to(x.dtype), self.scale.to(x.dtype)
        z = (x - loc) / scale
        return self._log_norm - 0.5 * (z * z).sum(-1), -z / scale


# ---------------------------------------------------------------------- configs
def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_int(c, name: str, low: int) -> None:
    v = getattr(c, name)
    if not isinstance(v, int) or isinstance(v, bool) or v < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")


@dataclass
class MoveOptions:
    """Options shared by AIS and SMC: the MCMC moves at each temperature and the Gaussian reference p₀
    (documented in :class:`AISConfig`)."""

    n_mcmc_steps: int = 5
    kernel: str = "mala"
    n_leapfrog: int = 5
    step_size: float = 0.1
    target_accept: float | None = None
    adapt_rate: float = 1.0
    ref_loc: Any = None
    ref_scale: Any = None
    dtype: str | None = None

    def __post_init__(self):
        _check_moves(self)


def _check_moves(c) -> None:
    """Validation shared by AISConfig and SMCConfig; each error names the field."""
    if c.kernel not in ("mala", "hmc"):
        raise ValueError(f"kernel must be 'mala' or 'hmc', got {c.kernel!r}")
    _check_int(c, "n_mcmc_steps", 0)
    _check_int(c, "n_leapfrog", 1)
    if not (_is_num(c.step_size) and c.step_size > 0):
        raise ValueError(f"step_size must be a positive finite number, got {c.step_size!r}")
    if c.target_accept is not None and not (_is_num(c.target_accept) and 0.0 < c.target_accept < 1.0):
        raise ValueError(f"target_accept must be None or lie in (0, 1), got {c.target_accept!r}")
    if not (_is_num(c.adapt_rate) and c.adapt_rate >= 0):
        raise ValueError(f"adapt_rate must be a finite number >= 0, got {c.adapt_rate!r}")
    for name in ("ref_loc", "ref_scale"):
        v = getattr(c, name)
        if v is None or _is_num(v):
            continue
        try:
            t = torch.as_tensor(v, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"{name} must be None, a number or a (d,) vector, got {v!r}") from None
        if t.ndim > 1 or not torch.isfinite(t).all():
            raise ValueError(f"{name} must be None, a finite number or a finite (d,) vector, got {v!r}")
    if c.ref_scale is not None and not bool((torch.as_tensor(c.ref_scale, dtype=torch.float64) > 0).all()):
        raise ValueError(f"ref_scale must be positive, got {c.ref_scale!r}")
    if c.dtype not in DTYPES:
        raise ValueError(f"dtype must be None, 'float32' or 'float64', got {c.dtype!r}")


@dataclass
class AISConfig(MoveOptions):
    """n_temps: T, the number of temperatures after β₀ = 0. schedule: "linear" (β_t = t/T) or
    "geometric" (β_1..β_T log-spaced from beta_min to 1). n_mcmc_steps: MCMC moves per temperature.
    kernel: "mala" | "hmc" (n_leapfrog leapfrog steps). step_size: initial step (adapted by
    log h += adapt_rate·(ᾱ − target_accept) after each move; adapt_rate = 0 keeps it fixed).
    target_accept: None → 0.574 (MALA) / 0.8 (HMC). ref_loc, ref_scale: the Gaussian reference p₀
    (None → box centre / quarter box width). dtype: None | "float32" | "float64"."""

    n_temps: int = 100
    schedule: str = "geometric"
    beta_min: float = 1e-4

    def __post_init__(self):
        super().__post_init__()
        _check_int(self, "n_temps", 1)
        if self.schedule not in ("linear", "geometric"):
            raise ValueError(f"schedule must be 'linear' or 'geometric', got {self.schedule!r}")
        if not (_is_num(self.beta_min) and 0.0 < self.beta_min < 1.0):
            raise ValueError(f"beta_min must lie in (0, 1), got {self.beta_min!r}")


@dataclass
class SMCConfig(MoveOptions):
    """cess_target: the normalised conditional ESS CESS/n each new temperature is chosen to give
    (0.95; closer to 1 = more temperatures, lower variance of log Ẑ, more NFE). resample_threshold:
    resample (systematic) when ESS/n of the current weights < this (0.5); 0 never, 1 always.
    max_temperatures: guard; the step that would exceed it goes straight to β = 1 (recorded in
    info["forced_final_step"]). final_resample: resample once more at the end so the returned
    particles are equally weighted. Other fields as :class:`AISConfig`."""

    cess_target: float = 0.95
    resample_threshold: float = 0.5
    max_temperatures: int = 1000
    final_resample: bool = False

    def __post_init__(self):
        super().__post_init__()
        _check_int(self, "max_temperatures", 1)
        if not (_is_num(self.cess_target) and 0.0 < self.cess_target < 1.0):
            raise ValueError(f"cess_target must lie in (0, 1), got {self.cess_target!r}")
        if not (_is_num(self.resample_threshold) and 0.0 <= self.resample_threshold <= 1.0):
            raise ValueError(f"resample_threshold must lie in [0, 1], got {self.resample_threshold!r}")


# ---------------------------------------------------------------------- shared machinery
class _Annealed(Sampler):
    """Particles, the tempered kernels and bookkeeping shared by AIS and SMC."""

    def _reference(self, dtype, device) -> GaussianReference:
        c, d = self.config, self.target.dim
        low, high = (b.to(dtype=torch.float64) for b in self.target.box)
        loc = (low + high) / 2 if c.ref_loc is None else torch.as_tensor(c.ref_loc, dtype=torch.float64)
        scale = (high - low) / 4 if c.ref_scale is None else torch.as_tensor(c.ref_scale, dtype=torch.float64)
        loc, scale = loc.expand(d).clone(), scale.expand(d).clone()
        if loc.shape != (d,) or scale.shape != (d,):
            raise ValueError(f"ref_loc / ref_scale must be scalars or of shape ({d},)")
        return GaussianReference(loc.to(dtype=dtype, device=device), scale.to(dtype=dtype, device=device))

    def _start(self, n, generator):
        c = self.config
        self._device = generator.device if generator is not None else torch.device("cpu")
        self._dtype = DTYPES[c.dtype] or torch.get_default_dtype()
        self._counted = CountingTarget(self.target)
        self._ref = self._reference(self._dtype, self._device)
        x = self._ref.sample(n, generator, self._dtype, self._device)
        lt, st = self._counted.log_prob_and_score(x)
        self._delta_accept = c.target_accept if c.target_accept is not None else (
            0.574 if c.kernel == "mala" else 0.8)
        self._log_h = torch.tensor(math.log(c.step_size), dtype=self._dtype, device=self._device)
        return x, lt, st

    def _delta(self, x, lt) -> torch.Tensor:
        """δ(x) = log π̃(x) − log p₀(x)."""
        return lt - self._ref.log_prob_and_score(x)[0]

    def _move(self, x, lt, st, beta: float, generator):
        """``n_mcmc_steps`` MALA/HMC moves targeting γ_β; returns (x, lt, st, mean acceptance or NaN).
        The target's log π̃/∇log π̃ at the proposal is stashed by the tempered density and kept where
        the chain moved (a proposal equal to the current point has probability 0)."""
        c = self.config
        if c.n_mcmc_steps == 0:
            return x, lt, st, math.nan
        ref, f = self._ref, self._counted.log_prob_and_score
        stash = {}

        def tempered(y):
            a, g = f(y)
            stash["lt"], stash["st"] = a, g
            r, rg = ref.log_prob_and_score(y)
            if beta == 1.0:
                return a, g
            return (1.0 - beta) * r + beta * a, (1.0 - beta) * rg + beta * g

        r, rg = ref.log_prob_and_score(x)
        if beta == 1.0:
            state = K.MCMCState(x, lt, st)
        else:
            state = K.MCMCState(x, (1.0 - beta) * r + beta * lt, (1.0 - beta) * rg + beta * st)
        acc = torch.zeros((), dtype=self._dtype, device=self._device)
        for _ in range(c.n_mcmc_steps):
            h = torch.exp(self._log_h)
            if c.kernel == "mala":
                new, alpha = K.mala_step(state, tempered, h, generator)
            else:
                new, alpha = K.hmc_step(state, tempered, h, c.n_leapfrog, generator)
            moved = (new.x != state.x).any(-1)
            lt = torch.where(moved, stash["lt"], lt)
            st = torch.where(moved[:, None], stash["st"], st)
            state = new
            a_mean = alpha.mean()
            acc = acc + a_mean
            self._log_h = self._log_h + c.adapt_rate * (a_mean - self._delta_accept)
        return state.x, lt, st, float(acc) / c.n_mcmc_steps


# ---------------------------------------------------------------------- AIS
def ais_schedule(n_temps: int, schedule: str, beta_min: float = 1e-4) -> list[float]:
    """β₀ = 0 < β₁ < … < β_T = 1: "linear" t/T, or "geometric" β_1..β_T = beta_min^{(T−t)/(T−1)}."""
    if schedule == "linear":
        return [t / n_temps for t in range(n_temps + 1)]
    if n_temps == 1:
        return [0.0, 1.0]
    lb = math.log(beta_min)
    return [0.0] + [math.exp(lb * (n_temps - t) / (n_temps - 1)) for t in range(1, n_temps + 1)]


@register
class AIS(_Annealed):
    """Annealed importance sampling (Neal 2001) along the geometric path from a Gaussian p₀."""

    name = "ais"
    Config = AISConfig
    presets = {"default": {}, "cpu": {"n_temps": 50, "n_mcmc_steps": 2}}

    def sample(self, n: int, generator: torch.Generator | None = None) -> Samples:
        n = self._check_n(n)
        c = self.config
        betas = ais_schedule(c.n_temps, c.schedule, c.beta_min)
        acc_rates = []
        with Timer() as timer:
            x, lt, st = self._start(n, generator)
            log_w = torch.zeros(n, dtype=torch.float64, device=x.device)
            bar = progress(c.n_temps, desc=self.name)
            try:
                for t in range(1, len(betas)):
                    inc = (betas[t] - betas[t - 1]) * self._delta(x, lt).to(torch.float64)
                    log_w = log_w + torch.where(torch.isnan(inc), torch.full_like(inc, -math.inf), inc)
                    x, lt, st, a = self._move(x, lt, st, betas[t], generator)
                    acc_rates.append(a)
                    bar.update(1)
                    bar.set_postfix(beta=f"{betas[t]:.3g}")
            finally:
                bar.close()
        from ..metrics.logz import log_mean_exp
        info = {"log_Z": log_mean_exp(log_w), "ess": ess_fraction(log_w), "n_temperatures": c.n_temps,
                "betas": betas, "acceptance_rates": acc_rates, "step_size": float(torch.exp(self._log_h)),
                "kernel": c.kernel}
        return Samples(x=x, log_weights=log_w, nfe=self._counted.nfe, wall_time=timer.seconds,
                       sampler=self.name, target=self.target.name, info=info)


# ---------------------------------------------------------------------- SMC
@register
class SMC(_Annealed):
    """Adaptive tempered SMC (Del Moral, Doucet & Jasra 2006): CESS-chosen temperatures (Zhou et al.
    2016), systematic resampling at low ESS, MALA/HMC moves."""

    name = "smc"
    Config = SMCConfig
    presets = {"default": {}, "cpu": {"n_mcmc_steps": 3, "cess_target": 0.9}}

    def sample(self, n: int, generator: torch.Generator | None = None) -> Samples:
        n = self._check_n(n)
        c = self.config
        betas, acc_rates, ess_hist = [0.0], [], []
        n_resample, log_Z, forced = 0, 0.0, False
        with Timer() as timer:
            x, lt, st = self._start(n, generator)
            log_W = torch.zeros(n, dtype=torch.float64, device=x.device)  # log of unnormalised weights
            beta = 0.0
            bar = progress(1.0, desc=self.name, bar_format="{l_bar}{bar}| β={n:.4f} [{elapsed}{postfix}]")
            try:
                while beta < 1.0:
                    delta = self._delta(x, lt).to(torch.float64)
                    if len(betas) >= c.max_temperatures:
                        new_beta, forced = 1.0, True
                    else:
                        new_beta = next_temperature(log_W, delta, beta, c.cess_target)
                    inc = (new_beta - beta) * delta
                    inc = torch.where(torch.isnan(inc), torch.full_like(inc, -math.inf), inc)
                    log_Z += log_Z_increment(log_W, inc)
                    log_W = _log_normalise(log_W + inc)
                    e = ess_fraction(log_W)
                    ess_hist.append(e)
                    if e < c.resample_threshold:
                        idx = systematic_resample(log_W, generator)
                        x, lt, st = x[idx], lt[idx], st[idx]
                        log_W = torch.zeros_like(log_W)
                        n_resample += 1
                    x, lt, st, a = self._move(x, lt, st, new_beta, generator)
                    acc_rates.append(a)
                    bar.update(new_beta - beta)
                    beta = new_beta
                    betas.append(beta)
            finally:
                bar.close()
            if c.final_resample and bool((log_W != log_W[0]).any()):
                idx = systematic_resample(log_W, generator)
                x, lt, st = x[idx], lt[idx], st[idx]
                log_W = torch.zeros_like(log_W)
                n_resample += 1
        log_weights = log_Z + _log_normalise(log_W) + math.log(n)
        info = {"log_Z": log_Z, "n_temperatures": len(betas) - 1, "betas": betas, "n_resample": n_resample,
                "acceptance_rates": acc_rates, "ess_history": ess_hist, "ess": ess_fraction(log_W),
                "step_size": float(torch.exp(self._log_h)), "kernel": c.kernel,
                "cess_target": c.cess_target, "forced_final_step": forced}
        return Samples(x=x, log_weights=log_weights, nfe=self._counted.nfe, wall_time=timer.seconds,
                       sampler=self.name, target=self.target.name, info=info)
