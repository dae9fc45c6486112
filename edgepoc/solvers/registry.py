"""Every allocation method, by name, behind one call.

A method is a function `fn(instance, options) -> assignment | (assignment, extra dict)`; the
registry times it, re-simulates the result with the shared kernel (the claimed delay is never
trusted) and wraps it in a `SolveResult`. Methods are named by import path and imported on first
use, so the CLI starts fast and a method needing PyTorch costs nothing until it is asked for.

Honest budgets: a method with a time budget is compiled first, outside its clock (`WARM_UPS`), so a
cold Numba cache does not change its result; a method that could not use its budget as asked returns a
`budget_note`, which goes into the allocation JSON and is logged as a warning (on stderr when logging is
not configured, as in the CLI).
"""

from __future__ import annotations

import importlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from edgepoc.errors import EdgepocError, InputError
from edgepoc.game.instance import Instance
from edgepoc.game.kernel import simulate
from edgepoc.game.validate import check_seed

log = logging.getLogger("edgepoc.solvers")


@dataclass
class SolveOptions:
    seed: int = 0
    seconds: float | None = None  # time budget, for methods that have one
    model: str | None = None  # checkpoint path, for learned methods (None: the bundled one)
    free_times: np.ndarray | None = None  # providers' initial free times (queue state on the chain)
    params: dict[str, Any] = field(default_factory=dict)  # method-specific settings
    # progress(done, of) for methods that run long (the GA, the searches): populations or sweeps, or seconds of a
    # time budget
    progress: Callable[[float, float], None] | None = field(default=None, repr=False, compare=False)


class Every:
    """`due()` is true at most once per `seconds` (always when `last`): progress told a few times a second from a
    loop that goes round thousands of times (the searches, the Lagrangian bound)."""

    def __init__(self, seconds: float = 0.2):
        self.seconds = seconds
        self._at = -np.inf

    def due(self, last: bool = False) -> bool:
        now = time.perf_counter()
        if last or now - self._at > self.seconds:
            self._at = now
            return True
        return False


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
                "pilot method: each task on the provider whose greedy completion of the next H tasks is best "
                "(--param base=priced: priced-greedy pilots, for heavy-tailed workloads; base=mixed: on heavy tails up to "
                "half of each priced pilot's cost on a fixed plan)"),
    "ga": ("edgepoc.solvers.ga:solve_ga", "genetic algorithm meta strategy (PolicyModel)"),
    "cpsat": ("edgepoc.solvers.cpsat:solve_cpsat", "OR-Tools CP-SAT, exact or best within the time limit, with bound"),
    "bound": ("edgepoc.solvers.lagrange:solve_bound",
              "GA allocation with a proven lower bound on the optimum (Lagrangian over per-provider FIFO "
              "sequences): lower_bound, gap"),
    "teacher": ("edgepoc.models.solve:solve_teacher", "the deep model (bundled: the general GNN + provider-set teacher, any K and R; "
                "--param decode=onepass|search)"),
    "student": ("edgepoc.models.solve:solve_student", "the distilled student of the teacher (bundled: the general one)"),
    "search": ("edgepoc.models.solve:solve_search_control",
               "no-model control: the models' search decoder from greedy, kicks with no model, same work budget"),
    "dqn": ("edgepoc.solvers.rl.dqn:solve_dqn", "Stable-Baselines3 DQN dispatcher"),
    "maddpg": ("edgepoc.solvers.rl.maddpg:solve_maddpg", "MADDPG bidding providers"),
    "brute-force": ("edgepoc.solvers.exact:solve_brute_force", "exhaustive search (tiny instances only)"),
}

# Methods whose search stops on a time budget (`--seconds`), each with what compiles (or loads from Numba's
# cache) the code it runs: `solve` calls it before the method's clock starts, so a cold cache never eats a
# budget. The others take no budget and refuse one.
WARM_UPS: dict[str, str] = {
    "ga": "edgepoc.solvers.ga:warm_up",
    "cpsat": "edgepoc.solvers.cpsat:warm_up",
    "bound": "edgepoc.solvers.lagrange:warm_up",
    "teacher": "edgepoc.models.solve:warm_up",
    "student": "edgepoc.models.solve:warm_up",
    "search": "edgepoc.models.solve:warm_up",
}
TIME_BUDGET_METHODS = frozenset(WARM_UPS)
PROGRESS_METHODS = frozenset({"ga", "teacher", "student", "search", "bound"})  # methods that call SolveOptions.progress
# Methods that read `SolveOptions.model` (a checkpoint) and `SolveOptions.params` (settings, each checked by name by
# the method); the others ignore them, so the CLI refuses them there rather than let a typo pass silently.
MODEL_METHODS = frozenset({"teacher", "student", "dqn", "maddpg"})
PARAM_METHODS = frozenset({"rollout", "ga", "cpsat", "bound", "teacher", "student", "search"})


def _import(path: str):
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def _load(method: str):
    if method not in METHODS:
        raise InputError(f"method: unknown method {method!r}; known: {', '.join(METHODS)}")
    path = METHODS[method][0]
    try:
        return _import(path)
    except (ImportError, AttributeError) as exc:
        raise EdgepocError(f"method {method!r} is not available in this install ({exc})") from None


def solve(instance: Instance, method: str, options: SolveOptions | None = None, **kwargs: Any) -> SolveResult:
    """Allocate every task of `instance` with `method`; keyword arguments fill `SolveOptions`."""
    options = options or SolveOptions(**kwargs)
    check_seed(options.seed)
    fn = _load(method)
    if instance.n_tasks == 0:  # nothing to allocate: the answer is the same for every method and model
        return SolveResult(method, np.zeros(0, dtype=np.int64), 0.0, 0.0, {})
    warm = 0.0
    if method in WARM_UPS:
        w0 = time.perf_counter()
        _import(WARM_UPS[method])()
        warm = time.perf_counter() - w0
    t0, cpu0 = time.perf_counter(), time.thread_time()
    out = fn(instance, options)
    seconds = time.perf_counter() - t0
    cpu_seconds = time.thread_time() - cpu0
    assignment, extra = (out if isinstance(out, tuple) else (out, {}))
    assignment = np.asarray(assignment, dtype=np.int64)
    total = simulate(instance, assignment, options.free_times)
    extra = dict(extra)
    budget = options.seconds
    # an overrun is judged on the clock the budget was given in: with `--param clock=cpu` this thread's CPU time
    # (on a loaded machine its wall time runs longer, and that is not the method's doing)
    on_cpu = str(options.params.get("clock", "wall")) == "cpu"
    used = cpu_seconds if on_cpu else seconds
    if budget is not None and method in WARM_UPS and used > max(1.25 * budget, budget + 0.1):
        over = f"{method}: ran {used:.2f} s{' of CPU' if on_cpu else ''} on a time budget of {budget:g} s"
        extra["budget_note"] = f"{extra['budget_note']}; {over}" if extra.get("budget_note") else over
    if warm >= 0.05:  # a cold start was paid here, outside `seconds` (the method's own time)
        extra["warm_up_seconds"] = warm
    if extra.get("budget_note"):
        log.warning("warning: %s", extra["budget_note"])
    return SolveResult(method, assignment, total, seconds, extra)
