"""Training history: the loss / log Z curve of a run, as columns of floats."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from ..io import atomic_write

__all__ = ["TrainHistory"]

#: columns every history has, in this order; info keys from the step function follow.
BASE_COLUMNS = ("iteration", "time", "lr", "loss", "grad_norm", "skipped")


class TrainHistory:
    """Columns of equal length, one row per logged iteration.

    Base columns: ``iteration`` (iterations completed at the row, 1-based), ``time`` (seconds of
    training since the start of the run, summed over resumed sessions), ``lr`` (of that
    iteration), ``loss`` and ``grad_norm`` (means over the finite steps since the previous row;
    the gradient norm is the one *before* clipping; NaN when every step was skipped), ``skipped``
    (non-finite steps since the previous row); then one column per info key returned by the step
    function (mean over the window; NaN in rows logged before the key first appeared).

    ``h.loss``, ``h["logZ"]``, ``h.to_dict()``, ``h.to_csv(path)``, ``h.to_json(path)``,
    ``TrainHistory.from_dict(d)``.
    """

    def __init__(self, columns: dict[str, list[float]] | None = None):
        self.columns: dict[str, list[float]] = {k: [] for k in BASE_COLUMNS}
        if columns:
            n = {len(v) for v in columns.values()}
            if len(n) > 1:
                raise ValueError(f"history columns have different lengths: { {k: len(v) for k, v in columns.items()} }")
            rows = n.pop() if n else 0
            for k in BASE_COLUMNS:
                self.columns[k] = [math.nan] * rows
            for k, v in columns.items():
                self.columns[k] = [math.nan if x is None else float(x) for x in v]

    # -- access ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.columns["iteration"])

    def __getitem__(self, key: str) -> list[float]:
        return self.columns[key]

    def __contains__(self, key: str) -> bool:
        return key in self.columns

    def keys(self) -> list[str]:
        return list(self.columns)

    @property
    def info_keys(self) -> list[str]:
        return [k for k in self.columns if k not in BASE_COLUMNS]

    def __getattr__(self, key: str) -> list[float]:
        columns = self.__dict__.get("columns")
        if columns is not None and key in columns:
            return columns[key]
        raise AttributeError(key)

    def last(self) -> dict[str, float]:
        """The last row as a dict (empty when nothing has been logged)."""
        return {k: v[-1] for k, v in self.columns.items()} if len(self) else {}

    def __repr__(self) -> str:
        return f"TrainHistory({len(self)} rows, columns={self.keys()})"

    # -- building -------------------------------------------------------------------------------
    def append(self, row: dict[str, float]) -> None:
        """Add a row; a new key gets a column filled with NaN for the earlier rows."""
        n = len(self)
        for k in row:
            if k not in self.columns:
                self.columns[k] = [math.nan] * n
        for k, col in self.columns.items():
            col.append(float(row.get(k, math.nan)))

    # -- (de)serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, list[float]]:
        """A copy of the columns (plain lists of floats)."""
        return {k: list(v) for k, v in self.columns.items()}

    @classmethod
    def from_dict(cls, d: dict[str, list]) -> "TrainHistory":
        """Inverse of :meth:`to_dict` (None entries, as in the JSON file, become NaN)."""
        return cls(d)

    def to_json(self, path: str | Path) -> Path:
        """Write ``{column: [values]}`` atomically as strict JSON: non-finite values become null
        (read back as NaN)."""
        d = {k: [x if math.isfinite(x) else None for x in v] for k, v in self.columns.items()}
        return atomic_write(path, lambda f: json.dump(d, f, allow_nan=False))

    @classmethod
    def from_json(cls, path: str | Path) -> "TrainHistory":
        return cls.from_dict(json.loads(Path(path).read_text()))

    def to_csv(self, path: str | Path) -> Path:
        """Write a CSV with a header row, atomically (NaN written as ``nan``; integral values
        such as ``iteration`` without a decimal point)."""
        keys = self.keys()

        def fmt(x: float) -> str:
            return str(int(x)) if math.isfinite(x) and x.is_integer() and abs(x) < 2**53 else repr(x)

        def write(f):
            w = csv.writer(f, lineterminator="\n")
            w.writerow(keys)
            for i in range(len(self)):
                w.writerow([fmt(self.columns[k][i]) for k in keys])

        return atomic_write(path, write)
