"""Small I/O helpers: atomic writes (temp file in the same folder + fsync + rename)."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable

__all__ = ["atomic_write", "write_json", "write_columns_csv"]


def atomic_write(path: str | Path, write: Callable, *, binary: bool = False) -> Path:
    """Call ``write(fileobj)`` on a temporary file next to ``path``, then rename it onto ``path``.

    A crash part-way leaves either the old file or none, never a truncated one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())      # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | Path, obj) -> Path:
    return atomic_write(path, lambda f: json.dump(obj, f, indent=2, sort_keys=True, allow_nan=True))


def write_columns_csv(path: str | Path, columns: dict) -> Path:
    """Write equal-length columns ``{name: sequence}`` as a CSV file with a header row, atomically."""
    import csv
    names = list(columns)

    def write(f):
        w = csv.writer(f)
        w.writerow(names)
        w.writerows(zip(*(columns[k] for k in names)))
    return atomic_write(path, write)
