"""The benchmark report: aggregated numbers, best markers, failed cells, published numbers, figures, and
the HTML page as a headless Chromium renders it."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sampleflow import targets
from sampleflow.bench import published
from sampleflow.bench.report import best_per_target, format_mean_std, sampler_ranking, summary_rows, write_report
from sampleflow.samples import Samples
from sampleflow.training.history import TrainHistory

# (display label, registry name, params); funnel d=10 has published numbers; its cells have metrics but no
# files (as when the artifacts were deleted): the report must still show its table and its log Z figure
TARGETS = [("gmm9", "gmm9", {}), ("gaussian d=2", "gaussian", {"dim": 2}), ("funnel", "funnel", {"dim": 10})]
WITH_FILES = ("gmm9", "gaussian d=2")
# (display label, registry method, learned?, weighted?)
SAMPLERS = [("smc", "smc", False, True), ("dis-lv", "dis", True, True), ("ula", "ula", False, False)]
SEEDS = (0, 1)
FAILED = ("gaussian d=2", "ula", 1)
FAILED_ERROR = "RuntimeError: step size diverged at step 17 <b>not bold</b>"
N = 200

# metric values per (sampler, seed): chosen so that the best sampler of each column is known
METRIC_TABLE = {
    ("smc", 0): {"log_Z_error": 0.05, "ess": 0.80, "sinkhorn": 2.0, "mmd": 0.10, "mean_error": 0.20, "emc": 0.90},
    ("smc", 1): {"log_Z_error": 0.07, "ess": 0.70, "sinkhorn": 2.4, "mmd": 0.12, "mean_error": 0.25, "emc": 0.95},
    ("dis-lv", 0): {"log_Z_error": 0.30, "ess": 0.40, "sinkhorn": 1.0, "mmd": 0.08, "mean_error": 0.10, "emc": 0.60},
    ("dis-lv", 1): {"log_Z_error": 0.50, "ess": 0.30, "sinkhorn": 1.5, "mmd": 0.09, "mean_error": 0.12, "emc": 0.70},
    ("ula", 0): {"sinkhorn": 3.0, "mmd": 0.20, "mean_error": 0.50, "emc": 0.50},
    ("ula", 1): {"sinkhorn": 3.5, "mmd": 0.30, "mean_error": 0.40, "emc": 0.55},
}
BEST = {"log_Z_error": "smc", "ess": "smc", "sinkhorn": "dis-lv", "mmd": "dis-lv", "mean_error": "dis-lv",
        "emc": "smc"}


def _metrics(sampler: str, seed: int, target_index: int) -> dict:
    """The fake metrics of a cell: the table above scaled per target, plus the sample sizes."""
    m = {k: v * (1 + target_index) for k, v in METRIC_TABLE[(sampler, seed)].items()}
    m.update(n=float(N), n_eval=float(N), n_ref=float(N), dim=2.0)
    if "log_Z_error" in m:
        m["log_Z_is"] = m["log_Z_error"]          # the targets' log Z is 0
    return m


def _write_cell_files(folder: Path, target, learned: bool, weighted: bool, seed: int) -> dict:
    """samples.npz (and history.csv for learned samplers) in ``folder``; returns the artifacts dict."""
    g = torch.Generator().manual_seed(seed)
    x = target.sample(N, generator=g) + 0.2 * torch.randn(N, target.dim, generator=g, dtype=torch.float64)
    lw = torch.randn(N, generator=g, dtype=torch.float64) if weighted else None
    Samples(x=x, log_weights=lw).to_npz(folder / "samples.npz")
    artifacts = {"samples": f"{folder.name}/samples.npz", "metrics": f"{folder.name}/metrics.json"}
    if learned:
        it = np.arange(1, 41)
        TrainHistory({"iteration": it.tolist(), "time": (0.01 * it).tolist(), "lr": [1e-3] * 40,
                      "loss": (5.0 / it + 0.1 * seed).tolist(), "grad_norm": [1.0] * 40,
                      "skipped": [0] * 40}).to_csv(folder / "history.csv")
        artifacts["history"] = f"{folder.name}/history.csv"
    return artifacts


def _make_cells(root: Path) -> list[dict]:
    cells = []
    for ti, (label, name, params) in enumerate(TARGETS):
        target = targets.get(name, **params)
        for sampler, method, learned, weighted in SAMPLERS:
            for seed in SEEDS:
                cell_id = f"{name}-{sampler}-s{seed}"
                folder = root / cell_id
                folder.mkdir(parents=True)
                failed = (label, sampler, seed) == FAILED
                cell = {"cell_id": cell_id, "suite": "test", "sampler": sampler, "method": method, "preset": "cpu",
                        "options": {}, "target": label, "target_name": name, "target_params": params, "seed": seed,
                        "n": N, "budget": {}, "folder": cell_id, "status": "failed" if failed else "done",
                        "error": FAILED_ERROR if failed else None, "wall_time": None if failed else 1.5 + seed + ti,
                        "nfe": None if failed else 1000 * (1 + seed), "metrics": {}, "artifacts": {}}
                if not failed:
                    cell["metrics"] = _metrics(sampler, seed, ti)
                if not failed and label in WITH_FILES:
                    cell["artifacts"] = _write_cell_files(folder, target, learned, weighted, seed)
                cells.append(cell)
    return cells


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    cells = _make_cells(root)
    result = write_report(cells, root, title="Test <report>")
    return {"root": root, "cells": cells, "result": result, "md": result["markdown"].read_text(encoding="utf-8"),
            "html": result["html"].read_text(encoding="utf-8")}


def _md_section(md: str, heading: str) -> str:
    """The text of the Markdown section ``## heading`` (up to the next ``## ``)."""
    start = md.index(f"\n## {heading}\n")
    end = md.find("\n## ", start + 1)
    return md[start: end if end > 0 else None]


