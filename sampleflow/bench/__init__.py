"""The benchmark suite: YAML suites of samplers × targets × seeds (:mod:`.suite`), one cell run end to end
(:mod:`.cell`), executors (:mod:`.executors`: this process, a process pool, Ray), the runner with skip and
resume (:mod:`.runner`), the SQLite results store (:mod:`.store`) and the report (:mod:`.report`)."""
from .suite import Cell, SamplerSpec, Suite, SuiteError, TargetSpec, load_suite, shipped_suites

__all__ = ["Cell", "SamplerSpec", "Suite", "SuiteError", "TargetSpec", "load_suite", "shipped_suites"]
