"""A Lagrangian lower bound on the optimal total delay `f*` (SPEC §1): the proven gap at 1,000 tasks.

**The relaxation.** Drop the constraint "every task goes to exactly one provider" and charge a price
`lam_i` instead. For any prices,

    f* >= L(lam) = sum_i lam_i + sum_k min_{T subset of tasks} [ cost_k(T) - sum_{i in T} lam_i ]

where `cost_k(T)` is the total delay of the tasks `T` alone on provider `k` (FIFO in arrival order,
from the provider's initial free time): the optimal allocation splits the tasks into sets `T_k` and
pays exactly `sum_k cost_k(T_k)`, which is one candidate of each minimum. This is the bound of the
set-partitioning LP over per-provider FIFO sequences (van den Akker, Hoogeveen & van de Velde, 1999),
reached here by subgradient ascent on `lam` instead of by column generation: every `L(lam)` computed
is a valid bound whatever `lam` is, and the reported bound is the best one seen.

**The pricing problem** (one provider) is a shortest path over the tasks in arrival order whose state
is the provider's free time `F`. It is solved by a label DP: a label `(F, c)` is a partial choice
with free time `F` and cost `c`; taking task `i` gives `(max(ready_ik, F) + p_ik, c + that - a_i -
lam_i)`, skipping keeps it. Every later cost is non-decreasing in `F`, so a label `(F, c)` with
`F <= F'` and `c <= c'` dominates `(F', c')`, and only the Pareto front is kept: that is exact. When
the front grows beyond `labels` entries, runs of neighbouring labels (smallest spans of `F` first) are
merged into one `(min F, min c)` label. The merged label dominates every label it replaces, so the DP
still returns a value <= the true minimum and the bound stays valid, only less tight.

Arithmetic is float64; the final bound is multiplied by `1 - 1e-9` against rounding in the sums
(the objective is summed in another order by the kernel).

`lagrangian_bound(instance, upper=...)` uses the best known total delay (`upper`, e.g. the GA's) for
Polyak's step size; without one it uses greedy's. Cost: `iterations x K x n x labels` elementary
steps (about 0.5 s per 100 iterations at 1,000 tasks, K = 3, 128 labels).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Callable

import numba as nb
import numpy as np

from edgepoc.game.instance import Instance, warm_up_instance
from edgepoc.game.kernel import greedy_assignment

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from edgepoc.solvers.registry import SolveOptions

SAFETY = 1.0 - 1e-9


@nb.njit(cache=True, nogil=True)
def _price(arrival, ready_k, proc_k, lam, free0, cap, taken):
    """Min over task subsets of (FIFO delay on this provider - sum lam), relaxed by label merging when the
    front exceeds `cap`. Marks the minimising (possibly merged) path's tasks in `taken` (bool, n)."""
    n = arrival.shape[0]
    big = 4 * cap + 4
    f_cur = np.empty(big)
    c_cur = np.empty(big)
    id_cur = np.empty(big, dtype=np.int64)  # index of the label's record in the history
    f_new = np.empty(big)
    c_new = np.empty(big)
    id_new = np.empty(big, dtype=np.int64)
    # candidate lists for one stage
    f_s = np.empty(big)
    c_s = np.empty(big)
    p_s = np.empty(big, dtype=np.int64)
    t_s = np.empty(big, dtype=np.bool_)
    f_t = np.empty(big)
    c_t = np.empty(big)
    p_t = np.empty(big, dtype=np.int64)
    # history: parent record and whether the task was taken; record r belongs to stage stage_of[r]
    size = 64 * n + 1
    hist_parent = np.empty(size, dtype=np.int64)
    hist_take = np.empty(size, dtype=np.bool_)
    hist_stage = np.empty(size, dtype=np.int64)
    keep_from = np.empty(big, dtype=np.int64)  # label q of the new front: F of a run's first, rest of keep_from[q]
    merged = 0
    n_hist = 1
    hist_parent[0] = -1
    hist_take[0] = False
    hist_stage[0] = -1
    m = 1
    f_cur[0] = free0
    c_cur[0] = 0.0
    id_cur[0] = 0
    gaps = np.empty(big)
    for i in range(n):
        r = ready_k[i]
        p = proc_k[i]
        a = arrival[i]
        li = lam[i]
        # take, from labels with F <= r: all start at r; the best is the last one (cost falls with F)
        nt = 0
        j_last = np.searchsorted(f_cur[:m], r, side="right") - 1  # last label with F <= r
        if j_last >= 0:
            cc = r + p
            lat = cc - a
            if lat < 0.0:
                lat = 0.0
            f_t[nt] = cc
            c_t[nt] = c_cur[j_last] + lat - li
            p_t[nt] = j_last
            nt += 1
        for j in range(j_last + 1, m):
            cc = f_cur[j] + p
            lat = cc - a
            if lat < 0.0:
                lat = 0.0
            f_t[nt] = cc
            c_t[nt] = c_cur[j] + lat - li
            p_t[nt] = j
            nt += 1
        # merge skip (f_cur order) and take (f_t order, ascending) by F; keep the Pareto front
        a_i = 0
        b_i = 0
        ns = 0
        best = np.inf
        while a_i < m or b_i < nt:
            use_take = False
            if a_i >= m:
                use_take = True
            elif b_i < nt:
                if f_t[b_i] < f_cur[a_i] or (f_t[b_i] == f_cur[a_i] and c_t[b_i] < c_cur[a_i]):
                    use_take = True
            if use_take:
                fv = f_t[b_i]
                cv = c_t[b_i]
                pv = p_t[b_i]
                tv = True
                b_i += 1
            else:
                fv = f_cur[a_i]
                cv = c_cur[a_i]
                pv = a_i
                tv = False
                a_i += 1
            if cv < best:
                best = cv
                f_s[ns] = fv
                c_s[ns] = cv
                p_s[ns] = pv
                t_s[ns] = tv
                ns += 1
        # too many labels: merge runs of neighbours with the smallest F spans into (min F, min c)
        nk = ns
        if ns > cap:
            merged += 1
            for q in range(ns - 1):
                gaps[q] = f_s[q + 1] - f_s[q]
            thr = np.sort(gaps[:ns - 1])[ns - cap - 1]
            nk = 0
            q = 0
            while q < ns:
                first = q
                while q + 1 < ns and gaps[q] <= thr:
                    q += 1
                # group first..q -> one label: F of first, cost (and path) of q
                f_new[nk] = f_s[first]
                c_new[nk] = c_s[q]
                keep_from[nk] = q
                nk += 1
                q += 1
        else:
            for q in range(ns):
                f_new[q] = f_s[q]
                c_new[q] = c_s[q]
                keep_from[q] = q
        if n_hist + nk > size:  # grow the history
            size = 2 * size + nk
            hp = np.empty(size, dtype=np.int64)
            ht = np.empty(size, dtype=np.bool_)
            hs = np.empty(size, dtype=np.int64)
            hp[:n_hist] = hist_parent[:n_hist]
            ht[:n_hist] = hist_take[:n_hist]
            hs[:n_hist] = hist_stage[:n_hist]
            hist_parent = hp
            hist_take = ht
            hist_stage = hs
        for q in range(nk):
            src = keep_from[q]
            if t_s[src]:  # a take: a new record; a skip keeps its label's record
                hist_parent[n_hist] = id_cur[p_s[src]]
                hist_take[n_hist] = True
                hist_stage[n_hist] = i
                id_new[q] = n_hist
                n_hist += 1
            else:
                id_new[q] = id_cur[p_s[src]]
        m = nk
        for q in range(m):
            f_cur[q] = f_new[q]
            c_cur[q] = c_new[q]
            id_cur[q] = id_new[q]
    # the minimum is the last label (costs fall along the front)
    value = c_cur[m - 1]
    for i in range(n):
        taken[i] = False
    rec = id_cur[m - 1]
    while rec > 0:
        if hist_take[rec]:
            taken[hist_stage[rec]] = True
        rec = hist_parent[rec]
    return value, merged


