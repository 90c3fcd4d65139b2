"""The results store: one SQLite file (WAL mode) with the cells of every suite run into a results folder,
their metrics and the paths of their artifacts.

Safe for many writers at once (processes, or threads each with its own store object): every write is one
``BEGIN IMMEDIATE`` transaction, so a writer waits for the lock (``busy_timeout``) instead of failing, and
WAL lets readers go on meanwhile. A crash mid-write rolls the transaction back; nothing is half-written.

Tables::

    cells(cell_id PRIMARY KEY, suite, sampler, method, preset, options, target, target_name, target_params,
          seed, n, budget, folder, config_hash, status, error, attempts, started, finished, wall_time,
          train_time, nfe, resumed_from, host)
    metrics(cell_id, name, value)       one row per metric of a finished cell
    artifacts(cell_id, kind, path)      path relative to the results folder

``status``: pending → running → done | failed. A cell left ``running`` by a killed run is resumed by the next
``bench run`` (the runner treats it as unfinished).
"""
from __future__ import annotations

import csv
import json
import math
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

from ..io import atomic_write

__all__ = ["ResultsStore", "STATUSES"]

STATUSES = ("pending", "running", "done", "failed")
_JSON_COLUMNS = ("options", "target_params", "budget")
_SPEC_COLUMNS = ("cell_id", "suite", "sampler", "method", "preset", "options", "target", "target_name",
                 "target_params", "seed", "n", "budget", "folder", "config_hash")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS cells (
    cell_id TEXT PRIMARY KEY, suite TEXT, sampler TEXT, method TEXT, preset TEXT, options TEXT, target TEXT,
    target_name TEXT, target_params TEXT, seed INTEGER, n INTEGER, budget TEXT, folder TEXT, config_hash TEXT,
    status TEXT NOT NULL DEFAULT 'pending', error TEXT, attempts INTEGER NOT NULL DEFAULT 0, started REAL,
    finished REAL, wall_time REAL, train_time REAL, nfe INTEGER, resumed_from INTEGER, host TEXT);
CREATE TABLE IF NOT EXISTS metrics (
    cell_id TEXT NOT NULL REFERENCES cells(cell_id), name TEXT NOT NULL, value REAL, PRIMARY KEY (cell_id, name));
CREATE TABLE IF NOT EXISTS artifacts (
    cell_id TEXT NOT NULL REFERENCES cells(cell_id), kind TEXT NOT NULL, path TEXT NOT NULL,
    PRIMARY KEY (cell_id, kind));
