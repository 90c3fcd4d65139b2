"""`sampleflow generate train|sample`: the run-folder round trip and clear errors for bad input."""
import json

import numpy as np
import pytest

from sampleflow.cli import main


def _run(argv, capsys):
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("gen") / "m"
    rc = main(["generate", "train", "--data", "moons", "--out", str(d), "--iterations", "150", "-n", "2000",
               "--seed", "1"])
    assert rc == 0
    return d


def test_train_writes_the_run_folder(run_dir):
    for name in ("checkpoint.pt", "model.pt", "model.json", "history.csv", "training.png", "run.json",
                 "heldout.npy"):
        assert (run_dir / name).is_file(), name
    run = json.loads((run_dir / "run.json").read_text())
    assert run["iterations"] == 150 and run["data"] == "moons" and run["dim"] == 2 and run["n_train"] == 2000
    header = (run_dir / "history.csv").read_text().splitlines()[0].split(",")
    assert header[:4] == ["iteration", "time", "lr", "loss"]
    assert np.load(run_dir / "heldout.npy").shape == (2000, 2)


def test_sample_writes_samples_metrics_picture(run_dir, tmp_path, capsys):
    out = tmp_path / "s"
    rc, so, se = _run(["generate", "sample", str(run_dir), "--sampler", "heun", "--steps", "10", "-n", "600",
                       "--out", str(out), "--seed", "3"], capsys)
    assert rc == 0, se
    m = json.loads((out / "metrics.json").read_text())
    assert m["sampler"] == "heun" and m["steps"] == 10 and m["nfe"] == 19 and m["n"] == 600
    assert 0 < m["sliced_wasserstein"] < 1.0 and 0 < m["mmd"] < 1.0 and m["wall_time"] > 0
    with np.load(out / "samples.npz") as z:
        assert z["x"].shape == (600, 2) and np.isfinite(z["x"]).all()
    assert (out / "samples.png").stat().st_size > 1000
    assert "sliced_wasserstein" in so
    # the same seed gives the same samples; the default output folder is the run folder
    rc, _, _ = _run(["generate", "sample", str(run_dir), "--sampler", "em", "--steps", "20", "-n", "300"], capsys)
    assert rc == 0 and json.loads((run_dir / "metrics.json").read_text())["sampler"] == "euler_maruyama"
    rc, _, _ = _run(["generate", "sample", str(run_dir), "--sampler", "heun", "--steps", "10", "-n", "600",
                     "--out", str(tmp_path / "s2"), "--seed", "3"], capsys)
    with np.load(out / "samples.npz") as a, np.load(tmp_path / "s2" / "samples.npz") as b:
        assert np.array_equal(a["x"], b["x"])


def test_resume_continues(run_dir, tmp_path, capsys):
    """--resume with a larger --iterations continues the same run to the new budget."""
    rc, _, se = _run(["generate", "train", "--data", "moons", "--out", str(run_dir), "--iterations", "170", "-n",
                      "2000", "--seed", "1", "--resume"], capsys)
    assert rc == 0, se
    assert json.loads((run_dir / "run.json").read_text())["iterations"] == 170


def test_user_file_data(tmp_path, capsys):
    x = np.random.default_rng(0).normal(size=(300, 3)).astype(np.float32)
    np.save(tmp_path / "pts.npy", x)
    rc, _, se = _run(["generate", "train", "--data", str(tmp_path / "pts.npy"), "--out", str(tmp_path / "u"),
                      "--iterations", "20", "--sde", "ve", "--parametrisation", "eps"], capsys)
    assert rc == 0, se
    rc, _, se = _run(["generate", "sample", str(tmp_path / "u"), "--sampler", "pc", "--steps", "5", "-n", "50"],
                     capsys)
    assert rc == 0, se
    m = json.loads((tmp_path / "u" / "metrics.json").read_text())
    assert m["nfe"] == 11 and m["sde"] == "ve" and m["parametrisation"] == "eps" and m["heldout_points"] == 60


@pytest.mark.parametrize("argv, words", [
    (["generate", "train", "--data", "spirals", "--out", "{tmp}/x"], ["unknown data", "spirals"]),
    (["generate", "train", "--data", "{tmp}/missing.npy", "--out", "{tmp}/x"], ["not found"]),
    (["generate", "train", "--data", "moons", "--out", "{tmp}/x", "--resume"], ["--resume", "no checkpoint"]),
    (["generate", "train", "--data", "moons", "--out", "{tmp}/x", "--iterations", "0"], ["--iterations"]),
    (["generate", "train", "--data", "moons", "--out", "{tmp}/x", "--set", "width=-1"], ["width"]),
    (["generate", "sample", "{tmp}/nowhere"], ["run folder not found"]),
    (["generate", "sample", "{tmp}", "--steps", "3"], ["no trained model"]),
])
def test_bad_input_is_a_one_line_error(argv, words, tmp_path, capsys):
    rc, so, se = _run([a.replace("{tmp}", str(tmp_path)) for a in argv], capsys)
    assert rc == 2
    assert "Traceback" not in se and se.startswith("error: ") and se.count("\n") == 1, se
    for w in words:
        assert w in se, (w, se)


def test_bad_sampler_and_steps(run_dir, capsys):
    for extra, word in ((["--steps", "0"], "--steps"), (["--sampler", "dpm"], "unknown sampler"),
                        (["-n", "0"], "-n")):
        rc, _, se = _run(["generate", "sample", str(run_dir), *extra], capsys)
        assert rc == 2 and word in se and "Traceback" not in se, se


def test_digits_run_writes_an_image_grid(tmp_path, capsys):
    """The image path end to end (UNet saved and reloaded, pictures as an image grid); 3 iterations only."""
    pytest.importorskip("sklearn")
    d = tmp_path / "d"
    rc, _, se = _run(["generate", "train", "--data", "digits", "--out", str(d), "--iterations", "3"], capsys)
    assert rc == 0, se
    run = json.loads((d / "run.json").read_text())
    assert run["image_shape"] == [1, 8, 8] and run["preset"] == "digits" and run["n_heldout"] == 359
    rc, _, se = _run(["generate", "sample", str(d), "-n", "20", "--steps", "3"], capsys)
    assert rc == 0, se
    m = json.loads((d / "metrics.json").read_text())
    assert m["nfe"] == 5 and m["metric_points"] == 20
    assert (d / "samples.png").stat().st_size > 1000


def test_image_grid(tmp_path):
    from sampleflow.plots import image_grid
    x = np.random.default_rng(0).uniform(-1, 1, size=(12, 64))
    p = image_grid(x, tmp_path / "g.png", image_shape=(1, 8, 8), value_range=(-1, 1), labels=list(range(12)))
    assert p.stat().st_size > 1000
    with pytest.raises(ValueError, match="shape"):
        image_grid(x, tmp_path / "h.png", image_shape=(1, 4, 4))