@nb.njit(cache=True, nogil=True)
def _dual(arrival, ready, proc, lam, free0, cap, taken):
    """`L(lam)` and the tasks each provider's pricing problem took (taken: (K, n))."""
    total = 0.0
    merged = 0
    for i in range(lam.shape[0]):
        total += lam[i]
    for k in range(free0.shape[0]):
        v, mg = _price(arrival, ready[:, k].copy(), proc[:, k].copy(), lam, free0[k], cap, taken[k])
        total += v
        merged += mg
    return total, merged


@nb.njit(cache=True, nogil=True)
def _marginals(arrival, ready, proc, x, free0, out):
    """`out[i]` = total delay of allocation `x` minus that of `x` without task `i` (its own delay plus what
    it holds up behind it on its provider): a dual start close to the prices the LP settles on."""
    n = arrival.shape[0]
    free = free0.copy()
    before = np.empty(n)
    comp = np.empty(n)
    for i in range(n):
        k = x[i]
        before[i] = free[k]
        s = ready[i, k]
        if free[k] > s:
            s = free[k]
        comp[i] = s + proc[i, k]
        free[k] = comp[i]
    for i in range(n):
        k = x[i]
        own = comp[i] - arrival[i]
        total = own if own > 0.0 else 0.0
        f = before[i]
        for j in range(i + 1, n):
            if x[j] != k:
                continue
            s = ready[j, k]
            if f > s:
                s = f
            c = s + proc[j, k]
            total += comp[j] - c
            f = c
            if c >= comp[j]:
                break
        out[i] = total


