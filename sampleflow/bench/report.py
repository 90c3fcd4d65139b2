"""The benchmark report: Markdown and static HTML tables and figures from a list of cell records.

Input: one record (dict) per benchmark cell, as the results store hands them out (``sampler`` and
``target`` are display labels, ``method``/``target_name``/``target_params`` the registry names,
``metrics`` the flat dict of :func:`sampleflow.metrics.evaluate`, ``artifacts`` ``{kind: path}`` relative
to the results root).

Output (:func:`write_report`): ``report.md``, ``report.html`` (self-contained apart from the PNG files
beside it, all links relative) and ``figures/``:

* a summary across targets: per sampler the mean rank over every (target, quality metric) column and the
  number of columns it wins; per target the best sampler on its primary metric;
* per target, a table with one row per sampler and one column per metric that applies, each as
  mean ± sample standard deviation (ddof = 1) over the finished seeds, with the number of seeds and of
  failed runs; the best value of each column is marked (direction per metric in :data:`METRIC_SPECS`);
* per target, the published reference numbers (:mod:`sampleflow.bench.published`) with their source and
  protocol, beside our best value and whether the two were measured under the same protocol;
* per target, figures: samples against reference samples, marginal histograms, training curves and
  log Z error against wall time;
* a derived cost column: training seconds per iteration from each learned cell's history.csv;
* the list of failed cells with their error messages.
"""
from __future__ import annotations

import csv
import html
import json
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import numpy as np

from ..io import atomic_write
from ..tables import format_value, markdown_table
from . import plots
from .published import PROTOCOL_NAMES, PROTOCOLS, comparability, published_for

__all__ = ["MetricSpec", "METRIC_SPECS", "PRIMARY_METRICS", "DEFAULT_TITLE", "write_report", "summary_rows",
           "cell_value", "with_derived_metrics", "best_samplers", "sampler_ranking", "best_per_target",
           "sampler_legend", "format_mean_std"]

DEFAULT_TITLE = "sampleflow benchmark report"
_REFERENCE_POINTS = 2000


@dataclass(frozen=True)
class MetricSpec:
    """A report column: the metric key, its header, which direction is better, and what it means."""

    key: str
    label: str
    better: str | None     # "min", "max", or None for an informational column (no best, no rank)
    description: str
    quality: bool = True   # counts towards the ranking (cost columns such as NFE and wall time do not)

    @property
    def arrow(self) -> str:
        return {"min": "↓", "max": "↑"}.get(self.better, "")

    @property
    def header(self) -> str:
        return f"{self.label} {self.arrow}".rstrip()

    @property
    def better_text(self) -> str:
        return {"min": "lower", "max": "higher"}.get(self.better, "— (not ranked)")


#: the metric columns of the per-target tables, in this order (only those with a value are shown)
METRIC_SPECS: tuple[MetricSpec, ...] = (
    MetricSpec("log_Z_error", "log Z error", "min", "|log Ẑ − log Z|, importance-sampling estimate"),
    MetricSpec("log_Z_is", "log Ẑ", None, "importance-sampling log Z estimate (shown only for targets without a "
               "known log Z, where the estimates of the samplers can only be compared with each other)",
               quality=False),
    MetricSpec("elbo_gap", "ELBO gap", "min", "log Z − mean log weight (lower-bound error)"),
    MetricSpec("ess", "ESS", "max", "normalised effective sample size (Σw)²/(nΣw²)"),
    MetricSpec("sinkhorn", "Sinkhorn", "min", "debiased entropic OT to the reference samples (Beyond-ELBOs code)"),
    MetricSpec("mmd", "MMD", "min", "median-heuristic MMD to the reference samples (Beyond-ELBOs)"),
    MetricSpec("energy", "energy", "min", "energy distance to the reference samples"),
    MetricSpec("sliced_w2", "sliced W2", "min", "sliced 2-Wasserstein distance (500 projections)"),
    MetricSpec("w2", "W2", "min", "exact 2-Wasserstein distance (EMD)"),
    MetricSpec("mean_error", "mean error", "min", "error of the (weighted) mean against the reference"),
    MetricSpec("std_error", "std error", "min", "error of the (weighted) standard deviations"),
    MetricSpec("eubo_gap", "EUBO gap", "min", "EUBO − log Z on reference points"),
    MetricSpec("emc", "EMC", "max", "entropic mode coverage of a mixture target (1 = all modes, evenly)"),
    MetricSpec("nfe", "NFE", "min", "target evaluations (log-density and/or gradient)", quality=False),
    MetricSpec("wall_time", "wall time [s]", "min", "seconds for training and sampling", quality=False),
    MetricSpec("time_per_iteration", "s / iteration", "min",
               "training seconds per iteration (history.csv: last time / last iteration)", quality=False),
)
_SPECS = {s.key: s for s in METRIC_SPECS}
#: the metric that names the best sampler of a target: the first of these with a value
PRIMARY_METRICS = ("log_Z_error", "sinkhorn", "w2", "mmd", "mean_error", "emc", "ess")
_TOP_LEVEL = ("nfe", "wall_time")      # taken from the record itself before its metrics dict


