"""How a node allocates a block's tasks: its student model, or greedy until a student exists.

Every method goes through `edgepoc.solvers.registry.solve`, so the result is re-simulated by the
shared kernel. "auto" asks for the student (the distilled model every edge node runs, SPEC §5) and
falls back to greedy (earliest completion time) when no student checkpoint is installed. The bundled
student is the general model: it serves every chain size (any number of providers and resources; past the 12
providers it was trained on, each task is decided among the 12 that would finish it first).

Every node must compute the same allocation for the same block, so a general model never runs on a
wall-clock budget here: the node's decoder is the one-pass decode (`decode` "onepass"; the paper
variant's names "guided"/"argmax" mean the same for a general model), or the search with its WORK
budget (`decode` "search", the default when no decoder is named, e.g. the arbiter); `seconds` then
does not apply. A paper-variant checkpoint (`--model`, fixed K) keeps its own decoders and `seconds`.

A node does not load PyTorch: the bundled models (and any general checkpoint with its `.npz` beside it, or a
`.npz` named directly) run the NumPy forward pass of `edgepoc.models.general.portable`; only a checkpoint without
one (a paper-variant model, or an old general `.pt`) is read with torch.
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


def probe_instance(capacity: np.ndarray, delays: np.ndarray) -> Instance:
    """A two-task instance of the chain's own shape (its providers' capacities and delays).

    A model is built for a fixed provider and resource count; probing with the chain's shape at start
    makes a misfit (e.g. the bundled 3-provider student on a 4-node chain) show up once, at start, instead
    of failing every proposal.
    """
    capacity = np.asarray(capacity, dtype=np.float64)
    r = capacity.shape[1]
    return Instance.create(capacity, np.asarray(delays, dtype=np.float64), [0.0, 0.1],
                           [[0.5] * r, [0.4] * r], name="probe")


def make_allocator(method: str = "auto", model: str | None = None, seconds: float = 0.2,
                   fallback: str = "greedy", probe: Instance | None = None,
                   decode: str | None = None, model_params: dict | None = None) -> tuple[Allocator, str]:
    """`(allocate(instance, free_times) -> assignment, name of the method in use)`.

    `model_params`: extra settings of a general model's decoder (e.g. the arbiter's `samples=0`).

    `decode`: the decoding strategy of a learned method (`edgepoc.models.decoding.STRATEGIES`), e.g. "guided".
    `probe`: an instance of the chain's shape (`probe_instance`). With "auto" the student is used only if
    it solves the probe, else `fallback` (logged with the reason); an explicitly named method that cannot
    solve the probe is an error at start.
    """
    if method == "auto" and model is None and not _bundled("student"):
        log.info("allocator: no student model installed; using %s", fallback)
        method = fallback

    def general(m: str) -> bool:
        from edgepoc.models.solve import is_general, load_general_or_torch  # torch only for a checkpoint without .npz

        try:
            return is_general(load_general_or_torch(model, m))
        except EdgepocError:
            return False  # the solve below reports what is wrong with the checkpoint

    def params(m: str) -> dict:
        if m not in ("student", "teacher"):
            return {}
        if general(m):
            return {"decode": decode if decode in ("onepass", "search") else ("search" if decode is None else "onepass"),
                    **(model_params or {})}
        return {"decode": decode} if decode else {}

    def budget(m: str) -> float | None:
        return None if m in ("student", "teacher") and general(m) else seconds

    if probe is not None or method == "auto":
        target = "student" if method == "auto" else method
        test = probe if probe is not None else probe_instance(np.ones((3, 2)), np.zeros(3))
        try:
            solve(test, target, SolveOptions(model=model, seconds=None if budget(target) is None else 0.05,
                                             params=params(target)))
            method = target
        except EdgepocError as exc:
            if method != "auto":
                raise EdgepocError(f"allocator {method!r} cannot allocate this chain's blocks: {exc}") from None
            log.warning("allocator: the student cannot allocate this chain's blocks (%s); using %s", exc, fallback)
            method = fallback

    fixed_params, fixed_seconds = params(method), budget(method)

    def allocate(inst: Instance, free_times: list[float]) -> np.ndarray:
        opts = SolveOptions(seed=0, seconds=fixed_seconds, model=model,
                            free_times=np.asarray(free_times, dtype=np.float64), params=dict(fixed_params))
        return solve(inst, method, opts).assignment

    return allocate, method