CREATE INDEX IF NOT EXISTS cells_by_suite ON cells(suite, status);
"""


class ResultsStore:
    """``ResultsStore(path)`` opens (and creates) the database; use one object per thread or process."""

    def __init__(self, path: str | Path, timeout: float = 120.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.executescript(_SCHEMA)          # each statement is idempotent (IF NOT EXISTS)

    def close(self) -> None:
        self._db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @contextmanager
    def _transaction(self):
        """One write transaction that takes the write lock at once (no lock upgrade deadlocks)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # ------------------------------------------------------------------ writes
    def register(self, specs: list[dict]) -> int:
        """Add the cells (as ``Cell.spec()`` dicts) that are not there yet; returns how many were new."""
        cols = ", ".join(_SPEC_COLUMNS)
        marks = ", ".join("?" for _ in _SPEC_COLUMNS)
        with self._transaction() as db:
            before = db.total_changes
            db.executemany(f"INSERT OR IGNORE INTO cells ({cols}) VALUES ({marks})",
                           [tuple(_encode(c, s.get(c)) for c in _SPEC_COLUMNS) for s in specs])
            return db.total_changes - before

    def mark_running(self, cell_id: str, host: str | None = None) -> None:
        with self._transaction() as db:
            db.execute("UPDATE cells SET status='running', attempts=attempts+1, started=?, host=?, error=NULL "
                       "WHERE cell_id=?", (time.time(), host, cell_id))

    def record(self, cell_id: str, *, status: str, error: str | None = None, metrics: dict | None = None,
               artifacts: dict | None = None, wall_time: float | None = None, train_time: float | None = None,
               nfe: int | None = None, resumed_from: int | None = None, host: str | None = None) -> None:
        """The outcome of a cell, its metrics and artifacts, in one transaction."""
        if status not in ("done", "failed"):
            raise ValueError(f"status must be 'done' or 'failed', got {status!r}")
        with self._transaction() as db:
            cur = db.execute("UPDATE cells SET status=?, error=?, finished=?, wall_time=?, train_time=?, nfe=?, "
                             "resumed_from=?, host=COALESCE(?, host) WHERE cell_id=?",
                             (status, error, time.time(), wall_time, train_time, nfe, resumed_from, host, cell_id))
            if cur.rowcount != 1:
                raise KeyError(f"cell {cell_id!r} is not registered in {self.path}")
            db.execute("DELETE FROM metrics WHERE cell_id=?", (cell_id,))
            db.execute("DELETE FROM artifacts WHERE cell_id=?", (cell_id,))
            db.executemany("INSERT INTO metrics (cell_id, name, value) VALUES (?, ?, ?)",
                           [(cell_id, k, _number(v)) for k, v in (metrics or {}).items() if _is_number(v)])
            db.executemany("INSERT INTO artifacts (cell_id, kind, path) VALUES (?, ?, ?)",
                           [(cell_id, k, str(p)) for k, p in (artifacts or {}).items()])

    def reset(self, cell_ids: list[str]) -> None:
        """Set cells back to pending (e.g. to retry failed ones)."""
        with self._transaction() as db:
            db.executemany("UPDATE cells SET status='pending', error=NULL WHERE cell_id=?", [(c,) for c in cell_ids])

    # ------------------------------------------------------------------ reads
    def cells(self, *, suite: str | None = None, sampler: str | None = None, target: str | None = None,
              status: str | None = None, cell_ids: list[str] | None = None) -> list[dict]:
        """Cell records (the report's input): the spec, the outcome, ``metrics`` {name: value} and
        ``artifacts`` {kind: path}; filters match exactly (sampler/target: labels)."""
        where, args = [], []
        for col, val in (("suite", suite), ("sampler", sampler), ("target", target), ("status", status)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        if cell_ids is not None:
            where.append(f"cell_id IN ({', '.join('?' for _ in cell_ids)})")
            args += list(cell_ids)
        selected = "SELECT cell_id FROM cells" + (" WHERE " + " AND ".join(where) if where else "")
        rows = [dict(r) for r in self._db.execute(f"SELECT * FROM cells WHERE cell_id IN ({selected}) ORDER BY rowid",
                                                  args)]
        metrics, artifacts = {}, {}      # only the selected cells' rows (one query per table)
        for r in self._db.execute(f"SELECT cell_id, name, value FROM metrics WHERE cell_id IN ({selected})", args):
            metrics.setdefault(r["cell_id"], {})[r["name"]] = math.nan if r["value"] is None else r["value"]
        for r in self._db.execute(f"SELECT cell_id, kind, path FROM artifacts WHERE cell_id IN ({selected})", args):
            artifacts.setdefault(r["cell_id"], {})[r["kind"]] = r["path"]
        for r in rows:
            for c in _JSON_COLUMNS:
                r[c] = json.loads(r[c]) if r[c] else {}
            r["metrics"] = metrics.get(r["cell_id"], {})
            r["artifacts"] = artifacts.get(r["cell_id"], {})
        return rows

    def counts(self, suite: str | None = None) -> dict[str, int]:
        sql = "SELECT status, COUNT(*) FROM cells" + (" WHERE suite = ?" if suite else "") + " GROUP BY status"
        got = dict(self._db.execute(sql, (suite,) if suite else ()).fetchall())
        return {s: got.get(s, 0) for s in STATUSES}

    def export_csv(self, path: str | Path, rows: list[dict] | None = None) -> Path:
        """One line per cell: its spec, outcome and every metric as a column (wide format)."""
        rows = self.cells() if rows is None else rows
        names = sorted({k for r in rows for k in r["metrics"]})
        base = ["cell_id", "suite", "target", "sampler", "method", "preset", "seed", "n", "status", "error",
                "wall_time", "train_time", "nfe", "resumed_from"]

        def write(f):
            w = csv.writer(f)
            w.writerow(base + names)
            for r in rows:
                w.writerow([r.get(c) for c in base] + [r["metrics"].get(k) for k in names])
        return atomic_write(path, write)


def _encode(column: str, value):
    return json.dumps(value, sort_keys=True, default=str) if column in _JSON_COLUMNS else value


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _number(v) -> float | None:
    v = float(v)
    return None if math.isnan(v) else v
