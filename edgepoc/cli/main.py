"""Entry point: builds the Typer app from the area modules and turns errors into one line."""

from __future__ import annotations

import importlib
import os
import sys

import typer

from edgepoc.errors import EdgepocError

app = typer.Typer(
    name="edgepoc",
    help="Proof of contribution for collaborative edge computing.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain Click help: wraps at any width, never truncates an option name
)

# Each module defines `register(app)`; the order is the order of `edgepoc --help`.
AREAS = ["game", "solvers", "models", "rl", "experiments", "pipeline", "chain"]


def _register_areas() -> None:
    for area in AREAS:
        name = f"edgepoc.cli.{area}"
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # the area is not built yet; anything else is a real error
                continue
            raise
        module.register(app)


_register_areas()


def main() -> None:
    try:
        app(prog_name="edgepoc")
    except EdgepocError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except MemoryError as exc:  # an input too large for this machine (numpy names the allocation it refused)
        if os.environ.get("EDGEPOC_DEBUG"):
            raise
        typer.echo(f"error: out of memory: {exc or 'an allocation failed'} (a smaller input, or a machine with more "
                   "memory)", err=True)
        sys.exit(2)
    except OSError as exc:  # a path the system refuses: not a folder, no permission, a full or read-only disk
        if os.environ.get("EDGEPOC_DEBUG"):
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        typer.echo(f"error: {where}{exc.strerror or exc}".replace("\n", " "), err=True)
        sys.exit(2)
    except Exception as exc:  # last resort: one line, the traceback only on request
        if os.environ.get("EDGEPOC_DEBUG"):
            raise
        typer.echo(f"error: internal error: {type(exc).__name__}: {exc} (set EDGEPOC_DEBUG=1 for a traceback)", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
