"""Executors: local (serial, spawned workers) and Ray (a real local cluster started here).

The mapped functions live in tests/bench/_executor_tasks.py so that workers can import them
(see that module's docstring for how they reach the workers' sys.path).
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from sampleflow.bench.executors import (
    RAY_MISSING,
    CellError,
    LocalExecutor,
    RayExecutor,
    make_executor,
)
from tests.bench._executor_tasks import cell, where_is_sampleflow

ROOT = Path(__file__).resolve().parents[2]  # the checkout root: `tests` is importable from there
SPECS = [{"seed": s} for s in (0, 1, 2, 3, 4)]

try:
    import ray  # noqa: F401

    HAVE_RAY = True
except ImportError:
    HAVE_RAY = False


def run_all(ex, fn, specs):
    """{index: outcome} of ex.map_unordered, checking every index comes back exactly once."""
    out = {}
    for index, outcome in ex.map_unordered(fn, specs):
        assert index not in out
        out[index] = outcome
    assert sorted(out) == list(range(len(specs)))
    return out


def sums(outcomes):
    return {i: o["sum"] for i, o in outcomes.items()}


@pytest.fixture(scope="module")
def serial_sums():
    with LocalExecutor(jobs=1) as ex:
        return sums(run_all(ex, cell, SPECS))


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"kind": "dask"}, "kind"),
        ({"jobs": 0}, "jobs"),
        ({"jobs": 1.5}, "jobs"),
        ({"num_cpus": -1}, "num_cpus"),
        ({"num_gpus": -0.5}, "num_gpus"),
        ({"threads_per_task": 0}, "threads_per_task"),
        ({"address": "127.0.0.1:6379"}, "address"),
    ],
)
def test_make_executor_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        make_executor(**kwargs)


def test_ray_missing_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    with pytest.raises(ImportError) as info:
        make_executor("ray")
    assert str(info.value) == RAY_MISSING
    assert "--executor ray" in RAY_MISSING and "pip install 'sampleflow[ray]'" in RAY_MISSING


# --- local -----------------------------------------------------------------------------------


def test_serial_runs_in_process_and_catches_errors():
    specs = SPECS[:2] + [{"seed": 7, "action": "raise"}]
    with make_executor("local") as ex:
        out = run_all(ex, cell, specs)
    assert out[0]["pid"] == out[1]["pid"] == os.getpid()
    err = out[2]
    assert isinstance(err, CellError) and err.type == "ValueError"
    assert err.message == "cell 7 failed on purpose" and "ValueError" in err.traceback


def test_serial_lets_keyboard_interrupt_through():
    def interrupted(spec):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        list(LocalExecutor(jobs=1).map_unordered(interrupted, SPECS))


def test_parallel_matches_serial_and_survives_errors_and_crashes(serial_sums):
    """jobs=2: same numbers as serial; a raising cell and an os._exit(3) cell become CellErrors,
    the other cells still finish (the dead worker is replaced)."""
    specs = SPECS[:2] + [{"seed": 8, "action": "exit"}] + SPECS[2:] + [{"seed": 9, "action": "raise"}]
    with make_executor("local", jobs=2, threads_per_task=1) as ex:
        out = run_all(ex, cell, specs)
    crash, error = out.pop(2), out.pop(len(specs) - 1)
    assert isinstance(crash, CellError) and crash.type == "WorkerCrashed"
    assert "exited with code 3" in crash.message
    assert isinstance(error, CellError) and error.type == "ValueError"
    assert error.message == "cell 9 failed on purpose"
    assert sorted(o["sum"] for o in out.values()) == sorted(serial_sums.values())
    assert {o["seed"]: o["sum"] for o in out.values()} == {s["seed"]: serial_sums[i] for i, s in enumerate(SPECS)}
    pids = {o["pid"] for o in out.values()}
    assert os.getpid() not in pids and len(pids) >= 2
    assert {o["threads"] for o in out.values()} == {1}


def test_parallel_unpicklable_spec_and_early_stop():
    """A spec that cannot be sent to a worker is a CellError; a consumer that stops early leaves
    no worker behind (the first outcome here comes before any worker has started a cell)."""
    import multiprocessing as mp

    specs = [SPECS[0], {"seed": 1, "callback": lambda: None}, SPECS[2]]
    with LocalExecutor(jobs=2) as ex:
        it = ex.map_unordered(cell, specs)
        index, outcome = next(it)
        assert index == 1 and isinstance(outcome, CellError) and "pickle" in outcome.message.lower()
        assert len([p for p in mp.active_children() if p.name == "sampleflow-cell"]) == 2
        it.close()
    assert not [p for p in mp.active_children() if p.name == "sampleflow-cell"]


# --- Ray ---------------------------------------------------------------------------------------

ray_only = pytest.mark.skipif(not HAVE_RAY, reason="the 'ray' package is not installed (pip install 'sampleflow[ray]')")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session_pids(sid: int) -> list[int]:
    """Live processes of session `sid` (the `ray start` process and everything it spawned)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[3]) == sid:
                pids.append(int(entry))
    return pids


