"""Every allocation method, by name, behind one call.

A method is a function `fn(instance, options) -> assignment | (assignment, extra dict)`; the
registry times it, re-simulates the result with the shared kernel (the claimed delay is never
trusted) and wraps it in a `SolveResult`. Methods are named by import path and imported on first
use, so the CLI starts fast and a method needing PyTorch costs nothing until it is asked for.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgepoc.errors import EdgepocError, InputError
from edgepoc.game.instance import Instance
from edgepoc.game.kernel import simulate


@dataclass
class SolveOptions:
    seed: int = 0
    seconds: float | None = None  # time budget, for methods that have one
    model: str | None = None  # checkpoint path, for learned methods (None: the bundled one)
    free_times: np.ndarray | None = None  # providers' initial free times (queue state on the chain)
    params: dict[str, Any] = field(default_factory=dict)  # method-specific settings


@dataclass
class SolveResult:
    method: str
    assignment: np.ndarray
    total_latency: float
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


METHODS: dict[str, tuple[str, str]] = {
    "random": ("edgepoc.solvers.heuristics:solve_random", "uniformly random provider per task"),
    "round-robin": ("edgepoc.solvers.heuristics:solve_round_robin", "providers in turn"),
    "greedy": ("edgepoc.solvers.heuristics:solve_greedy", "earliest completion time on the current queues"),
    "rollout": ("edgepoc.solvers.rollout:solve_rollout",
                "pilot method: each task on the provider whose greedy completion of the next H tasks is best"),
    "ga": ("edgepoc.solvers.ga:solve_ga", "genetic algorithm meta strategy (PolicyModel)"),
    "cpsat": ("edgepoc.solvers.cpsat:solve_cpsat", "OR-Tools CP-SAT, exact or best within the time limit, with bound"),
    "teacher": ("edgepoc.models.solve:solve_teacher", "the GNN+RNN ResourceAllocationModel (teacher)"),
    "student": ("edgepoc.models.solve:solve_student", "the distilled student model"),
    "search": ("edgepoc.models.onepass:solve_search_control",
               "no-model control: the models' search decoder from greedy, uniform kicks, same work budget"),
    "dqn": ("edgepoc.solvers.rl.dqn:solve_dqn", "Stable-Baselines3 DQN dispatcher"),
    "maddpg": ("edgepoc.solvers.rl.maddpg:solve_maddpg", "MADDPG bidding providers"),
    "brute-force": ("edgepoc.solvers.exact:solve_brute_force", "exhaustive search (tiny instances only)"),
}

# Methods whose search stops on a time budget (`--seconds`); the others take none and refuse one.
TIME_BUDGET_METHODS = frozenset({"ga", "cpsat", "teacher", "student", "search"})


def _load(method: str):
    if method not in METHODS:
        raise InputError(f"method: unknown method {method!r}; known: {', '.join(METHODS)}")
    path = METHODS[method][0]
    module, _, attr = path.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise EdgepocError(f"method {method!r} is not available in this install ({exc})") from None


def solve(instance: Instance, method: str, options: SolveOptions | None = None, **kwargs: Any) -> SolveResult:
    """Allocate every task of `instance` with `method`; keyword arguments fill `SolveOptions`."""
    options = options or SolveOptions(**kwargs)
    fn = _load(method)
    t0 = time.perf_counter()
    if instance.n_tasks == 0:  # nothing to allocate: the answer is the same for every method and model
        return SolveResult(method, np.zeros(0, dtype=np.int64), 0.0, time.perf_counter() - t0, {})
    out = fn(instance, options)
    seconds = time.perf_counter() - t0
    assignment, extra = (out if isinstance(out, tuple) else (out, {}))
    assignment = np.asarray(assignment, dtype=np.int64)
    total = simulate(instance, assignment, options.free_times)
    return SolveResult(method, assignment, total, seconds, dict(extra))
