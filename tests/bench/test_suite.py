"""Suites: YAML parsing, the cell grid, stable ids, and clear errors for bad suites."""
import pytest

from sampleflow.bench import SuiteError, load_suite, shipped_suites
from sampleflow.bench.suite import parse_suite

BASE = {"name": "t", "n": 100, "seeds": [0, 1],
        "targets": ["gmm9", {"name": "funnel", "params": {"dim": 10}, "label": "funnel"}],
        "samplers": [{"sampler": "smc", "preset": "cpu"},
                     {"label": "dis-lv", "sampler": "dis", "preset": "test", "options": {"loss": "lv"},
                      "budget": {"iterations": 20}}],
        "budget": {"time_budget": 30}}


def test_grid_budget_and_ids():
    suite = parse_suite(BASE)
    cells = suite.cells()
    assert len(cells) == 2 * 2 * 2
    assert [c.sampler.label for c in cells[:4]] == ["smc-cpu", "smc-cpu", "dis-lv", "dis-lv"]
    dis = cells[2]
    assert dis.budget == {"time_budget": 30, "iterations": 20}       # sampler budget on top of the suite's
    assert len({c.cell_id for c in cells}) == len(cells)
    assert parse_suite(BASE).cells()[2].cell_id == dis.cell_id        # stable across parses
    changed = parse_suite({**BASE, "n": 200}).cells()[2]
    assert changed.cell_id != dis.cell_id                              # a changed setting is a new cell
    spec = dis.spec()
    assert spec["method"] == "dis" and spec["target_params"] == {} and spec["folder"].startswith("cells/")
    ex = parse_suite({**BASE, "exclude": [{"sampler": "dis-lv", "target": "funnel"}]})
    assert len(ex.cells()) == 6


def test_shipped_suites_parse():
    names = shipped_suites()
    assert {"quick", "standard", "paper"} <= set(names)
    quick = load_suite("quick")
    assert quick.name == "quick" and len(quick.cells()) >= 10
    assert {t.name for t in quick.targets} >= {"gmm9", "funnel"}
    # every shipped suite parses: its targets exist and every sampler's preset and options build a config
    standard, paper = load_suite("standard"), load_suite("paper")
    assert {s.sampler for s in standard.samplers} == {"ula", "mala", "hmc", "ais", "smc", "pt", "svgd", "sbtm", "pis",
                                                       "dis", "dds", "bridge", "cmcd", "pinn"}
    assert len(paper.seeds) == 4 and paper.n == 2000


@pytest.mark.parametrize("change, message", [
    ({"samplers": [{"sampler": "nope"}]}, "unknown sampler 'nope'"),
    ({"targets": ["nowhere"]}, "unknown target 'nowhere'"),
    ({"samplers": [{"sampler": "smc", "preset": "huge"}]}, "unknown preset 'huge'"),
    ({"samplers": [{"sampler": "smc", "options": {"bogus": 1}}]}, "bogus"),
    ({"seeds": []}, "seeds"),
    ({"n": 0}, "n must be a positive integer"),
    ({"budget": {"iterations": -1}}, "budget.iterations"),
    ({"budget": {"hours": 1}}, "unknown key"),
    ({"samplers": ["smc", "smc"]}, "labels repeat"),
    ({"colour": "red"}, "unknown key"),
])
def test_bad_suites_name_the_entry(change, message):
    with pytest.raises(SuiteError, match=message):
        parse_suite({**BASE, **change}, source="bad.yaml")


def test_missing_suite_and_bad_yaml(tmp_path):
    with pytest.raises(SuiteError, match="neither a file nor a shipped suite"):
        load_suite("no-such-suite")
    p = tmp_path / "s.yaml"
    p.write_text("name: [unclosed\n")
    with pytest.raises(SuiteError, match="not valid YAML"):
        load_suite(p)
