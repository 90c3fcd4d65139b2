"""Published reference numbers that the benchmark report puts beside ours.

The numbers are those collected in ``shared/PUBLISHED.md`` (one entry per number), as data: the target
(registry name and parameters), the metric (the key :func:`sampleflow.metrics.evaluate` uses for the same
quantity), the value, the method and source, the protocol of the paper, and the conditions under which
our number is measured under the same protocol.

A number is comparable with ours only under the same protocol (metric definition, number of samples,
budget). ``sample_sizes`` states the point counts the paper used (``{"n_eval": 2000, "n_ref": 2000}``
for the Beyond-ELBOs sample distances, ``{"n": 2000}`` for the gfn-diffusion log Z protocol); the
report checks them against the counts recorded with our metrics and says "protocol differs" when they
do not match. ``protocol_stated=False`` marks numbers whose protocol PUBLISHED.md does not give: the
report says so instead of claiming comparability.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field

__all__ = ["PublishedValue", "PUBLISHED", "PROTOCOLS", "PROTOCOL_NAMES", "published_for", "comparability"]

#: short descriptions of the protocols the entries refer to (keys are PublishedValue.protocol)
PROTOCOLS: dict[str, str] = {
    "BE-sinkhorn": ("Beyond-ELBOs Sinkhorn (Blessing et al., ICML 2024; also SCLD, ICLR 2025): debiased entropic "
                    "OT, squared Euclidean cost, 2000 model vs 2000 ground-truth samples; value = mean of the last "
                    "5 of 100 evaluations during training, 4 seeds; ε: the paper writes 1e-3, our sinkhorn follows "
                    "what the Beyond-ELBOs/SCLD code computes (see sampleflow/metrics/distances.py)"),
    "BE-mmd": ("Beyond-ELBOs MMD: Gaussian kernel, bandwidth = median pooled pairwise distance, diagonal kept, "
               "reported sqrt(max(MMD², 1e-20))"),
    "gfn-logZ": ("gfn-diffusion Δlog Z (Sendera et al., NeurIPS 2024): |log Ẑ − log Z| from 2000 samples; "
                 "batch 300, 25k iterations, 100 steps"),
    "AS-W2": ("AS/ASBS W2 (Havens et al. 2025; Liu et al. 2025): W2 between sample sets on particle coordinates, "
              "EFM reference samples; sample sizes not stated in PUBLISHED.md"),
    "SCLD-sinkhorn": "Sinkhorn as reported in the SCLD/ASBS tables (sample sizes not stated in PUBLISHED.md)",
    "speed-2core": ("seconds per training iteration of the peer's own code, measured by the project on a 2-core "
                    "CPU (same machine type as ours), fp32; batch 512, 100 time steps, the peer's default network "
                    "(for DIS 38,859 parameters); compare at matched settings"),
    "unstated": "protocol not stated in PUBLISHED.md",
}


#: short names of the protocols, for table cells (the full text is in PROTOCOLS)
PROTOCOL_NAMES: dict[str, str] = {
    "BE-sinkhorn": "Beyond-ELBOs Sinkhorn", "BE-mmd": "Beyond-ELBOs MMD", "gfn-logZ": "gfn-diffusion Δlog Z",
    "AS-W2": "AS/ASBS W2", "SCLD-sinkhorn": "SCLD-table Sinkhorn", "speed-2core": "2-core CPU timing",
    "unstated": "not stated",
}


@dataclass(frozen=True)
class PublishedValue:
    """One published number for one target and metric."""

    target_name: str                 # registry name, e.g. "funnel"
    target_params: dict              # registry parameters, e.g. {"dim": 10} (defaults may be left out)
    metric: str                      # our metric key, e.g. "sinkhorn", "log_Z_error", "elbo_gap", "w2"
    value: float
    method: str                      # who got the number, e.g. "SCLD" or "log-variance (LV) sampler"
    source: str                      # paper / table it comes from
    protocol: str                    # a key of PROTOCOLS
    std: float | None = None         # ± over seeds, when published
    display: str | None = None       # how to show the value when it is not a single number (a range)
    note: str = ""                   # anything else a reader must know (estimator, caveats)
    sample_sizes: dict = field(default_factory=dict)   # the paper's point counts, keyed like our metrics
    protocol_stated: bool = True
    our_method: str | None = None    # compare with our runs of this registry sampler only (None: our best)
    settings: dict = field(default_factory=dict)       # sampler options our runs must have had (cell options)

    def value_text(self) -> str:
        """The value as published: ``display`` if given, else ``value`` (± ``std``)."""
        if self.display:
            return self.display
        text = f"{self.value:g}"
        return text if self.std is None else f"{text} ± {self.std:g}"


_BE_SIZES = {"n_eval": 2000, "n_ref": 2000}
_GFN_SIZES = {"n": 2000}
_SRC_TABLE = "PUBLISHED.md (project's collection of published tables)"
_SPEED_SRC = "Richter & Berner's code (sde_sampler), timed by the project (PUBLISHED.md)"


def _be_sinkhorn(target_name: str, params: dict, value: float, method: str, source: str,
                 std: float | None = None, note: str = "") -> PublishedValue:
    return PublishedValue(target_name, params, "sinkhorn", value, method, source, "BE-sinkhorn", std=std,
                          note=note, sample_sizes=_BE_SIZES)


PUBLISHED: tuple[PublishedValue, ...] = (
    # Funnel d=10, Sinkhorn (Beyond-ELBOs protocol)
    _be_sinkhorn("funnel", {"dim": 10}, 127.1, "log-variance (LV) sampler", _SRC_TABLE),
    _be_sinkhorn("funnel", {"dim": 10}, 117.48, "SMC-ESS baseline", "SCLD paper (ICLR 2025)",
                 note="best found; SCLD itself 134.23"),
    _be_sinkhorn("funnel", {"dim": 10}, 134.23, "SCLD", "SCLD paper (ICLR 2025)"),
    # DW-4, W2 (AS/ASBS protocol)
    PublishedValue("dw4", {}, "w2", 1.04, "LV-PIS (log-variance sampler)", _SRC_TABLE, "AS-W2", std=0.29),
    PublishedValue("dw4", {}, "w2", 0.43, "ASBS", "Liu et al. 2025 (ASBS)", "AS-W2", std=0.05,
                   note="best found; AS 0.62, PIS 0.68, iDEM 0.70, DDS 0.92"),
    # ManyWell d=32
    PublishedValue("manywell", {"dim": 32}, "sinkhorn", 29.58, "log-variance (LV) sampler", _SRC_TABLE,
                   "unstated", protocol_stated=False, note="no other published value found"),
    PublishedValue("manywell", {"dim": 32}, "log_Z_error", 2.281, "log-variance (LV) sampler", _SRC_TABLE,
                   "gfn-logZ", sample_sizes=_GFN_SIZES, note="exact log Z = 164.696; estimator not stated"),
    PublishedValue("manywell", {"dim": 32}, "log_Z_error", 0.07, "gfn-diffusion TB + exploration + Langevin "
                   "param. + local search", "Sendera et al., NeurIPS 2024", "gfn-logZ", std=0.17,
                   sample_sizes=_GFN_SIZES, note="best found; estimator (IS or lower bound) not stated"),
    # 25GMM d=2, Δlog Z (gfn-diffusion protocol): IS = our log_Z_error, lower bound = our elbo_gap
    PublishedValue("gmm25", {}, "log_Z_error", 1.018, "log-variance (LV) sampler", _SRC_TABLE, "gfn-logZ",
                   sample_sizes=_GFN_SIZES, note="estimator not stated"),
    PublishedValue("gmm25", {}, "log_Z_error", 0.004, "gfn-diffusion TB + exploration + local search",
                   "Sendera et al., NeurIPS 2024", "gfn-logZ", std=0.011, sample_sizes=_GFN_SIZES,
                   note="importance-weighted (RW) estimate"),
    PublishedValue("gmm25", {}, "elbo_gap", 0.171, "gfn-diffusion TB + exploration + local search",
                   "Sendera et al., NeurIPS 2024", "gfn-logZ", std=0.013, sample_sizes=_GFN_SIZES,
                   note="ELBO-type lower-bound estimate"),
    # Mixture of Student-t d=50, Sinkhorn (BE)
    _be_sinkhorn("mos10", {"dim": 50}, 2.18e3, "log-variance (LV) sampler", _SRC_TABLE),
    _be_sinkhorn("mos10", {"dim": 50}, 656.0, "SCLD", "SCLD paper (ICLR 2025)",
                 note="best found; runner-up SMC-ESS 1477"),
    # GMM-40 d=50, Sinkhorn (BE)
    _be_sinkhorn("mog40", {"dim": 50}, 3.95e3, "log-variance (LV) sampler", _SRC_TABLE),
    _be_sinkhorn("mog40", {"dim": 50}, 3787.0, "SCLD", "SCLD paper (ICLR 2025)", std=250.0,
                 note="best found; CMCD-LV 4258, DDS 5435"),
    # Planar robot, 4 goals, d=10, Sinkhorn (BE)
    _be_sinkhorn("planar_robot_4goal", {}, 1.71, "log-variance (LV) sampler", _SRC_TABLE),
    _be_sinkhorn("planar_robot_4goal", {}, 0.40, "SCLD", "SCLD paper (ICLR 2025)",
                 note="best found; runner-up PIS 2.02"),
    # ManyWell d=64, MMD
    PublishedValue("manywell", {"dim": 64}, "mmd", 0.26, "log-variance (LV) sampler", _SRC_TABLE, "unstated",
                   protocol_stated=False, note="no other published value found (exact log Z = 329.391)"),
    # Multi-well d=5, Sinkhorn (SCLD protocol)
    PublishedValue("multiwell", {"dim": 5}, "sinkhorn", 0.15, "ASBS", "Liu et al. 2025 (ASBS)", "SCLD-sinkhorn",
                   std=0.02, note="best found; AS 0.32, SCLD 0.44, DDS 0.63, PIS 0.65; matched to the registry's "
                   "multiwell dim=5 (m=5, delta=4.0)"),
    # Speed of the peers on a 2-core CPU (Funnel-10; our cells' training seconds per iteration from history.csv)
    *(PublishedValue("funnel", {"dim": 10}, "time_per_iteration", value, method, _SPEED_SRC, "speed-2core",
                     our_method=ours, settings={"loss": loss, "batch_size": 512, "n_steps": 100})
      for value, method, ours, loss in ((0.166, "DIS, log-variance loss", "dis", "lv"),
                                        (0.182, "DIS, KL loss", "dis", "kl"),
                                        (0.155, "PIS, log-variance loss", "pis", "lv"),
                                        (0.210, "DDS, log-variance loss", "dds", "lv"))),
    # LJ-13 d=39, W2
    PublishedValue("lj13", {}, "w2", 1.56, "SGDS / ASBS", "SGDS / Liu et al. 2025 (ASBS)", "AS-W2",
                   display="1.56–1.59", note="best found (range over the two methods)"),
)


def _full_params(target_name: str, params: dict) -> dict:
    """``params`` completed with the registry factory's defaults (so {} and {"dim": 10} match for funnel)."""
    try:
        from ..targets.registry import _REGISTRY
        entry = _REGISTRY.get(target_name.lower())
    except ImportError:  # pragma: no cover - the registry is part of the package
        entry = None
    if entry is None:
        return dict(params)
    sig = inspect.signature(entry.factory)
    try:
        bound = sig.bind_partial(**params)
    except TypeError:
        return dict(params)
    bound.apply_defaults()
    return dict(bound.arguments)


