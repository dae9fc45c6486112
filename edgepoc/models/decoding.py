"""Decoding shared by both model families: the named strategies, their options, and the one search loop.

A model proposes allocations; a strategy turns them into one (SPEC §4, "decoding beyond argmax"):

* `argmax`, `guided`, `sample` (the paper model's `P`, `edgepoc.models.paper.decode`);
* `onepass` (the general model's step-by-step decode on the live queues, `edgepoc.models.general.decode`);
* `search` (both): the model's proposals polished by the compiled local search, then iterated local
  search whose kicks re-decode a random window of `kick_window` consecutive tasks by sampled greedy on the
  queues before it (`localsearch.redecode_window`; with `kick_window=0`, point kicks: a few tasks moved to
  providers drawn from the model's weights), each kick repaired by a descent over the tasks around it only
  (`edgepoc.solvers.localsearch.descend`; `search` below). The no-model control (`--method search`) runs
  the same loop from greedy (its point kicks uniform). So the model's part in the search is its starts:
  weighting the kicks by the model never beat uniform ones on tuning instances (docs/models.md).

Every strategy runs under one `Budget`: work (local-search sweeps, a sweep being `n` task examinations, and at
least `MIN_SWEEP` on small instances;
the same input and seed give the same allocation) or a wall-clock deadline. The loop only tracks queue
state to make choices; the reported delay is always re-simulated by the shared kernel.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from edgepoc.errors import InputError
from edgepoc.game.instance import Instance, warm_up_instance
from edgepoc.game.kernel import greedy_assignment, simulate, simulate_population
from edgepoc.game.validate import ASSIGNMENT_DTYPE
from edgepoc.models.budget import Budget, numeric_setting
from edgepoc.solvers.localsearch import WindowKicks, descend as descend_from, unknown_reach
from edgepoc.solvers.registry import Every

STRATEGIES: dict[str, str] = {
    "argmax": "paper model: each task on its most probable provider",
    "guided": "paper model: a sequential pass trading log P against queueing regret (a lambda grid)",
    "sample": "paper model: allocations drawn from P, the best kept",
    "onepass": "general model: the step-by-step decode on the live queues",
    "search": "both: the model's proposals, local search, then iterated local search with window kicks",
}
SEARCH_KEYS = frozenset({"sweeps", "budget_ms", "kick_window", "kick_fraction", "swap_window", "temperature"})
PAPER_KEYS = SEARCH_KEYS | {"samples", "starts", "lambdas"}  # the paper model's candidate settings
DEFAULT_SWEEPS = 30  # the "50 ms-equivalent" work budget: median 47 ms of CPU on 1000-task paper instances
DEFAULT_LAMBDAS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 1e9)
MAX_SAMPLES = 1024  # a request cannot ask for unbounded work before the budget starts counting
_UNLIMITED_SWEEPS = 1_000_000  # a deadline budget: the clock, not the sweep count, ends a descent
# A sweep examines every task once, but at least this many: on a 9-task instance 30 sweeps of 9 were 270
# examinations, and the searches ended up to 6 % above the optimum (48 instances of 9 tasks, brute force); with
# sweeps of 200 they found it on all 48, in a few milliseconds. Instances of 200 tasks and more are unaffected.
MIN_SWEEP = 200
# a window kick draws each task's provider with weight exp(-latency / (mean processing time x this))
WINDOW_TEMPERATURE = 0.3


@dataclass
class DecodeOptions:
    """One strategy's settings, for either model family (the paper-only fields are ignored by the other)."""

    strategy: str = "search"
    budget: Budget = field(default_factory=lambda: Budget.work(DEFAULT_SWEEPS))
    # a kick re-decodes this many consecutive tasks by sampled greedy (`localsearch.redecode_window`); on tuning
    # instances 10 was level with 20, better than 5, 40 and point kicks (docs/models.md, "Window kicks"). 0: point kicks
    kick_window: int = 10
    # point kicks (kick_window=0): share of tasks moved to a provider drawn from the kick weights (at least one);
    # each kick's repair examines only the tasks around it, so small kicks are cheap and many
    kick_fraction: float = 0.002
    swap_window: int = 8  # local search also swaps providers of two tasks at most this far apart (0: off)
    temperature: float = 1.0  # of the kick weights (and of the paper model's `sample` draws)
    seed: int = 0
    lambdas: tuple[float, ...] = DEFAULT_LAMBDAS  # paper `guided`: one candidate per lambda
    samples: int = 64  # paper `sample` / general `search`: allocations drawn from the model
    starts: int = 3  # `search`: the best candidates descended before the kicks
    # progress(done, of) a few times a second: sweeps of a work budget, or seconds of a deadline (a CLI's bar)
    progress: Callable[[float, float], None] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_params(cls, params: dict[str, Any], seconds: float | None, seed: int, *, strategies: tuple[str, ...],
                    default_strategy: str, default_budget: Budget, keys: frozenset[str] = SEARCH_KEYS,
                    what: str = "model") -> "DecodeOptions":
        """From `--param decode=search --param sweeps=30 ...` (and `--seconds`); `decode` is a known key
        only when there is more than one strategy to choose from."""
        known = set(keys) | ({"decode"} if len(strategies) > 1 else set())
        unknown = set(params) - known
        if unknown:
            raise InputError(f"--param: unknown {what} setting(s) {sorted(unknown)}; known: {', '.join(sorted(known))}")
        opts = cls(strategy=str(params.get("decode", default_strategy)), seed=seed,
                   budget=Budget.from_params(params, seconds, default_budget))
        if opts.strategy not in strategies:
            raise InputError(f"decode: expected one of {', '.join(strategies)}, got {opts.strategy!r}")
        for name, kind in (("kick_window", int), ("kick_fraction", float), ("swap_window", int),
                           ("temperature", float), ("samples", int), ("starts", int)):
            if name in params:
                setattr(opts, name, numeric_setting(name, params[name], kind))
        if "lambdas" in params:
            lams = params["lambdas"]
            if not isinstance(lams, list) or not lams:
                raise InputError("lambdas: expected a non-empty JSON list, e.g. lambdas=[0,1,4]")
            opts.lambdas = tuple(float(v) for v in lams)
        if ((opts.budget.sweeps or 0) < 0 or (opts.budget.seconds or 0.0) < 0 or opts.samples < 0
                or opts.samples > MAX_SAMPLES
                or opts.temperature <= 0 or opts.starts < 0 or not 0 < opts.kick_fraction <= 1
                or min(opts.lambdas) < 0 or opts.swap_window < 0 or opts.kick_window < 0):
            raise InputError(f"decode settings: sweeps >= 0, budget_ms >= 0, 0 <= samples <= {MAX_SAMPLES}, temperature > 0, "
                             "starts >= 0, kick_window >= 0, 0 < kick_fraction <= 1, lambdas >= 0, swap_window >= 0")
        return opts