# ================================================================== reading the records

def _finite(v) -> float | None:
    """``v`` as a float when it is a finite number, else None."""
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def cell_value(cell: dict, key: str) -> float | None:
    """The value of metric ``key`` for one cell (NFE and wall time from the record, else its metrics)."""
    if key in _TOP_LEVEL and _finite(cell.get(key)) is not None:
        return _finite(cell.get(key))
    return _finite((cell.get("metrics") or {}).get(key))


def _ordered_groups(cells: list[dict], key: str) -> dict[str, list[dict]]:
    """Records grouped by ``cell[key]``, groups in order of first appearance."""
    groups: dict[str, list[dict]] = {}
    for c in cells:
        groups.setdefault(str(c.get(key, "?")), []).append(c)
    return groups


def _done(cells: list[dict]) -> list[dict]:
    return [c for c in cells if c.get("status") == "done"]


def _failed(cells: list[dict]) -> list[dict]:
    return [c for c in cells if c.get("status") == "failed"]


def _artifact_path(cell: dict, kind: str, root: Path) -> Path | None:
    """The file of artifact ``kind`` (paths are relative to the results root; the cell folder is tried too)."""
    rel = (cell.get("artifacts") or {}).get(kind)
    if not rel:
        return None
    for candidate in (root / rel, root / str(cell.get("folder", "")) / rel):
        if candidate.is_file():
            return candidate
    return None


def _read_history(path: Path) -> dict[str, list[float]]:
    """Columns of a history.csv as lists of floats (non-numbers become NaN)."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        columns: dict[str, list[float]] = {k: [] for k in reader.fieldnames or []}
        for row in reader:
            for k, v in row.items():
                columns[k].append(_finite(v) if _finite(v) is not None else math.nan)
    return columns


# ================================================================== aggregation

def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof = 1; None for fewer than two values)."""
    if not values:
        return None, None
    a = np.asarray(values, dtype=float)
    return float(a.mean()), (float(a.std(ddof=1)) if a.size > 1 else None)


def _aggregate(target: str, sampler: str, cells: list[dict]) -> dict:
    """One summary row: counts, and mean / std over the finished seeds of every metric that has a value."""
    done = _done(cells)
    first = cells[0]
    row = {"target": target, "target_name": first.get("target_name"), "sampler": sampler,
           "method": first.get("method"), "seeds": len(done), "failed": len(_failed(cells)),
           "unfinished": sum(c.get("status") in ("running", "pending") for c in cells)}
    for spec in METRIC_SPECS:
        mean, std = _mean_std([v for v in (cell_value(c, spec.key) for c in done) if v is not None])
        if mean is not None:
            row[spec.key], row[f"{spec.key}_std"] = mean, std
    return row


def _time_per_iteration(history: dict[str, list[float]]) -> float | None:
    """Training seconds per iteration at the last finite row of a history (None without a time column)."""
    rows = [(t, i) for t, i in zip(history.get("time", []), history.get("iteration", []))
            if math.isfinite(t) and math.isfinite(i) and i > 0]
    return rows[-1][0] / rows[-1][1] if rows else None


def with_derived_metrics(cells: list[dict], root: Path) -> list[dict]:
    """Copies of the records with metrics derived from their files added: ``time_per_iteration`` from a
    history.csv (the records themselves are not modified)."""
    out = []
    for c in cells:
        path = _artifact_path(c, "history", Path(root)) if c.get("status") == "done" else None
        tpi = _time_per_iteration(_read_history(path)) if path is not None else None
        if tpi is not None:
            c = dict(c, metrics=dict(c.get("metrics") or {}, time_per_iteration=tpi))
        out.append(c)
    return out


def summary_rows(cells: list[dict], root: Path | None = None) -> list[dict]:
    """The aggregated rows, one per (target, sampler), targets and samplers in order of first appearance.

    Keys: ``target``, ``target_name``, ``sampler``, ``method``, ``seeds`` (finished), ``failed``,
    ``unfinished`` (running or pending), and for each metric with a value its mean under the metric's key
    and its sample standard deviation under ``<key>_std`` (None for one seed). Print with e.g.
    ``sampleflow.tables.text_table(rows, ["target", "sampler", "seeds", "failed", "log_Z_error"])``.
    With the results folder ``root``, metrics derived from the cells' files are included
    (:func:`with_derived_metrics`)."""
    if root is not None:
        cells = with_derived_metrics(cells, root)
    rows = []
    for target, tcells in _ordered_groups(cells, "target").items():
        for sampler, scells in _ordered_groups(tcells, "sampler").items():
            rows.append(_aggregate(target, sampler, scells))
    return rows


