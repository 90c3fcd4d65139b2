from sampleflow.demo import DEMO_RUNS, run_demo


def test_demo_runs_every_row_and_ranks_the_poor_sampler_last(tmp_path, capsys):
    rows = run_demo(tmp_path / "demo", n=300, seed=0)
    assert len(rows) == len(DEMO_RUNS)
    report = (tmp_path / "demo" / "report.md").read_text()
    for target, label, _, _ in DEMO_RUNS:
        assert f"| {target} | {label} |" in report
    gmm9 = {r["sampler"]: r for r in rows if r["target"] == "gmm9"}
    poor = gmm9["IS, narrow proposal (poor)"]
    # the narrow proposal misses the outer modes: worse coverage and distance than exact draws and SMC
    assert poor["emc"] < 0.8 < gmm9["exact"]["emc"]
    assert poor["sinkhorn"] > 5 * max(gmm9["exact"]["sinkhorn"], gmm9["smc"]["sinkhorn"])
    assert abs(gmm9["smc"]["log_Z_delta"]) < 0.2
    assert "report:" in capsys.readouterr().out
