"""Exact reference: an OR-Tools CP-SAT model of the FIFO queues of SPEC §1, with a lower bound.

The queue order on a provider is the arrival order, so this is not a free scheduling problem. With
`x_ik` = task `i` goes to provider `k`, start `S_i`, completion `C_i` and `F_ik` = the time provider
`k` is free after task `i` (`F_(-1)k` = its initial free time):

    sum_k x_ik = 1
    S_i >= sum_k ready_ik x_ik                 (linear: exactly one x_ik is 1)
    S_i >= F_(i-1)k            if x_ik
    C_i  = S_i + sum_k p_ik x_ik
    F_ik >= F_(i-1)k ;  F_ik >= C_i  if x_ik
    minimise sum_i C_i        (= f(x) + sum_i a_i, since C_i >= a_i)

Inequalities instead of the equalities `S_i = max(...)`, `F_ik = x_ik ? C_i : F_(i-1)k` admit
solutions with idle waiting, but waiting never helps (a FIFO queue is monotone in its inputs), so the
optimum and the bound are those of the exact semantics.

Times are integers at `resolution` seconds (default 1 µs), rounded *down*, so the integer model is a
relaxation: its objective bound, converted back, is a valid bound on the float problem. The returned
allocation is re-simulated by the float kernel; `optimal` means CP-SAT proved optimality at that
resolution (the float gap then is at most about `n resolution / f`) or that the bound meets the best
allocation found (gap <= 1e-9; on small instances the block bound alone often proves optimality). The model is warm-started (AddHint)
from the GA, and the block bound of `bounds.py` is added as constraints (each block's tasks cost at
least the block's isolated optimum), which is what makes the bound useful on large instances.

The time budget starts after `warm_up()` (the compiled kernel, GA and block bound, and a first tiny CP-SAT
solve, once per process). When building the model leaves CP-SAT less than a tenth of the budget, or CP-SAT
finds no allocation in its time, `budget_note` says so.
"""

from __future__ import annotations

import math
import os
import threading
import time
from typing import Any

import numpy as np

from edgepoc.errors import InputError
from edgepoc.game.instance import Instance, warm_up_instance
from edgepoc.game.kernel import greedy_assignment, simulate
from edgepoc.solvers.bounds import block_bound, proven_gap, trivial_bound
from edgepoc.solvers.registry import SolveOptions

DEFAULTS: dict[str, Any] = {
    "resolution": 1e-6,  # seconds per integer time unit
    "workers": None,  # CP-SAT search workers (None: all cores, at most 8)
    "warm_start": "ga",  # "ga", "greedy" or "none"
    "warm_share": 0.2,  # share of the time budget given to the GA warm start
    "block": 20,  # block size of the block bound (0: no block bound)
    "block_nodes": 1_000_000,  # branch-and-bound node budget per block before it is split in two
}
DEFAULT_SECONDS = 10.0
BLOCK_SHARE = 0.5  # the block bound's share of the budget at most (1,000-task instances need under 1 s)


def _params(options: SolveOptions) -> dict[str, Any]:
    unknown = sorted(set(options.params) - set(DEFAULTS))
    if unknown:
        raise InputError(f"cpsat: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(DEFAULTS)}")
    p = {**DEFAULTS, **options.params}
    if not isinstance(p["resolution"], (int, float)) or not 0 < p["resolution"] <= 1:
        raise InputError(f"cpsat: resolution must be in (0, 1] seconds, got {p['resolution']!r}")
    if p["warm_start"] not in ("ga", "greedy", "none"):
        raise InputError(f"cpsat: warm_start must be ga, greedy or none, got {p['warm_start']!r}")
    if p["workers"] is not None and (not isinstance(p["workers"], int) or p["workers"] < 1):
        raise InputError(f"cpsat: workers must be a positive integer, got {p['workers']!r}")
    if not isinstance(p["block"], int) or p["block"] < 0:
        raise InputError(f"cpsat: block must be a non-negative integer, got {p['block']!r}")
    if not isinstance(p["warm_share"], (int, float)) or not 0 <= p["warm_share"] < 1:
        raise InputError(f"cpsat: warm_share must be in [0, 1), got {p['warm_share']!r}")
    if not isinstance(p["block_nodes"], int) or p["block_nodes"] < 1:
        raise InputError(f"cpsat: block_nodes must be a positive integer, got {p['block_nodes']!r}")
    return p