def _md_table(section: str) -> list[dict]:
    """The first Markdown table of a section as a list of {header: cell text}."""
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    headers = [h.strip() for h in lines[0].strip("|").split(" | ")]
    rows = []
    for ln in lines[2:]:
        if not ln.startswith("| "):
            break
        rows.append(dict(zip(headers, (c.strip() for c in ln.strip().strip("|").split(" | ")))))
    return rows[: len(SAMPLERS)]


# ------------------------------------------------------------------ numbers

def test_summary_rows_mean_and_std_equal_numpy_on_the_records(report):
    rows = summary_rows(report["cells"])
    assert len(rows) == len(TARGETS) * len(SAMPLERS)
    for row in rows:
        done = [c for c in report["cells"] if c["target"] == row["target"] and c["sampler"] == row["sampler"]
                and c["status"] == "done"]
        assert row["seeds"] == len(done)
        for key in ("log_Z_error", "ess", "sinkhorn", "mmd", "mean_error", "emc", "nfe", "wall_time"):
            values = [c.get(key) if key in ("nfe", "wall_time") else c["metrics"].get(key) for c in done]
            values = [v for v in values if v is not None]
            if not values:
                assert key not in row
                continue
            assert row[key] == pytest.approx(np.mean(values), rel=1e-12)
            if len(values) > 1:
                assert row[f"{key}_std"] == pytest.approx(np.std(values, ddof=1), rel=1e-12)
            else:
                assert row[f"{key}_std"] is None


def test_markdown_table_shows_mean_std_and_bolds_the_best_per_column(report):
    table = _md_table(_md_section(report["md"], "gmm9"))
    assert [r["sampler"] for r in table] == [s[0] for s in SAMPLERS]
    assert "log Ẑ" not in table[0]                 # the estimate is shown only where log Z is unknown
    headers = {"log_Z_error": "log Z error ↓", "ess": "ESS ↑", "sinkhorn": "Sinkhorn ↓", "mmd": "MMD ↓",
               "mean_error": "mean error ↓", "emc": "EMC ↑"}
    for key, header in headers.items():
        bold = [r["sampler"] for r in table if r[header].startswith("**")]
        assert bold == [BEST[key]], (key, table)
    smc = next(r for r in table if r["sampler"] == "smc")
    vals = [METRIC_TABLE[("smc", s)]["sinkhorn"] for s in SEEDS]
    assert smc["Sinkhorn ↓"] == format_mean_std(np.mean(vals), np.std(vals, ddof=1))
    ula = next(r for r in table if r["sampler"] == "ula")
    assert ula["log Z error ↓"] == "—" and ula["seeds"] == "2" and ula["failed"] == "0"
    # every sampler has the same mean NFE on gmm9 (1000 and 2000 over the two seeds): ties are all marked
    assert all(r["NFE ↓"] == "**1500 ± 710**" for r in table)