class RayHead:
    """A one-node Ray cluster (2 CPUs, 100 MB object store) for this module.

    ``ray start --head --block`` runs in a session of its own; the head processes (GCS, raylet,
    agents, workers) are its descendants there. ``stop`` terminates that ``ray start`` process
    (which stops what it started) and then kills whatever of its session is still alive, by pid:
    unlike ``ray stop --force``, this never touches another Ray running on the same machine.
    Its temp dir (``--temp-dir``, also where it records its address) is its own, and removed.
    """

    def __init__(self):
        self.tmp = tmp = tempfile.mkdtemp(prefix="sfray-", dir="/tmp")  # short: socket paths must stay < 108 chars
        self.address = f"127.0.0.1:{_free_port()}"
        self.log = Path(tmp) / "ray-start.log"
        env = dict(
            os.environ,
            RAY_DISABLE_DOCKER_CPU_WARNING="1",
            RAY_USAGE_STATS_ENABLED="0",
            RAY_AUTH_MODE="disabled",  # a loopback test cluster; else a ~/.ray/auth_token would switch tokens on
            # Workers must import `tests.bench._executor_tasks` (sampleflow itself is installed with pip -e).
            PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
        )
        cmd = [
            str(Path(sys.executable).with_name("ray")), "start", "--head",
            f"--port={self.address.split(':')[1]}", "--node-ip-address=127.0.0.1",
            "--num-cpus=2", "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats",
            f"--temp-dir={tmp}", "--object-store-memory=100000000", "--block",
        ]  # fmt: skip
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while "Ray runtime started" not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"`ray start --head` did not come up:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)
        return self.address

    def stop(self) -> None:
        started = _session_pids(self.proc.pid)
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            pass
        for pid in set(started) | set(_session_pids(self.proc.pid)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(scope="module", autouse=True)
def ray_head(request):
    """Starts the Ray head at the beginning of this module when a selected test needs it, so that
    its start-up (10-20 s here) overlaps the local tests; stops it at the end, also on failure."""
    wanted = HAVE_RAY and any("ray_address" in item.fixturenames for item in request.session.items)
    head = RayHead() if wanted else None
    try:
        yield head
    finally:
        if head is not None:
            head.stop()


@pytest.fixture(scope="module")
def ray_address(ray_head):
    return ray_head.wait_ready()


@pytest.fixture(scope="module")
def ray_executor(ray_address):
    ex = RayExecutor(address=ray_address, num_cpus=1)
    try:
        yield ex
    finally:
        ex.close()


@ray_only
def test_ray_matches_local_and_runs_elsewhere(ray_executor, serial_sums):
    out = run_all(ray_executor, cell, SPECS)
    assert sums(out) == serial_sums
    pids = {o["pid"] for o in out.values()}
    assert os.getpid() not in pids
    assert {o["threads"] for o in out.values()} == {1}  # max(1, int(num_cpus))


@ray_only
def test_ray_maps_failures_to_cell_errors(ray_executor, serial_sums):
    specs = [{"seed": 5, "action": "raise"}, SPECS[0], {"seed": 6, "action": "exit"}, SPECS[1]]
    out = run_all(ray_executor, cell, specs)
    assert out[0] == CellError("ValueError", "cell 5 failed on purpose", out[0].traceback)
    assert "_executor_tasks.py" in out[0].traceback and "\x1b[" not in out[0].traceback  # the remote traceback
    assert isinstance(out[2], CellError) and out[2].type == "WorkerCrashedError"  # not retried
    assert [out[1]["sum"], out[3]["sum"]] == [serial_sums[0], serial_sums[1]]


@ray_only
def test_ray_workers_import_sampleflow(ray_executor):
    import sampleflow

    (_, info), = ray_executor.map_unordered(where_is_sampleflow, [{}])
    assert info["file"] == sampleflow.__file__ and info["pid"] != os.getpid()


@ray_only
def test_ray_reuses_connection_and_warns_on_missing_gpus(ray_executor):
    """A second executor in a process already connected uses that connection and leaves it open
    on close; asking for a GPU on a CPU-only cluster warns instead of hanging silently."""
    import ray

    with pytest.warns(RuntimeWarning, match="num_gpus=1"):
        other = RayExecutor(address=ray_executor.address, num_gpus=1)
    other.close()
    assert ray.is_initialized()


SUITE_FOR_BOTH = """
name: both
n: 300
seeds: [0, 1]
targets: [{name: gaussian, params: {dim: 2}, label: gauss2}, gmm9]
samplers:
  - {label: mala, sampler: mala, preset: cpu, options: {n_warmup: 50}, budget: {iterations: 50}}
  - {label: dis, sampler: dis, preset: test, options: {loss: lv}, budget: {iterations: 20}}
"""


@ray_only
def test_ray_and_local_executors_give_the_same_table(ray_executor, tmp_path):
    """The whole runner on both executors (same suite, same seeds, one torch thread per cell): every cell's
    metrics (all but wall-clock times) agree to float precision, the Ray cells ran in worker processes, the store and report are the same
    shape."""
    from sampleflow.bench import load_suite
    from sampleflow.bench.runner import STORE_NAME, run_suite
    from sampleflow.bench.store import ResultsStore

    (tmp_path / "both.yaml").write_text(SUITE_FOR_BOTH)
    suite = load_suite(tmp_path / "both.yaml")
    tables = {}
    for kind in ("local", "ray"):
        summary = run_suite(suite, tmp_path / kind, executor=kind, threads=1,
                            address=ray_executor.address if kind == "ray" else None)
        assert len(summary.done) == 8 and not summary.failed
        with ResultsStore(tmp_path / kind / STORE_NAME) as store:
            tables[kind] = {c["cell_id"]: c for c in store.cells()}
    assert tables["local"].keys() == tables["ray"].keys()
    for cid, local in tables["local"].items():
        remote = tables["ray"][cid]
        assert remote["host"].split(":")[-1] != str(os.getpid()) == local["host"].split(":")[-1]
        assert local["metrics"].keys() == remote["metrics"].keys()
        for k, v in local["metrics"].items():
            if "time" in k:                          # wall-clock times differ, everything else must not
                continue
            assert remote["metrics"][k] == pytest.approx(v, rel=1e-6, abs=1e-9, nan_ok=True), (cid, k)
