"""Learned diffusion samplers (PIS, DIS, DDS, bridge, CMCD; Richter & Berner, ICLR 2024) through the
sampler API: training improves log Z / ESS, every loss trains, the KL and log-variance gradients match
finite differences, the log-variance loss builds no graph through the solver, checkpoints resume
exactly, state round-trips, bad options are refused, bf16 autocast runs, dtypes are kept.

The path math itself (E[exp(log w)] = Z, optimal controls, modes) is tested in tests/sde/test_paths.py.
Numbers quoted in the docstrings were measured on the 2-core CPU machine (one torch thread, busy).
"""
from __future__ import annotations

import dataclasses
import math
import os
import signal
import threading

import pytest
import torch

import sampleflow as sf
from sampleflow.samplers.diffusion import log_variance_loss
from sampleflow.sde.paths import transition_log_ratio
from sampleflow.targets import Target

from .diffusion_helpers import METHODS, SMALL, SavedBytes, log_w_along, make, perturb_parameters

NAMES = list(METHODS)
FAST = dict(SMALL, batch_size=128)   # the per-loss tests: batch 128, 60 iterations
ITERS, LOSS_ITERS = 100, 60           # (batch 128 / 80 iterations left cmcd at ESS 0.56 in the LV test)


def _report(msg):
    """Measured numbers, shown with SF_TEST_VERBOSE=1 pytest -s."""
    if os.environ.get("SF_TEST_VERBOSE"):
        print(msg)


@pytest.fixture(scope="module")
def gauss2():
    return sf.targets.get("gaussian", dim=2)   # correlated (ρ = 0.8), log Z = 0


def _shifted(target, shift):
    """The same density with log π̃ raised by ``shift`` (so log Z = shift ≠ 0)."""
    return Target.from_log_prob(lambda x: target.log_prob(x) + shift, target.dim, score=target.score,
                                log_Z=shift, name="shifted_gaussian")


# ----------------------------------------------------------------------------------------------- 1
@pytest.mark.parametrize("name", NAMES)
def test_training_with_lv_beats_the_untrained_sampler(name, gauss2):
    """d = 2 correlated Gaussian, loss "lv", 10 steps, batch 256, width 32 / depth 3, 100 iterations.
    Measured (2000 samples), ESS untrained → trained: pis 0.21 → 0.86, dis 0.015 → 0.75,
    dds 0.34 → 0.85, cmcd 0.43 → 0.76, bridge 0.015 → 0.87 (other network inits: cmcd 0.80–0.85);
    |log Z error| after ≤ 0.01; ELBO −0.9…−2.3 → −0.09…−0.19; LV loss ≈ 4.5 → 0.17–0.38."""
    s = make(name, gauss2, loss="lv", iterations=ITERS, **SMALL)
    before = s.sample(2000, torch.Generator().manual_seed(11))
    s.fit(generator=3, progress=False)
    after = s.sample(2000, torch.Generator().manual_seed(11))
    true = gauss2.log_Z.value
    _report(f"{name}: ESS {before.ess():.3f} -> {after.ess():.3f}, log Z {before.log_Z():.4f} -> "
            f"{after.log_Z():.4f}, ELBO {before.elbo():.3f} -> {after.elbo():.3f}, LV loss "
            f"{s.history['loss'][0]:.4g} -> {s.history['loss'][-1]:.4g}")
    assert s.iterations_done == ITERS and s.fit_info["stop_reason"] == "iterations"
    assert abs(after.log_Z() - true) < 0.05, f"{name}: log Z {after.log_Z():.4f} vs {true}"
    assert after.ess() > 0.6, f"{name}: trained ESS {after.ess():.3f}"
    assert after.ess() > before.ess() + 0.2, f"{name}: ESS {before.ess():.3f} → {after.ess():.3f}"
    assert abs(after.elbo() - true) < 0.5 * abs(before.elbo() - true), \
        f"{name}: ELBO {before.elbo():.3f} → {after.elbo():.3f}"
    loss = s.history["loss"]   # rows every 5 iterations
    assert loss[-1] < 0.5 * loss[0], f"{name}: LV loss {loss[0]:.4g} → {loss[-1]:.4g}"