def published_for(target_name: str, target_params: dict | None = None) -> list[PublishedValue]:
    """The published entries for one target (registry name + parameters, defaults filled in)."""
    want = _full_params(target_name, target_params or {})
    return [p for p in PUBLISHED
            if p.target_name == target_name.lower() and _full_params(p.target_name, p.target_params) == want]


def _mismatches(required: dict, ours: list[dict]) -> list[str]:
    """``key: ours ... vs required`` for each required key whose values in ``ours`` are not all equal to it."""
    out = []
    for key, want in required.items():
        values = sorted({repr(_plain(d[key])) for d in ours if key in d})
        if values != [repr(_plain(want))]:
            out.append(f"{key}: ours {', '.join(values) or 'not recorded'} vs {_plain(want)!r}")
    return out


def _plain(v):
    """Numbers that are integral compare as ints (2000.0 == 2000), the rest as they are."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def comparability(entry: PublishedValue, ours: list[dict], options: list[dict] | None = None) -> tuple[bool, str]:
    """Whether our runs were measured under the entry's protocol: ``ours`` are their metric dicts (one per
    cell), ``options`` their sampler options (checked against ``entry.settings``).

    Returns ``(comparable, reason)``. Only what can be checked is checked (sample sizes, settings); the
    budget and the averaging over training evaluations are stated by the protocol text."""
    if not entry.protocol_stated:
        return False, "protocol not stated: not comparable as is"
    if not ours:
        return False, "no finished run of ours"
    if not entry.sample_sizes and not entry.settings:
        return False, "protocol differs or is unknown: the published sample sizes are not stated"
    mismatched = _mismatches(entry.sample_sizes, ours)
    if mismatched:
        return False, "protocol differs (sample sizes; " + "; ".join(mismatched) + ")"
    mismatched = _mismatches(entry.settings, options or [])
    if mismatched:
        return False, "protocol differs (settings; " + "; ".join(mismatched) + ")"
    checked = ", ".join(f"{k}={v}" for k, v in {**entry.sample_sizes, **entry.settings}.items())
    return True, f"same sample sizes and settings ({checked}); training budget may differ"
