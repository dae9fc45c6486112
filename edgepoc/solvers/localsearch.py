"""Single-task-move local search on the FIFO queues, compiled with Numba.

Moving task `i` from provider `a` to `b` changes only tasks `j >= i` queued on `a` or `b`, and only
until both queues are back on their old trajectory (a provider that idles before task `j` starts it at
its ready time whatever happened earlier). So a move is priced by re-walking that short stretch against
the stored free-time history instead of re-simulating all `n` tasks: at load 0.9 a move costs tens of
task steps, a full sweep over all `n*(K-1)` moves a fraction of a millisecond per 1000 tasks.

The queue step is the kernel's own (`edgepoc.game.kernel.completion_time`); the solvers never trust
these deltas for reporting, the final allocation is always re-simulated by the shared kernel.

Swaps (tasks `i < j` close in arrival order exchange providers) are priced the same way. They matter:
from the greedy allocation of a 1000-task `paper` instance, single moves alone cut the delay by 9-23%,
moves plus swaps within 8 tasks by 19-30%, in about 10 ms.

Two descents share these prices. `local_search` sweeps every task until a sweep finds nothing (the GA's
children). `descend` examines only MARKED tasks ("don't-look bits"): after a move it marks the tasks
whose prices the move can have changed (the stretch until the queues resync, and every earlier task whose
own moves reached that far when last examined), and after a kick only those around what the kick
changed. An iterated search repairs a kick of 2 tasks in tens of task examinations instead of two full
sweeps, so the same work buys ~30x the kicks (the models' search loop, `edgepoc.models.decoding.search`).

That loop's kick is `redecode_window`: a window of consecutive tasks decided again by sampled greedy on the
queues before it (`queue_history`), the rest kept.
"""

from __future__ import annotations

import time
import warnings

import numba as nb
import numpy as np
from numba.core.errors import NumbaWarning

from edgepoc.game.kernel import completion_time

# The deadline check enters object mode (to read the clock), which holds the GIL; nothing here runs
# in parallel threads, so Numba's warning about nogil is noise.
warnings.filterwarnings("ignore", message="Code running in object mode", category=NumbaWarning)


@nb.njit(cache=True, nogil=True)
def _history(arrival, ready, proc, x, free0, completion, free_before, first):
    """Fill `completion` (n,) and `free_before` (n+1, K) from task `first` on (rows before it are kept).

    `free_before[i]` holds the providers' free times just before task `i`. Returns the total delay.
    """
    n = arrival.shape[0]
    kk = free0.shape[0]
    if first == 0:
        for k in range(kk):
            free_before[0, k] = free0[k]
    total = 0.0
    for i in range(first):
        lat = completion[i] - arrival[i]
        if lat > 0.0:
            total += lat
    for i in range(first, n):
        k = x[i]
        c = completion_time(free_before[i, k], ready[i, k], proc[i, k])
        completion[i] = c
        for q in range(kk):
            free_before[i + 1, q] = free_before[i, q]
        free_before[i + 1, k] = c
        lat = c - arrival[i]
        if lat > 0.0:
            total += lat
    return total


@nb.njit(cache=True, nogil=True)
def _move_delta(arrival, ready, proc, x, completion, free_before, i, b):
    """`(change of the total delay, stop)` if task `i` moves from `x[i]` to provider `b` (all else fixed); the
    move changes nothing from task `stop` on (the queues are back on the stored trajectory there)."""
    n = arrival.shape[0]
    a = x[i]
    fa = free_before[i, a]
    fb = free_before[i, b]
    c = completion_time(fb, ready[i, b], proc[i, b])
    fb = c
    delta = max(c - arrival[i], 0.0) - max(completion[i] - arrival[i], 0.0)
    for j in range(i + 1, n):
        if fa == free_before[j, a] and fb == free_before[j, b]:
            return delta, j  # both queues are back on the old trajectory: nothing further changes
        k = x[j]
        if k == a:
            c = completion_time(fa, ready[j, a], proc[j, a])
            fa = c
        elif k == b:
            c = completion_time(fb, ready[j, b], proc[j, b])
            fb = c
        else:
            continue
        delta += max(c - arrival[j], 0.0) - max(completion[j] - arrival[j], 0.0)
    return delta, n