def lagrangian_bound(instance: Instance, free_times: ArrayLike | None = None, *, upper: float | None = None,
                     assignment: np.ndarray | None = None, iterations: int = 300, labels: int = 16384,
                     seconds: float | None = None, stall: int = 20, clock: str = "wall",
                     on_iteration: Callable[[], None] | None = None) -> dict:
    """Subgradient ascent on the task prices. Returns `{"bound", "iterations", "seconds", "exact_pricing",
    "history"}`; `exact_pricing` is False when some pricing DP merged labels (the bound is valid either way).

    `upper` (a known total delay, e.g. the GA's) steers Polyak's step size and `assignment` (the allocation
    that reached it) gives the starting prices; neither enters the bound's validity. Without them greedy's
    are used. Stops after `iterations`, or `seconds` on `clock` ("wall", or "cpu": this thread's CPU
    time), or when the bound meets `upper` within 1e-9. `on_iteration()` is called after each iteration (a
    progress bar).
    """
    t0 = time.perf_counter()
    now = time.thread_time if clock == "cpu" else time.perf_counter
    c0 = now()
    n, kk = instance.n_tasks, instance.n_providers
    free0 = np.zeros(kk) if free_times is None else np.asarray(free_times, dtype=np.float64)
    if n == 0:
        return {"bound": 0.0, "iterations": 0, "seconds": 0.0, "exact_pricing": True, "history": []}
    arrival, ready, proc = instance.arrival, instance.ready, instance.processing
    if upper is None or assignment is None:
        gx, gf = greedy_assignment(instance, free0)
        upper = gf if upper is None else upper
        assignment = gx if assignment is None else assignment
    lam = np.empty(n)
    _marginals(arrival, ready, proc, np.asarray(assignment, dtype=np.int64), free0, lam)
    taken = np.zeros((kk, n), dtype=np.bool_)
    if seconds is not None:
        labels = _labels_that_fit(arrival, ready, proc, lam, free0, labels, seconds / ITERATIONS_IN_BUDGET)
    best, best_lam = -np.inf, lam.copy()
    theta, since = 1.0, 0
    history: list[float] = []
    exact = True
    it = 0
    for it in range(1, iterations + 1):
        value, merged = _dual(arrival, ready, proc, lam, free0, labels, taken)
        exact = exact and merged == 0
        if on_iteration is not None:
            on_iteration()
        history.append(value)
        if value > best:
            best, best_lam, since = value, lam.copy(), 0
        else:
            since += 1
            if since >= stall:
                theta, since = theta * 0.5, 0
                lam = best_lam.copy()
                continue
        g = 1.0 - taken.sum(axis=0)
        norm = float(g @ g)
        if norm == 0.0 or best >= upper * (1 - 1e-9):
            break  # the relaxed choice is a partition (optimal for these prices), or the bound meets upper
        lam = lam + theta * max(upper - value, 1e-9 * upper) / norm * g
        if theta < 1e-3 or (seconds is not None and now() - c0 > seconds):
            break
    bound = max(float(best), 0.0) * SAFETY
    return {"bound": bound, "iterations": it, "seconds": time.perf_counter() - t0, "exact_pricing": exact,
            "history": history}