# ----------------------------------------------------------------------------------------------- 2
@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_issue_criterion_gaussian_d10_cpu_preset(name):
    """Issue 5: Gaussian d = 10, loss "lv", preset "cpu" (100 steps, batch 512, 2000 iterations):
    |Δlog Z| < 0.05 and normalised ESS > 0.8. Measured for pis (fit(generator=0), 4096 samples):
    log Z 0.0019, ESS 0.847, ELBO −0.083, 2381 s of training; dds: log Z 0.0039, ESS 0.846,
    ELBO −0.082, 1110 s (busy 2-core machine, 0.3–2 s per iteration depending on the load and the
    library version); dis passes (678 s, one thread); cmcd with one learned scalar step and the uniform
    schedule failed narrowly (|Δlog Z| 0.005, ESS 0.783), with per-step steps and the learned schedule
    (the defaults since) it passes: |Δlog Z| 0.0058, ESS 0.867, ELBO −0.068, 710 s (learned δ_k 0.025–0.21,
    β at a quarter / half / three quarters of the steps 0.18 / 0.43 / 0.74); bridge passes: |Δlog Z| 0.0044,
    ESS 0.868, ELBO −0.068 (1654 s on a busy machine)."""
    target = sf.targets.get("gaussian", dim=10)
    s = make(name, target, preset="cpu", loss="lv")
    s.fit(generator=0, progress=False)
    out = s.sample(4096, torch.Generator().manual_seed(1))
    assert abs(out.log_Z() - target.log_Z.value) < 0.05, f"{name}: log Z {out.log_Z():.4f}"
    assert out.ess() > 0.8, f"{name}: ESS {out.ess():.3f}"


# ----------------------------------------------------------------------------------------------- 3
def _history_column(s, key):
    return [float(v) for v in s.history[key]]


@pytest.mark.parametrize("loss", ["kl", "lv", "lv_start", "tb"])
def test_each_loss_trains(loss, gauss2):
    """DDS on the d = 2 Gaussian shifted to log Z = 1.5 (so a learned log Z starting at 0 has to move).
    Each loss lowers its own value and the ELBO gap; "tb" also learns log Z. Measured (60 iterations,
    batch 128): ESS 0.46 → 0.82–0.84 and ELBO 0.22 → 1.37–1.39 for every loss; |log Z error| ≤ 0.01;
    losses kl −0.71 → −1.41, lv 4.2 → 0.19, lv_start 2.9 → 0.17, tb 4.4 → 0.20."""
    shift = 1.5
    target = _shifted(gauss2, shift)
    s = make("dds", target, loss=loss, iterations=LOSS_ITERS, **FAST)
    before = s.sample(2000, torch.Generator().manual_seed(5))
    s.fit(generator=2, progress=False)
    after = s.sample(2000, torch.Generator().manual_seed(5))
    vals = _history_column(s, "loss")
    _report(f"dds {loss}: loss {vals[0]:.4g} -> {vals[-1]:.4g}, ESS {before.ess():.3f} -> {after.ess():.3f}, "
            f"log Z {before.log_Z():.4f} -> {after.log_Z():.4f}, ELBO {before.elbo():.3f} -> {after.elbo():.3f}"
            + (f", learned log Z {float(s.log_Z.detach()):.4f}" if loss == "tb" else ""))
    assert vals is not None and len(vals) >= 4
    first, last = vals[0], vals[-1]
    assert last < first, f"{loss}: loss {first:.4g} → {last:.4g}"
    assert abs(after.log_Z() - shift) < 0.05, f"{loss}: log Z {after.log_Z():.4f} vs {shift}"
    gap0, gap1 = shift - before.elbo(), shift - after.elbo()
    assert gap1 < 0.5 * gap0, f"{loss}: ELBO gap {gap0:.3f} → {gap1:.3f}"
    assert after.ess() > before.ess() + 0.15, f"{loss}: ESS {before.ess():.3f} → {after.ess():.3f}"
    if loss == "tb":
        # TB's optimal log Ẑ is E[log w] (the ELBO), which approaches log Z as the KL gap closes.
        # Measured: learned 1.400, ELBO 1.384, log Z 1.5 (it started at 0).
        learned = float(s.log_Z.detach())
        assert abs(learned - after.elbo()) < 0.05, f"learned log Z {learned:.4f} vs ELBO {after.elbo():.4f}"
        assert abs(learned - shift) < 0.15, f"learned log Z {learned:.4f} vs {shift}"
        assert after.info["learned_log_Z"] == pytest.approx(learned)


