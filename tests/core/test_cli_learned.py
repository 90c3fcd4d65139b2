"""`sampleflow sample` with a learned sampler: training artefacts, Ctrl-C leaves a checkpoint, --resume
continues the same run to its budget."""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sampleflow.cli import main
from sampleflow.training import load_checkpoint


def _args(out, iterations, *extra):
    return ["sample", "--target", "gaussian", "--param", "dim=2", "--sampler", "dis", "--loss", "lv",
            "--preset", "test", "--iterations", str(iterations), "-n", "300", "--out", str(out),
            "--set", "checkpoint_every=5", *extra]


def test_learned_sampler_run_writes_its_artefacts(tmp_path, capsys):
    assert main(_args(tmp_path, 30)) == 0
    for name in ("samples.npz", "metrics.json", "samples.png", "history.csv", "training.png", "sampler.pt",
                 "checkpoint.pt"):
        assert (tmp_path / name).stat().st_size > 0, name
    rows = list(csv.DictReader(open(tmp_path / "history.csv")))
    assert rows[-1]["iteration"] == "30" and "logZ" in rows[0]
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["overrides"]["loss"] == "lv" and m["nfe"] > 0
    assert abs(m["metrics"]["log_Z_error"]) < 1.0, m["metrics"]


def test_resume_without_checkpoint_and_loss_on_unlearned_sampler_are_clear_errors(tmp_path, capsys):
    assert main(_args(tmp_path, 10, "--resume")) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert main(["sample", "--target", "gaussian", "--sampler", "mala", "--loss", "lv", "--out", str(tmp_path)]) == 2
    assert "learned samplers" in capsys.readouterr().err


def test_ctrl_c_leaves_a_checkpoint_and_resume_finishes_the_run(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "sampleflow.cli", *_args(tmp_path, 100000)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpt = tmp_path / "checkpoint.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert ckpt.exists(), "no periodic checkpoint appeared"
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (proc.returncode, err[-2000:])
    assert "--resume" in err
    done = load_checkpoint(ckpt)["iteration"]
    assert done >= 5
    # resume with a budget a little beyond what was done: the run ends exactly there
    assert main(_args(tmp_path, done + 7, "--resume")) == 0
    assert load_checkpoint(ckpt)["iteration"] == done + 7
    rows = list(csv.DictReader(open(tmp_path / "history.csv")))
    assert int(rows[-1]["iteration"]) == done + 7