def _integer_schedule(ready: np.ndarray, proc: np.ndarray, free0: np.ndarray, x: np.ndarray):
    """S, C, F of allocation `x` in the integer model (for the hint)."""
    n, k = ready.shape
    free = free0.copy()
    s_out, c_out, f_out = [0] * n, [0] * n, [[0] * k for _ in range(n)]
    for i in range(n):
        q = int(x[i])
        s = max(int(ready[i, q]), int(free[q]))
        c = s + int(proc[i, q])
        free[q] = c
        s_out[i], c_out[i] = s, c
        f_out[i] = [int(v) for v in free]
    return s_out, c_out, f_out


_WARM = False


def warm_up() -> None:
    """Compile (or load from Numba's cache) what a CP-SAT run calls, and run CP-SAT once, outside any clock."""
    global _WARM
    if _WARM:
        return
    _WARM = True
    from edgepoc.solvers.ga import warm_up as ga_warm_up

    ga_warm_up()
    inst = warm_up_instance()
    solve_cpsat(inst, SolveOptions(seconds=1.0, params={"workers": 1, "warm_share": 0.0}))


def _out_of_time(instance: Instance, free_f: np.ndarray, x_start: np.ndarray, warm: str, lower: float, trivial: float,
                 pieces: list, block_seconds: float, p: dict[str, Any], notes: list[str],
                 note: str) -> tuple[np.ndarray, dict[str, Any]]:
    """The answer when the budget ends before CP-SAT could start: the warm start, with the bounds found so far."""
    best_f = simulate(instance, x_start, free_f)
    lower = min(lower, best_f)
    gap = proven_gap(best_f, lower)
    return np.asarray(x_start, dtype=np.int64), {
        "lower_bound": float(lower), "optimal": bool(gap <= 1e-9), "gap": float(gap), "status": "NOT_STARTED",
        "bound_source": "block" if pieces else "trivial", "trivial_bound": trivial,
        "warm_start": warm, "warm_start_latency": float(best_f), "block_bound_seconds": block_seconds,
        "resolution": p["resolution"], "workers": 0, "budget_note": "; ".join(notes + [note])}


