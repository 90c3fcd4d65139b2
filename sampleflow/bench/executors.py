"""Executors: run one function over many benchmark cells, here or on a Ray cluster.

The runner holds a list of cell specs (plain picklable dicts) and a module-level function
``run_cell(spec) -> dict``. An executor calls that function once per spec and yields
``(index, outcome)`` pairs as the calls finish, in completion order::

    with make_executor("local", jobs=4) as ex:
        for index, outcome in ex.map_unordered(run_cell, specs):
            if isinstance(outcome, CellError):
                ...  # the cell failed: outcome.type, outcome.message, outcome.traceback
            else:
                ...  # the cell's result record

A failing cell never stops the others: its exception (or the death of the process running
it) is *returned* as a :class:`CellError`. ``KeyboardInterrupt`` is not a cell failure and
always propagates; the executor then stops what it started.

Two kinds:

- ``LocalExecutor`` -- ``jobs == 1`` runs in this process, one cell after the other;
  ``jobs > 1`` runs ``jobs`` worker processes (start method "spawn": torch and fork do not
  mix). Each worker runs one cell at a time, so a worker that dies (``os._exit``, a segfault,
  the OOM killer) is attributed to exactly the cell it was running; it is replaced and the
  other cells go on.
- ``RayExecutor`` -- one Ray task per cell, with ``num_cpus`` / ``num_gpus`` reserved for it,
  on a cluster started here or one reached through ``address``. See docs/distributed.md.

The function must be importable by name in the workers (a module-level function of an
installed or ``sys.path`` module, not a lambda or a function defined in ``__main__`` of a
script without an ``if __name__ == "__main__"`` guard).
"""
from __future__ import annotations

import os
import pickle
import re
import signal
import traceback as _traceback
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

__all__ = ["CellError", "Executor", "LocalExecutor", "RayExecutor", "make_executor", "EXECUTOR_KINDS"]

EXECUTOR_KINDS = ("local", "ray")

RAY_MISSING = "--executor ray needs the 'ray' package: pip install 'sampleflow[ray]'"

Outcome = Any  # the cell's result dict, or a CellError


@dataclass(frozen=True)
class CellError:
    """A cell that failed: the exception's type name, its message and the traceback text.

    Returned by the executors in place of a result, never raised. For a worker process that
    died, ``type`` is ``"WorkerCrashed"`` (local) or Ray's error type (e.g. ``"WorkerCrashedError"``).
    """

    type: str
    message: str
    traceback: str = ""

    @classmethod
    def from_exception(cls, exc: BaseException) -> "CellError":
        """The CellError of an exception caught in the current ``except`` block (or any exception)."""
        tb = "".join(_traceback.format_exception(type(exc), exc, exc.__traceback__))
        return cls(type(exc).__name__, str(exc), tb)

    def __str__(self) -> str:
        return f"{self.type}: {self.message}"


def _cpu_count() -> int:
    """CPUs this process may use (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _set_torch_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _check_positive_int(name: str, value: Any, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def _check_resource(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")


class Executor:
    """Base class: ``map_unordered`` plus ``close`` and the context-manager protocol."""

    def map_unordered(self, fn: Callable[[dict], dict], specs: Iterable[dict]) -> Iterator[tuple[int, Outcome]]:
        """Call ``fn(spec)`` for every spec; yield ``(index into specs, result or CellError)`` as each finishes."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the executor holds. Safe to call more than once."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# Local