def _columns(rows: list[dict]) -> list[MetricSpec]:
    """The metric columns that have a value in at least one row (in METRIC_SPECS order); the log Z
    estimate itself only where there is no log Z error (no known log Z)."""
    has_error = any("log_Z_error" in r for r in rows)
    return [s for s in METRIC_SPECS if any(s.key in r for r in rows) and not (s.key == "log_Z_is" and has_error)]


def best_samplers(rows: list[dict], specs: list[MetricSpec]) -> dict[str, set[str]]:
    """Per metric key, the sampler(s) whose mean is best (min or max by the metric's direction; ties kept)."""
    best = {}
    for spec in specs:
        if spec.better is None:
            continue
        means = {r["sampler"]: r[spec.key] for r in rows if r.get(spec.key) is not None}
        if means:
            target_value = (min if spec.better == "min" else max)(means.values())
            best[spec.key] = {s for s, v in means.items() if v == target_value}
    return best


def _ranks(means: dict[str, float], better: str) -> dict[str, float]:
    """Rank 1 = best; ties share the average of their ranks."""
    sign = 1.0 if better == "min" else -1.0
    out = {}
    for s, v in means.items():
        ahead = sum(sign * w < sign * v for w in means.values())
        tied = sum(w == v for w in means.values())
        out[s] = 1.0 + ahead + (tied - 1) / 2.0
    return out


def sampler_ranking(rows: list[dict]) -> list[dict]:
    """Per sampler, over all targets: targets run, seeds finished, failures, the mean rank over every
    (target, quality metric) column in which it has a value, and the number of such columns it wins.
    Sorted by mean rank (samplers without any ranked value last)."""
    stats: dict[str, dict] = {}
    for r in rows:
        st = stats.setdefault(r["sampler"], {"sampler": r["sampler"], "method": r.get("method"), "targets": 0,
                                             "seeds": 0, "failed": 0, "ranks": [], "wins": 0})
        st["targets"] += 1
        st["seeds"] += r["seeds"]
        st["failed"] += r["failed"]
    for target_rows in _ordered_groups(rows, "target").values():
        specs = [s for s in _columns(target_rows) if s.quality]
        for spec in specs:
            means = {r["sampler"]: r[spec.key] for r in target_rows if r.get(spec.key) is not None}
            if len(means) < 2:
                continue
            for s, rank in _ranks(means, spec.better).items():
                stats[s]["ranks"].append(rank)
                stats[s]["wins"] += rank == 1.0
    out = []
    for st in stats.values():
        ranks = st.pop("ranks")
        st["ranked_columns"] = len(ranks)
        st["mean_rank"] = float(np.mean(ranks)) if ranks else None
        out.append(st)
    return sorted(out, key=lambda d: (d["mean_rank"] is None, d["mean_rank"] or 0.0))


def sampler_legend(cells: list[dict]) -> list[dict]:
    """Per sampler label: the registry method, the preset(s) and the options it ran with (JSON; distinct
    values joined by " / " when they differ between cells)."""
    out = []
    for sampler, scells in _ordered_groups(cells, "sampler").items():
        def distinct(key, encode=str):
            return " / ".join(dict.fromkeys(encode(c.get(key)) for c in scells if c.get(key) is not None)) or "—"
        out.append({"sampler": sampler, "method": distinct("method"), "preset": distinct("preset"),
                    "options": distinct("options", lambda o: json.dumps(o, sort_keys=True, default=str))})
    return out


def best_per_target(rows: list[dict]) -> list[dict]:
    """Per target: its primary metric (the first of PRIMARY_METRICS with a value) and the best sampler on it."""
    out = []
    for target, target_rows in _ordered_groups(rows, "target").items():
        key = next((k for k in PRIMARY_METRICS if any(r.get(k) is not None for r in target_rows)), None)
        if key is None:
            out.append({"target": target, "metric": None, "best": None, "value": None})
            continue
        winners = best_samplers(target_rows, [_SPECS[key]])[key]
        value = next(r[key] for r in target_rows if r["sampler"] in winners)
        out.append({"target": target, "metric": key, "best": ", ".join(sorted(winners)), "value": value})
    return out


# ================================================================== formatting

def format_mean_std(mean: float | None, std: float | None) -> str:
    """``mean ± std`` (``mean`` alone for one seed, ``—`` without a value); the std to 2 significant digits."""
    if mean is None:
        return "—"
    return format_value(mean) if std is None else f"{format_value(mean)} ± {float(f'{std:.2g}'):g}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "target"