ITERATIONS_IN_BUDGET = 20  # a time budget leaves room for at least this many iterations (label cap permitting)
_PROBE_TASKS = 2000


def _labels_that_fit(arrival, ready, proc, lam, free0, labels: int, per_iteration: float) -> int:
    """The label cap (at most `labels`) whose iteration fits `per_iteration` seconds, estimated by pricing a
    prefix of the tasks: a DP's time grows with the tasks times the labels kept. The cap grows from 16 by
    fours while the next one's estimate fits, so no probe costs more than a prefix of an iteration that fits.
    At 1,000 tasks the default cap fits any budget of seconds; at 50,000 tasks one iteration at the default cap
    took 48 s on this machine."""
    n = arrival.shape[0]
    if n <= _PROBE_TASKS:
        return labels
    m = _PROBE_TASKS
    probe_taken = np.zeros((free0.shape[0], m), dtype=np.bool_)
    cap = min(16, labels)
    while cap < labels:
        t = time.perf_counter()
        _, merged = _dual(arrival[:m], ready[:m], proc[:m], lam[:m], free0, cap, probe_taken)
        estimate = (time.perf_counter() - t) * n / m
        if merged == 0:
            return labels  # the cap does not bind on the prefix: it does not set the time either
        if estimate * 4 > per_iteration:
            break
        cap *= 4
    return min(cap, labels)


_WARM = False


def warm_up() -> None:
    """Compile (or load from Numba's cache) the pricing DP and the GA, once per process, outside any clock."""
    global _WARM
    if _WARM:
        return
    _WARM = True
    from edgepoc.solvers.ga import warm_up as ga_warm_up

    ga_warm_up()
    inst = warm_up_instance()
    lagrangian_bound(inst, iterations=2)


BOUND_DEFAULTS: dict[str, Any] = {
    "iterations": 300,  # subgradient iterations (each prices every provider once)
    "labels": 16384,  # label cap of the pricing DP (merging beyond it keeps the bound valid, looser)
    "upper": "ga",  # the allocation whose delay steers the steps: "ga" or "greedy"
    "ga_seconds": 5.0,  # the GA's budget when no --seconds is given
    "ga_share": 0.2,  # with --seconds: the GA's share of it; the bound gets the rest
    # without --seconds: the bounds' wall-clock cap (300 iterations on a 1,000-task varied instance could take
    # a quarter of an hour in silence; bench_bound caps them at 120 s of CPU too)
    "bound_seconds": 120.0,
}


