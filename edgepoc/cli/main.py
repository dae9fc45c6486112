"""Entry point: builds the Typer app from the area modules and turns errors into one line."""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
import time

import typer

from edgepoc.errors import EdgepocError, Interrupted

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


def _show_usage_error(self, file=None) -> None:
    """A wrong option or argument in one line, as every other refusal (Click prints usage, a hint and the error on
    three)."""
    command = self.ctx.command_path if getattr(self, "ctx", None) is not None else "edgepoc"
    typer.echo(f"error: {self.format_message().rstrip('.')} (see `{command} --help`)".replace("\n", " "), err=True)


def _one_line_usage_errors() -> None:
    """Typer parses with Click, or in newer releases with its own copy of it (`typer._click`): patch both."""
    for module in ("click.exceptions", "typer._click.exceptions"):
        try:
            usage_error = importlib.import_module(module).UsageError
        except (ImportError, AttributeError):
            continue
        usage_error.show = _show_usage_error


_one_line_usage_errors()


def main() -> None:
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where SIGINT is ignored (`cmd &`)
        signal.signal(signal.SIGINT, _ctrl_c)
    try:
        app(prog_name="edgepoc")
    except EdgepocError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except Interrupted as exc:
        typer.echo(f"interrupted: {exc}", err=True)
        sys.exit(130)
    except SystemExit as exc:
        if _silent_ctrl_c(exc):
            typer.echo(f"interrupted: {INTERRUPTED}", err=True)
        raise
    except Exception as exc:  # one line, the traceback only on request
        if _CTRL_C and not os.environ.get("EDGEPOC_DEBUG"):  # Ctrl-C that a library turned into another error
            typer.echo(f"interrupted: {INTERRUPTED}", err=True)
            sys.exit(130)
        if os.environ.get("EDGEPOC_DEBUG"):
            raise
        message, code = _one_line(exc)
        typer.echo(f"error: {message}", err=True)
        sys.exit(code)


# Typer turns Ctrl-C into a silent exit 130; a command that did not say what it kept gets this line
INTERRUPTED = "stopped before it finished"
_CTRL_C: list[float] = []  # when Ctrl-C came, if it did


def _ctrl_c(signum, frame) -> None:
    """Python's own SIGINT handler (raise KeyboardInterrupt), remembering that it came: libraries can turn the
    KeyboardInterrupt into another error on its way up (compiled code calling Python: a SystemError), which would
    otherwise read as an internal error. Inside llvmlite (Numba compiling) it is not raised but sent again a moment
    later: raised in llvmlite's ctypes callbacks it was printed as "Exception ignored ... Traceback" and dropped,
    and the command either ran on as if nothing had been pressed or failed with "no compiled object yet"."""
    _CTRL_C.append(time.monotonic())
    if _in_llvmlite(frame):
        threading.Timer(0.02, os.kill, (os.getpid(), signal.SIGINT)).start()
        return
    raise KeyboardInterrupt


def _in_llvmlite(frame) -> bool:
    while frame is not None:
        if f"{os.sep}llvmlite{os.sep}" in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


def _silent_ctrl_c(exc: SystemExit) -> bool:
    """Typer's exit 130 for a Ctrl-C no command reported (`raise Exit(130) from KeyboardInterrupt`); a command that
    said what went raises its own Exit(130), with no KeyboardInterrupt as its cause."""
    exit_ = exc.__context__
    return exc.code == 130 and exit_ is not None and isinstance(exit_.__cause__, KeyboardInterrupt)


def _one_line(exc: Exception) -> tuple[str, int]:
    """(message, exit code) of an error that is not an `EdgepocError`: the machine refusing the input (memory, a
    path the system refuses) is the user's to fix, exit 2; anything else is ours, exit 1."""
    if isinstance(exc, MemoryError):  # an input too large for this machine (numpy names the allocation it refused)
        return (f"out of memory: {exc or 'an allocation failed'} (a smaller input, or a machine with more memory)",
                2)
    if isinstance(exc, OSError):  # not a folder, no permission, a full or read-only disk
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}".replace("\n", " "), 2
    return f"internal error: {type(exc).__name__}: {exc} (set EDGEPOC_DEBUG=1 for a traceback)", 1


if __name__ == "__main__":
    main()