def _md_cell(text: str) -> str:
    """Text safe inside a Markdown table cell (no pipes, no line breaks)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _esc(text) -> str:
    return html.escape(str(text), quote=True)


def _short_error(error, limit: int = 400) -> str:
    text = " ".join(str(error or "no error message recorded").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ================================================================== per-target data

@dataclass
class Figure:
    caption: str
    path: str          # relative to the report folder


@dataclass
class TargetSection:
    """Everything the report shows for one target."""

    label: str
    anchor: str
    target_name: str
    target_params: dict
    cells: list[dict]
    rows: list[dict]
    columns: list[MetricSpec]
    best: dict[str, set[str]]
    published: list[dict] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _our_best(section: TargetSection, entry) -> tuple[dict | None, list[dict]]:
    """Our row with the best mean of the entry's metric (among the entry's sampler method, if it names one)
    and that sampler's finished cells; (None, []) when no run of ours has the metric."""
    spec = _SPECS.get(entry.metric)
    candidates = [r for r in section.rows if entry.our_method in (None, r.get("method"))]
    winners = best_samplers(candidates, [spec]).get(entry.metric, set()) if spec else set()
    if not winners:
        return None, []
    sampler = sorted(winners)[0]
    row = next(r for r in section.rows if r["sampler"] == sampler)
    return row, [c for c in _done(section.cells) if c.get("sampler") == sampler]


def _published_rows(section: TargetSection) -> list[dict]:
    """The published numbers for the section's target, each beside our best mean of the same metric and
    whether the two were measured under the same protocol."""
    out = []
    for entry in published_for(section.target_name, section.target_params):
        row, cells = _our_best(section, entry)
        if row is None:
            ok, reason = False, "no run of ours has this metric" + (
                f" (compared with sampler method '{entry.our_method}')" if entry.our_method else "")
        else:
            ok, reason = comparability(entry, [c.get("metrics") or {} for c in cells],
                                       [c.get("options") or {} for c in cells])
        spec = _SPECS.get(entry.metric)
        out.append({"metric": spec.label if spec else entry.metric, "value": entry.value_text(),
                    "method": entry.method, "source": entry.source, "note": entry.note,
                    "protocol": PROTOCOL_NAMES.get(entry.protocol, entry.protocol), "protocol_key": entry.protocol,
                    "ours": None if row is None else format_mean_std(row[entry.metric], row.get(f"{entry.metric}_std")),
                    "ours_sampler": None if row is None else row["sampler"], "comparable": ok, "comparability": reason})
    return out


def _sections(cells: list[dict]) -> list[TargetSection]:
    sections, anchors = [], set()
    for label, tcells in _ordered_groups(cells, "target").items():
        rows = [_aggregate(label, s, sc) for s, sc in _ordered_groups(tcells, "sampler").items()]
        columns = _columns(rows)
        anchor = "t-" + _slug(label)
        while anchor in anchors:
            anchor += "_"
        anchors.add(anchor)
        first = tcells[0]
        section = TargetSection(label, anchor, str(first.get("target_name") or label),
                                dict(first.get("target_params") or {}), tcells, rows, columns,
                                best_samplers(rows, columns))
        section.published = _published_rows(section)
        sections.append(section)
    return sections


# ================================================================== figures

def _first_done_per_sampler(cells: list[dict], kind: str, root: Path) -> dict[str, tuple[dict, Path]]:
    """Per sampler, its finished cell with the lowest seed that has artifact ``kind``."""
    out = {}
    for c in sorted(_done(cells), key=lambda c: (c.get("seed") is None, c.get("seed") or 0)):
        path = _artifact_path(c, kind, root)
        if path is not None and c["sampler"] not in out:
            out[c["sampler"]] = (c, path)
    return out


def _reference_points(target_name: str, params: dict, n: int = _REFERENCE_POINTS, seed: int = 0):
    """(points, box, note): exact draws if the target has an exact sampler, else its reference samples
    (subsampled to n), else None; the note says which, or why there are none."""
    import torch

    from .. import targets
    try:
        target = targets.get(target_name, **params)
    except Exception as e:  # noqa: BLE001 - an unknown or unloadable target must not stop the report
        return None, None, f"target '{target_name}' could not be built ({e}): no reference points"
    box = tuple(b.numpy() for b in target.box)
    g = torch.Generator().manual_seed(seed)
    try:
        x = target.reference_points(n, g)
    except Exception as e:  # noqa: BLE001
        return None, box, f"reference points unavailable ({e})"
    if x is not None:
        what = f"{n} exact draws (seed {seed})" if target.has_exact_sampler else "the target's reference samples"
        return x.detach().cpu().numpy(), box, f"reference: {what}"
    return None, box, "no reference points (no exact sampler and no reference samples)"


