"""Simulate a discrete diffusion path and accumulate its log Radon–Nikodym derivative (eq. (1) of
:mod:`sampleflow.sde.paths`).

Three gradient modes, one loop:

* ``"none"`` — no graph at all (evaluation, sampling);
* ``"detached"`` — the trajectory is simulated without a graph, then log w is *replayed* on the stored
  points: all steps' transitions at once, one batched network call over the (K, B) stack, so that only
  the control values (and any learned path parameter such as CMCD's step) carry a graph into log w.
  This is what the log-variance and trajectory-balance losses differentiate (Richter & Berner 2024 §4;
  Malkin et al. 2023). No graph is built through the solver, and the replay is cheaper than a graph
  kept step by step (large matrix products, a few dozen autograd nodes instead of thousands).
  ``replay_chunk`` replays that many steps at a time under activation checkpointing
  (``torch.utils.checkpoint``): the memory for the backward pass is then that of one chunk, flat in
  the number of steps, at the price of one more forward pass;
* ``"reparam"`` — the reparametrised trajectory keeps its full graph (the points depend on the
  parameters through the drift), as the reverse-KL loss needs (Zhang & Chen 2022; Berner et al. 2022).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from .paths import DiffusionPath, transition_log_ratio

__all__ = ["PathSample", "simulate", "MODES"]

MODES = ("none", "detached", "reparam")


@dataclass
class PathSample:
    """Result of one batch of simulated trajectories."""
    x: torch.Tensor                    # X_K, (n, d), detached
    log_w: torch.Tensor                # (n,), with a graph in modes "detached" / "reparam"
    x0: torch.Tensor                   # X_0, detached
    target_log_prob: torch.Tensor      # log π̃(X_K), detached
    trajectory: torch.Tensor | None = None   # (K+1, n, d), detached, when asked for


def _needs(control) -> bool:
    return control is not None and bool(getattr(control, "needs_target_score", False))


class _Controls:
    """Evaluates the controls (and the scores they and the path need) at one grid point."""

    def __init__(self, path, target, control, backward_control, mode, autocast_dtype):
        self.path, self.target = path, target
        self.control, self.backward_control = control, backward_control
        self.mode = mode
        self.score_for_control = _needs(control) or _needs(backward_control)
        self.autocast_dtype = autocast_dtype
        self.prior_has_score = not path.prior_is_point
        self._time_cache: dict = {}

    def net(self, net, x, t, score, k=None):
        """``net`` at (x, t); with a step index ``k``, the time-only part comes from a cache computed
        once per simulation for the whole grid (one batched call instead of one per step)."""
        prior_score = self.path.prior_score(x) if self.prior_has_score else None
        kw = {}
        if k is not None and hasattr(net, "time_cache"):
            key = id(net)
            if key not in self._time_cache:
                with self._autocast(x):
                    self._time_cache[key] = net.time_cache(self.path.times(x))
            kw["cache"] = tuple(c[k] for c in self._time_cache[key])
        with self._autocast(x):
            out = net(x, t, score=score, prior_score=prior_score, **kw)
        return out if self.autocast_dtype is None else out.to(x.dtype)

    def _autocast(self, x):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=x.device.type, dtype=self.autocast_dtype)

    def score(self, x):
        return self.target.score(x)

    def at(self, k, x, *, need_u: bool, need_v: bool, need_score: bool, final: bool = False):
        """(score, u, v, log π̃ when final) at (x, t_k)."""
        t = self.path.times(x)[k]
        score = log_prob = None
        if final:
            if need_score:
                log_prob, score = self.target.log_prob_and_score(x)
            else:
                log_prob = self.target.log_prob(x)
        elif need_score:
            score = self.score(x)
        u = self.net(self.control, x, t, score, k) if need_u else None
        v = self.net(self.backward_control, x, t, score, k) if need_v else None
        return score, u, v, log_prob


def _replay(path, ev: "_Controls", xs, scores, k0: int, k1: int):
    """Σ_{k0 ≤ k < k1} [log B_k − log F_k] on stored points xs[k0..k1] (stacked), with a graph through
    the controls only."""
    X = xs[k0:k1 + 1]
    S = scores[k0:k1 + 1] if scores is not None else None
    t = path.times(X)[k0:k1 + 1].reshape(-1, 1)
    steps = slice(k0, k1)
    need_u_next = path.backward_uses_forward_control
    Xu = X if need_u_next else X[:-1]
    U = ev.net(ev.control, Xu, t[:Xu.shape[0]], None if S is None else S[:Xu.shape[0]])
    V = (ev.net(ev.backward_control, X[1:], t[1:], None if S is None else S[1:])
         if ev.backward_control is not None else None)
    fwd = path.forward(steps, X[:-1], None if S is None else S[:-1], U[:-1] if need_u_next else U)
    bwd = path.backward(steps, X[1:], None if S is None else S[1:], U[1:] if need_u_next else None, V)
    return transition_log_ratio(X[:-1], X[1:], fwd, bwd).sum(0)


def simulate(path: DiffusionPath, target, control, *, generator: torch.Generator | None = None,
             n: int | None = None, x0: torch.Tensor | None = None, backward_control=None,
             mode: str = "none", dtype=torch.float32, device=None, return_trajectory: bool = False,
             autocast_dtype=None, replay_chunk: int | None = None) -> PathSample:
    """Simulate ``n`` trajectories of the model chain of ``path`` driven by ``control`` (and, for a
    bridge, ``backward_control``) and return X_K with log w of eq. (1).

    ``target`` provides ``log_prob``, ``score`` and ``log_prob_and_score`` (a Target or a
    :class:`~sampleflow.samplers.base.CountingTarget`). ``control(x, t, score=, prior_score=)`` is a
    module from :mod:`sampleflow.nn.parametrisations` (``needs_target_score`` says whether it uses
    ∇log π̃). ``x0`` fixes the start points (per-start-point losses); otherwise they are drawn from the
    prior. ``autocast_dtype`` (e.g. ``torch.bfloat16``) runs the networks under autocast; the path
    arithmetic stays in ``dtype``. ``replay_chunk`` (mode ``"detached"`` only): replay that many steps
    at a time under activation checkpointing, for memory flat in the number of steps."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if path.has_backward_control and backward_control is None:
        raise ValueError(f"{type(path).__name__} has a learned backward control: pass backward_control")
    if x0 is None:
        if n is None:
            raise ValueError("give n (number of trajectories) or x0 (start points)")
        x = path.prior_sample(int(n), generator, dtype, device)
    else:
        if x0.ndim != 2 or x0.shape[1] != path.dim:
            raise ValueError(f"x0 must have shape (n, {path.dim}), got {tuple(x0.shape)}")
        x = x0.to(dtype=dtype)
    K, d = path.n_steps, path.dim
    n_rows = x.shape[0]
    replay = mode == "detached"
    ctx = torch.no_grad() if mode in ("none", "detached") else contextlib.nullcontext()
    ev = _Controls(path, target, control, backward_control if path.has_backward_control else None, mode,
                   autocast_dtype)
    score_at_points = path.needs_score or ev.score_for_control
    v_needed = path.has_backward_control
    with ctx:
        x_start = x.detach()
        log_w = -path.prior_log_prob(x)
        keep = return_trajectory or replay
        traj = [x_start] if keep else None
        score, u, _, _ = ev.at(0, x, need_u=True, need_v=False, need_score=score_at_points)
        scores = [score] if replay and score_at_points else None
        target_log_prob = None
        for k in range(K):
            fwd = path.forward(k, x, score, u)
            noise = torch.randn(n_rows, d, generator=generator, dtype=x.dtype, device=x.device)
            x_next = fwd[0] + fwd[1] * noise
            final = k == K - 1
            # in replay mode the backward terms are computed later, on the stack
            need_u_next = (not final) or (path.backward_uses_forward_control and not replay)
            need_v_next = v_needed and not replay
            need_score_next = path.needs_score or (ev.score_for_control and (need_u_next or v_needed))
            score_n, u_n, v_n, lp = ev.at(k + 1, x_next, need_u=need_u_next, need_v=need_v_next,
                                          need_score=need_score_next, final=final)
            if not replay:
                bwd = path.backward(k, x_next, score_n, u_n if path.backward_uses_forward_control else None, v_n)
                log_w = log_w + transition_log_ratio(x, x_next, fwd, bwd)
            if final:
                target_log_prob = lp
            x, score, u = x_next, score_n, u_n
            if keep:
                traj.append(x.detach())
            if scores is not None:
                scores.append(score if score is not None else torch.zeros_like(x))
        log_w = log_w + target_log_prob
    if replay:
        xs = torch.stack(traj)
        st = torch.stack(scores) if scores is not None else None
        chunk = path.n_steps if replay_chunk is None else max(1, int(replay_chunk))
        log_w = -path.prior_log_prob(x_start) + target_log_prob.detach()
        for k0 in range(0, path.n_steps, chunk):
            k1 = min(path.n_steps, k0 + chunk)
            if replay_chunk is None:
                log_w = log_w + _replay(path, ev, xs, st, k0, k1)
            else:
                from torch.utils.checkpoint import checkpoint
                log_w = log_w + checkpoint(_replay, path, ev, xs, st, k0, k1,
                                           use_reentrant=False)
    return PathSample(x=x.detach(), log_w=log_w, x0=x_start, target_log_prob=target_log_prob.detach(),
                      trajectory=(xs if replay else torch.stack(traj)) if return_trajectory else None)