@nb.njit(cache=True, nogil=True)
def _swap_delta(arrival, ready, proc, x, completion, free_before, i, j):
    """`(change of the total delay, stop)` if tasks `i < j` (on different providers) exchange providers."""
    n = arrival.shape[0]
    a = x[i]
    b = x[j]
    fa = free_before[i, a]
    fb = free_before[i, b]
    delta = 0.0
    for t in range(i, n):
        if t > j and fa == free_before[t, a] and fb == free_before[t, b]:
            return delta, t
        k = x[t]
        if t == i:
            k = b
        elif t == j:
            k = a
        if k == a:
            c = completion_time(fa, ready[t, a], proc[t, a])
            fa = c
        elif k == b:
            c = completion_time(fb, ready[t, b], proc[t, b])
            fb = c
        else:
            continue
        delta += max(c - arrival[t], 0.0) - max(completion[t] - arrival[t], 0.0)
    return delta, n


@nb.njit(cache=True, nogil=True)
def _best_move(arrival, ready, proc, x, completion, free_before, i, tol):
    """Task `i`'s best single move: `(provider, or -1 if none improves by more than -tol; the lowest delta
    over all its moves; where that lowest-delta move's change stops)` (first best on ties)."""
    best_b = -1
    best_d = tol
    low = np.inf
    far = i + 1
    for b in range(free_before.shape[1]):
        if b == x[i]:
            continue
        d, stop = _move_delta(arrival, ready, proc, x, completion, free_before, i, b)
        if d < low:
            low = d
            far = stop
        if d < best_d:
            best_d = d
            best_b = b
    return best_b, low, far


@nb.njit(cache=True, nogil=True)
def _best_swap(arrival, ready, proc, x, completion, free_before, i, swap_window, tol):
    """Task `i`'s best swap with a task at most `swap_window` later: `(that task, or -1; the lowest delta;
    where its change stops)`, as `_best_move`."""
    n = arrival.shape[0]
    best_j = -1
    best_d = tol
    low = np.inf
    far = i + 1
    for j in range(i + 1, min(n, i + 1 + swap_window)):
        if x[j] == x[i]:
            continue
        d, stop = _swap_delta(arrival, ready, proc, x, completion, free_before, i, j)
        if d < low:
            low = d
            far = stop
        if d < best_d:
            best_d = d
            best_j = j
    return best_j, low, far


@nb.njit(cache=True, nogil=True)
def _local_search(arrival, ready, proc, x, free0, max_sweeps, start, swap_window, deadline):
    """First-improvement descent over single-task moves, in place on `x`; returns (total, sweeps).

    A sweep tries every task (beginning at `start`, wrapping around) on every other provider and
    takes each improving move at once. Stops at a local optimum, after `max_sweeps` sweeps, or when
    `time.perf_counter()` passes `deadline` (checked every 32 tasks; `inf`: never checked). On an
    overloaded instance one sweep is O(n^2), so a decoder's time budget needs the check inside.
    """
    n = arrival.shape[0]
    kk = free0.shape[0]
    completion = np.empty(n, dtype=np.float64)
    free_before = np.empty((n + 1, kk), dtype=np.float64)
    total = _history(arrival, ready, proc, x, free0, completion, free_before, 0)
    sweeps = 0
    while sweeps < max_sweeps:
        sweeps += 1
        improved = False
        for step in range(n):
            if deadline < np.inf and (step & 31) == 0:
                with nb.objmode(now="float64"):
                    now = time.perf_counter()
                if now > deadline:
                    return total, sweeps
            i = (start + step) % n
            best_b, _, _ = _best_move(arrival, ready, proc, x, completion, free_before, i,
                                      -1e-9 * (1.0 + total) / (n + 1.0))
            if best_b >= 0:
                x[i] = best_b
                total = _history(arrival, ready, proc, x, free0, completion, free_before, i)
                improved = True
            if i + 1 >= n:
                continue
            best_j, _, _ = _best_swap(arrival, ready, proc, x, completion, free_before, i, swap_window,
                                      -1e-9 * (1.0 + total) / (n + 1.0))
            if best_j >= 0:
                tmp = x[i]
                x[i] = x[best_j]
                x[best_j] = tmp
                total = _history(arrival, ready, proc, x, free0, completion, free_before, i)
                improved = True
        if not improved:
            break
    return total, sweeps


