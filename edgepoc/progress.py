"""The progress bar of the long jobs that report steps (training, comparisons): on stderr, so the JSON summary on
stdout stays machine-readable. Kept apart from the modules that use it so that a job which needs no PyTorch does
not import it for its bar (`compare` did, through the RL baselines' module: 2 s per run)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def progress_bar() -> Progress:
    """A bar with the task's description, steps done of all, a status field, time spent and time left."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), transient=False)
