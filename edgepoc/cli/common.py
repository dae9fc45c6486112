"""Helpers shared by the CLI modules: output, key=value parameters, numbers from the command line."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import typer

from edgepoc.errors import InputError

if TYPE_CHECKING:
    from rich.console import Console

_T = TypeVar("_T")
WIDE = 1000  # columns for output that is not a terminal: tables are never cut, wrapped or ellipsised there


def stdout_console() -> Console:
    """A rich console on stdout: the terminal's width on a terminal, WIDE when piped or redirected."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=WIDE)


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


def check_number(flag: str, value: float, low: float = 0.0, high: float = math.inf, *, open_low: bool = False,
                 open_high: bool = False) -> float:
    """`value` of `flag` if it is finite and within its range (`open_*`: that end excluded), else a one-line
    `InputError` naming the flag; NaN fails every comparison, so it is caught here too."""
    above = value > low if open_low else value >= low
    below = value < high if open_high else value <= high
    if not (math.isfinite(value) and above and below):
        upper = "" if high == math.inf else f" and {'<' if open_high else '<='} {high:g}"
        raise InputError(f"{flag}: must be a finite number {'>' if open_low else '>='} {low:g}{upper}, got {value}")
    return value


def with_bar(what: str, total: float, run: Callable[[Callable[[float, float], None]], _T]) -> _T:
    """`run(progress)` with a progress bar of `what` on a terminal (none in logs and pipes)."""
    import sys

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn(f"[bold]{what}[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), disable=not sys.stderr.isatty(), transient=True) as bar:
        task = bar.add_task("", total=total or None)
        return run(lambda done, of: bar.update(task, completed=done, total=of))


def seed_option(param: typer.CallbackParam, value: int) -> int:
    """Callback of every seed option: numpy's seeds are non-negative, so a negative one is named here in one
    line (before: an internal error from deep inside the run)."""
    if value is not None and value < 0:
        raise InputError(f"--{param.name.replace('_', '-')}: must be an integer >= 0, got {value}")
    return value