# A change at task `i` re-prices the moves of earlier tasks whose stretch (from the task to where the queues
# resync) reaches `i`. Each examined task records how far its moves reached (`reach`); a task not yet examined
# in this search is assumed to reach this many places. (On tuning instances 8 and 32 were no better than 16.)
LOOK_BACK = 16


@nb.njit(cache=True, nogil=True)
def _rewalk(arrival, ready, proc, x, completion, free_before, first, last):
    """Re-walk the stored history after `x` changed at tasks `first` (and `last` >= `first`), stopping once
    the queues are back on the stored trajectory past `last` (from there on nothing differs). Returns
    `(change of the total delay, end)`: rows before `end` were updated."""
    n = arrival.shape[0]
    kk = free_before.shape[1]
    delta = 0.0
    for t in range(first, n):
        k = x[t]
        c = completion_time(free_before[t, k], ready[t, k], proc[t, k])
        a = arrival[t]
        delta += max(c - a, 0.0) - max(completion[t] - a, 0.0)
        completion[t] = c
        same = True
        for q in range(kk):
            v = c if q == k else free_before[t, q]
            if free_before[t + 1, q] != v:
                same = False
                free_before[t + 1, q] = v
        if same and t >= last:
            return delta, t + 1
    return delta, n


@nb.njit(cache=True, nogil=True)
def _mark_reaching(marked, reach, first, end):
    """Mark the tasks [first, end) that changed and every earlier task whose moves reach `first`; returns how
    many were not marked before."""
    added = 0
    for t in range(first, end):
        if not marked[t]:
            marked[t] = True
            added += 1
    for t in range(first - 1, -1, -1):
        if reach[t] > first and not marked[t]:
            marked[t] = True
            added += 1
    return added


@nb.njit(cache=True, nogil=True)
def _mark_changed(arrival, ready, proc, x_before, x, free0, reach, marked):
    """Mark every task whose provider or queue state differs between `x_before` and `x`, and every earlier
    task whose moves reach such a task."""
    n = arrival.shape[0]
    kk = free0.shape[0]
    f_before = free0.copy()
    f_now = free0.copy()
    next_changed = n  # walking backwards: the first changed task after the current one
    changed = np.zeros(n, dtype=np.bool_)
    for t in range(n):
        c = x_before[t] != x[t]
        for q in range(kk):
            if f_before[q] != f_now[q]:
                c = True
        changed[t] = c
        k = x_before[t]
        f_before[k] = completion_time(f_before[k], ready[t, k], proc[t, k])
        k = x[t]
        f_now[k] = completion_time(f_now[k], ready[t, k], proc[t, k])
    for t in range(n - 1, -1, -1):
        if changed[t] or reach[t] > next_changed:
            marked[t] = True
        if changed[t]:
            next_changed = t


