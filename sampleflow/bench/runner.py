"""Run a suite into a results folder: register its cells in the store, skip the finished ones, run the rest
on an executor (this process, a local process pool, or a Ray cluster), and record each outcome as it
arrives. A cell that raises (a crash, a diverged run) is recorded as failed with its error and traceback;
the others go on. A run killed part-way leaves its cells ``running``; the next run picks them up again and
learned samplers continue from the checkpoint in their folder.

Layout of the results folder::

    results.sqlite              the store (cells, metrics, artifacts)
    cells/<cell_id>/            one folder per cell: cell.json, samples.npz, metrics.json, pictures,
                                history.csv and checkpoint.pt for learned samplers, error.txt if it failed
    report/                     written by ``sampleflow bench report`` (report.md, report.html, figures/)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..io import atomic_write
from ..progress import progress
from .cell import run_cell
from .store import ResultsStore
from .suite import Suite

__all__ = ["run_suite", "RunSummary", "STORE_NAME"]

STORE_NAME = "results.sqlite"


@dataclass
class RunSummary:
    suite: str
    total: int
    skipped: int = 0
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"suite {self.suite}: {self.total} cells — {len(self.done)} done, {len(self.failed)} failed, "
                f"{self.skipped} already finished" + (f", {len(self.resumed)} resumed from a checkpoint"
                                                      if self.resumed else ""))


def run_suite(suite: Suite, out: str | Path, *, executor: str = "local", jobs: int = 1,
              address: str | None = None, gpus_per_cell: float = 0, threads: int | None = None,
              retry_failed: bool = False, show_progress: bool | None = None) -> RunSummary:
    """Run every unfinished cell of ``suite`` into ``out``; see the module docstring."""
    from .executors import make_executor
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cells = suite.cells()
    with ResultsStore(out / STORE_NAME) as store:
        store.register([c.spec() for c in cells])
        status = {r["cell_id"]: r["status"] for r in store.cells(cell_ids=[c.cell_id for c in cells])}
        finished = {"done"} | (set() if retry_failed else {"failed"})
        todo = [c for c in cells if status[c.cell_id] not in finished]
        summary = RunSummary(suite.name, len(cells), skipped=len(cells) - len(todo))
        from ..targets.data import data_dir
        extra = {"root": str(out), "threads": threads, "data_dir": str(data_dir()),
                 "device": "auto" if gpus_per_cell > 0 else "cpu"}
        specs = [{**c.spec(), **extra} for c in todo]
        bar = progress(len(cells), desc=f"suite {suite.name}", enabled=show_progress, initial=summary.skipped)
        try:
            if specs:
                with make_executor(executor, jobs=jobs, address=address, num_gpus=gpus_per_cell,
                                   threads_per_task=threads) as ex:
                    for spec in specs:
                        store.mark_running(spec["cell_id"], host=None)
                    for index, outcome in ex.map_unordered(run_cell, specs):
                        _record(store, specs[index], outcome, summary, out)
                        bar.update(1)
                        bar.set_postfix(failed=len(summary.failed))
        finally:
            bar.close()
    return summary


def _record(store: ResultsStore, spec: dict, outcome, summary: RunSummary, root: Path) -> None:
    from .executors import CellError
    cid = spec["cell_id"]
    if isinstance(outcome, CellError):
        message = f"{outcome.type}: {outcome.message}"
        atomic_write(root / spec["folder"] / "error.txt", lambda f: f.write(message + "\n\n" + (outcome.traceback or "")))
        store.record(cid, status="failed", error=message, artifacts={"error": f"{spec['folder']}/error.txt"})
        summary.failed.append(cid)
        return
    store.record(cid, status="done", metrics=outcome["metrics"], artifacts=outcome["artifacts"],
                 wall_time=outcome["wall_time"], train_time=outcome["train_time"], nfe=outcome["nfe"],
                 resumed_from=outcome["resumed_from"], host=outcome.get("host"))
    summary.done.append(cid)
    if outcome["resumed_from"]:
        summary.resumed.append(cid)
