"""The shared training loop: optimisation, schedule, clipping, non-finite steps, budgets, EMA,
history, atomic checkpoints and resume after Ctrl-C."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import time

import pytest
import torch
from torch import nn

from sampleflow.training import (CHECKPOINT_FORMAT, TrainConfig, Trainer, TrainHistory, TrainingDivergedError,
                                 load_checkpoint, lr_at)


def cfg(**kw):
    base = dict(iterations=20, lr=1e-2, lr_final=None, grad_clip=None, ema_decay=None, checkpoint_every=0,
                log_every=1, progress=False)
    base.update(kw)
    return TrainConfig(**base)


def sgd(lr_unused=None):
    return lambda groups: torch.optim.SGD(groups, lr=1.0)


# ---------------------------------------------------------------------------------------------
def test_least_squares_reaches_the_minimiser():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(30, 5, generator=g, dtype=torch.float64)
    b = torch.randn(30, generator=g, dtype=torch.float64)
    x_star = torch.linalg.lstsq(A, b.unsqueeze(-1)).solution.squeeze(-1)
    x = nn.Parameter(torch.zeros(5, dtype=torch.float64))

    def step(i):
        r = A @ x - b
        return (r * r).mean(), {"res": r.norm()}

    tr = Trainer(x, cfg(iterations=600, lr=5e-2, lr_final=1e-4, log_every=50))
    hist = tr.run(step)
    assert torch.allclose(x.detach(), x_star, atol=1e-5), (x.detach() - x_star).abs().max()
    assert tr.iteration == 600 and tr.stop_reason == "iterations"
    assert hist.iteration == [float(k) for k in range(50, 601, 50)]
    assert hist["res"][-1] < hist["res"][0]
    best = ((A @ x_star - b) ** 2).mean().item()
    assert hist.loss[-1] == pytest.approx(best, rel=1e-6)


def test_lr_schedule_is_geometric_from_lr_to_lr_final():
    c = cfg(iterations=9, lr=5e-3, lr_final=1e-4)
    x = nn.Parameter(torch.ones(2, dtype=torch.float64))
    y = nn.Parameter(torch.ones(1, dtype=torch.float64))
    tr = Trainer({"x": x, "logZ": y}, c, lr_scales={"logZ": 10.0})
    used = []

    def step(i):
        used.append([g["lr"] for g in tr.optimizer.param_groups])
        return (x ** 2).sum() + (y ** 2).sum()

    h = tr.run(step)
    assert h.lr[0] == pytest.approx(5e-3, rel=1e-12) and h.lr[-1] == pytest.approx(1e-4, rel=1e-12)
    assert used[0] == pytest.approx([5e-3, 5e-2], rel=1e-12)
    assert used[-1] == pytest.approx([1e-4, 1e-3], rel=1e-12)
    ratios = [h.lr[k + 1] / h.lr[k] for k in range(8)]
    assert ratios == pytest.approx([(1e-4 / 5e-3) ** (1 / 8)] * 8, rel=1e-12)
    assert [u[0] for u in used] == pytest.approx(h.lr, rel=1e-15)
    assert lr_at(cfg(iterations=5, lr=3e-3, lr_final=None), 4) == 3e-3


def test_gradient_clipping_applies_the_clipped_update():
    x = nn.Parameter(torch.zeros(3, dtype=torch.float64))
    gvec = torch.tensor([3.0, 4.0, 12.0], dtype=torch.float64)  # |g| = 13
    tr = Trainer(x, cfg(iterations=1, lr=0.1, grad_clip=1.0), optimizer=sgd())
    h = tr.run(lambda i: (gvec * x).sum())
    assert h.grad_norm[0] == pytest.approx(13.0, rel=1e-12)  # reported: the norm before clipping
    expected = -0.1 * gvec * (1.0 / (13.0 + 1e-6))
    assert torch.allclose(x.detach(), expected, rtol=1e-12, atol=0)
    assert x.detach().norm().item() == pytest.approx(0.1, rel=1e-6)

    # below the threshold nothing is scaled
    x2 = nn.Parameter(torch.zeros(3, dtype=torch.float64))
    Trainer(x2, cfg(iterations=1, lr=0.1, grad_clip=100.0), optimizer=sgd()).run(lambda i: (gvec * x2).sum())
    assert torch.equal(x2.detach(), -0.1 * gvec)


def test_nonfinite_steps_are_skipped_without_touching_params_or_adam_state():
    x = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    bad_loss, bad_grad = {3, 4}, {7}
    tr = Trainer(x, cfg(iterations=10, lr=0.05, ema_decay=0.5))
    after = {}

    def step(i):
        if i in bad_loss:
            return (x * float("nan")).sum()
        if i in bad_grad:  # finite loss (0), infinite gradient (d sqrt(u)/du at 0)
            return torch.sqrt(x - x.detach()).sum() + 0.0 * (x ** 2).sum()
        return (x ** 2).sum(), {"i": float(i)}

    def cb(trainer, stats):
        after[stats["iteration"] - 1] = (x.detach().clone(), stats["skipped"])

    h = tr.run(step, callback=cb)
    for i in sorted(bad_loss | bad_grad):
        assert after[i][1] == 1
        assert torch.equal(after[i][0], after[i - 1][0]), f"params changed at skipped iteration {i}"
    assert not torch.equal(after[2][0], after[1][0])
    assert tr.optimizer.state[x]["step"].item() == 10 - 3  # Adam state only advanced on applied steps
    assert tr.ema.num_updates == 7
    assert sum(h.skipped) == 3 and math.isnan(h.loss[3]) and math.isnan(h.grad_norm[7])
    assert math.isnan(h["i"][3]) and h["i"][5] == 5.0


def test_too_many_nonfinite_in_a_row_raises_a_clear_error():
    x = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    tr = Trainer(x, cfg(iterations=100, lr=0.05, grad_clip=0.5, max_nonfinite=5))
    snap = {}

    def step(i):
        if i >= 3:
            return (x * float("inf")).sum() - (x * float("inf")).sum()  # nan
        loss = ((x - 1) ** 2).sum()
        snap[i] = (loss.item(), x.detach().clone())
        return loss

    with pytest.raises(TrainingDivergedError) as ei:
        tr.run(step)
    e = ei.value
    assert isinstance(e, ValueError)
    msg = str(e)
    assert "5 non-finite losses or gradients in a row" in msg
    assert f"last finite loss was {snap[2][0]:.6g}" in msg
    assert "lower learning rate" in msg and "gradient clipping" in msg and "grad_clip=0.5" in msg
    assert e.consecutive == 5 and e.iteration == 7 and e.last_finite_iteration == 2
    assert e.last_finite_loss == pytest.approx(snap[2][0])
    # the weights are those after the last applied step (iteration 2): one Adam step beyond snap[2]
    assert tr.optimizer.state[x]["step"].item() == 3


def test_time_budget_stops_early():
    x = nn.Parameter(torch.zeros(2))

    def step(i):
        time.sleep(0.02)
        return ((x - 1) ** 2).sum()

    tr = Trainer(x, cfg(iterations=1000, time_budget=0.1, log_every=100))
    h = tr.run(step)
    assert 1 <= tr.iteration < 1000
    assert tr.stop_reason == "time_budget"
    assert h.iteration[-1] == tr.iteration  # the partial window is logged at the stop


def test_ema_weights_are_the_exponential_average():
    x = nn.Parameter(torch.zeros((), dtype=torch.float64))
    d = 0.8
    tr = Trainer(x, cfg(iterations=6, lr=1.0, ema_decay=d), optimizer=sgd())
    tr.run(lambda i: -x)  # SGD with lr 1 on -x: x_k = k
    assert x.item() == 6.0
    expected = 0.0
    for k in range(1, 7):
        expected = d * expected + (1 - d) * k
    with tr.ema_weights():
        assert x.item() == pytest.approx(expected, rel=1e-12)
        assert x.item() != 6.0
    assert x.item() == 6.0  # live weights back


def test_history_to_csv_and_json(tmp_path):
    x = nn.Parameter(torch.zeros(2))
    tr = Trainer(x, cfg(iterations=10, log_every=3))
    h = tr.run(lambda i: (((x - 1) ** 2).sum(), {"logZ": torch.tensor(0.5 * i)}))
    assert h.iteration == [3.0, 6.0, 9.0, 10.0]
    assert h["logZ"] == pytest.approx([0.5, 2.0, 3.5, 4.5])  # window means
    d = h.to_dict()
    assert set(d) == {"iteration", "time", "lr", "loss", "grad_norm", "skipped", "logZ"}
    h.to_json(tmp_path / "h.json")
    assert TrainHistory.from_json(tmp_path / "h.json").to_dict() == d
    json.loads((tmp_path / "h.json").read_text())
    h.to_csv(tmp_path / "h.csv")
    lines = (tmp_path / "h.csv").read_text().splitlines()
    assert lines[0].split(",") == list(d) and lines[1].startswith("3,") and len(lines) == 5
    assert [p.name for p in tmp_path.iterdir()] and not list(tmp_path.glob("*.tmp"))


# ---------------------------------------------------------------------------------------------
# checkpoints and resume
class Problem:
    """A tiny regression trained on fresh random batches from a generator (so resume must restore
    the generator to reproduce the run)."""

    def __init__(self, seed_model, seed_data, path=None, **kw):
        torch.manual_seed(seed_model)
        self.net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
        self.log_z = nn.Parameter(torch.zeros(()))
        self.gen = torch.Generator().manual_seed(seed_data)
        c = cfg(iterations=30, lr=2e-2, lr_final=1e-3, grad_clip=1.0, ema_decay=0.9, checkpoint_every=7,
                log_every=4, **kw)
        self.trainer = Trainer({"net": self.net, "logZ": self.log_z}, c, path, extra_state={"who": "test", "d": 2},
                               generator=self.gen, lr_scales={"logZ": 5.0})
        self.interrupt_at = None

    def step(self, i):
        xb = torch.randn(16, 2, generator=self.gen)
        if i == self.interrupt_at:
            raise KeyboardInterrupt  # after drawing from the generator: the checkpoint must rewind it
        yb = torch.sin(xb).sum(-1, keepdim=True)
        loss = ((self.net(xb) - yb) ** 2).mean() + (self.log_z - 0.3) ** 2
        return loss, {"logZ": self.log_z.detach()}

    def state(self):
        sd = {k: v.clone() for k, v in self.trainer._bundle.state_dict().items()}
        with self.trainer.ema_weights():
            ema = {k: v.clone() for k, v in self.trainer._bundle.state_dict().items()}
        return sd, ema, self.gen.get_state()


def assert_same_run(a, b):
    (sa, ea, ga), (sb, eb, gb) = a.state(), b.state()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
        assert torch.equal(ea[k], eb[k]), f"EMA {k}"
    assert torch.equal(ga, gb)
    ha, hb = a.trainer.history.to_dict(), b.trainer.history.to_dict()
    ha.pop("time"), hb.pop("time")
    assert ha == hb
    assert a.trainer.optimizer.state_dict()["state"][0]["step"] == b.trainer.optimizer.state_dict()["state"][0]["step"]


def test_resume_after_keyboard_interrupt_matches_an_uninterrupted_run(tmp_path):
    ref = Problem(0, 1)
    ref.trainer.run(ref.step)

    path = tmp_path / "run" / "ckpt.pt"
    a = Problem(0, 1, path)
    a.interrupt_at = 17
    with pytest.raises(KeyboardInterrupt):
        a.trainer.run(a.step)
    assert sorted(p.name for p in path.parent.iterdir()) == ["ckpt.pt"]  # no temp file left
    ck = load_checkpoint(path)
    assert ck["format"] == CHECKPOINT_FORMAT and ck["iteration"] == 17
    assert ck["extra_state"] == {"who": "test", "d": 2}
    assert ck["config"]["iterations"] == 30

    # a fresh process: other initial weights and another seed, all overwritten by the checkpoint
    b = Problem(5, 6, path)
    b.trainer.run(b.step, resume=True)
    assert b.trainer.iteration == 30
    assert_same_run(ref, b)

    # resuming the finished run does nothing more
    c = Problem(7, 8, path)
    assert c.trainer.resume() == {"who": "test", "d": 2}
    c.trainer.run(c.step)
    assert_same_run(ref, c)


def test_real_sigint_during_the_update_is_deferred_to_a_consistent_checkpoint(tmp_path):
    ref = Problem(0, 1)
    ref.trainer.run(ref.step)
    path = tmp_path / "ckpt.pt"
    a = Problem(0, 1, path)

    def cb(trainer, stats):  # runs inside the update section
        if stats["iteration"] == 10:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        a.trainer.run(a.step, callback=cb)
    assert load_checkpoint(path)["iteration"] == 10
    b = Problem(3, 4, path)
    b.trainer.run(b.step, resume=True)
    assert_same_run(ref, b)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    p = Problem(0, 1, path)
    real_save = torch.save
    calls = []

    def flaky_save(obj, f, *a, **kw):
        calls.append(obj["iteration"])
        if len(calls) == 2:
            f.write(b"partial garbage")
            raise OSError("disk full")
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(torch, "save", flaky_save)
    with pytest.raises(OSError, match="disk full"):
        p.trainer.run(p.step)
    assert calls == [7, 14]
    assert [q.name for q in tmp_path.iterdir()] == ["ckpt.pt"]  # the temp file is gone
    assert load_checkpoint(path)["iteration"] == 7  # the previous checkpoint, intact


def test_bad_inputs_get_clear_errors(tmp_path):
    x = nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match="scalar"):
        Trainer(x, cfg()).run(lambda i: x * 2)
    with pytest.raises(ValueError, match="does not require grad"):
        Trainer(x, cfg()).run(lambda i: x.detach().sum())
    with pytest.raises(ValueError, match="clash"):
        Trainer(x, cfg()).run(lambda i: (x.sum(), {"loss": 1.0}))
    with pytest.raises(TypeError, match="nn.Parameter"):
        Trainer([torch.zeros(2, requires_grad=True)], cfg())
    with pytest.raises(TypeError, match="asdict"):
        Trainer(x, cfg(), extra_state={"config": cfg()})
    with pytest.raises(FileNotFoundError):
        Trainer(x, cfg(), tmp_path / "missing.pt").run(lambda i: x.sum(), resume=True)
    with pytest.raises(ValueError, match="iterations"):
        TrainConfig(iterations=0)
    with pytest.raises(ValueError, match="lr_scales"):
        Trainer(x, cfg(), lr_scales={"nope": 2.0})
    # extra_state as plain data from a dataclass
    Trainer(x, cfg(), extra_state={"config": dataclasses.asdict(cfg())})


def test_callback_stop_and_progress_bar(tmp_path, capsys):
    x = nn.Parameter(torch.zeros(2))
    path = tmp_path / "c.pt"
    tr = Trainer(x, cfg(iterations=50, progress=True, log_every=4), path, extra_state=lambda: {"n": tr.iteration})
    h = tr.run(lambda i: (((x - 1) ** 2).sum(), {"logZ": 1.0}), callback=lambda t, s: s["iteration"] == 6)
    assert tr.stop_reason == "callback" and tr.iteration == 6 and h.iteration == [4.0, 6.0]
    ck = load_checkpoint(path)
    assert ck["iteration"] == 6 and ck["extra_state"] == {"n": 6}
    assert "train" in capsys.readouterr().err
