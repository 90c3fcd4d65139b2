"""Targets: the protocol, the benchmark zoo and the registry.

``sampleflow.targets.get("manywell", dim=32)`` builds a registered target; ``names()`` lists them.
"""
from .base import FunctionTarget, LogZ, Target, TargetInputError
from .registry import Entry, UnknownTargetError, entries, get, names, register

# the zoo: importing each module registers its targets
from . import gaussian, mixtures, student_t, funnel, wells, rings  # noqa: E402,F401
from . import logistic, hierarchical, particles, robot  # noqa: E402,F401  (targets built on data files)
from .gaussian import Gaussian  # noqa: E402
from .mixtures import GaussianMixture  # noqa: E402

__all__ = ["Target", "FunctionTarget", "LogZ", "TargetInputError", "get", "names", "entries", "register",
           "Entry", "UnknownTargetError", "Gaussian", "GaussianMixture"]