def solve_bound(instance: Instance, options: SolveOptions) -> tuple[np.ndarray, dict[str, Any]]:
    """Registry method `bound`: the best allocation known (GA, or greedy) and a proven lower bound on `f*`.

    The allocation JSON keeps SPEC §2's fields (`assignment` and `total_latency` are the upper allocation's)
    and adds `lower_bound` (the best of the Lagrangian, block and trivial bounds, all valid),
    `bound_source`, `gap` (`total_latency / lower_bound - 1`: the proven distance of that allocation
    from the optimum), `lagrangian_bound`, `block_bound`, `trivial_bound`, `iterations`, `exact_pricing`,
    `bound_seconds` and `upper_method`.
    """
    from edgepoc.errors import InputError
    from edgepoc.game.kernel import simulate
    from edgepoc.solvers.bounds import block_bound, proven_gap, trivial_bound
    from edgepoc.solvers.ga import GAConfig, PolicyModel
    from edgepoc.solvers.registry import Every

    unknown = sorted(set(options.params) - set(BOUND_DEFAULTS))
    if unknown:
        raise InputError(f"bound: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(BOUND_DEFAULTS)}")
    p = {**BOUND_DEFAULTS, **options.params}
    if not isinstance(p["iterations"], int) or p["iterations"] < 1:
        raise InputError(f"bound: iterations must be a positive integer, got {p['iterations']!r}")
    if not isinstance(p["labels"], int) or p["labels"] < 2:
        raise InputError(f"bound: labels must be an integer >= 2, got {p['labels']!r}")
    if p["upper"] not in ("ga", "greedy"):
        raise InputError(f"bound: upper must be ga or greedy, got {p['upper']!r}")
    if not isinstance(p["ga_share"], (int, float)) or not 0 < p["ga_share"] < 1:
        raise InputError(f"bound: ga_share must be in (0, 1), got {p['ga_share']!r}")
    if (isinstance(p["bound_seconds"], bool) or not isinstance(p["bound_seconds"], (int, float))
            or not 0 < p["bound_seconds"] < math.inf):
        raise InputError(f"bound: bound_seconds must be a finite number > 0, got {p['bound_seconds']!r}")
    t0 = time.perf_counter()
    free0 = None if options.free_times is None else np.asarray(options.free_times, dtype=np.float64)
    notes = []
    # progress in seconds of the whole budget (the default one: the GA's 5 s and the bounds' cap of 120 s)
    budget = options.seconds if options.seconds is not None else (
        float(p["bound_seconds"]) + (float(p["ga_seconds"]) if p["upper"] == "ga" else 0.0))
    every = Every()

    def tell(last: bool = False) -> None:
        if options.progress is not None and every.due(last):
            options.progress(min(time.perf_counter() - t0, budget), budget)
    tell()
    if p["upper"] == "ga":
        ga_seconds = float(p["ga_seconds"]) if options.seconds is None else p["ga_share"] * options.seconds
        res = PolicyModel(GAConfig(), seed=options.seed).solve(instance, free0, ga_seconds,
                                                               progress=lambda *_: tell())
        x, upper = res.assignment, res.total_latency
        if res.budget_note:
            notes.append(res.budget_note)
    else:
        x, upper = greedy_assignment(instance, free0)
    capped = options.seconds is None  # the default cap, not the user's budget, bounds the time
    left = float(p["bound_seconds"]) if capped else max(0.0, options.seconds - (time.perf_counter() - t0))
    # the block bound first, on at most a tenth of what is left (cheap at 1,000 tasks, minutes at 50,000)
    t_block = time.perf_counter()
    block, _, unproven = block_bound(instance, free0, deadline=t_block + 0.1 * left)
    if unproven:
        notes.append(f"bound: the block bound ran out of its tenth of the budget; {unproven} of {instance.n_tasks} "
                     "tasks count with the trivial bound there")
    left = max(0.0, left - (time.perf_counter() - t_block))
    tell()
    lag = lagrangian_bound(instance, free0, upper=upper, assignment=x, iterations=p["iterations"],
                           labels=p["labels"], seconds=left, on_iteration=tell)
    tell(last=True)
    if capped and lag["seconds"] >= left and lag["iterations"] < p["iterations"] and lag["bound"] < upper * (1 - 1e-9):
        notes.append(f"bound: the Lagrangian stopped on its default cap of {p['bound_seconds']:g} s after "
                     f"{lag['iterations']} of {p['iterations']} iterations (give --seconds, or -p bound_seconds=S)")
    trivial = trivial_bound(instance, free0)
    lower, source = max((lag["bound"], "lagrangian"), (block, "block"), (trivial, "trivial"))
    total = simulate(instance, x, free0)
    lower = min(lower, total)
    gap = proven_gap(total, lower)
    extra = {
        "lower_bound": float(lower), "bound_source": source, "gap": float(gap), "upper_method": p["upper"],
        "lagrangian_bound": float(lag["bound"]), "block_bound": float(block), "trivial_bound": float(trivial),
        "iterations": int(lag["iterations"]), "exact_pricing": bool(lag["exact_pricing"]),
        "bound_seconds": float(lag["seconds"]),
    }
    if notes:
        extra["budget_note"] = "; ".join(notes)
    return np.asarray(x, dtype=np.int64), extra