def _figure_samples(section: TargetSection, root: Path, figdir: Path) -> list[Figure]:
    """Samples against reference points and marginal histograms (lowest finished seed per sampler)."""
    from ..samples import Samples

    found = _first_done_per_sampler(section.cells, "samples", root)
    if not found:
        return []
    xs, lws = {}, {}
    for sampler, (cell, path) in found.items():
        s = Samples.from_npz(path)
        xs[sampler] = s.x.detach().cpu().numpy()
        lws[sampler] = None if s.log_weights is None else s.log_weights.detach().cpu().numpy()
    ref, box, note = _reference_points(section.target_name, section.target_params)
    section.notes.append(note)
    name = section.anchor[2:]
    a = plots.samples_vs_reference(xs, figdir / f"{name}_samples.png", reference=ref, box=box,
                                   title=f"{section.label}: samples (grey: reference)")
    b = plots.marginal_histograms(xs, figdir / f"{name}_marginals.png", reference=ref, log_weights=lws,
                                  title=f"{section.label}: marginals (importance-weighted where weighted)")
    return [Figure("Samples (first two coordinates, as drawn, not reweighted; lowest finished seed) over the "
                   "reference points in grey", f"{figdir.name}/{a.name}"),
            Figure("Marginal histograms of the first coordinates (importance-weighted where the sampler has "
                   "weights) against the reference", f"{figdir.name}/{b.name}")]


def _figure_training(section: TargetSection, root: Path, figdir: Path) -> list[Figure]:
    """Loss against iteration, one colour per learned sampler, one line per seed."""
    histories: dict[str, list[dict]] = {}
    for c in _done(section.cells):
        path = _artifact_path(c, "history", root)
        if path is not None:
            h = _read_history(path)
            if h.get("iteration") and h.get("loss"):
                histories.setdefault(c["sampler"], []).append(h)
    if not histories:
        return []
    p = plots.training_curves(histories, figdir / f"{section.anchor[2:]}_training.png",
                              title=f"{section.label}: training loss")
    return [Figure("Training loss against iteration (one line per seed)", f"{figdir.name}/{p.name}")]


def _figure_logz_time(section: TargetSection, figdir: Path) -> list[Figure]:
    """log Z error against wall time, one point per finished cell."""
    points = [(c["sampler"], cell_value(c, "wall_time"), cell_value(c, "log_Z_error")) for c in _done(section.cells)]
    points = [p for p in points if p[1] is not None and p[2] is not None]
    if not points:
        return []
    p = plots.log_z_error_vs_time(points, figdir / f"{section.anchor[2:]}_logz_time.png",
                                  title=f"{section.label}: log Z error vs wall time")
    return [Figure("log Z error against wall time (one point per cell, log scales)", f"{figdir.name}/{p.name}")]


def _add_figures(section: TargetSection, root: Path, figdir: Path) -> None:
    """Draw the section's figures; a figure that cannot be drawn is noted, not fatal."""
    for draw in (lambda: _figure_samples(section, root, figdir), lambda: _figure_training(section, root, figdir),
                 lambda: _figure_logz_time(section, figdir)):
        try:
            section.figures.extend(draw())
        except Exception as e:  # noqa: BLE001 - one broken artifact must not lose the whole report
            warnings.warn(f"report: a figure for '{section.label}' was skipped: {e}", RuntimeWarning, stacklevel=2)
            section.notes.append(f"a figure was skipped: {_short_error(e, 200)}")


# ================================================================== Markdown

def _metric_cell_text(row: dict, spec: MetricSpec) -> str:
    return format_mean_std(row.get(spec.key), row.get(f"{spec.key}_std"))


def _target_table_md(section: TargetSection) -> str:
    headers = ["sampler"] + [s.header for s in section.columns] + ["seeds", "failed"]
    table_rows = []
    for r in section.rows:
        d = {"sampler": _md_cell(r["sampler"]), "seeds": str(r["seeds"]), "failed": str(r["failed"])}
        for spec in section.columns:
            text = _md_cell(_metric_cell_text(r, spec))
            d[spec.header] = f"**{text}**" if r["sampler"] in section.best.get(spec.key, ()) else text
        table_rows.append(d)
    return markdown_table(table_rows, headers)


def _protocols_used(section: TargetSection) -> list[tuple[str, str]]:
    """(short name, full text) of the protocols of the section's published numbers, each once."""
    keys = dict.fromkeys(p["protocol_key"] for p in section.published)
    return [(PROTOCOL_NAMES.get(k, k), PROTOCOLS.get(k, k)) for k in keys]


def _published_table_md(section: TargetSection) -> str:
    headers = ["metric", "published", "method", "source", "ours (best)", "comparable", "protocol"]
    rows = [{"metric": p["metric"], "published": _md_cell(p["value"]),
             "method": _md_cell(p["method"] + (f" ({p['note']})" if p["note"] else "")),
             "source": _md_cell(p["source"]),
             "ours (best)": _md_cell(f"{p['ours']} ({p['ours_sampler']})" if p["ours"] else "—"),
             "comparable": _md_cell(("yes: " if p["comparable"] else "no: ") + p["comparability"]),
             "protocol": _md_cell(p["protocol"])} for p in section.published]
    notes = [f"- *{_md_cell(name)}*: {_md_cell(text)}" for name, text in _protocols_used(section)]
    return markdown_table(rows, headers) + "\n\nProtocols:\n\n" + "\n".join(notes)


