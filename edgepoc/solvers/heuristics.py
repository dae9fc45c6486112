"""The simple baselines: random, round-robin, greedy (earliest completion time)."""

from __future__ import annotations

import numpy as np

from edgepoc.game.instance import Instance
from edgepoc.game.kernel import greedy_assignment
from edgepoc.solvers.registry import SolveOptions


def solve_random(instance: Instance, options: SolveOptions) -> np.ndarray:
    return np.random.default_rng(options.seed).integers(0, instance.n_providers, size=instance.n_tasks)


def solve_round_robin(instance: Instance, options: SolveOptions) -> np.ndarray:
    return np.arange(instance.n_tasks) % instance.n_providers


def solve_greedy(instance: Instance, options: SolveOptions) -> np.ndarray:
    return greedy_assignment(instance, options.free_times)[0]
