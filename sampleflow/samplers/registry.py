"""Registry of samplers by short lower-case name (``ula``, ``smc``, ``dis``, ...)."""
from __future__ import annotations


from .._names import unknown_name_message
from .base import Sampler

__all__ = ["register", "get", "names", "UnknownSamplerError"]

_REGISTRY: dict[str, type[Sampler]] = {}


class UnknownSamplerError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def register(cls: type[Sampler]) -> type[Sampler]:
    """Class decorator: register ``cls`` under ``cls.name``."""
    if not cls.name or cls.name != cls.name.lower():
        raise ValueError(f"sampler class {cls.__name__} needs a lower-case name, got {cls.name!r}")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"sampler name '{cls.name}' is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str) -> type[Sampler]:
    """The sampler class registered as ``name``."""
    if not isinstance(name, str):
        raise TypeError(f"sampler name must be a string, got {type(name).__name__}")
    cls = _REGISTRY.get(name.lower())
    if cls is None:
        raise UnknownSamplerError(unknown_name_message("sampler", name, names()))
    return cls