def _samplers_md(cells: list[dict]) -> list[str]:
    rows = [{k: _md_cell(v) for k, v in r.items()} for r in sampler_legend(cells)]
    for r in rows:
        r["options"] = f"`{r['options']}`"
    return ["Samplers:", "", markdown_table(rows, ["sampler", "method", "preset", "options"]), ""]


def _summary_md(rows: list[dict]) -> list[str]:
    ranking = [{"sampler": _md_cell(r["sampler"]), "targets": r["targets"], "seeds": r["seeds"],
                "failed": r["failed"], "mean rank": r["mean_rank"], "ranked columns": r["ranked_columns"],
                "wins": r["wins"]} for r in sampler_ranking(rows)]
    best = [{"target": _md_cell(r["target"]), "metric": _SPECS[r["metric"]].header if r["metric"] else "—",
             "best sampler": _md_cell(r["best"] or "—"), "value": r["value"]} for r in best_per_target(rows)]
    return ["## Summary", "",
            "Mean rank over every (target, quality metric) column with at least two samplers (1 = best; NFE and "
            "wall time not ranked); wins = columns in which the sampler is best.", "",
            markdown_table(ranking, ["sampler", "targets", "seeds", "failed", "mean rank", "ranked columns", "wins"]),
            "", "Best sampler per target on its primary metric:", "",
            markdown_table(best, ["target", "metric", "best sampler", "value"]), ""]


def _metrics_legend_md(specs: list[MetricSpec]) -> list[str]:
    rows = [{"metric": s.header, "key": f"`{s.key}`", "better": s.better_text,
             "meaning": _md_cell(s.description)} for s in specs]
    return ["## Metrics", "", "Values are mean ± sample standard deviation (ddof = 1) over the finished seeds; "
            "the best mean of each column is in bold.", "",
            markdown_table(rows, ["metric", "key", "better", "meaning"]),
            ""]


def _cell_link(root_link: str, cell: dict) -> str:
    """Relative, URL-quoted link from the report folder to a cell's folder."""
    return quote(f"{root_link}/{cell.get('folder', '')}".replace("\\", "/"), safe="/._-~")


def _failed_md(failed: list[dict], root_link: str) -> list[str]:
    lines = ["## Failed cells", ""]
    if not failed:
        return lines + ["None.", ""]
    for c in failed:
        link = _cell_link(root_link, c)
        lines.append(f"- **{_md_cell(c.get('target'))} / {_md_cell(c.get('sampler'))}**, seed {c.get('seed')} "
                     f"([`{_md_cell(c.get('cell_id'))}`]({link})): {_md_cell(_short_error(c.get('error')))}")
    return lines + [""]


def _render_markdown(title: str, header: str, sections: list[TargetSection], rows: list[dict],
                     failed: list[dict], root_link: str) -> str:
    cells = [c for sec in sections for c in sec.cells]
    used = [s for s in METRIC_SPECS if any(s in sec.columns for sec in sections)]
    lines = [f"# {title}", "", header, ""]
    lines += _summary_md(rows) + _samplers_md(cells) + _metrics_legend_md(used)
    for sec in sections:
        lines += [f"## {sec.label}", "", f"Registry: `{sec.target_name}` {sec.target_params or ''}".rstrip(), "",
                  _target_table_md(sec), ""]
        if sec.published:
            lines += ["**Published reference numbers** (from the literature, not our runs):", "",
                      _published_table_md(sec), ""]
        for note in sec.notes:
            lines.append(f"*{_md_cell(note)}*  ")
        for fig in sec.figures:
            lines += ["", f"![{_md_cell(fig.caption)}]({fig.path})", "", f"*{_md_cell(fig.caption)}*"]
        lines.append("")
    lines += _failed_md(failed, root_link)
    return "\n".join(lines)