def kick(x: np.ndarray, weights: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """A copy of `x` with `count` random tasks moved to another provider drawn from the weights."""
    y = x.copy()
    cols = rng.choice(x.shape[0], size=min(count, x.shape[0]), replace=False)
    w = weights[cols].copy()
    w[np.arange(cols.shape[0]), y[cols]] = 0.0
    cdf = np.cumsum(w / w.sum(axis=1, keepdims=True), axis=1)
    y[cols] = np.minimum((rng.random(cols.shape[0])[:, None] > cdf).sum(axis=1), weights.shape[1] - 1)
    return y


def uniform_weights(inst: Instance) -> np.ndarray:
    """Kick weights of the no-model control: every other provider equally likely."""
    return np.ones((inst.n_tasks, inst.n_providers))


@dataclass
class SearchResult:
    assignment: np.ndarray  # (n,) int64
    latency: float  # re-simulated by the kernel
    source: str  # which start won, "+ls" / "+ils" when the descent / the kicks improved it
    descents: int
    kicks: int
    sweeps: float  # task examinations / max(n, MIN_SWEEP)
    seconds: float  # from the budget's start (the caller's `started_at`, else the search's own)
    budget_note: str | None = None

    def info(self, budget: Budget) -> dict[str, Any]:
        out = {"decode": "search", "source": self.source, "descents": self.descents, "kicks": self.kicks,
               "sweeps": self.sweeps, "budget": budget.describe(), "decode_seconds": self.seconds}
        if self.budget_note:
            out["budget_note"] = self.budget_note
        return out


def search(inst: Instance, starts: list[tuple[str, np.ndarray]], kick_weights: np.ndarray, opts: DecodeOptions,
           free_times: np.ndarray | None = None, *, descend: int | None = None,
           started_at: float | None = None) -> SearchResult:
    """The one search loop: descend from the first `descend` starts (None: all) in the order given, then
    iterated local search until `opts.budget` is spent: each kick re-decodes a window of `opts.kick_window`
    tasks of the best allocation by sampled greedy (or, with `kick_window=0`, moves a few tasks to providers
    drawn from `kick_weights`), and a marked descent repairs it; the kicked allocation is kept if better.

    A work budget counts task examinations, `sweeps * max(n, MIN_SWEEP)` in all (a kick's repair examines tens). A deadline
    counts from `started_at` (a `time.perf_counter()` value, so a caller's inference is inside it) or from
    here, after compiling; no descent starts that the last one's duration says would overrun it. If it
    ends before the first descent, `budget_note` says so (the answer is then the best start, not a search
    result)."""
    budget = opts.budget
    if budget.is_deadline and started_at is None:
        warm_search()  # compiling is not the search's time
    t0 = time.perf_counter() if started_at is None else started_at
    deadline = np.inf if budget.seconds is None else t0 + budget.seconds
    scores = simulate_population(inst, np.stack([np.asarray(x) for _, x in starts]), free_times, checked=False)
    best = int(np.argmin(scores))
    best_x, best_f, source = np.asarray(starts[best][1], dtype=ASSIGNMENT_DTYPE), float(scores[best]), starts[best][0]
    used = descents = kicks = 0  # task examinations, descents, kicks
    last = 0.0  # duration of the last descent
    n = inst.n_tasks
    sweep = max(n, MIN_SWEEP)
    work = None if budget.sweeps is None else budget.sweeps * sweep
    reach = unknown_reach(n)  # how far each task's moves reach, learnt by the descents, shared by all of them

    def work_left() -> int:
        return _UNLIMITED_SWEEPS * sweep if work is None else work - used

    def may_start() -> bool:
        return work_left() > 0 if work is not None else time.perf_counter() + last < deadline

    every = Every()  # a large instance's search runs for minutes: its progress, a few times a second

    def tell(last: bool = False) -> None:
        if opts.progress is not None and every.due(last):
            if work is not None:
                opts.progress(min(used, work) / sweep, work / sweep)
            else:
                opts.progress(min(time.perf_counter() - t0, budget.seconds), budget.seconds)

    tell()  # the total at once: the first descent of a large instance takes seconds
    if inst.n_tasks > 1 and inst.n_providers > 1:
        for name, x in starts[:descend]:
            if not may_start():
                break
            d0 = time.perf_counter()
            y, f, ev = descend_from(inst, x, free_times, max_evals=work_left(), swap_window=opts.swap_window,
                                    reach=reach, deadline=deadline)
            last, used, descents = time.perf_counter() - d0, used + ev, descents + 1
            tell()
            if f < best_f:
                best_x, best_f, source = y, f, name + "+ls"
        rng = np.random.default_rng(opts.seed)
        count = max(1, int(round(opts.kick_fraction * inst.n_tasks)))
        windows = WindowKicks(inst, best_x, free_times, reach) if opts.kick_window else None  # best_x, its history
        unit = float(inst.processing.mean())  # the windows' time unit (WindowKicks guards it against 0)
        while may_start():
            d0 = time.perf_counter()
            if windows is not None:
                f, ev = windows.kick(int(rng.integers(0, n)), opts.kick_window, WINDOW_TEMPERATURE, rng, unit, best_f,
                                     max_evals=work_left(), swap_window=opts.swap_window, deadline=deadline)
                y = windows.best_x  # the kicked allocation where it is better, else the best unchanged
            else:
                y, f, ev = descend_from(inst, kick(best_x, kick_weights, count, rng), free_times,
                                        max_evals=work_left(), swap_window=opts.swap_window, changed_from=best_x,
                                        reach=reach, deadline=deadline)
            last, used, kicks = time.perf_counter() - d0, used + max(ev, 1), kicks + 1
            tell()
            if f < best_f:
                best_x, best_f = y, f
                source = source if source.endswith("+ils") else source + "+ils"
    tell(last=True)
    note = None
    if budget.is_deadline and descents == 0 and inst.n_tasks > 1 and inst.n_providers > 1:
        included = " (inference included)" if started_at is not None else ""
        note = (f"search: the wall-clock budget of {budget.seconds * 1000:g} ms{included} ended before the first "
                f"descent; the answer is the best start ({source}), not a search result")
    return SearchResult(np.asarray(best_x, dtype=np.int64), simulate(inst, best_x, free_times),  # the kernel's word
                        source, descents, kicks, round(used / sweep, 3), time.perf_counter() - t0, note)


_SEARCH_WARM = False


def warm_search() -> None:
    """Compile (or load from Numba's cache) the local search and the kernel once per process, outside any
    clock, on a 4-task instance with the same array types as a real call."""
    global _SEARCH_WARM
    if _SEARCH_WARM:
        return
    _SEARCH_WARM = True
    inst = warm_up_instance()
    g, _ = greedy_assignment(inst)
    search(inst, [("greedy", g), ("greedy", g.astype(ASSIGNMENT_DTYPE))], uniform_weights(inst),
           DecodeOptions(budget=Budget.work(4)))
