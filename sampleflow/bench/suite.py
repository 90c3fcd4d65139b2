"""Benchmark suites: a YAML grid of samplers × targets × seeds with a per-run budget, expanded into cells.

A suite file::

    name: quick
    description: a few samplers on three targets, under ~10 minutes on 2 CPU cores
    n: 2000                          # samples drawn per cell (evaluated against the target)
    seeds: [0, 1]
    budget: {time_budget: 60}        # default per cell: iterations and/or time_budget (seconds)
    targets:
      - gmm9                         # a registry name ...
      - {name: funnel, params: {dim: 10}, label: funnel}   # ... or a name with parameters
    samplers:
      - {label: smc, sampler: smc, preset: cpu}
      - {label: dis-lv, sampler: dis, preset: cpu, options: {loss: lv}, budget: {iterations: 300}}
    exclude:                         # optional: cells to leave out (by labels)
      - {sampler: dis-lv, target: funnel}

Budgets: a learned sampler trains for ``iterations`` (overriding its preset) and stops at ``time_budget``
seconds, whichever comes first; a particle or chain sampler takes ``iterations`` as its number of steps
(``n_steps``) and has no time budget (its cost is fixed by its config).

Each cell has a stable id: labels, seed and a short hash of everything that determines its result, so that
a changed option makes a new cell instead of silently reusing an old result.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

__all__ = ["Suite", "SamplerSpec", "TargetSpec", "Cell", "load_suite", "shipped_suites", "SuiteError"]

BUDGET_KEYS = ("iterations", "time_budget")


class SuiteError(ValueError):
    """A suite file that cannot be used; the message names the file and the offending entry."""


@dataclass(frozen=True)
class TargetSpec:
    name: str
    params: dict = field(default_factory=dict)
    label: str = ""

    def __post_init__(self):
        if not self.label:
            extra = " ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
            object.__setattr__(self, "label", f"{self.name} {extra}".strip())


@dataclass(frozen=True)
class SamplerSpec:
    sampler: str
    preset: str = "default"
    options: dict = field(default_factory=dict)
    budget: dict = field(default_factory=dict)
    label: str = ""

    def __post_init__(self):
        if not self.label:
            object.__setattr__(self, "label", self.sampler if self.preset == "default" else f"{self.sampler}-{self.preset}")


@dataclass(frozen=True)
class Cell:
    """One run: a sampler on a target with a seed. ``spec()`` is the picklable dict the executors carry."""

    suite: str
    sampler: SamplerSpec
    target: TargetSpec
    seed: int
    n: int
    budget: dict

    def key(self) -> dict:
        """Everything that determines the cell's result (the id hashes it)."""
        return {"sampler": self.sampler.sampler, "preset": self.sampler.preset, "options": self.sampler.options,
                "target": self.target.name, "target_params": self.target.params, "seed": self.seed, "n": self.n,
                "budget": self.budget}

    @property
    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.key(), sort_keys=True, default=str).encode()).hexdigest()[:10]

    @property
    def cell_id(self) -> str:
        return f"{_slug(self.target.label)}__{_slug(self.sampler.label)}__s{self.seed}__{self.config_hash}"

    @property
    def folder(self) -> str:
        """The cell's folder, relative to the results root."""
        return f"cells/{self.cell_id}"

    def spec(self) -> dict:
        return {"cell_id": self.cell_id, "suite": self.suite, "sampler": self.sampler.label,
                "method": self.sampler.sampler, "preset": self.sampler.preset, "options": dict(self.sampler.options),
                "target": self.target.label, "target_name": self.target.name,
                "target_params": dict(self.target.params), "seed": self.seed, "n": self.n,
                "budget": dict(self.budget), "folder": self.folder, "config_hash": self.config_hash}


@dataclass(frozen=True)
class Suite:
    name: str
    samplers: tuple[SamplerSpec, ...]
    targets: tuple[TargetSpec, ...]
    seeds: tuple[int, ...] = (0,)
    n: int = 2000
    budget: dict = field(default_factory=dict)
    exclude: tuple[tuple[str, str], ...] = ()
    description: str = ""
    source: str = ""

    def cells(self) -> list[Cell]:
        """The grid in a fixed order: target, then sampler, then seed."""
        out = []
        for t in self.targets:
            for s in self.samplers:
                if (s.label, t.label) in self.exclude:
                    continue
                budget = {**self.budget, **s.budget}
                out += [Cell(self.name, s, t, seed, self.n, budget) for seed in self.seeds]
        return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-") or "x"