# ================================================================== HTML

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.9em; }
.table-wrap { overflow-x: auto; max-width: 100%; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
table.metrics td, table.metrics th { white-space: nowrap; }
th[scope=row], td.text { text-align: left; }
thead th { background: #f0f0f0; }
td.best { background: #e3f4e1; font-weight: bold; }
table.published { background: #fbf8ee; }
table.published caption, table.metrics caption { caption-side: top; text-align: left; font-weight: bold; }
figure { display: inline-block; margin: 0.5em 1em 1em 0; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; color: #555; max-width: 40em; }
.note { font-size: 0.85em; color: #555; font-style: italic; }
li.failed-cell code { white-space: pre-wrap; color: #a00; }
"""


def _html_table(headers: list[str], body_rows: list[str], css_class: str, caption: str = "", attrs: str = "") -> str:
    head = "".join(headers)
    cap = f"<caption>{_esc(caption)}</caption>" if caption else ""
    return (f'<div class="table-wrap"><table class="{css_class}"{attrs}>{cap}<thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body_rows)}</tbody></table></div>")


def _target_table_html(section: TargetSection) -> str:
    headers = ['<th scope="col">sampler</th>'] + [
        f'<th scope="col" data-metric="{_esc(s.key)}" title="better: {_esc(s.better_text)}">'
        f"{_esc(s.header)}</th>" for s in section.columns]
    headers += ['<th scope="col">seeds</th>', '<th scope="col">failed</th>']
    body = []
    for r in section.rows:
        tds = []
        for spec in section.columns:
            text = _esc(_metric_cell_text(r, spec))
            if r["sampler"] in section.best.get(spec.key, ()):
                tds.append(f'<td class="best" data-metric="{_esc(spec.key)}"><b>{text}</b></td>')
            else:
                tds.append(f'<td data-metric="{_esc(spec.key)}">{text}</td>')
        title = _esc(f"method {r.get('method')}")
        body.append(f'<tr data-sampler="{_esc(r["sampler"])}"><th scope="row" title="{title}">{_esc(r["sampler"])}</th>'
                    f"{''.join(tds)}<td>{r['seeds']}</td><td>{r['failed']}</td></tr>")
    return _html_table(headers, body, "metrics", attrs=f' data-target="{_esc(section.label)}"')


def _published_table_html(section: TargetSection) -> str:
    names = ["metric", "published", "method", "source", "ours (best)", "comparable", "protocol"]
    headers = [f'<th scope="col">{n}</th>' for n in names]
    body = []
    for p in section.published:
        method = p["method"] + (f" ({p['note']})" if p["note"] else "")
        ours = f"{p['ours']} ({p['ours_sampler']})" if p["ours"] else "—"
        comparable = ("yes: " if p["comparable"] else "no: ") + p["comparability"]
        cells = [p["metric"], p["value"], method, p["source"], ours, comparable, p["protocol"]]
        body.append(f'<tr class="published-row" data-comparable="{str(p["comparable"]).lower()}">'
                    + "".join(f'<td class="text">{_esc(c)}</td>' for c in cells) + "</tr>")
    table = _html_table(headers, body, "published", caption="Published reference numbers (literature, not our runs)")
    notes = "".join(f"<li><i>{_esc(name)}</i>: {_esc(text)}</li>" for name, text in _protocols_used(section))
    return f'{table}<p class="note">Protocols:</p><ul class="protocols note">{notes}</ul>'


def _summary_html(rows: list[dict]) -> str:
    ranking = sampler_ranking(rows)
    names = ["sampler", "targets", "seeds", "failed", "mean rank", "ranked columns", "wins"]
    body = [f'<tr><th scope="row">{_esc(r["sampler"])}</th>'
            + "".join(f"<td>{_esc(format_value(r[k]))}</td>"
                      for k in ("targets", "seeds", "failed", "mean_rank", "ranked_columns", "wins")) + "</tr>"
            for r in ranking]
    t1 = _html_table([f'<th scope="col">{n}</th>' for n in names], body, "summary")
    body2 = [f'<tr><th scope="row">{_esc(r["target"])}</th>'
             f'<td class="text">{_esc(_SPECS[r["metric"]].header if r["metric"] else "—")}</td>'
             f'<td class="text">{_esc(r["best"] or "—")}</td><td>{_esc(format_value(r["value"]))}</td></tr>'
             for r in best_per_target(rows)]
    t2 = _html_table([f'<th scope="col">{n}</th>' for n in ("target", "metric", "best sampler", "value")], body2,
                     "best-per-target")
    return ('<section id="summary"><h2>Summary</h2><p>Mean rank over every (target, quality metric) column with at '
            "least two samplers (1 = best; NFE and wall time not ranked); wins = columns in which the sampler is "
            f"best.</p>{t1}<p>Best sampler per target on its primary metric:</p>{t2}</section>")


def _samplers_html(cells: list[dict]) -> str:
    body = [f'<tr><th scope="row">{_esc(r["sampler"])}</th><td class="text">{_esc(r["method"])}</td>'
            f'<td class="text">{_esc(r["preset"])}</td><td class="text"><code>{_esc(r["options"])}</code></td></tr>'
            for r in sampler_legend(cells)]
    return "<p>Samplers:</p>" + _html_table([f'<th scope="col">{n}</th>' for n in ("sampler", "method", "preset",
                                                                                  "options")], body, "samplers")


def _metrics_legend_html(specs: list[MetricSpec]) -> str:
    body = [f'<tr><th scope="row">{_esc(s.header)}</th><td class="text"><code>{_esc(s.key)}</code></td>'
            f'<td class="text">{_esc(s.better_text)}</td><td class="text">{_esc(s.description)}'
            "</td></tr>" for s in specs]
    table = _html_table([f'<th scope="col">{n}</th>' for n in ("metric", "key", "better", "meaning")], body, "legend")
    return ('<section id="metrics"><h2>Metrics</h2><p>Values are mean ± sample standard deviation (ddof = 1) over '
            f"the finished seeds; the best mean of each column is highlighted and bold.</p>{table}</section>")


def _section_html(sec: TargetSection) -> str:
    parts = [f'<section class="target" id="{_esc(sec.anchor)}"><h2>{_esc(sec.label)}</h2>',
             f'<p class="note">Registry: <code>{_esc(sec.target_name)}</code> {_esc(sec.target_params or "")}</p>',
             _target_table_html(sec)]
    if sec.published:
        parts.append(_published_table_html(sec))
    parts += [f'<p class="note">{_esc(n)}</p>' for n in sec.notes]
    parts += [f'<figure><img src="{_esc(f.path)}" alt="{_esc(f.caption)}"><figcaption>{_esc(f.caption)}'
              "</figcaption></figure>" for f in sec.figures]
    return "".join(parts) + "</section>"


def _failed_html(failed: list[dict], root_link: str) -> str:
    if not failed:
        return '<section id="failed"><h2>Failed cells</h2><p>None.</p><ul id="failed-cells"></ul></section>'
    items = []
    for c in failed:
        link = _cell_link(root_link, c)
        items.append(f'<li class="failed-cell" data-cell-id="{_esc(c.get("cell_id"))}"><b>{_esc(c.get("target"))} / '
                     f'{_esc(c.get("sampler"))}</b>, seed {_esc(c.get("seed"))} (<a href="{_esc(link)}">'
                     f'{_esc(c.get("cell_id"))}</a>): <code>{_esc(_short_error(c.get("error"), 2000))}</code></li>')
    return f'<section id="failed"><h2>Failed cells</h2><ul id="failed-cells">{"".join(items)}</ul></section>'


def _render_html(title: str, header: str, sections: list[TargetSection], rows: list[dict], failed: list[dict],
                 root_link: str) -> str:
    used = [s for s in METRIC_SPECS if any(s in sec.columns for sec in sections)]
    toc = "".join(f'<li><a href="#{_esc(s.anchor)}">{_esc(s.label)}</a></li>' for s in sections)
    body = (f"<h1>{_esc(title)}</h1><p>{_esc(header)}</p>"
            f'<nav><ul><li><a href="#summary">Summary</a></li>{toc}'
            '<li><a href="#failed">Failed cells</a></li></ul></nav>'
            + _summary_html(rows) + _samplers_html([c for sec in sections for c in sec.cells])
            + _metrics_legend_html(used) + "".join(_section_html(s) for s in sections)
            + _failed_html(failed, root_link))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
            f"<style>{_CSS}</style></head><body>{body}</body></html>\n")


# ================================================================== entry point

def _header_line(cells: list[dict]) -> str:
    counts = {k: sum(c.get("status") == k for c in cells) for k in ("done", "failed", "running", "pending")}
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"{len(cells)} cells: {counts['done']} done, {counts['failed']} failed, "
            f"{counts['running'] + counts['pending']} unfinished. Generated {when}.")


def _write_text(path: Path, text: str) -> Path:
    """Write ``text`` as UTF-8 atomically (independent of the locale)."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")), binary=True)


def write_report(cells: list[dict], root: Path, out: Path | None = None, title: str = DEFAULT_TITLE) -> dict:
    """Write ``report.md``, ``report.html`` and ``figures/`` into ``out`` (default ``root/"report"``) from the
    cell records ``cells`` of the results folder ``root`` (see the module docstring for the content).

    Returns ``{"markdown": Path, "html": Path, "figures": [Path], "rows": summary_rows(cells),
    "failed": [cell_id], "notes": {target: [note]}}``."""
    root = Path(root)
    out = Path(out) if out is not None else root / "report"
    figdir = out / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    cells = with_derived_metrics(cells, root)
    sections = _sections(cells)
    for sec in sections:
        _add_figures(sec, root, figdir)
    rows = [r for sec in sections for r in sec.rows]
    failed = _failed(cells)
    root_link = Path(os.path.relpath(root.resolve(), out.resolve())).as_posix()
    header = _header_line(cells)
    md_path = _write_text(out / "report.md", _render_markdown(title, header, sections, rows, failed, root_link))
    html_path = _write_text(out / "report.html", _render_html(title, header, sections, rows, failed, root_link))
    return {"markdown": md_path, "html": html_path,
            "figures": [out / f.path for sec in sections for f in sec.figures], "rows": rows,
            "failed": [c.get("cell_id") for c in failed], "notes": {sec.label: sec.notes for sec in sections}}