# ----------------------------------------------------------------------------------------------- 4
def _tiny(name, target, loss):
    s = make(name, target, loss=loss, n_steps=5, width=6, depth=2, batch_size=16, dtype="float64")
    perturb_parameters(s.modules, scale=0.1, seed=1)
    return s


def _check_fd(f, s, what):
    params = [(n, p) for n, p in s.modules.named_parameters() if p.requires_grad]
    loss = f()
    grads = torch.autograd.grad(loss, [p for _, p in params])
    # round-off of a central difference: ~|loss|·1e-16/eps = 1e-10·|loss|; keep a 10× margin
    eps, worst, atol = 1e-6, (0.0, ""), 1e-9 * max(1.0, abs(float(loss.detach())))
    for (n, p), g in zip(params, grads):
        idx = tuple(0 for _ in p.shape)   # the first entry of every parameter tensor
        with torch.no_grad():
            p[idx] += eps
            fp = float(f())
            p[idx] -= 2 * eps
            fm = float(f())
            p[idx] += eps
        fd, ad = (fp - fm) / (2 * eps), float(g[idx])
        err = abs(fd - ad)
        rel = err / max(abs(fd), abs(ad), 1e-300)
        assert err <= 1e-6 * max(abs(fd), abs(ad)) + atol, \
            f"{what}: d loss / d {n}{list(idx)}: autograd {ad:.10g}, finite diff {fd:.10g}"
        worst = max(worst, (rel, n))
    _report(f"{what}: loss {float(loss.detach()):.6g}, worst relative error {worst[0]:.2e} ({worst[1]})")
    return worst


@pytest.mark.parametrize("name", NAMES)
def test_kl_gradient_matches_finite_differences(name, gauss2):
    """Reverse KL, reparametrised through the solver: autograd gradient w.r.t. the first entry of
    every parameter tensor (controls, score coefficient, CMCD's step, the bridge's backward net) vs
    central differences with the same noise (same generator seed). float64, 5 steps, width 6."""
    s = _tiny(name, gauss2, "kl")
    _check_fd(lambda: s.loss_and_info(gauss2, torch.Generator().manual_seed(7))[0], s, f"{name} kl")


