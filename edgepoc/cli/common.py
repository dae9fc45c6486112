"""Helpers shared by the CLI modules: output, key=value parameters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from edgepoc.errors import InputError


def print_json(doc: Any) -> None:
    typer.echo(json.dumps(doc, indent=None, allow_nan=False))


def parse_params(pairs: list[str] | None) -> dict[str, Any]:
    """`["pop=200", "mutation=0.05"]` -> `{"pop": 200, "mutation": 0.05}` (values parsed as JSON when they can be)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"--param: expected key=value, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def ensure_parent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
