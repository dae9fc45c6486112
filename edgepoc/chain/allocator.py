"""How a node allocates a block's tasks: its student model, or greedy until a student exists.

Every method goes through `edgepoc.solvers.registry.solve`, so the result is re-simulated by the
shared kernel. "auto" asks for the student (the distilled model every edge node runs, SPEC §5) and
falls back to greedy (earliest completion time) when no student checkpoint is installed.
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import Callable

import numpy as np

from edgepoc.errors import EdgepocError
from edgepoc.game.instance import Instance
from edgepoc.solvers.registry import SolveOptions, solve

log = logging.getLogger("edgepoc.chain")

Allocator = Callable[[Instance, list[float]], np.ndarray]


def _bundled(kind: str) -> bool:
    """Is a checkpoint of `kind` shipped in the package? (checked without importing torch)"""
    try:
        folder = resources.files("edgepoc.models").joinpath("bundled")
        return any(kind in entry.name for entry in folder.iterdir())
    except (FileNotFoundError, ModuleNotFoundError, NotADirectoryError):
        return False


def _probe(model: str | None) -> Instance:
    """A two-task instance with as many providers as the checkpoint expects (3 if unknown)."""
    k = 3
    if model is not None:
        from edgepoc.models.checkpoint import load_cached

        k = load_cached(model, "student")[0].config.features.n_providers
    return Instance.create([[1.0, 1.0]] * k, [0.0] * k, [0.0, 0.1], [[0.5, 0.5], [0.4, 0.3]], name="probe")


def make_allocator(method: str = "auto", model: str | None = None, seconds: float = 0.2,
                   fallback: str = "greedy") -> tuple[Allocator, str]:
    """`(allocate(instance, free_times) -> assignment, name of the method in use)`."""
    if method == "auto" and model is None and not _bundled("student"):
        log.info("allocator: no student model installed; using %s", fallback)
        method = fallback
    if method == "auto":
        try:
            solve(_probe(model), "student", SolveOptions(model=model, seconds=0.05))
            method = "student"
        except EdgepocError as exc:
            log.info("allocator: no student model (%s); using %s", exc, fallback)
            method = fallback

    def allocate(inst: Instance, free_times: list[float]) -> np.ndarray:
        opts = SolveOptions(seed=0, seconds=seconds, model=model, free_times=np.asarray(free_times, dtype=np.float64))
        return solve(inst, method, opts).assignment

    return allocate, method
