"""Shared by the registries: the message for an unknown name, with close matches."""
from __future__ import annotations

import difflib

__all__ = ["unknown_name_message"]


def unknown_name_message(kind: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name.lower(), known, n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown {kind} '{name}'.{hint} Known {kind}s: {', '.join(known)}"
