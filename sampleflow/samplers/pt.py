"""``pt``: parallel tempering / replica exchange (Swendsen & Wang, PRL 1986; Geyer 1991; review:
Earl & Deem, PCCP 2005) with MALA local moves.

Ladder: K inverse temperatures 1 = β_0 > β_1 > … > β_{K−1} = ``min_beta``, geometric by default,
β_k = min_beta^{k/(K−1)} (equal ratios β_{k+1}/β_k; Kofke 2002 — roughly constant swap acceptance
when the heat capacity is constant), or given explicitly (``betas``). Level k targets the tempered
density π_k ∝ π̃^{β_k} (no reference distribution), so ∇log π_k = β_k ∇log π̃.

Batch layout: ``sample(n)`` runs n independent PT systems at once; the K·n replicas form one batch
x of shape (K·n, d), level-major (row k·n + j is level k of system j), so one step costs one
``log_prob_and_score`` call on K·n points. The MCMC state stores the *tempered* log π_k and score
(what :func:`kernels.mala_step` needs); the untempered log π̃ used by swaps is log π_k / β_k.

Each iteration:

1. Local move: one MALA step (:func:`kernels.mala_step`) of every replica with a per-replica step
   h_k. Start: h_k = step_size / β_k (π^β of a Gaussian has variance σ²/β, and the optimal Langevin
   step scales with the variance, so the proposal std √(2h_k) ∝ 1/√β_k). With ``adapt_step_size``,
   each level's h_k is tuned separately during warm-up by dual averaging (Hoffman & Gelman 2014,
   Alg. 5, as in :mod:`.mcmc`) toward ``target_accept`` = 0.574 (Roberts & Rosenthal 1998), on the
   acceptance probability averaged over the n systems of that level; after warm-up h_k = ε̄_k, fixed.
2. Every ``swap_every`` iterations, a swap round between neighbouring levels with the deterministic
   even–odd scheme (Okabe et al. 2001; Lingenheil et al. 2009): round r proposes the pairs
   (k, k+1) with k ≡ r (mod 2), all at once and for all n systems, each accepted with probability

       min(1, exp((β_k − β_{k+1}) (log π̃(x_{k+1}) − log π̃(x_k)))),

   exchanging the states (x, log π̃, ∇log π̃) — evaluations are reused, swaps cost no NFE. Swaps run in
   warm-up too (they help equilibrate).

Result: ``Samples.x`` are the n β=1 replicas' final states (n, d); with ``keep_trajectory`` every
``thin``-th β=1 state of the sampling phase is kept as ``trajectory`` (n_steps // thin, n, d).
``info``: ``betas`` (the ladder), ``swap_acceptance_rate`` (K−1 values, pair (k, k+1): the mean
Metropolis acceptance probability over the sampling phase's rounds proposing that pair and the n
systems; NaN if no such round), ``acceptance_rate`` / ``warmup_acceptance_rate`` (MALA, per level),
``step_size`` (per level).

Initial points (``init``): "box" / "prior" as in :mod:`.mcmc` (drawn independently for every replica),
or a tensor (d,), (n, d) (copied to every level) or (K, n, d); checked with ``target.check_finite``.

NFE (joint log π̃ + ∇log π̃ evaluations): K·n·(1 + n_warmup + n_steps).
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
from .mcmc import DTYPES, ChainOptions, check_chain_config
from .registry import register

__all__ = ["PT", "PTConfig", "geometric_ladder"]



def geometric_ladder(n_temperatures: int, min_beta: float) -> list[float]:
    """β_k = min_beta^{k/(K−1)}, k = 0..K−1 (β_0 = 1; K = 1 gives [1.0])."""
    if n_temperatures == 1:
        return [1.0]
    return [min_beta ** (k / (n_temperatures - 1)) for k in range(n_temperatures)]


def _is_int(v, low: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _is_pos(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


@dataclass
class PTConfig(ChainOptions):
    """n_temperatures: K (>= 1; 1 is plain MALA). min_beta: smallest inverse temperature, in (0, 1).
    betas: optional explicit ladder (strictly decreasing, first 1, all > 0); overrides
    n_temperatures / min_beta. n_warmup / n_steps: iterations (one MALA step each) of warm-up
    (step-size adaptation) and sampling. step_size: h at β = 1; level k starts at step_size / β_k.
    target_accept: MALA acceptance targeted per level (0.574). swap_every: a swap round after every
    ``swap_every``-th iteration. init / init_scale / keep_trajectory / thin / dtype as in
    :class:`~sampleflow.samplers.mcmc.MALAConfig`."""

    n_temperatures: int = 8
    min_beta: float = 0.01
    betas: Any = None
    n_warmup: int = 500
    n_steps: int = 500
    step_size: float = 0.1
    swap_every: int = 1
    target_accept: float = 0.574
    adapt_step_size: bool = True

    def __post_init__(self):
        if not _is_int(self.n_temperatures, 1):
            raise ValueError(f"n_temperatures must be an integer >= 1, got {self.n_temperatures!r}")
        if not (_is_pos(self.min_beta) and self.min_beta < 1):
            raise ValueError(f"min_beta must lie in (0, 1), got {self.min_beta!r}")
        if self.betas is not None:
            try:
                b = [float(v) for v in self.betas]
            except (TypeError, ValueError):
                raise ValueError(f"betas must be a sequence of numbers, got {self.betas!r}") from None
            if (not b or b[0] != 1.0 or any(not (math.isfinite(v) and v > 0) for v in b)
                    or any(b[i + 1] >= b[i] for i in range(len(b) - 1))):
                raise ValueError(f"betas must be strictly decreasing, start at 1 and be > 0, got {self.betas!r}")
        check_chain_config(self)
        if not _is_int(self.swap_every, 1):
            raise ValueError(f"swap_every must be an integer >= 1, got {self.swap_every!r}")

    def ladder(self) -> list[float]:
        if self.betas is not None:
            return [float(v) for v in self.betas]
        return geometric_ladder(self.n_temperatures, float(self.min_beta))


def swap_round(state: K.MCMCState, beta: torch.Tensor, n: int, parity: int,
               generator: torch.Generator | None) -> tuple[K.MCMCState, torch.Tensor]:
    """One even–odd swap round on the level-major batch (K·n, d): the pairs (k, k+1), k ≡ parity
    (mod 2), of every system propose to exchange states, accepted with probability
    min(1, exp((β_k − β_{k+1})(log π̃(x_{k+1}) − log π̃(x_k)))). ``state`` holds tempered values
    (log π_k = β_k log π̃); they are re-tempered for the new level. Returns the new state and the
    acceptance probabilities (P, n) of the P proposed pairs (P = 0 possible)."""
    Kt = beta.shape[0]
    d = state.x.shape[-1]
    dev = state.x.device
    lo = torch.arange(parity, Kt - 1, 2, device=dev)
    if lo.numel() == 0:
        return state, state.log_prob.new_zeros((0, n))
    bl = beta[:, None]                                   # (K, 1)
    u = (state.log_prob.view(Kt, n) / bl)                # untempered log π̃, (K, n)
    g = state.score.view(Kt, n, d) / bl[:, :, None]      # untempered score
    x = state.x.view(Kt, n, d)
    hi = lo + 1
    log_a = (beta[lo] - beta[hi])[:, None] * (u[hi] - u[lo])         # (P, n)
    log_a = torch.where(torch.isnan(log_a), torch.full_like(log_a, -math.inf), log_a).clamp(max=0.0)
    r = torch.rand(log_a.shape, generator=generator, dtype=log_a.dtype, device=dev)
    acc = torch.log(r) < log_a
    src = torch.arange(Kt, device=dev)[:, None].expand(Kt, n).clone()  # level whose state lands at k
    src[lo] = torch.where(acc, hi[:, None], lo[:, None])
    src[hi] = torch.where(acc, lo[:, None], hi[:, None])
    u2 = torch.gather(u, 0, src)
    x2 = torch.gather(x, 0, src[:, :, None].expand(Kt, n, d))
    g2 = torch.gather(g, 0, src[:, :, None].expand(Kt, n, d))
    new = K.MCMCState(x2.reshape(Kt * n, d), (u2 * bl).reshape(Kt * n),
                      (g2 * bl[:, :, None]).reshape(Kt * n, d))
    return new, torch.exp(log_a)


@register
class PT(Sampler):
    """Parallel tempering: n systems × K temperature levels, MALA local moves, even–odd neighbour swaps."""

    name = "pt"
    Config = PTConfig
    presets = {"default": {}, "cpu": {"n_temperatures": 6, "n_warmup": 200, "n_steps": 200}}

    def _initial_points(self, n, Kt, generator, dtype, device) -> torch.Tensor:
        c, d = self.config, self.target.dim
        if isinstance(c.init, str):
            z = torch.randn(Kt * n, d, generator=generator, dtype=dtype, device=device)
            if c.init == "prior":
                return c.init_scale * z
            low, high = (b.to(dtype=dtype, device=device) for b in self.target.box)
            return (low + high) / 2 + (high - low) / 4 * z
        x0 = torch.as_tensor(c.init, dtype=dtype, device=device)
        if x0.shape == (d,):
            x0 = x0.expand(Kt, n, d)
        elif x0.shape == (n, d):
            x0 = x0.expand(Kt, n, d)
        elif x0.shape != (Kt, n, d):
            raise ValueError(f"init given as points must have shape ({d},), (n, d) = ({n}, {d}) or "
                             f"(K, n, d) = ({Kt}, {n}, {d}), got {tuple(x0.shape)}")
        return x0.reshape(Kt * n, d).clone()

    def sample(self, n: int, generator: torch.Generator | None = None) -> Samples:
        n = self._check_n(n)
        c = self.config
        device = generator.device if generator is not None else torch.device("cpu")
        dtype = DTYPES[c.dtype] or torch.get_default_dtype()
        ladder = c.ladder()
        Kt, d = len(ladder), self.target.dim
        beta = torch.tensor(ladder, dtype=dtype, device=device)
        beta_rep = beta.repeat_interleave(n)                 # (K·n,), level-major
        counted = CountingTarget(self.target)

        def f(x):  # tempered joint evaluation: β_k log π̃, β_k ∇log π̃ per replica
            lp, g = counted.log_prob_and_score(x)
            return beta_rep * lp, beta_rep[:, None] * g

        W, total = c.n_warmup, c.n_warmup + c.n_steps
        with Timer() as timer:
            x0 = self._initial_points(n, Kt, generator, dtype, device)
            self.target.check_finite(x0, "initial points")
            state = K.init_state(x0, f)
            step = float(c.step_size) / beta                 # (K,) per level
            da = K.dual_averaging_init(step)
            acc_sum = torch.zeros(Kt, dtype=dtype, device=device)
            acc_warm = torch.zeros(Kt, dtype=dtype, device=device)
            swap_sum = torch.zeros(max(Kt - 1, 0), dtype=dtype, device=device)
            swap_cnt = [0] * max(Kt - 1, 0)
            traj = []
            n_rounds = 0
            bar = progress(total, desc=self.name)
            try:
                for it in range(total):
                    state, alpha = K.mala_step(state, f, step.repeat_interleave(n), generator)
                    alpha_lvl = alpha.view(Kt, n).mean(1)
                    if it < W:
                        acc_warm = acc_warm + alpha_lvl
                        if c.adapt_step_size:
                            da = K.dual_averaging_update(da, alpha_lvl, c.target_accept)
                            step = torch.exp(da.log_step)
                            if it == W - 1:
                                step = torch.exp(da.log_step_avg)
                    else:
                        acc_sum = acc_sum + alpha_lvl
                    if Kt > 1 and (it + 1) % c.swap_every == 0:
                        parity = n_rounds % 2
                        state, a_sw = swap_round(state, beta, n, parity, generator)
                        n_rounds += 1
                        if it >= W and a_sw.numel():
                            lo = list(range(parity, Kt - 1, 2))
                            swap_sum[lo] = swap_sum[lo] + a_sw.mean(1)
                            for k in lo:
                                swap_cnt[k] += 1
                    if it >= W and c.keep_trajectory and (it - W + 1) % c.thin == 0:
                        traj.append(state.x[:n].clone())
                    bar.update(1)
            finally:
                bar.close()
        swap_rate = [float(s) / m if m else math.nan for s, m in zip(swap_sum.tolist(), swap_cnt)]
        info = {"n_chains": n, "n_temperatures": Kt, "betas": ladder, "n_warmup": W, "n_steps": c.n_steps,
                "swap_every": c.swap_every, "n_swap_rounds": n_rounds,
                "swap_acceptance_rate": swap_rate,
                "acceptance_rate": (acc_sum / c.n_steps).tolist(),
                "warmup_acceptance_rate": (acc_warm / W).tolist() if W else [math.nan] * Kt,
                "target_accept": c.target_accept, "step_size": step.tolist()}
        x1, lp1 = state.x[:n], state.log_prob[:n]
        n_bad = int((~torch.isfinite(lp1)).sum())
        if n_bad:
            info["n_nonfinite_chains"] = n_bad
        return Samples(x=x1.clone(), trajectory=torch.stack(traj) if traj else None, nfe=counted.nfe,
                       wall_time=timer.seconds, sampler=self.name, target=self.target.name, info=info)