class LocalExecutor(Executor):
    """Run cells on this machine: in this process (``jobs=1``) or in ``jobs`` spawned workers.

    ``threads_per_task`` is torch's intra-op thread count in each worker (default
    ``max(1, cpus // jobs)``, so that ``jobs`` workers do not oversubscribe the machine). With
    ``jobs=1`` the thread count is only changed (and restored afterwards) when given.
    Worker processes live for one ``map_unordered`` call.
    """

    def __init__(self, jobs: int = 1, *, threads_per_task: int | None = None):
        _check_positive_int("jobs", jobs)
        _check_positive_int("threads_per_task", threads_per_task, allow_none=True)
        self.jobs = jobs
        self.threads_per_task = threads_per_task

    def map_unordered(self, fn, specs):
        specs = list(specs)
        if self.jobs == 1:
            return self._serial(fn, specs)
        try:
            pickle.dumps(fn)
        except Exception as e:
            raise TypeError(
                f"fn must be a module-level function that worker processes can import, got {fn!r} ({e})"
            ) from None
        threads = self.threads_per_task or max(1, _cpu_count() // self.jobs)
        return self._parallel(fn, specs, threads)

    def _serial(self, fn, specs):
        if self.threads_per_task is None:
            old = None
        else:
            import torch

            old = torch.get_num_threads()
            torch.set_num_threads(self.threads_per_task)
        try:
            for index, spec in enumerate(specs):
                try:
                    outcome = fn(spec)
                except Exception as e:  # KeyboardInterrupt / SystemExit are not cell failures
                    outcome = CellError.from_exception(e)
                yield index, outcome
        finally:
            _set_torch_threads(old)

    def _parallel(self, fn, specs, threads):
        import multiprocessing as mp
        from multiprocessing.connection import wait

        ctx = mp.get_context("spawn")
        todo = list(range(len(specs)))[::-1]  # a stack: pop() gives the lowest index first
        idle: list[_Worker] = []
        busy: dict[_Worker, int] = {}
        try:
            while todo or busy:
                # Hand out work: reuse idle workers, start new ones up to `jobs`.
                while todo and (idle or len(busy) < self.jobs):
                    worker = idle.pop() if idle else _Worker(ctx, threads)
                    index = todo.pop()
                    try:
                        payload = pickle.dumps((fn, specs[index]))
                    except Exception as e:
                        idle.append(worker)
                        yield index, CellError.from_exception(e)
                        continue
                    worker.conn.send((index, payload))
                    busy[worker] = index
                if not busy:
                    continue
                waitables = {}
                for worker in busy:
                    waitables[worker.conn] = worker
                    waitables[worker.process.sentinel] = worker
                done = {waitables[obj] for obj in wait(list(waitables))}
                for worker in done:
                    index = busy.pop(worker)
                    outcome = worker.receive()
                    if outcome is None:  # the process died while running this cell
                        outcome = worker.crash_error()
                        worker.kill()
                        yield index, outcome
                    else:
                        idle.append(worker)
                        yield index, outcome
        finally:
            if todo or busy:  # abandoned mid-run (exception, KeyboardInterrupt, early break)
                for worker in idle + list(busy):
                    worker.kill()
            else:
                for worker in idle:  # all asked first, so that they exit together
                    worker.ask_to_exit()
                for worker in idle:
                    worker.stop()


class _Worker:
    """One spawned process and the pipe to it; runs one cell at a time (see ``_worker_main``)."""

    def __init__(self, ctx, threads: int):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, threads), name="sampleflow-cell")
        self.process.start()
        child.close()
        self.asked = False

    def receive(self) -> Outcome | None:
        """The outcome of the running cell, or None if the process died without sending one."""
        try:
            if not self.conn.poll():
                return None
            return self.conn.recv()
        except (EOFError, OSError):
            return None
        except Exception as e:  # the result could not be unpickled here
            return CellError.from_exception(e)

    def crash_error(self) -> CellError:
        self.process.join(5)
        code = self.process.exitcode
        if code is not None and code < 0:
            try:
                how = f"was killed by signal {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        message = f"the worker process (pid {self.process.pid}) {how} while running this cell"
        return CellError("WorkerCrashed", message, "")

    def ask_to_exit(self) -> None:
        if not self.asked:
            self.asked = True
            try:
                self.conn.send(None)
            except (OSError, ValueError):  # already gone
                pass

    def stop(self) -> None:
        """Ask the worker to exit; kill it if it has not within 5 s."""
        self.ask_to_exit()
        self.process.join(5)
        self.kill()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()


def _worker_main(conn, threads: int) -> None:
    """Worker loop: receive ``(index, pickled (fn, spec))``, send back the result or a CellError.

    Ctrl-C goes to the whole process group; the parent handles it and stops the workers, so
    the workers ignore SIGINT rather than die with a KeyboardInterrupt traceback each.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _set_torch_threads(threads)
    while True:
        try:
            message = conn.recv()
        except EOFError:  # the parent went away
            return
        if message is None:
            return
        _, payload = message
        try:
            fn, spec = pickle.loads(payload)
            outcome = fn(spec)
        except Exception as e:
            outcome = CellError.from_exception(e)
        try:
            conn.send(outcome)
        except Exception as e:  # e.g. a result that cannot be pickled
            conn.send(CellError.from_exception(e))


# --------------------------------------------------------------------------------------------
# Ray


def _import_ray():
    try:
        import ray
    except ImportError as e:
        raise ImportError(RAY_MISSING) from e
    return ray


def _ray_call(fn, spec, threads):
    """The Ray task: set torch's thread count in the worker, then run the cell."""
    _set_torch_threads(threads)
    return fn(spec)


def _ray_cell_error(err: BaseException) -> CellError:
    """Map a Ray failure to a CellError carrying the original exception's type and message.

    ``ray.get`` raises a ``RayTaskError`` for an exception inside the task: its ``cause`` is the
    original exception and its text the remote traceback. Worker deaths, lost nodes, OOM kills
    and the like are other RayErrors and keep their own type name.
    """
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException):
        remote_tb = re.sub(r"\x1b\[[0-9;]*m", "", str(err))  # without the terminal colours
        return CellError(type(cause).__name__, str(cause), remote_tb)
    return CellError.from_exception(err)


