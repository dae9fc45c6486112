"""Exhaustive search: the ground truth for tests and for tiny instances."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import numpy as np

from edgepoc.errors import InputError
from edgepoc.game.instance import Instance
from edgepoc.game.kernel import simulate_population
from edgepoc.game.validate import ASSIGNMENT_DTYPE
from edgepoc.solvers.registry import SolveOptions

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

MAX_BRUTE_FORCE = 2_000_000  # allocations; K^n beyond this is refused rather than run for hours


def brute_force(instance: Instance, free_times: ArrayLike | None = None) -> tuple[np.ndarray, float]:
    """The optimal allocation by enumerating all `K^n` of them, in chunks through the kernel."""
    k, n = instance.n_providers, instance.n_tasks
    if k ** n > MAX_BRUTE_FORCE:
        raise InputError(f"brute-force: {k}^{n} allocations is too many (limit {MAX_BRUTE_FORCE})")
    best_x, best = np.zeros(n, dtype=np.int64), np.inf
    chunk = []
    for x in itertools.chain(itertools.product(range(k), repeat=n), [None]):
        if x is not None:
            chunk.append(x)
        if chunk and (x is None or len(chunk) == 65536):
            xs = np.array(chunk, dtype=ASSIGNMENT_DTYPE).reshape(len(chunk), n)
            totals = simulate_population(instance, xs, free_times)
            j = int(np.argmin(totals))
            if totals[j] < best:
                best, best_x = float(totals[j]), xs[j].astype(np.int64)
            chunk = []
    return best_x, best


def solve_brute_force(instance: Instance, options: SolveOptions) -> np.ndarray:
    return brute_force(instance, options.free_times)[0]
