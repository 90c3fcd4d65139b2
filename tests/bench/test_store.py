"""The results store: a real SQLite file in WAL mode; many writer processes at once lose no row."""
import multiprocessing as mp
import sqlite3

import pytest

from sampleflow.bench.store import ResultsStore


def _spec(i, suite="s"):
    return {"cell_id": f"c{i}", "suite": suite, "sampler": f"smp{i % 3}", "method": "smc", "preset": "cpu",
            "options": {"a": i}, "target": "gmm9", "target_name": "gmm9", "target_params": {}, "seed": i, "n": 10,
            "budget": {"iterations": 5}, "folder": f"cells/c{i}", "config_hash": "h"}


def _writer(path, worker, per_worker, barrier):
    """One process: registers its own cells and records each as done with two metrics, one transaction each.
    All processes start writing together (the barrier), so their transactions really interleave."""
    store = ResultsStore(path)
    barrier.wait(60)
    for k in range(per_worker):
        i = worker * 1000 + k
        store.register([_spec(i)])
        store.mark_running(f"c{i}", host=f"w{worker}")
        store.record(f"c{i}", status="done", metrics={"ess": i / 1e4, "sinkhorn": float(k)},
                     artifacts={"samples": f"cells/c{i}/samples.npz"}, wall_time=0.1, nfe=i)
    store.close()


def test_many_concurrent_writer_processes_lose_no_row(tmp_path):
    path = tmp_path / "results.sqlite"
    ResultsStore(path).close()
    workers, per_worker = 6, 40
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(workers)
    procs = [ctx.Process(target=_writer, args=(str(path), w, per_worker, barrier)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    with ResultsStore(path) as store:
        rows = store.cells()
        assert len(rows) == workers * per_worker
        assert all(r["status"] == "done" and len(r["metrics"]) == 2 and "samples" in r["artifacts"] for r in rows)
        assert sorted(r["nfe"] for r in rows) == sorted(w * 1000 + k for w in range(workers) for k in range(per_worker))
    # a plain sqlite3 reader agrees, and the file really is in WAL mode
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] == 2 * workers * per_worker


def test_register_is_idempotent_and_records_round_trip(tmp_path):
    with ResultsStore(tmp_path / "r.sqlite") as store:
        assert store.register([_spec(i) for i in range(5)]) == 5
        assert store.register([_spec(i) for i in range(7)]) == 2
        store.mark_running("c1")
        store.record("c1", status="failed", error="ValueError: boom")
        store.record("c2", status="done", metrics={"ess": 0.5, "log_Z_error": float("nan"), "flag": True},
                     resumed_from=40)
        c = {r["cell_id"]: r for r in store.cells()}
        assert c["c1"]["status"] == "failed" and c["c1"]["error"] == "ValueError: boom" and c["c1"]["attempts"] == 1
        assert c["c2"]["metrics"]["ess"] == 0.5 and c["c2"]["metrics"]["log_Z_error"] != c["c2"]["metrics"]["log_Z_error"]
        assert "flag" not in c["c2"]["metrics"] and c["c2"]["resumed_from"] == 40
        assert c["c3"]["options"] == {"a": 3} and c["c3"]["budget"] == {"iterations": 5}
        assert store.counts() == {"pending": 5, "running": 0, "done": 1, "failed": 1}
        assert [r["cell_id"] for r in store.cells(sampler="smp1")] == ["c1", "c4"]
        store.reset(["c1"])
        assert store.counts()["failed"] == 0
        with pytest.raises(KeyError, match="not registered"):
            store.record("nope", status="done")
        with pytest.raises(ValueError, match="status"):
            store.record("c3", status="weird")
        p = store.export_csv(tmp_path / "out.csv")
    lines = p.read_text().splitlines()
    assert len(lines) == 8 and "ess" in lines[0] and "log_Z_error" in lines[0]


def test_failed_transaction_leaves_nothing_half_written(tmp_path):
    """record() writes the status, metrics and artifacts in one transaction: an error part-way rolls back all."""
    with ResultsStore(tmp_path / "r.sqlite") as store:
        store.register([_spec(0)])
        with pytest.raises(sqlite3.IntegrityError):       # an artifact without a kind: NOT NULL fails last
            store.record("c0", status="done", metrics={"ess": 0.5}, artifacts={None: "p"})
        r = store.cells()[0]
        assert r["status"] == "pending" and r["metrics"] == {}