class RayExecutor(Executor):
    """One Ray task per cell, each reserving ``num_cpus`` CPUs and ``num_gpus`` GPUs.

    ``address``: None follows ``ray.init``'s rule (``RAY_ADDRESS``, else the latest cluster
    started on this machine, else a new local one); ``"local"`` always starts a new local
    cluster; ``"auto"`` or ``"host:port"`` connects to a running cluster (``ray start --head``).
    If Ray is already initialised in this process, that connection is used and left open.

    ``threads_per_task`` sets torch's thread count in the task (default ``max(1, int(num_cpus))``).
    ``max_retries`` is Ray's retry count for tasks whose worker died (default 0: a crashing cell
    is reported, not rerun). ``runtime_env`` is passed to ``ray.init`` (e.g. ``{"py_modules":
    [...]}`` when the nodes do not have sampleflow installed).

    With ``num_gpus > 0`` Ray sets ``CUDA_VISIBLE_DEVICES`` in each task to the GPU(s) it
    reserved, so a cell sees its own GPU as ``cuda:0``; a node with k GPUs runs k cells at once
    when ``num_gpus=1``. If no node has the resources one cell asks for, a RuntimeWarning says so
    (Ray would wait silently for such a node).
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: float = 1,
        num_gpus: float = 0,
        threads_per_task: int | None = None,
        max_retries: int = 0,
        runtime_env: dict | None = None,
    ):
        _check_resource("num_cpus", num_cpus)
        _check_resource("num_gpus", num_gpus)
        _check_positive_int("threads_per_task", threads_per_task, allow_none=True)
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < -1:
            raise ValueError(f"max_retries must be an integer >= -1, got {max_retries!r}")
        ray = _import_ray()
        self._ray = ray
        self.address = address
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.threads_per_task = threads_per_task or max(1, int(num_cpus))
        self._owns_connection = not ray.is_initialized()
        if self._owns_connection:
            kwargs = {"address": address, "log_to_driver": True}
            if runtime_env is not None:
                kwargs["runtime_env"] = runtime_env
            ray.init(**kwargs)
        self._closed = False
        self._remote = ray.remote(_ray_call).options(
            num_cpus=num_cpus, num_gpus=num_gpus, max_retries=max_retries, name="sampleflow-cell"
        )
        self._warn_if_unschedulable()

    def _warn_if_unschedulable(self) -> None:
        """Warn when no live node has the resources one task asks for (Ray would wait forever)."""
        try:
            nodes = [n for n in self._ray.nodes() if n.get("Alive")]
        except Exception:
            return
        need = {"CPU": self.num_cpus, "GPU": self.num_gpus}
        if not any(all(n.get("Resources", {}).get(k, 0) >= v for k, v in need.items() if v > 0) for n in nodes):
            have = [{k: n.get("Resources", {}).get(k, 0) for k in need} for n in nodes]
            warnings.warn(
                f"no node of the Ray cluster has the num_cpus={self.num_cpus} and num_gpus={self.num_gpus} "
                f"that one cell asks for (nodes: {have}); cells will wait until such a node joins",
                RuntimeWarning,
                stacklevel=3,
            )

    def map_unordered(self, fn, specs):
        if self._closed:
            raise RuntimeError("this RayExecutor is closed")
        return self._map(fn, list(specs))

    def _map(self, fn, specs):
        ray = self._ray
        fn_ref = ray.put(fn)
        pending = {self._remote.remote(fn_ref, spec, self.threads_per_task): i for i, spec in enumerate(specs)}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    index = pending.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except Exception as e:
                        outcome = _ray_cell_error(e)
                    yield index, outcome
        finally:
            for ref in pending:  # abandoned mid-run: do not leave cells running on the cluster
                try:
                    ray.cancel(ref, force=True)
                except Exception:
                    pass

    def close(self) -> None:
        """Disconnect from (or shut down) a Ray this executor initialised; leave any other alone."""
        if not self._closed:
            self._closed = True
            if self._owns_connection and self._ray.is_initialized():
                self._ray.shutdown()


# --------------------------------------------------------------------------------------------


def make_executor(
    kind: str = "local",
    *,
    jobs: int = 1,
    address: str | None = None,
    num_cpus: float = 1,
    num_gpus: float = 0,
    threads_per_task: int | None = None,
) -> Executor:
    """The executor named by ``kind`` ("local" or "ray"), checked for bad arguments.

    ``jobs`` is for "local" (cells at once); ``address``, ``num_cpus``, ``num_gpus`` are for
    "ray", where the cluster's resources decide how many cells run at once (``jobs`` is checked
    but not used there). ``num_cpus``/``num_gpus`` are checked but not used by "local": there each
    cell picks its own device. ``address`` with "local" is an error (a forgotten ``--executor ray``).
    """
    if kind not in EXECUTOR_KINDS:
        raise ValueError(f"kind must be one of {', '.join(EXECUTOR_KINDS)}; got {kind!r}")
    _check_positive_int("jobs", jobs)
    _check_resource("num_cpus", num_cpus)
    _check_resource("num_gpus", num_gpus)
    _check_positive_int("threads_per_task", threads_per_task, allow_none=True)
    if kind == "local":
        if address is not None:
            raise ValueError(f"address is only used with kind='ray' (got address={address!r} with kind='local')")
        return LocalExecutor(jobs, threads_per_task=threads_per_task)
    return RayExecutor(address, num_cpus=num_cpus, num_gpus=num_gpus, threads_per_task=threads_per_task)