def test_summary_ranks_samplers_across_targets_and_names_the_best_per_target(report):
    rows = summary_rows(report["cells"])
    # per target: smc ranks 1,1,2,2,2,1 and dis-lv 2,2,1,1,1,2 over (log Z error, ESS, Sinkhorn, MMD, mean
    # error, EMC); ula 3 in the four columns where it has values (it has no log weights)
    ranking = {r["sampler"]: r for r in sampler_ranking(rows)}
    assert ranking["smc"]["mean_rank"] == ranking["dis-lv"]["mean_rank"] == 1.5
    assert ranking["ula"]["mean_rank"] == 3.0
    assert (ranking["smc"]["wins"], ranking["dis-lv"]["wins"], ranking["ula"]["wins"]) == (9, 9, 0)
    assert (ranking["ula"]["seeds"], ranking["ula"]["failed"]) == (5, 1)
    best = best_per_target(rows)
    assert [b["target"] for b in best] == [t[0] for t in TARGETS]
    for i, b in enumerate(best):
        assert (b["metric"], b["best"]) == ("log_Z_error", "smc")
        assert b["value"] == pytest.approx(np.mean([0.05, 0.07]) * (1 + i))
    summary = _md_section(report["md"], "Summary")
    assert "| smc | 3 | 6 | 0 | 1.5 | 18 | 9 |" in summary


def test_training_seconds_per_iteration_come_from_history_csv(report):
    rows = {(r["target"], r["sampler"]): r for r in summary_rows(report["cells"], report["root"])}
    assert rows[("gmm9", "dis-lv")]["time_per_iteration"] == pytest.approx(0.01)   # time = 0.01 * iteration
    assert "time_per_iteration" not in rows[("gmm9", "smc")]                        # no history: no column
    assert "time_per_iteration" not in summary_rows(report["cells"])[1]              # needs the results root
    assert "s / iteration ↓" in _md_table(_md_section(report["md"], "gmm9"))[0]


def test_failed_cells_are_counted_and_listed_with_their_error(report):
    gauss = _md_table(_md_section(report["md"], "gaussian d=2"))
    ula = next(r for r in gauss if r["sampler"] == "ula")
    assert (ula["seeds"], ula["failed"]) == ("1", "1")
    assert ula["Sinkhorn ↓"] == "6"                          # one seed: the value without a spread
    failed = _md_section(report["md"], "Failed cells")
    assert "gaussian-ula-s1" in failed and "step size diverged at step 17" in failed
    assert report["result"]["failed"] == ["gaussian-ula-s1"]
    assert "(../gaussian-ula-s1)" in failed                  # relative link from report/ to the cell folder
    # HTML escapes the message instead of rendering it
    assert "&lt;b&gt;not bold&lt;/b&gt;" in report["html"] and "<b>not bold</b>" not in report["html"]
    assert "<title>Test &lt;report&gt;</title>" in report["html"]


def test_published_numbers_appear_for_funnel_with_source_and_protocol(report):
    funnel = _md_section(report["md"], "funnel")
    assert "117.48" in funnel and "127.1" in funnel and "134.2" in funnel
    assert "SCLD paper" in funnel and "Beyond-ELBOs Sinkhorn" in funnel
    assert "protocol differs" in funnel and "n_eval: ours 200 vs 2000" in funnel   # our runs used 200 points
    for other in ("gmm9", "gaussian d=2"):
        assert "Published reference numbers" not in _md_section(report["md"], other)


def test_published_lookup_fills_registry_defaults_and_checks_sample_sizes():
    funnel = published.published_for("funnel", {})
    assert {p.value for p in funnel if p.metric == "sinkhorn"} == {127.1, 117.48, 134.23}
    assert {p.value for p in funnel if p.metric == "time_per_iteration"} == {0.166, 0.182, 0.155, 0.210}
    assert published.published_for("funnel", {"dim": 10}) == published.published_for("funnel", {})
    assert published.published_for("funnel", {"dim": 5}) == []
    assert [p.value for p in published.published_for("manywell", {"dim": 64})] == [0.26]
    entry = published.published_for("funnel", {"dim": 10})[0]
    same = published.comparability(entry, [{"n_eval": 2000.0, "n_ref": 2000.0}] * 2)
    assert same[0] is True
    differs = published.comparability(entry, [{"n_eval": 2000.0, "n_ref": 500.0}])
    assert differs[0] is False and "protocol differs" in differs[1]
    speed = next(p for p in published.published_for("funnel", {}) if p.value == 0.166)
    assert speed.metric == "time_per_iteration" and speed.our_method == "dis"
    matched = {"loss": "lv", "batch_size": 512, "n_steps": 100, "lr": 1e-3}
    assert published.comparability(speed, [{}], [matched])[0] is True
    ok, why = published.comparability(speed, [{}], [dict(matched, batch_size=2048)])
    assert not ok and "batch_size: ours 2048 vs 512" in why
    unstated = published.published_for("manywell", {"dim": 64})[0]
    assert published.comparability(unstated, [{"n_eval": 2000.0}])[0] is False


