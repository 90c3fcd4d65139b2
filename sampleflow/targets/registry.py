"""Registry of named targets: ``get("funnel")``, ``get("manywell", dim=32)``, ``names()``."""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable

from .._names import unknown_name_message
from .base import Target

__all__ = ["register", "get", "names", "entries", "UnknownTargetError", "Entry"]


class UnknownTargetError(KeyError):
    """An unknown target name (a KeyError whose message lists the known names)."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain message
        return str(self.args[0])


@dataclass(frozen=True)
class Entry:
    """One registered family. ``variants`` are the parameter sets that listings and suites show
    (e.g. ManyWell at dim 32, 50 and 64); ``get`` accepts any parameters the factory takes."""

    name: str
    factory: Callable[..., Target]
    description: str = ""
    variants: tuple[dict, ...] = field(default=({},))


_REGISTRY: dict[str, Entry] = {}


def register(name: str, factory: Callable[..., Target], description: str = "",
             variants: tuple[dict, ...] | list[dict] = ({},)) -> None:
    key = name.lower()
    if key in _REGISTRY and _REGISTRY[key].factory is not factory:
        raise ValueError(f"target name '{name}' is already registered")
    _REGISTRY[key] = Entry(key, factory, description, tuple(variants))


def names() -> list[str]:
    """Registered target names, sorted."""
    return sorted(_REGISTRY)


def entries() -> list[Entry]:
    return [_REGISTRY[k] for k in names()]


def get(name: str, **params) -> Target:
    """The target registered as ``name``, built with ``params`` (e.g. ``dim=32``).

    A target without a closed-form log Z, built with its default parameters, gets the reference value
    stored in :mod:`sampleflow.targets.reference_values` (with its error and provenance), if any."""
    if not isinstance(name, str):
        raise TypeError(f"target name must be a string, got {type(name).__name__}")
    entry = _REGISTRY.get(name.lower())
    if entry is None:
        raise UnknownTargetError(unknown_name_message("target", name, names()))
    sig = inspect.signature(entry.factory)
    try:
        sig.bind(**params)
    except TypeError:
        accepted = [p for p in sig.parameters if not p.startswith("_")]
        bad = sorted(set(params) - set(accepted))
        raise TypeError(f"target '{entry.name}' does not take parameter(s) {bad}; it takes {accepted}") from None
    target = entry.factory(**params)
    if not params and target.log_Z is None:
        # the registry's own benchmark instance: attach the stored reference log Z, if there is one
        from .reference_values import REFERENCE_LOG_Z
        target._log_Z = REFERENCE_LOG_Z.get(entry.name)
    return target
