"""The `edgepoc` command line; each area adds its commands in a module of its own."""

import os
import sys


def run() -> None:
    """The entry point. Loading the commands takes about half a second (Typer, NumPy, Numba); a Ctrl-C in that time
    is one line too, like a Ctrl-C later (`main`), not a traceback of whichever import it landed in."""
    try:
        from edgepoc.cli.main import main
    except KeyboardInterrupt:
        print("interrupted: stopped before it started", file=sys.stderr, flush=True)
        # not sys.exit: a Ctrl-C that landed in C code running Python source (PyRun_String) marks the interpreter,
        # which then ends by re-raising SIGINT however the exception was handled; nothing has started to clean up
        os._exit(130)
    from edgepoc.shutdown import freeze_at_exit

    freeze_at_exit()
    main()