@torch.no_grad()
def simulate_backward(path: DiffusionPath, target, control, x_end: torch.Tensor, *,
                      generator: torch.Generator | None = None, backward_control=None,
                      autocast_dtype=None) -> torch.Tensor:
    """log w of eq. (1) along trajectories of the *target* chain started at ``x_end`` (points of π):
    X_K = x_end, X_k ~ B_k(· | X_{k+1}) down to X_0. Its mean over x_end ~ π is the EUBO,
    E_target-path[log w] = log Z + KL(P_target ‖ P_model) ≥ log Z (Blessing et al. 2024, "Beyond ELBOs",
    §3; Richter & Berner 2024), an upper bound that falls to log Z as the model learns. For a δ₀ prior
    the last backward step returns exactly to the point."""
    if x_end.ndim != 2 or x_end.shape[1] != path.dim:
        raise ValueError(f"x_end must have shape (n, {path.dim}), got {tuple(x_end.shape)}")
    if path.has_backward_control and backward_control is None:
        raise ValueError(f"{type(path).__name__} has a learned backward control: pass backward_control")
    ev = _Controls(path, target, control, backward_control if path.has_backward_control else None, "none",
                   autocast_dtype)
    need_score = path.needs_score or ev.score_for_control
    x = x_end
    K = path.n_steps
    score, u, v, lp = ev.at(K, x, need_u=path.backward_uses_forward_control, need_v=path.has_backward_control,
                            need_score=need_score, final=True)
    log_w = lp
    for k in range(K - 1, -1, -1):
        m_b, s_b = path.backward(k, x, score, u, v)
        if k == 0 and path.prior_is_point:
            x_prev = m_b
        else:
            x_prev = m_b + s_b * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        score_p, u_p, v_p, _ = ev.at(k, x_prev, need_u=True, need_v=path.has_backward_control and k > 0,
                                     need_score=need_score)
        log_w = log_w + transition_log_ratio(x_prev, x, path.forward(k, x_prev, score_p, u_p), (m_b, s_b))
        x, score, u, v = x_prev, score_p, u_p, v_p
    return log_w - path.prior_log_prob(x)
