"""User targets from a Python file: ``path/to/file.py:function`` (a batched log-density)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from .base import FunctionTarget, TargetInputError

__all__ = ["load_function_target", "is_function_spec"]


def is_function_spec(spec: str) -> bool:
    """True for 'file.py:function' (as opposed to a registry name)."""
    path, sep, fn = spec.rpartition(":")
    return bool(sep) and path.endswith(".py") and bool(fn)


def load_function_target(spec: str, dim: int | None) -> FunctionTarget:
    """Import ``function`` from ``file.py`` and wrap it as a target of dimension ``dim``."""
    path, _, fn_name = spec.rpartition(":")
    if dim is None:
        raise TargetInputError(f"--dim is required for a target given as a function ({spec})")
    file = Path(path)
    if not file.is_file():
        raise TargetInputError(f"target file not found: {file}")
    mod_name = f"sampleflow_user_{abs(hash(str(file.resolve())))}"
    mod_spec = importlib.util.spec_from_file_location(mod_name, file)
    module = importlib.util.module_from_spec(mod_spec)
    sys.modules[mod_name] = module
    mod_spec.loader.exec_module(module)
    fn = getattr(module, fn_name, None)
    if fn is None or not callable(fn):
        raise TargetInputError(f"{file} has no function '{fn_name}'")
    return FunctionTarget(fn, dim, name=f"{file.stem}:{fn_name}")