def solve_cpsat(instance: Instance, options: SolveOptions) -> tuple[np.ndarray, dict[str, Any]]:
    """Best allocation CP-SAT finds within `options.seconds`, with `lower_bound`, `optimal` and `gap`."""
    from ortools.sat.python import cp_model

    warm_up()  # compiling is not the run's time
    t0 = time.perf_counter()
    p = _params(options)
    seconds = float(options.seconds) if options.seconds is not None else DEFAULT_SECONDS
    n, kk = instance.n_tasks, instance.n_providers
    free_f = np.zeros(kk) if options.free_times is None else np.asarray(options.free_times, dtype=np.float64)
    if free_f.shape != (kk,):
        raise InputError(f"free_times: expected {kk} values, got shape {free_f.shape}")

    notes: list[str] = []
    # Times count from the first moment a task can start, so that arrivals far from 0 (a Unix clock) do not
    # spend the integers' range. A provider free before that moment is as good as free at it: S_i = max(ready_i, F_k)
    # and every ready_i is at least that moment.
    first = float(instance.ready.min()) if n else 0.0
    free_from = np.maximum(free_f, first)
    span = max(float(instance.ready.max(initial=first)), float(free_from.max(initial=first))) - first \
        + float(instance.processing.max(axis=1).sum())
    if span / p["resolution"] + 1 > 2**52:  # CP-SAT's integers, and float64's exact ones
        coarser = 10.0 ** math.ceil(math.log10(span / 2**51))
        if "resolution" in options.params:
            raise InputError(f"cpsat: the schedule spans up to {span:.3g} s, too long for resolution "
                             f"{p['resolution']:g} s (2^52 units at most); use --param resolution={coarser:g} or coarser")
        notes.append(f"cpsat: the schedule spans up to {span:.3g} s, so times are in units of {coarser:g} s "
                     f"(the default {p['resolution']:g} s would overflow)")
        p = {**p, "resolution": coarser}
    scale = 1.0 / p["resolution"]
    # warm start
    x_start, f_start = greedy_assignment(instance, free_f)
    warm = "greedy"
    if p["warm_start"] == "ga" and n > 0:
        from edgepoc.solvers.ga import GAConfig, PolicyModel

        res = PolicyModel(GAConfig(), seed=options.seed).solve(instance, free_f, seconds=max(0.05, p["warm_share"] * seconds))
        x_start, f_start, warm = res.assignment, res.total_latency, "ga"

    # bounds computed outside the model
    trivial = lower = trivial_bound(instance, free_f)
    pieces: list[tuple[int, int, float]] = []
    if p["block"] > 0 and n > 0:
        t_block = time.perf_counter()
        # at most half the budget (the blocks left then count trivially): CP-SAT needs the rest
        b, pieces, unproven = block_bound(instance, free_f, block=min(p["block"], n), node_limit=p["block_nodes"],
                                          deadline=t_block + BLOCK_SHARE * seconds)
        if unproven:
            notes.append(f"cpsat: the block bound ran out of its {BLOCK_SHARE:.0%} of the budget; {unproven} of {n} "
                         "tasks count with the trivial bound")
        if b > lower:
            lower = b
        block_seconds = time.perf_counter() - t_block
    else:
        block_seconds = 0.0

    # the integer model
    ready = np.floor((instance.ready - first) * scale).astype(np.int64)
    proc = np.floor(instance.processing * scale).astype(np.int64)
    free0 = np.floor((free_from - first) * scale).astype(np.int64)
    horizon = int(max(ready.max(initial=0), free0.max(initial=0)) + proc.max(axis=1).sum() + 1)

    m = cp_model.CpModel()
    x = [[m.NewBoolVar(f"x{i}_{q}") for q in range(kk)] for i in range(n)]
    start = [m.NewIntVar(int(ready[i].min()), horizon, f"S{i}") for i in range(n)]
    done = [m.NewIntVar(int((ready[i] + proc[i]).min()), horizon, f"C{i}") for i in range(n)]
    prev: list = [int(v) for v in free0]
    free_vars: list[list] = []
    deadline = t0 + seconds

    def out_of_time(where: str) -> tuple[np.ndarray, dict[str, Any]]:
        return _out_of_time(instance, free_f, x_start, warm, lower, trivial, pieces, block_seconds, p, notes,
                            f"cpsat: the {seconds:g} s budget ended while building the model ({where} of {n}); "
                            f"the answer is the {warm} warm start, the bound the block/trivial one")

    for i in range(n):
        if i % 256 == 0 and time.perf_counter() > deadline:
            return out_of_time(f"task {i}")
        m.AddExactlyOne(x[i])
        m.Add(start[i] >= sum(int(ready[i, q]) * x[i][q] for q in range(kk)))
        m.Add(done[i] == start[i] + sum(int(proc[i, q]) * x[i][q] for q in range(kk)))
        for q in range(kk):
            if not isinstance(prev[q], int) or prev[q] > int(ready[i, q]):
                m.Add(start[i] >= prev[q]).OnlyEnforceIf(x[i][q])
        if i == n - 1:
            break  # free times after the last task are not needed
        cur = []
        for q in range(kk):
            f = m.NewIntVar(prev[q] if isinstance(prev[q], int) else 0, horizon, f"F{i}_{q}")
            m.Add(f >= prev[q])
            m.Add(f >= done[i]).OnlyEnforceIf(x[i][q])
            cur.append(f)
        free_vars.append(cur)
        prev = cur
    arrival_units = (instance.arrival - first) * scale  # float: the objective's constant part
    for lo, hi, value in pieces:  # block bound as cuts: sum_{i in block} C_i >= OPT(block) + sum a_i
        need = math.floor(value * scale + float(arrival_units[lo:hi].sum())) - (hi - lo)
        if need > 0:
            m.Add(sum(done[lo:hi]) >= need)
    m.Minimize(sum(done))

    s_hint, c_hint, f_hint = _integer_schedule(ready, proc, free0, x_start)
    for i in range(n):
        if i % 256 == 0 and time.perf_counter() > deadline:
            return out_of_time(f"its hints, task {i}")
        for q in range(kk):
            m.AddHint(x[i][q], int(int(x_start[i]) == q))  # an int: newer protobuf refuses a bool here
        m.AddHint(start[i], s_hint[i])
        m.AddHint(done[i], c_hint[i])
        if i < len(free_vars):
            for q in range(kk):
                m.AddHint(free_vars[i][q], f_hint[i][q])

    solver = cp_model.CpSolver()
    remaining = seconds - (time.perf_counter() - t0)
    solver.parameters.max_time_in_seconds = max(0.1, remaining)
    if remaining < 0.1 * seconds:
        notes.append(f"cpsat: the warm start, bounds and model took {seconds - remaining:.2f} s of the {seconds:g} s "
                     f"budget; CP-SAT itself searched {solver.parameters.max_time_in_seconds:.2f} s")
    solver.parameters.num_search_workers = p["workers"] or min(8, os.cpu_count() or 1)
    solver.parameters.random_seed = int(options.seed) % (2**31)
    status = solve_stoppable(solver, m)
    status_name = solver.StatusName(status)

    best_x, best_f = np.asarray(x_start, dtype=np.int64), float(f_start)
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        cand = np.array([[solver.BooleanValue(x[i][q]) for q in range(kk)] for i in range(n)], dtype=bool)
        cand_x = cand.argmax(axis=1).astype(np.int64) if n else np.zeros(0, np.int64)
        cand_f = simulate(instance, cand_x, free_f)
        if cand_f < best_f:
            best_x, best_f = cand_x, cand_f
    elif n:
        notes.append(f"cpsat: CP-SAT found no allocation within its time (status {status_name}); the answer is the "
                     f"{warm} warm start")
    bound_source = "block" if pieces else "trivial"
    bound_units = solver.BestObjectiveBound() if n else 0.0
    if n and np.isfinite(bound_units):
        # Undo the scaling. The data were rounded down, and the optimum's schedule rounded up stays feasible
        # under the block cuts at a cost of at most one unit per task, hence the `- n` (see module doc).
        cp_bound = (bound_units - n - float(arrival_units.sum())) / scale
        cp_bound -= 1e-9 * (abs(cp_bound) + 1.0)
        if cp_bound > lower:
            lower, bound_source = cp_bound, "cpsat"
    lower = min(lower, best_f)
    gap = proven_gap(best_f, lower)
    # proven either by CP-SAT at its resolution, or by a bound that meets the best allocation
    optimal = status == cp_model.OPTIMAL or gap <= 1e-9
    extra = {
        "lower_bound": float(lower),
        "optimal": bool(optimal),
        "gap": float(gap),
        "status": status_name,
        "bound_source": bound_source,
        "trivial_bound": trivial,
        "warm_start": warm,
        "warm_start_latency": float(f_start),
        "block_bound_seconds": block_seconds,
        "resolution": p["resolution"],
        "workers": solver.parameters.num_search_workers,
    }
    if notes:
        extra["budget_note"] = "; ".join(notes)
    return best_x, extra


def solve_stoppable(solver: Any, model: Any) -> Any:
    """`solver.Solve(model)` with Ctrl-C working as in the rest of the program: it stops the search at once and
    raises KeyboardInterrupt.

    CP-SAT's own SIGINT catching (its default) ends the search as if its time were up, so an interrupted run
    would print an answer as if nothing had happened; and OR-Tools 9.15 then leaves the process with no SIGINT
    handler at all, so the next Ctrl-C kills it silently. So CP-SAT does not catch the signal; it searches in a
    thread (Solve releases the GIL) and the main thread, where Python raises KeyboardInterrupt, stops it. An
    Event, not Thread.join: a join interrupted by Ctrl-C can return before the thread has ended (CPython 3.11)."""
    solver.parameters.catch_sigint_signal = False
    done, result = threading.Event(), {}

    def search() -> None:
        try:
            result["status"] = solver.Solve(model)
        finally:
            done.set()

    threading.Thread(target=search, name="cp-sat", daemon=True).start()
    try:
        while not done.wait(0.1):
            pass
    except KeyboardInterrupt:
        solver.StopSearch()
        done.wait()
        raise
    return result["status"]
