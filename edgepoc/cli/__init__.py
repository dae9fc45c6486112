"""The `edgepoc` command line; each area adds its commands in a module of its own."""

import sys


def run() -> None:
    """The entry point. Loading the commands takes about half a second (Typer, NumPy, Numba); a Ctrl-C in that time
    is one line too, like a Ctrl-C later (`main`), not a traceback of whichever import it landed in."""
    try:
        from edgepoc.cli.main import main
    except KeyboardInterrupt:
        print("interrupted: stopped before it started", file=sys.stderr)
        sys.exit(130)
    main()