def shipped_suites() -> dict[str, Path]:
    """Suites shipped with the package: {name: path}."""
    folder = resources.files("sampleflow.bench") / "suites"
    return {p.name[:-5]: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yaml")}


def load_suite(name_or_path: str | Path) -> Suite:
    """A shipped suite by name (``quick``, ``standard``, ``paper``) or a YAML file by path."""
    path = Path(name_or_path)
    if not path.is_file():
        shipped = shipped_suites()
        if str(name_or_path) not in shipped:
            raise SuiteError(f"suite {str(name_or_path)!r} is neither a file nor a shipped suite "
                             f"(shipped: {sorted(shipped)})")
        path = shipped[str(name_or_path)]
    import yaml
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SuiteError(f"{path}: not valid YAML: {e}") from None
    return parse_suite(data, source=str(path))


def parse_suite(data, source: str = "<dict>") -> Suite:
    """A :class:`Suite` from the parsed YAML; every error names the file and the entry."""
    def fail(msg):
        raise SuiteError(f"{source}: {msg}")

    if not isinstance(data, dict):
        fail("a suite must be a mapping with keys name, samplers, targets")
    unknown = sorted(set(data) - {"name", "description", "n", "seeds", "budget", "targets", "samplers", "exclude"})
    if unknown:
        fail(f"unknown key(s) {unknown}")
    name = data.get("name") or Path(source).stem
    n = data.get("n", 2000)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        fail(f"n must be a positive integer, got {n!r}")
    seeds = data.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        fail(f"seeds must be a non-empty list of integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        fail(f"seeds repeat: {seeds}")
    budget = _budget(data.get("budget", {}), "budget", fail)
    targets = tuple(_target(t, i, fail) for i, t in enumerate(_list(data, "targets", fail)))
    samplers = tuple(_sampler(s, i, fail) for i, s in enumerate(_list(data, "samplers", fail)))
    for what, specs in (("target", targets), ("sampler", samplers)):
        labels = [s.label for s in specs]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            fail(f"{what} labels repeat: {dup} (give each entry its own 'label')")
    exclude = []
    for i, e in enumerate(data.get("exclude") or []):
        if not isinstance(e, dict) or set(e) != {"sampler", "target"}:
            fail(f"exclude[{i}] must be a mapping {{sampler: LABEL, target: LABEL}}, got {e!r}")
        exclude.append((e["sampler"], e["target"]))
    return Suite(name=str(name), samplers=samplers, targets=targets, seeds=tuple(seeds), n=n, budget=budget,
                 exclude=tuple(exclude), description=str(data.get("description", "")), source=source)


def _list(data, key, fail) -> list:
    v = data.get(key)
    if not isinstance(v, list) or not v:
        fail(f"'{key}' must be a non-empty list")
    return v


def _budget(b, where, fail) -> dict:
    if not isinstance(b, dict):
        fail(f"{where} must be a mapping with keys {list(BUDGET_KEYS)}, got {b!r}")
    bad = sorted(set(b) - set(BUDGET_KEYS))
    if bad:
        fail(f"{where}: unknown key(s) {bad}; a budget has {list(BUDGET_KEYS)}")
    it, tb = b.get("iterations"), b.get("time_budget")
    if it is not None and (not isinstance(it, int) or isinstance(it, bool) or it < 1):
        fail(f"{where}.iterations must be a positive integer, got {it!r}")
    if tb is not None and (not isinstance(tb, (int, float)) or isinstance(tb, bool) or tb <= 0):
        fail(f"{where}.time_budget must be a positive number of seconds, got {tb!r}")
    return dict(b)


def _target(t, i, fail) -> TargetSpec:
    from ..targets import names
    if isinstance(t, str):
        t = {"name": t}
    if not isinstance(t, dict) or "name" not in t or set(t) - {"name", "params", "label"}:
        fail(f"targets[{i}] must be a registry name or {{name, params, label}}, got {t!r}")
    if t["name"] not in names():
        fail(f"targets[{i}]: unknown target {t['name']!r} (see `sampleflow targets`)")
    params = t.get("params") or {}
    if not isinstance(params, dict):
        fail(f"targets[{i}].params must be a mapping, got {params!r}")
    return TargetSpec(t["name"], params, str(t.get("label", "")))


def _sampler(s, i, fail) -> SamplerSpec:
    from .. import samplers
    if isinstance(s, str):
        s = {"sampler": s}
    if not isinstance(s, dict) or "sampler" not in s or set(s) - {"sampler", "preset", "options", "budget", "label"}:
        fail(f"samplers[{i}] must be a name or {{sampler, preset, options, budget, label}}, got {s!r}")
    if s["sampler"] not in samplers.names():
        fail(f"samplers[{i}]: unknown sampler {s['sampler']!r} (known: {samplers.names()})")
    cls = samplers.get(s["sampler"])
    preset, options = s.get("preset", "default"), s.get("options") or {}
    try:
        cls.make_config(preset, **options)          # unknown preset or option: fail now, not mid-suite
    except (ValueError, TypeError) as e:
        fail(f"samplers[{i}] ({s['sampler']}): {e}")
    budget = _budget(s.get("budget") or {}, f"samplers[{i}].budget", fail)
    return SamplerSpec(s["sampler"], preset, dict(options), budget, str(s.get("label", "")))


def with_overrides(suite: Suite, **changes) -> Suite:
    """A copy of ``suite`` with fields replaced (e.g. seeds, n, budget) — for tests and the CLI."""
    return dataclasses.replace(suite, **changes)