def test_figures_are_written_per_target(report):
    figures = report["result"]["figures"]
    names = {p.name for p in figures}
    expected = {f"{slug}_{kind}.png" for slug in ("gmm9", "gaussian_d_2")
                for kind in ("samples", "marginals", "training", "logz_time")} | {"funnel_logz_time.png"}
    assert names == expected
    for p in figures:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for p in figures:   # relative links in both documents
        rel = f"figures/{p.name}"
        assert f"({rel})" in report["md"] and f'src="{rel}"' in report["html"]


def test_report_survives_missing_artifacts_and_unknown_targets(tmp_path):
    cells = [{"cell_id": "a", "sampler": "smc", "method": "smc", "target": "nowhere", "target_name": "no_such_target",
              "target_params": {}, "seed": 0, "status": "done", "folder": "a", "wall_time": 1.0, "nfe": 10,
              "metrics": {"sinkhorn": 1.0, "log_Z_is": -3.5}, "artifacts": {"samples": "a/samples.npz"}},
             {"cell_id": "b", "sampler": "smc", "method": "smc", "target": "nowhere", "target_name": "no_such_target",
              "target_params": {}, "seed": 1, "status": "pending", "folder": "b", "wall_time": None, "nfe": None,
              "metrics": {}, "artifacts": {}}]
    result = write_report(cells, tmp_path, out=tmp_path / "out")
    assert result["figures"] == [] and result["failed"] == []
    md = result["markdown"].read_text(encoding="utf-8")
    assert "1 unfinished" in md and "| smc | 1 | 1 | 0 |" in md
    # no known log Z: the estimate itself is shown, without a direction and without a best marker
    assert "| sampler | log Ẑ | Sinkhorn ↓ | NFE ↓ | wall time [s] ↓ | seeds | failed |" in md
    assert "| smc | -3.5 | **1** | **10** | **1** | 1 | 0 |" in md



# ------------------------------------------------------------------ the page in a real browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def _chromium_path() -> str | None:
    return CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")


def test_html_report_renders_in_headless_chromium(report):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (Python package) is not installed")
    executable = _chromium_path()
    if executable is None:
        pytest.skip(f"no Chromium executable at {CHROMIUM} or on PATH")
    url = report["result"]["html"].resolve().as_uri()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(url, wait_until="load")
            page.wait_for_function("Array.from(document.images).every(i => i.complete)", timeout=10_000)
            title = page.title()
            tables = page.evaluate("""() => Array.from(document.querySelectorAll('table.metrics')).map(t => ({
                target: t.dataset.target,
                headers: Array.from(t.querySelectorAll('thead th')).map(th => th.textContent),
                rows: Array.from(t.querySelectorAll('tbody tr')).map(tr => tr.dataset.sampler),
                best: Array.from(t.querySelectorAll('td.best')).map(td => [td.closest('tr').dataset.sampler,
                    td.dataset.metric, getComputedStyle(td).fontWeight, td.querySelector('b') !== null]),
            }))""")
            images = page.evaluate(
                "() => Array.from(document.images).map(i => [i.getAttribute('src'), i.naturalWidth])")
            failed = page.locator("#failed-cells li").all_inner_texts()
            published_rows = page.locator("#t-funnel table.published tbody tr").all_inner_texts()
        finally:
            browser.close()
    assert title == "Test <report>"
    assert [t["target"] for t in tables] == [t[0] for t in TARGETS]
    for t in tables:
        assert t["headers"][:3] == ["sampler", "log Z error ↓", "ESS ↑"]
        assert "Sinkhorn ↓" in t["headers"] and "seeds" in t["headers"] and "failed" in t["headers"]
        assert len(t["rows"]) == len(SAMPLERS)
        best = {metric: sampler for sampler, metric, _, _ in t["best"]}
        for key, sampler in BEST.items():
            assert best[key] == sampler, (t["target"], key)
        assert all(int(weight) >= 700 and has_b for _, _, weight, has_b in t["best"])
    assert len(images) == 4 * len(WITH_FILES) + 1
    assert all(width > 0 for _, width in images), images
    assert len(failed) == 1 and "gaussian-ula-s1" in failed[0] and "<b>not bold</b>" in failed[0]
    assert any("117.48" in r for r in published_rows) and any("127.1" in r for r in published_rows)
