"""The one exception type users see (the CLI prints its message on one line and exits non-zero), and Ctrl-C held
around the steps that must not be cut in two (spawning a process and recording it)."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator


class EdgepocError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class InputError(EdgepocError, ValueError):
    """A file or argument that breaks the contract of SPEC §2; the message names the field."""


class Unreachable(EdgepocError):
    """A node's API did not answer: refused, reset or timed out (the caller may try another node, or skip it)."""


class Interrupted(Exception):
    """Ctrl-C, caught where the command knows what it kept: the CLI prints `interrupted: <message>` and exits 130."""


@contextmanager
def ctrl_c_held() -> Iterator[None]:
    """A Ctrl-C (SIGINT) that arrives inside the block takes effect when it ends (the handler there is then called,
    which raises KeyboardInterrupt). Around spawning a process and recording it: `subprocess.Popen` leaves the
    child running when a KeyboardInterrupt hits it while it waits for the exec, and one between the spawn and the
    record leaves it unknown; either way a Ctrl-C would leave a process nothing stops (seen in CI: a node, its
    cometbft and worker left running by `network up`). Outside the main thread (no signal handler runs there) it
    does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[Any] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held:
            if callable(previous):
                previous(signal.SIGINT, held[0])
            elif previous == signal.SIG_DFL:
                raise KeyboardInterrupt
