"""The one exception type users see: the CLI prints its message on one line and exits non-zero."""


class EdgepocError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class InputError(EdgepocError, ValueError):
    """A file or argument that breaks the contract of SPEC §2; the message names the field."""


class Interrupted(Exception):
    """Ctrl-C, caught where the command knows what it kept: the CLI prints `interrupted: <message>` and exits 130."""