@nb.njit(cache=True, nogil=True)
def _descend(arrival, ready, proc, x, free0, marked, reach, max_evals, swap_window, deadline):
    """First-improvement descent over the marked tasks, in place on `x`: each marked task is examined once
    (all moves, then swaps within `swap_window`), unmarked, and its `reach` recorded; an improving change
    marks what it re-prices. Ends when nothing is marked, after `max_evals` task examinations or at
    `deadline` (checked every 32). Returns `(total delay, examinations)`."""
    n = arrival.shape[0]
    kk = free0.shape[0]
    completion = np.empty(n, dtype=np.float64)
    free_before = np.empty((n + 1, kk), dtype=np.float64)
    total = _history(arrival, ready, proc, x, free0, completion, free_before, 0)
    pending = 0
    for t in range(n):
        if marked[t]:
            pending += 1
    evals = 0
    while pending > 0 and evals < max_evals:
        for i in range(n):
            if not marked[i]:
                continue
            if evals >= max_evals:
                break
            if deadline < np.inf and (evals & 31) == 0:
                with nb.objmode(now="float64"):
                    now = time.perf_counter()
                if now > deadline:
                    return _history(arrival, ready, proc, x, free0, completion, free_before, 0), evals
            marked[i] = False
            pending -= 1
            evals += 1
            tol = -1e-9 * (1.0 + total) / (n + 1.0)
            # the reach recorded is that of the most promising change examined (lowest delta, improving or not)
            best_b, low, far = _best_move(arrival, ready, proc, x, completion, free_before, i, tol)
            if best_b >= 0:
                x[i] = best_b
                d, end = _rewalk(arrival, ready, proc, x, completion, free_before, i, i)
                total += d
                pending += _mark_reaching(marked, reach, i, end)
            if i + 1 < n:
                best_j, low_swap, far_swap = _best_swap(arrival, ready, proc, x, completion, free_before, i,
                                                        swap_window, tol)
                if low_swap < low:
                    far = far_swap
                if best_j >= 0:
                    tmp = x[i]
                    x[i] = x[best_j]
                    x[best_j] = tmp
                    d, end = _rewalk(arrival, ready, proc, x, completion, free_before, i, best_j)
                    total += d
                    pending += _mark_reaching(marked, reach, i, end)
            reach[i] = far
    # the running total is a sum of deltas; the answer is the history's own sum
    return _history(arrival, ready, proc, x, free0, completion, free_before, 0), evals


@nb.njit(cache=True, nogil=True)
def draw_index(weights, u):
    """The index drawn from the unnormalised `weights` by the uniform `u` in [0, 1) (inverse CDF; the last index
    if rounding leaves `u * sum` beyond the running sum): the one categorical draw of the compiled decoders."""
    z = 0.0
    for k in range(weights.shape[0]):
        z += weights[k]
    r = u * z
    acc = 0.0
    for k in range(weights.shape[0]):
        acc += weights[k]
        if r < acc:
            return k
    return weights.shape[0] - 1


@nb.njit(cache=True, nogil=True)
def _redecode_window(arrival, ready, proc, x, free_start, first, end, unit, temperature, uniforms, out):
    """`out` = `x` with tasks `first..end-1` decided again in arrival order from the free times `free_start`
    (the queues before task `first`): each drawn from softmax(-latency / (unit * temperature)) over the
    providers, one of `uniforms` per task. The other tasks keep their providers."""
    n = arrival.shape[0]
    kk = free_start.shape[0]
    free = free_start.copy()
    for i in range(n):
        out[i] = x[i]
    weight = np.empty(kk)
    for i in range(first, end):
        best = np.inf
        for k in range(kk):
            weight[k] = completion_time(free[k], ready[i, k], proc[i, k]) - arrival[i]
            if weight[k] < best:
                best = weight[k]
        for k in range(kk):
            weight[k] = np.exp(-(weight[k] - best) / (unit * temperature))
        pick = draw_index(weight, uniforms[i - first])
        out[i] = pick
        free[pick] = completion_time(free[pick], ready[i, pick], proc[i, pick])


def queue_history(instance, x: np.ndarray, free_times: np.ndarray | None = None) -> np.ndarray:
    """(n + 1, K): the providers' free times just before each task under allocation `x` (row n: after all)."""
    k, n = instance.n_providers, instance.n_tasks
    free0 = np.zeros(k) if free_times is None else np.asarray(free_times, dtype=np.float64)
    free_before = np.empty((n + 1, k))
    _history(instance.arrival, instance.ready, instance.processing, np.ascontiguousarray(x, dtype=np.int8), free0,
             np.empty(n), free_before, 0)
    return free_before


