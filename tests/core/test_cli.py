import json
import textwrap

import numpy as np

from sampleflow.cli import main


def test_targets_listing(capsys):
    assert main(["targets"]) == 0
    out = capsys.readouterr().out
    assert "manywell dim=32" in out and "164.6956753" in out
    assert "funnel" in out and "gmm9" in out


def test_sample_then_evaluate(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["sample", "--target", "gmm9", "--sampler", "importance", "-n", "500", "--seed", "1",
                 "--set", "proposal=student_t", "--set", "scale=5.0", "--out", str(out)]) == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == ["metrics.json", "samples.npz", "samples.png"]
    m = json.loads((out / "metrics.json").read_text())
    assert m["metrics"]["n"] == 500 and abs(m["metrics"]["log_Z_is"]) < 0.3
    with np.load(out / "samples.npz") as z:
        assert z["x"].shape == (500, 2) and z["log_weights"].shape == (500,)
    capsys.readouterr()
    assert main(["evaluate", str(out / "samples.npz"), "--target", "gmm9", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["log_Z_is"] == m["metrics"]["log_Z_is"]


def test_sample_user_function_file(tmp_path, capsys):
    f = tmp_path / "mydensity.py"
    f.write_text(textwrap.dedent("""
        def log_prob(x):
            return -0.5 * (x ** 2).sum(-1)
    """))
    out = tmp_path / "u"
    assert main(["sample", "--target", f"{f}:log_prob", "--dim", "3", "--sampler", "importance", "-n", "300",
                 "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    # N(0, I) unnormalised in d = 3: log Z = 1.5 log 2π ≈ 2.757
    assert abs(m["metrics"]["log_Z_is"] - 1.5 * np.log(2 * np.pi)) < 0.2


def test_clear_errors(tmp_path, capsys):
    assert main(["sample", "--target", "funel", "--sampler", "exact", "--out", str(tmp_path)]) == 2
    assert "unknown target 'funel'" in capsys.readouterr().err
    assert main(["sample", "--target", "gmm9", "--sampler", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown sampler 'nope'" in capsys.readouterr().err
    f = tmp_path / "f.py"
    f.write_text("def lp(x):\n    return x.sum(-1)\n")
    assert main(["sample", "--target", f"{f}:lp", "--sampler", "importance", "--out", str(tmp_path)]) == 2
    assert "--dim is required" in capsys.readouterr().err
    np.savez(tmp_path / "s.npz", x=np.zeros((4, 3)))
    assert main(["evaluate", str(tmp_path / "s.npz"), "--target", "gmm9"]) == 2
    assert "dimension 3" in capsys.readouterr().err


def test_targets_listing_shows_reference_log_z(capsys):
    from sampleflow.targets.reference_values import REFERENCE_LOG_Z
    assert main(["targets"]) == 0
    out = capsys.readouterr().out
    for name, ref in REFERENCE_LOG_Z.items():
        line = next(l for l in out.splitlines() if l.startswith(name + " "))
        assert f"{ref.value:.10g}" in line and "reference_log_z.py" in line


def test_sbtm_run_writes_diagnostics_and_trajectory(tmp_path, capsys):
    """The issue's command, scaled down: samples, per-step diagnostics and a trajectory picture."""
    out = tmp_path / "s"
    assert main(["sample", "--sampler", "sbtm", "--target", "gmm9", "-n", "300", "--steps", "12", "--out", str(out),
                 "--set", "train_steps=3", "--set", "init_max_steps=50"]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"samples.npz", "metrics.json", "samples.png", "diagnostics.csv", "diagnostics.png",
            "trajectory.png"} <= names
    rows = (out / "diagnostics.csv").read_text().splitlines()
    assert rows[0] == "step,fisher,loss" and len(rows) == 13
    assert all(np.isfinite(float(v)) for v in rows[-1].split(","))
    z = np.load(out / "samples.npz")
    assert z["x"].shape == (300, 2) and z["trajectory"].shape == (13, 300, 2)   # every step (12 // 50 → 1)
    assert main(["sample", "--sampler", "importance", "--target", "gmm9", "--steps", "3", "--out", str(out)]) == 2
    assert "--steps" in capsys.readouterr().err


def test_pinn_run_writes_the_velocity_picture(tmp_path):
    """`sampleflow sample --sampler pinn` (test preset): training files, samples with log weights, and the
    velocity-field picture of a 2-D target."""
    out = tmp_path / "p"
    assert main(["sample", "--sampler", "pinn", "--target", "gmm9", "--preset", "test", "-n", "300",
                 "--iterations", "30", "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"samples.npz", "metrics.json", "training.png", "history.csv", "velocity.png", "sampler.pt"} <= names
    z = np.load(out / "samples.npz")
    assert z["x"].shape == (300, 2) and np.isfinite(z["log_weights"]).all()
    assert (out / "velocity.png").stat().st_size > 20_000
