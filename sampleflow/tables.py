"""Plain-text and Markdown tables of metric rows (lists of dicts)."""
from __future__ import annotations

import math

__all__ = ["format_value", "text_table", "markdown_table"]


def format_value(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if v == 0 or 1e-3 <= abs(v) < 1e5:
            return f"{v:.4g}"
        return f"{v:.3e}"
    return str(v)


def _cells(rows: list[dict], columns: list[str]) -> list[list[str]]:
    return [[format_value(r.get(c)) for c in columns] for r in rows]


def text_table(rows: list[dict], columns: list[str]) -> str:
    cells = _cells(rows, columns)
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = lambda vals: "  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(vals, widths)))
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(r) for r in cells])


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    cells = _cells(rows, columns)
    out = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in cells]
    return "\n".join(out)