def redecode_window(instance, x: np.ndarray, history: np.ndarray, first: int, size: int, temperature: float,
                    rng: np.random.Generator, unit: float | None = None) -> np.ndarray:
    """A kick for the iterated search: a copy of `x` (int8) whose tasks `first .. first+size-1` are decided
    again by sampled greedy on the queues the earlier tasks build (`history`: `queue_history(x)`), each
    task's provider drawn with weight exp(-latency / (mean processing time * temperature)) (temperature
    near 0: greedy); the tasks after the window keep their providers.

    Moving a few random tasks breaks one or two decisions at a time; a window re-decode changes tasks that
    share queues and time together, each near-greedy given the others, and so reaches allocations that
    single moves and swaps repaired one at a time do not (docs/models.md, "Window kicks"). `unit`: the
    instance's mean processing time, when the caller has it already."""
    n = instance.n_tasks
    first = int(min(max(first, 0), n))
    end = int(min(n, first + max(size, 0)))
    if unit is None:
        unit = float(instance.processing.mean()) if n else 1.0
    out = np.empty(n, dtype=np.int8)
    _redecode_window(instance.arrival, instance.ready, instance.processing, np.ascontiguousarray(x, dtype=np.int8),
                     np.ascontiguousarray(history[first], dtype=np.float64), first, end, unit if unit > 0 else 1.0,
                     float(temperature), rng.random(end - first), out)
    return out


def unknown_reach(n_tasks: int) -> np.ndarray:
    """`reach` before any task was examined: each task's moves assumed to reach `LOOK_BACK` places on."""
    return np.minimum(np.arange(n_tasks, dtype=np.int64) + 1 + LOOK_BACK, n_tasks)


def descend(instance, x: np.ndarray, free_times: np.ndarray | None = None, *, max_evals: int,
            swap_window: int = 0, changed_from: np.ndarray | None = None, reach: np.ndarray | None = None,
            deadline: float = np.inf) -> tuple[np.ndarray, float, int]:
    """Descend from `x` examining marked tasks only: `(improved copy of x, its delay, task examinations)`.
    Every task starts marked, or with `changed_from` (the allocation `x` was kicked from, a local optimum)
    only the changed ones and those whose moves reach them. `reach` (n,) int64, updated in place: how far
    each task's moves reached when last examined; a search passes the same array to all its descents (None:
    `unknown_reach`). `deadline`: a `time.perf_counter()` value."""
    k, n = instance.n_providers, instance.n_tasks
    free0 = np.zeros(k) if free_times is None else np.asarray(free_times, dtype=np.float64)
    out = np.ascontiguousarray(x, dtype=np.int8).copy()
    reach = unknown_reach(n) if reach is None else reach
    if changed_from is None:
        marked = np.ones(n, dtype=np.bool_)
    else:
        marked = np.zeros(n, dtype=np.bool_)
        _mark_changed(instance.arrival, instance.ready, instance.processing,
                      np.ascontiguousarray(changed_from, dtype=np.int8), out, free0, reach, marked)
    total, evals = _descend(instance.arrival, instance.ready, instance.processing, out, free0, marked, reach,
                            int(max_evals), int(swap_window), float(deadline))
    return out, float(total), int(evals)


def local_search(instance, x: np.ndarray, free_times: np.ndarray | None = None, max_sweeps: int = 1_000_000,
                 start: int = 0, swap_window: int = 0, deadline: float = np.inf) -> tuple[np.ndarray, float, int]:
    """Descend from `x` by single-task moves (and swaps of two tasks at most `swap_window` apart):
    `(improved copy of x, its delay, sweeps)`; `deadline` is a `time.perf_counter()` value."""
    k = instance.n_providers
    free0 = np.zeros(k) if free_times is None else np.asarray(free_times, dtype=np.float64)
    out = np.ascontiguousarray(x, dtype=np.int8).copy()
    total, sweeps = _local_search(instance.arrival, instance.ready, instance.processing, out, free0,
                                  int(max_sweeps), int(start) % max(instance.n_tasks, 1), int(swap_window),
                                  float(deadline))
    return out, float(total), int(sweeps)


def local_search_inplace(instance, x: np.ndarray, free0: np.ndarray, max_sweeps: int, start: int = 0,
                         swap_window: int = 0, deadline: float = np.inf) -> float:
    """Descend in place on a contiguous int8 row (a GA individual); returns its delay. `deadline`: a
    `time.perf_counter()` value after which the descent stops (`inf`: never)."""
    total, _ = _local_search(instance.arrival, instance.ready, instance.processing, x, free0, int(max_sweeps),
                             int(start) % max(instance.n_tasks, 1), int(swap_window), float(deadline))
    return float(total)
