"""The benchmark runner end to end, through the CLI: a tiny suite runs, a second run finds everything done,
a crashing cell is recorded as failed while the rest go on, a run killed mid-cell resumes from the cell's
checkpoint (and ends where an uninterrupted run ends), and the report lists every cell."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sampleflow.bench import load_suite
from sampleflow.bench.runner import STORE_NAME, run_suite
from sampleflow.bench.store import ResultsStore
from sampleflow.cli import main

ROOT = Path(__file__).resolve().parents[2]

TINY = """
name: tiny
n: 300
seeds: [0, 1]
targets:
  - {name: gaussian, params: {dim: 2}, label: gauss2}
  - gmm9
samplers:
  - {label: mala, sampler: mala, preset: cpu, options: {n_warmup: 50}, budget: {iterations: 50}}
  - {label: dis, sampler: dis, preset: test, options: {loss: lv}, budget: {iterations: 30}}
  - {label: ula-diverges, sampler: ula, options: {step_size: 10.0, n_warmup: 0}, budget: {iterations: 400}}
exclude:
  - {sampler: ula-diverges, target: gmm9}
"""

# One learned cell that trains long enough to be killed part-way; it checkpoints every 10 iterations.
KILLABLE = """
name: killable
n: 300
seeds: [3]
targets: [{name: gaussian, params: {dim: 2}, label: gauss2}]
samplers:
  - {label: dis, sampler: dis, preset: test, options: {loss: lv, checkpoint_every: 10}, budget: {iterations: 150}}
"""


def _write(tmp_path, text, name):
    p = tmp_path / f"{name}.yaml"
    p.write_text(text)
    return p


def test_tiny_suite_runs_skips_and_reports(tmp_path, capsys):
    suite_file = _write(tmp_path, TINY, "tiny")
    out = tmp_path / "results"
    assert main(["bench", "run", str(suite_file), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "suite tiny: 10 cells — 8 done, 2 failed, 0 already finished" in printed
    with ResultsStore(out / STORE_NAME) as store:
        cells = store.cells()
    assert len(cells) == 10
    failed = [c for c in cells if c["status"] == "failed"]
    assert [c["sampler"] for c in failed] == ["ula-diverges"] * 2
    assert all("diverged" in c["error"] and (out / c["artifacts"]["error"]).is_file() for c in failed)
    done = [c for c in cells if c["status"] == "done"]
    for c in done:
        assert (out / c["artifacts"]["samples"]).is_file() and c["metrics"]["sinkhorn"] >= 0
        assert json.loads((out / c["artifacts"]["metrics"]).read_text())["sinkhorn"] == pytest.approx(c["metrics"]["sinkhorn"])
    dis = [c for c in done if c["sampler"] == "dis"]
    assert all((out / c["artifacts"]["history"]).is_file() and c["train_time"] > 0 for c in dis)
    # the two seeds differ, and MALA on the Gaussian is accurate (a real run, not a placeholder)
    mala = {c["seed"]: c["metrics"] for c in done if c["sampler"] == "mala" and c["target"] == "gauss2"}
    assert mala[0]["sinkhorn"] != mala[1]["sinkhorn"] and mala[0]["mean_error"] < 0.3

    # the report lists every cell: each target's table has a row per sampler, failures with their error
    md = (out / "report" / "report.md").read_text()
    html = (out / "report" / "report.html").read_text()
    for label in ("gauss2", "gmm9", "mala", "dis", "ula-diverges"):
        assert label in md and label in html
    assert "diverged" in md

    # a second run finds everything finished and runs nothing
    assert main(["bench", "run", str(suite_file), "--out", str(out), "--no-report"]) == 0
    assert "0 done, 0 failed, 10 already finished" in capsys.readouterr().out
    with ResultsStore(out / STORE_NAME) as store:
        assert all(c["attempts"] == 1 for c in store.cells())
        # --retry-failed runs the failed ones (again failing), nothing else
    assert main(["bench", "run", str(suite_file), "--out", str(out), "--no-report", "--retry-failed"]) == 0
    assert "0 done, 2 failed, 8 already finished" in capsys.readouterr().out

    # the report again, selected by the suite file (exactly its cells) and by the stored suite name
    assert main(["bench", "report", "--out", str(out), "--suite", str(suite_file)]) == 0
    assert main(["bench", "report", "--out", str(out), "--suite", "tiny"]) == 0
    assert main(["bench", "report", "--out", str(out), "--suite", "other"]) == 2
    assert "no cells to report" in capsys.readouterr().err

    # queries and CSV export
    assert main(["bench", "results", "--out", str(out), "--sampler", "mala", "--metric", "sinkhorn",
                 "--csv", str(tmp_path / "mala.csv")]) == 0
    assert len((tmp_path / "mala.csv").read_text().splitlines()) == 1 + 4
    assert main(["bench", "results", "--out", str(out), "--metric", "nope"]) == 2


def test_killed_mid_cell_resumes_from_checkpoint_and_matches_uninterrupted(tmp_path):
    suite_file = _write(tmp_path, KILLABLE, "killable")
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "sampleflow.cli", "bench", "run", str(suite_file), "--out",
                             str(out), "--no-report", "--threads", "1"], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    ckpts = []
    while time.time() < deadline and proc.poll() is None:
        ckpts = list(out.glob("cells/*/checkpoint.pt"))
        if ckpts:
            break
        time.sleep(0.2)
    assert ckpts, f"no checkpoint appeared (exit {proc.poll()}): {proc.stderr.read().decode()[-2000:] if proc.poll() is not None else ''}"
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)                   # no clean-up: as a crash or a lost machine
    proc.wait()
    with ResultsStore(out / STORE_NAME) as store:
        (cell,) = store.cells()
    assert cell["status"] == "running"

    summary = run_suite(load_suite(suite_file), out)
    assert summary.resumed == [cell["cell_id"]]
    with ResultsStore(out / STORE_NAME) as store:
        (resumed,) = store.cells()
    assert resumed["status"] == "done" and 0 < resumed["resumed_from"] < 150 and resumed["attempts"] == 2

    # the same cell run without interruption ends with the same samples (same random stream after resume)
    clean = tmp_path / "clean"
    run_suite(load_suite(suite_file), clean)
    with ResultsStore(clean / STORE_NAME) as store:
        (reference,) = store.cells()
    assert reference["resumed_from"] is None
    for k in ("sinkhorn", "mean_error", "log_Z_error", "ess"):
        assert resumed["metrics"][k] == pytest.approx(reference["metrics"][k], rel=1e-5, abs=1e-7), k


def test_bench_cli_errors(tmp_path, capsys):
    assert main(["bench", "run", "no-such-suite", "--out", str(tmp_path / "x")]) == 2
    assert "neither a file nor a shipped suite" in capsys.readouterr().err
    assert main(["bench", "report", "--out", str(tmp_path / "empty")]) == 2
    assert "no results store" in capsys.readouterr().err
    assert main(["bench", "run", "quick", "--out", str(tmp_path / "x"), "--seeds", "a,b"]) == 2
    assert "--seeds" in capsys.readouterr().err
    assert main(["bench", "suites"]) == 0
    assert "quick" in capsys.readouterr().out