@pytest.mark.parametrize("name", NAMES)
def test_lv_gradient_is_that_of_var_log_w_along_the_fixed_trajectory(name, gauss2):
    """Log-variance: the loss of ``loss_and_info`` (detached trajectory) equals Var(log w) with log w
    re-evaluated by eq. (1) along the same simulated trajectory, with the same gradient, and that
    gradient matches finite differences of Var(log w) with the trajectory points held fixed."""
    s = _tiny(name, gauss2, "lv")
    out = s.simulate(gauss2, 16, torch.Generator().manual_seed(7), "detached", return_trajectory=True)
    traj = out.trajectory
    assert traj.shape == (6, 16, 2) and not traj.requires_grad
    lv, _ = s.loss_and_info(gauss2, torch.Generator().manual_seed(7))
    f = lambda: log_variance_loss(log_w_along(s, gauss2, traj))  # noqa: E731
    ref = f()
    torch.testing.assert_close(lv.detach(), ref.detach(), rtol=1e-12, atol=0)
    params = [p for p in s.modules.parameters() if p.requires_grad]
    for a, b in zip(torch.autograd.grad(lv, params), torch.autograd.grad(ref, params)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    _check_fd(f, s, f"{name} lv")


# ----------------------------------------------------------------------------------------------- 5
@pytest.mark.parametrize("name", ["dis", "dds"])
def test_lv_has_no_graph_through_the_solver(name, gauss2):
    """With start points X_0 that require grad, the detached (log-variance) log w depends on X_0 at
    most through the terms of eq. (1) that contain X_0 itself (−log p_0(X_0) and step 0), i.e. its
    gradient is None (X_0 detached as well, as in the replay implementation) or equals that of the
    local function with X_1 held fixed; the reparametrised (KL) one flows through X_1, …, X_K."""
    s = make(name, gauss2, loss="lv", n_steps=8, width=8, depth=2, batch_size=32, dtype="float64")
    perturb_parameters(s.modules, scale=0.1, seed=2)
    x0 = torch.randn(32, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    grads = {}
    for mode in ("detached", "reparam"):
        x0r = x0.clone().requires_grad_(True)
        out = s.simulate(gauss2, None, torch.Generator().manual_seed(4), mode, x0=x0r, return_trajectory=True)
        grads[mode] = torch.autograd.grad(out.log_w.sum(), x0r, allow_unused=True)[0]
        traj = out.trajectory
    # the local terms, with X_1 fixed (the trajectories of both modes are the same points)
    x0r = x0.clone().requires_grad_(True)
    path, ctl, ts = s.path, s.modules["control"], s.path.times(x0)
    u0 = ctl(x0r, ts[0], score=gauss2.score(x0r), prior_score=path.prior_score(x0r))
    fwd = path.forward(0, x0r, gauss2.score(x0r), u0)
    x1 = traj[1]
    bwd = path.backward(0, x1, gauss2.score(x1), None, None)
    local = -path.prior_log_prob(x0r) + transition_log_ratio(x0r, x1, fwd, bwd)
    g_local = torch.autograd.grad(local.sum(), x0r)[0]
    # no gradient at all (X_0 detached too) is also fine; a gradient through X_1..X_K is not
    if grads["detached"] is not None:
        torch.testing.assert_close(grads["detached"], g_local, rtol=1e-10, atol=1e-12)
    assert float((grads["reparam"] - g_local).abs().max()) > 1e-3, "KL mode should backpropagate through the solver"


@pytest.mark.parametrize("name", ["pis", "dis", "bridge"])
def test_saved_bytes_lv_vs_kl(name, gauss2):
    """Bytes autograd saves for backward in one ``loss_and_info`` (distinct storages; batch 256,
    width 32, depth 3, d = 2) at 10 and 40 steps. Measured (kB at 10 → 40 steps): pis/dis/dds
    lv 1422 → 5593, kl 1460 → 5754; cmcd lv 1613 → 5999, kl 1635 → 6082; bridge lv 2778 → 10965,
    kl 2798 → 11047. So with the default ``replay_chunk=None`` the LV graph is *not* flat in the
    number of steps: it keeps each step's network activations (~97 % of KL's saved bytes, ≈ 140 kB
    per step); what it drops is the solver chain. Tested: LV saves less than KL at both step counts,
    KL's excess grows with the steps, LV's bytes are linear (a per-step constant)."""
    res = {}
    for K in (10, 40):
        for loss in ("lv", "kl"):
            s = make(name, gauss2, loss=loss, n_steps=K, width=32, depth=3, batch_size=256)
            with SavedBytes() as sb:
                s.loss_and_info(gauss2, torch.Generator().manual_seed(0))
            res[K, loss] = sb.bytes
    for K in (10, 40):
        assert res[K, "lv"] < res[K, "kl"], res
    excess10, excess40 = res[10, "kl"] - res[10, "lv"], res[40, "kl"] - res[40, "lv"]
    assert excess40 > 3 * excess10, f"KL's solver-chain bytes should grow ~linearly in steps: {res}"
    per_step_lv = (res[40, "lv"] - res[10, "lv"]) / 30
    assert per_step_lv * 10 <= res[10, "lv"] * 1.05, res  # no extra state beyond a per-step constant


@pytest.mark.skipif("replay_chunk" not in {f.name for f in dataclasses.fields(METHODS["dis"].Config)},
                    reason="no replay_chunk option")
@pytest.mark.parametrize("name", ["dis", "cmcd", "bridge"])
def test_lv_replay_chunk_keeps_memory_flat_and_the_gradient(name, gauss2):
    """``replay_chunk=5`` (activation checkpointing of the detached replay): the same loss and
    gradient as without it, and the bytes saved outside the checkpoints grow only by the stored
    trajectory (measured 46 kB at 10 steps → 169 kB at 40, ≈ 4 kB per step against KL's ≈ 143 kB
    per step; the recomputed chunk's activations are not held between forward and backward)."""
    res, grads = {}, {}
    for K in (10, 40):
        for loss, rc in (("lv", 5), ("kl", None)):
            s = make(name, gauss2, loss=loss, n_steps=K, width=32, depth=3, batch_size=256, replay_chunk=rc)
            with SavedBytes() as sb:
                l, _ = s.loss_and_info(gauss2, torch.Generator().manual_seed(0))
            res[K, loss] = sb.bytes
    per_step_lv = (res[40, "lv"] - res[10, "lv"]) / 30
    per_step_kl = (res[40, "kl"] - res[10, "kl"]) / 30
    assert per_step_lv < 0.1 * per_step_kl, res
    for rc in (None, 3):
        s = make(name, gauss2, loss="lv", n_steps=10, width=8, depth=2, batch_size=64, replay_chunk=rc,
                 dtype="float64")
        perturb_parameters(s.modules, scale=0.1, seed=5)
        l, _ = s.loss_and_info(gauss2, torch.Generator().manual_seed(1))
        params = [p for p in s.modules.parameters() if p.requires_grad]
        grads[rc] = (l.detach(), torch.autograd.grad(l, params))
    torch.testing.assert_close(grads[None][0], grads[3][0], rtol=1e-12, atol=0)
    for a, b in zip(grads[None][1], grads[3][1]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------------------------- 6
def _params(s):
    return {k: v.detach().clone() for k, v in s.modules.state_dict().items()}


def _ema_params(s):
    return {k: v.detach().clone() for k, v in s.trainer.ema.state_dict().items()
            if isinstance(v, torch.Tensor)} if s.trainer.ema is not None else {}


def _assert_same(a, b, what):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=lambda m: f"{what} {k}: {m}")


_CKPT = dict(SMALL, iterations=12, checkpoint_every=None)


@pytest.fixture(scope="module")
def uninterrupted(gauss2):
    s = make("dis", gauss2, loss="lv", **_CKPT)
    s.fit(generator=21, progress=False)
    return _params(s), _ema_params(s)


def _resume_and_compare(gauss2, path, uninterrupted):
    s2 = make("dis", gauss2, loss="lv", **_CKPT)
    s2.fit(generator=21, checkpoint=path, resume=True, progress=False)
    assert s2.iterations_done == 12
    _assert_same(_params(s2), uninterrupted[0], "weights")
    _assert_same(_ema_params(s2), uninterrupted[1], "EMA")


def test_checkpoint_resume_after_callback_stop(gauss2, tmp_path, uninterrupted):
    """A callback that stops the run (returns True) at iteration 5 leaves a checkpoint; a fresh sampler
    resumed from it reaches the uninterrupted run's weights and EMA (to 1e-6)."""
    ck = tmp_path / "ck.pt"
    s = make("dis", gauss2, loss="lv", **_CKPT)
    s.fit(generator=21, checkpoint=ck, progress=False, callback=lambda tr, st: st["iteration"] == 5)
    assert s.iterations_done == 5 and s.fit_info["stop_reason"] == "callback" and ck.is_file()
    _resume_and_compare(gauss2, ck, uninterrupted)


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread()
                    or signal.getsignal(signal.SIGINT) is not signal.default_int_handler,
                    reason="needs the default SIGINT handler in the main thread")
def test_checkpoint_resume_after_real_ctrl_c(gauss2, tmp_path, uninterrupted):
    """A real SIGINT (sent from the callback after iteration 5) interrupts the run with
    KeyboardInterrupt and leaves a checkpoint; resuming reaches the uninterrupted run's weights."""
    ck = tmp_path / "ck.pt"
    s = make("dis", gauss2, loss="lv", **_CKPT)

    def cb(tr, st):
        if st["iteration"] == 5:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        s.fit(generator=21, checkpoint=ck, progress=False, callback=cb)
    assert ck.is_file()
    _resume_and_compare(gauss2, ck, uninterrupted)


def test_checkpoint_resume_after_keyboardinterrupt_raised_by_callback(gauss2, tmp_path, uninterrupted):
    """The brief's scenario: the callback raises KeyboardInterrupt at iteration 5 (checkpoint_every
    None); the interrupted run should leave a resumable checkpoint of the 5 completed iterations."""
    ck = tmp_path / "ck.pt"
    s = make("dis", gauss2, loss="lv", **_CKPT)

    def cb(tr, st):
        if st["iteration"] == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        s.fit(generator=21, checkpoint=ck, progress=False, callback=cb)
    assert ck.is_file(), "no checkpoint after a KeyboardInterrupt raised by the callback"
    _resume_and_compare(gauss2, ck, uninterrupted)


# ----------------------------------------------------------------------------------------------- 7
@pytest.mark.parametrize("name,loss", [("dis", "lv"), ("cmcd", "tb"), ("bridge", "kl")])
def test_save_load_round_trip(name, loss, gauss2, tmp_path):
    """save → a fresh sampler with the same config → load: identical samples and log weights for the
    same seed (EMA weights, CMCD's learned step, the bridge's backward net, a learned log Z)."""
    cfg = dict(SMALL, loss=loss, iterations=6)
    s = make(name, gauss2, **cfg)
    s.fit(generator=4, progress=False)
    a = s.sample(300, torch.Generator().manual_seed(8))
    p = s.save(tmp_path / "s.pt")
    fresh = make(name, gauss2, init_seed=99, **cfg)   # other initial weights, not trained
    assert not torch.equal(fresh.sample(300, torch.Generator().manual_seed(8)).x, a.x)
    fresh.load(p)
    b = fresh.sample(300, torch.Generator().manual_seed(8))
    assert torch.equal(a.x, b.x) and torch.equal(a.log_weights, b.log_weights)
    if loss == "tb":
        assert float(fresh.log_Z.detach()) == float(s.log_Z.detach()) != 0.0


def test_load_into_a_sampler_built_with_another_config(gauss2, tmp_path):
    small = dict(width=16, depth=2, batch_size=32, iterations=3)
    s = make("dis", gauss2, n_steps=10, **small)
    s.fit(generator=0, progress=False)
    a = s.sample(100, torch.Generator().manual_seed(1))
    p = s.save(tmp_path / "s.pt")
    other = make("dis", gauss2, n_steps=40, init_seed=1, **small).load(p)
    assert other.path.n_steps == other.config.n_steps == 10
    b = other.sample(100, torch.Generator().manual_seed(1))
    assert torch.equal(a.x, b.x)


# ----------------------------------------------------------------------------------------------- 8
@pytest.mark.parametrize("overrides,option", [
    ({"loss": "kld"}, "loss"),
    ({"loss": "lv_start", "batch_size": 10, "n_per_start": 4}, "n_per_start"),
    ({"loss": "lv_start", "n_per_start": 1}, "n_per_start"),
    ({"dtype": "float16"}, "dtype"),
    ({"autocast": "fp8"}, "autocast"),
    ({"n_steps": 0}, "n_steps"),
])
@pytest.mark.parametrize("name", ["pis", "cmcd"])
def test_bad_options_are_refused_by_name(name, overrides, option):
    with pytest.raises(ValueError, match=option):
        METHODS[name].make_config("test", **overrides)


def test_unknown_option_and_preset(gauss2):
    with pytest.raises(TypeError, match="n_step"):
        METHODS["dds"].make_config("test", n_step=3)
    with pytest.raises(ValueError, match="preset"):
        METHODS["dds"].make_config("tiny")


def test_sf_sample_end_to_end():
    out = sf.sample("gaussian", "dis", n=500, preset="test", loss="lv", target_params={"dim": 2},
                    iterations=20, n_steps=10, width=16, depth=2, batch_size=128, seed=3)
    assert isinstance(out, sf.Samples)
    assert out.x.shape == (500, 2) and out.log_weights is not None and out.log_weights.shape == (500,)
    assert bool(torch.isfinite(out.log_weights).all())
    assert out.nfe > 0 and out.wall_time > 0
    assert out.sampler == "dis" and math.isfinite(out.log_Z()) and 0 < out.ess() <= 1
    # nfe of sampling: 500 trajectories × (10 grid points evaluated after the start + the start)
    assert out.nfe >= 500 * 10


def test_same_seed_gives_the_same_samples():
    """DESIGN.md conventions: "Every random operation takes an explicit torch.Generator or seed: the
    same seed gives the same samples." Measured: two identical sf.sample(..., seed=3) calls differ
    by up to 0.05 in x (identical only if torch.manual_seed is set before each)."""
    kw = dict(n=200, preset="test", loss="lv", target_params={"dim": 2}, iterations=5, n_steps=5, width=8,
              depth=2, batch_size=32, seed=3)
    a = sf.sample("gaussian", "dis", **kw)
    b = sf.sample("gaussian", "dis", **kw)
    assert torch.equal(a.x, b.x), f"max |Δx| = {float((a.x - b.x).abs().max()):.3g}"


# ----------------------------------------------------------------------------------------------- 9
@pytest.mark.parametrize("name", ["dis", "bridge"])
def test_bfloat16_autocast_runs(name, gauss2):
    """autocast="bfloat16": a few iterations train (finite loss, no skipped step) and sampling gives
    finite float32 log w (the path arithmetic stays in float32)."""
    s = make(name, gauss2, loss="lv", autocast="bfloat16", iterations=5, **SMALL)
    s.fit(generator=0, progress=False)
    assert s.fit_info["stop_reason"] == "iterations"
    vals = _history_column(s, "loss")
    assert vals and all(math.isfinite(v) for v in vals)
    assert sum(s.history["skipped"]) == 0
    seen = set()
    lin = next(m for m in s.modules.modules() if isinstance(m, torch.nn.Linear))
    h = lin.register_forward_hook(lambda mod, inp, out: seen.add(out.dtype))
    out = s.sample(500, torch.Generator().manual_seed(0))
    h.remove()
    assert seen == {torch.bfloat16}, f"the network ran in {seen}, not under bf16 autocast"
    assert out.x.dtype == torch.float32 and out.log_weights.dtype == torch.float32
    assert bool(torch.isfinite(out.log_weights).all()) and bool(torch.isfinite(out.x).all())
    assert abs(out.log_Z()) < 1.0


# ---------------------------------------------------------------------------------------------- 10
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", NAMES)
def test_dtype_and_device_are_kept(name, dtype, gauss2):
    s = make(name, gauss2, loss="lv", dtype=dtype, iterations=2, **SMALL)
    want = getattr(torch, dtype)
    assert all(p.dtype == want for p in s.modules.parameters())
    s.fit(generator=0, progress=False)
    assert all(p.dtype == want and p.device.type == "cpu" for p in s.modules.parameters())
    out = s.sample(64, torch.Generator().manual_seed(0), return_trajectory=True)
    for t in (out.x, out.log_weights, out.trajectory):
        assert t.dtype == want and t.device.type == "cpu"
    assert out.trajectory.shape == (SMALL["n_steps"] + 1, 64, 2)
    torch.testing.assert_close(out.trajectory[-1], out.x)
