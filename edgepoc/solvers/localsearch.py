"""Single-task-move local search on the FIFO queues, compiled with Numba.

Moving task `i` from provider `a` to `b` changes only tasks `j >= i` queued on `a` or `b`, and only
until both queues are back on their old trajectory (a provider that idles before task `j` starts it at
its ready time whatever happened earlier). So a move is priced by re-walking that short stretch against
the stored free-time history instead of re-simulating all `n` tasks: at load 0.9 a move costs tens of
task steps, a full sweep over all `n*(K-1)` moves a fraction of a millisecond per 1000 tasks. On a long
backlog the queues never resync; the GA's descent (`local_search`) prices on a queue index instead, in
O(log n) per move (below, "the queue index"). At many providers most moves are ruled out unpriced: a move's
price is at least the task's own change plus what its old queue gains without it (its new queue only loses), so
a provider whose bound is above the best price so far is passed over, with the same answers.

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
queues before it (`queue_history`), the rest kept. The loop itself runs it in place (`WindowKicks`): it keeps
the best allocation with its history, re-walks only what the window changes and copies back only the rows a
kick touched, so a kick costs its own stretch, not a rebuild of all n tasks' history (the same answers).
"""

from __future__ import annotations

import time
import warnings
from typing import TYPE_CHECKING

import numba as nb
import numpy as np
from numba.core.errors import NumbaWarning

from edgepoc.game.kernel import completion_time
from edgepoc.game.validate import ASSIGNMENT_DTYPE

if TYPE_CHECKING:
    from edgepoc.game.instance import Instance

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
def _total_delay(arrival, completion):
    """The total delay of a history's completions, summed in task order as `_history` sums it (bit for bit)."""
    total = 0.0
    for i in range(arrival.shape[0]):
        lat = completion[i] - arrival[i]
        if lat > 0.0:
            total += lat
    return total


@nb.njit(cache=True, nogil=True)
def _history_of_two(arrival, ready, proc, x, completion, free_before, first, a, b):
    """`_history` from task `first` after a change that touched only providers `a` and `b` (a move between
    them, or a swap): only their columns of `free_before` and their tasks' completions can differ, so the
    other K - 2 columns are not rewritten (at K = 127 that was most of a descent's time). Returns the
    total delay."""
    n = arrival.shape[0]
    fa = free_before[first, a]
    fb = free_before[first, b]
    for t in range(first, n):
        k = x[t]
        if k == a:
            fa = completion_time(fa, ready[t, a], proc[t, a])
            completion[t] = fa
        elif k == b:
            fb = completion_time(fb, ready[t, b], proc[t, b])
            completion[t] = fb
        free_before[t + 1, a] = fa
        free_before[t + 1, b] = fb
    return _total_delay(arrival, completion)


@nb.njit(cache=True, nogil=True)
def _move_start(arrival, ready, proc, x, completion, free_before, i, b):
    """Task `i` moved to provider `b`: `(its provider a, a's free time before i, b's free time after i, the change
    of i's own delay)`, where both move pricings begin."""
    a = x[i]
    c = completion_time(free_before[i, b], ready[i, b], proc[i, b])
    return a, free_before[i, a], c, max(c - arrival[i], 0.0) - max(completion[i] - arrival[i], 0.0)


@nb.njit(cache=True, nogil=True)
def _move_delta(arrival, ready, proc, x, completion, free_before, i, b, end=-1):
    """`(change of the total delay, stop)` if task `i` moves from `x[i]` to provider `b` (all else fixed); the
    move changes nothing from task `stop` on (the queues are back on the stored trajectory there). With
    `end` (< n) the walk gives up there: `stop == end` then means the price is unknown."""
    n = arrival.shape[0] if end < 0 else min(end, arrival.shape[0])
    a, fa, fb, delta = _move_start(arrival, ready, proc, x, completion, free_before, i, b)
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
def _swap_delta(arrival, ready, proc, x, completion, free_before, i, j, end=-1):
    """`(change of the total delay, stop)` if tasks `i < j` (on different providers) exchange providers;
    `end` as for `_move_delta`."""
    n = arrival.shape[0] if end < 0 else min(end, arrival.shape[0])
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
def _best_move(arrival, ready, proc, x, completion, free_before, i, tol, qstart, qorder, fpos, queued, bounded):
    """Task `i`'s best single move: `(provider, or -1 if none improves by more than -tol; the lowest delta
    over all its moves; where that lowest-delta move's change stops)` (first best on ties). `queued`: each move
    priced by `_move_delta_queued` over the grouping (`qstart`, `qorder`, `fpos`, which must be `x`'s), the same
    answers; otherwise by `_move_delta` (the grouping is not read)."""
    best_b = -1
    best_d = tol
    low = np.inf
    far = i + 1
    # passed over unpriced: a move whose lower bound (as in `_best_candidate`) is above both the best and the
    # lowest price so far can change neither, so the answers are the same
    # (`bounded`: needs the grouping, i.e. `queued`)
    gain = 0.0
    margin = np.inf
    if bounded:
        gain = _queue_gain_queued(arrival, ready, proc, completion, free_before, qstart, qorder, fpos, x[i], i)
        margin = 1e-9 * (1.0 + abs(max(completion[i] - arrival[i], 0.0)) + abs(gain))
    for b in range(free_before.shape[1]):
        if b == x[i]:
            continue
        # the move's own change, as the walk starts it (`_move_start`), plus the old queue's gain
        if bounded and _move_start(arrival, ready, proc, x, completion, free_before, i, b)[3] + gain \
                > max(low, best_d) + margin:
            continue
        if queued:
            d, stop = _move_delta_queued(arrival, ready, proc, x, completion, free_before, qstart, qorder, fpos, i, b)
        else:
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


# Pricing a move by walking until the queues resync costs O(n) on a long backlog (a burst of arrivals: no
# queue ever idles, so nothing resyncs), which made a sweep O(n^2): 3,000 burst tasks took the GA 6 min.
# Queues are independent, and a change enters a queue's tail as one shift of its free time, which the
# tail's own idle gaps (a delay) or slacks (an advance) absorb task by task. The queue index below holds,
# per queue in task order, those gaps and slacks with prefix sums, a min tree over the slacks and the sums
# of their running minima, so a tail's total change is priced in O(log n): a move in O(log n), a swap of
# tasks w apart in O(w + log n). `_local_search` prices a candidate so when its walk runs long, then
# confirms the one it takes with the exact walk (the prefix sums round differently): every move taken
# improves by the walk's own price, so it cannot cycle on rounding (prices agree to ~1e-12 relative, so
# the choice among candidates differs from the walk's only on such near-ties).


@nb.njit(cache=True, nogil=True)
def _group_by_queue(x, qstart, qorder, fpos):
    """The tasks grouped by provider, in task order: queue q holds `qorder[qstart[q]:qstart[q+1]]`, and `fpos[i]`
    is task i's place there (a counting sort, O(n + K))."""
    n = x.shape[0]
    kk = qstart.shape[0] - 1
    for q in range(kk + 1):
        qstart[q] = 0
    for i in range(n):
        qstart[x[i] + 1] += 1
    for q in range(kk):
        qstart[q + 1] += qstart[q]
    fill = qstart[:kk].copy()
    for i in range(n):
        q = x[i]
        qorder[fill[q]] = i
        fpos[i] = fill[q]
        fill[q] += 1


@nb.njit(cache=True, nogil=True)
def _group_move(qstart, qorder, fpos, i, a, b):
    """The grouping updated for task `i` moved from queue `a` to queue `b` (`_group_by_queue` of the new
    allocation, exactly): the tasks between its old and new place shift by one. Descents once
    regrouped all n tasks after every change they took; this touches only the queues between `a` and `b`."""
    if a == b:
        return
    p = fpos[i]
    lo = qstart[b]
    hi = qstart[b + 1]
    while lo < hi:  # where `i` goes among b's tasks, in task order
        mid = (lo + hi) // 2
        if qorder[mid] < i:
            lo = mid + 1
        else:
            hi = mid
    if a < b:  # the tasks after i's old place up to its new one move down by one
        for t in range(p, lo - 1):
            qorder[t] = qorder[t + 1]
            fpos[qorder[t]] = t
        qorder[lo - 1] = i
        fpos[i] = lo - 1
        for q in range(a + 1, b + 1):
            qstart[q] -= 1
    else:  # from its new place up to its old one, up by one
        for t in range(p, lo, -1):
            qorder[t] = qorder[t - 1]
            fpos[qorder[t]] = t
        qorder[lo] = i
        fpos[i] = lo
        for q in range(b + 1, a + 1):
            qstart[q] += 1


@nb.njit(cache=True, nogil=True)
def _move_delta_queued(arrival, ready, proc, x, completion, free_before, qstart, qorder, fpos, i, b):
    """`_move_delta` (no `end`) walking only the tasks of the two queues, found in the grouping of
    `_group_by_queue`: the same price and stop, with the same sums in the same order, in O(tasks on a and b)
    instead of O(n) reads of (n, K) rows. The stop can only fall right after `i` or right after a task of
    either queue: in between, neither the walk's free times nor the stored ones change."""
    n = arrival.shape[0]
    a, fa, fb, delta = _move_start(arrival, ready, proc, x, completion, free_before, i, b)
    pa = fpos[i] + 1
    ea = qstart[a + 1]
    lo = qstart[b]  # the first task of queue b after i: binary search in its task order
    hi = qstart[b + 1]
    eb = hi
    while lo < hi:
        mid = (lo + hi) // 2
        if qorder[mid] < i:
            lo = mid + 1
        else:
            hi = mid
    pb = lo
    j = i + 1
    while True:
        if j < n and fa == free_before[j, a] and fb == free_before[j, b]:
            return delta, j
        ta = qorder[pa] if pa < ea else n
        tb = qorder[pb] if pb < eb else n
        if ta < tb:
            t = ta
            pa += 1
            c = completion_time(fa, ready[t, a], proc[t, a])
            fa = c
        elif tb < n:
            t = tb
            pb += 1
            c = completion_time(fb, ready[t, b], proc[t, b])
            fb = c
        else:
            return delta, n
        delta += max(c - arrival[t], 0.0) - max(completion[t] - arrival[t], 0.0)
        j = t + 1


@nb.njit(cache=True, nogil=True)
def _index_queues(ready, x, free_before, qstart, qorder, fpos, gap_cum, gap_pre, slack, tree, tail_min):
    """Fill the queue index of allocation `x` from its history `free_before` (see above).

    Flat positions group the tasks by queue, in task order: queue q holds `qorder[qstart[q]:qstart[q+1]]`,
    `fpos[i]` is task i's position. Per position f (task t on queue q, free time F before it):
    `gap_cum[f]`: the queue's idle time before its tasks up to t (sum of max(0, ready - F)), `gap_pre[f]`:
    the prefix sum of `gap_cum` within the queue, `slack[f]` = max(0, F - ready) (how far t's start can
    advance), `tree`: a min segment tree over `slack` (leaves from `tree.shape[0] // 2`, padding +inf),
    `tail_min[f]`: the sum, over the queue's positions g >= f, of min(slack[f..g])."""
    n = x.shape[0]
    kk = qstart.shape[0] - 1
    _group_by_queue(x, qstart, qorder, fpos)
    for q in range(kk):
        cum = 0.0
        pre = 0.0
        for f in range(qstart[q], qstart[q + 1]):
            t = qorder[f]
            free = free_before[t, q]
            r = ready[t, q]
            if r > free:
                cum += r - free
                slack[f] = 0.0
            else:
                slack[f] = free - r
            gap_cum[f] = cum
            pre += cum
            gap_pre[f] = pre
    stack = np.empty(n, dtype=np.int64)
    for q in range(kk):
        top = 0
        end = qstart[q + 1]
        for f in range(end - 1, qstart[q] - 1, -1):
            while top > 0 and slack[stack[top - 1]] >= slack[f]:
                top -= 1
            if top > 0:
                nxt = stack[top - 1]  # the next smaller slack: the running minimum drops there
                tail_min[f] = slack[f] * (nxt - f) + tail_min[nxt]
            else:
                tail_min[f] = slack[f] * (end - f)
            stack[top] = f
            top += 1
    size = tree.shape[0] // 2
    for f in range(size):
        tree[size + f] = slack[f] if f < n else np.inf
    for node in range(size - 1, 0, -1):
        tree[node] = min(tree[2 * node], tree[2 * node + 1])


@nb.njit(cache=True, nogil=True)
def _first_below(tree, s, r):
    """The first flat position >= `s` whose slack is below `r` (from the segment tree; a large number if none)."""
    size = tree.shape[0] // 2
    node = size + s
    if tree[node] < r:
        return s
    while node > 1:  # climb until a right sibling holds a smaller slack
        if node % 2 == 0 and tree[node + 1] < r:
            node += 1
            while node < size:  # and descend to its first such leaf
                node = 2 * node if tree[2 * node] < r else 2 * node + 1
            return node - size
        node //= 2
    return size


@nb.njit(cache=True, nogil=True)
def _first_after(qorder, lo, hi, i):
    """The first flat position in `lo..hi-1` (one queue, task order) whose task comes after task `i`."""
    while lo < hi:
        mid = (lo + hi) // 2
        if qorder[mid] > i:
            hi = mid
        else:
            lo = mid + 1
    return lo


@nb.njit(cache=True, nogil=True)
def _tail_change(q_lo, q_hi, s, shift, gap_cum, gap_pre, slack, tree, tail_min):
    """The change of the summed completion times of a queue's positions `s..q_hi-1` when the queue's free
    time before position `s` moves by `shift` (> 0: later, < 0: earlier), all else fixed."""
    if s >= q_hi or shift == 0.0:
        return 0.0
    if shift > 0.0:
        # each task is delayed by what is left of the shift after the idle gaps up to and including its own
        base = gap_cum[s - 1] if s > q_lo else 0.0
        pbase = gap_pre[s - 1] if s > q_lo else 0.0
        lim = base + shift
        lo, hi = s, q_hi
        while lo < hi:
            mid = (lo + hi) // 2
            if gap_cum[mid] >= lim:
                hi = mid
            else:
                lo = mid + 1
        if lo == s:
            return 0.0
        return (lo - s) * lim - (gap_pre[lo - 1] - pbase)
    # each task advances by the least of the advance and the slacks up to and including its own
    r = -shift
    p = _first_below(tree, s, r)
    if p >= q_hi:
        return -r * (q_hi - s)
    return -(r * (p - s) + tail_min[p])


@nb.njit(cache=True, nogil=True)
def _indexed_move(arrival, ready, proc, x, completion, free_before, qstart, qorder, fpos, gap_cum, gap_pre,
                  slack, tree, tail_min, i, b):
    """`_move_delta`'s change of the total delay (not its stop), priced on the queue index."""
    a = x[i]
    c = completion_time(free_before[i, b], ready[i, b], proc[i, b])
    delta = c - completion[i]  # a latency is C - a > 0 (processing times are positive): no clipping at 0
    sb = _first_after(qorder, qstart[b], qstart[b + 1], i)
    delta += _tail_change(qstart[b], qstart[b + 1], sb, c - free_before[i, b], gap_cum, gap_pre, slack, tree,
                          tail_min)
    delta += _tail_change(qstart[a], qstart[a + 1], fpos[i] + 1, free_before[i, a] - completion[i], gap_cum,
                          gap_pre, slack, tree, tail_min)
    return delta


@nb.njit(cache=True, nogil=True)
def _indexed_swap(arrival, ready, proc, x, completion, free_before, qstart, qorder, fpos, gap_cum, gap_pre,
                  slack, tree, tail_min, i, j):
    """`_swap_delta`'s change (tasks `i < j` on different providers exchange them), priced by walking
    `i..j` and the two queues' tails on the queue index."""
    a = x[i]
    b = x[j]
    fa = free_before[i, a]
    fb = free_before[i, b]
    delta = 0.0
    for t in range(i, j + 1):
        k = x[t]
        if t == i:
            k = b
        elif t == j:
            k = a
        if k == a:
            fa = completion_time(fa, ready[t, a], proc[t, a])
            delta += fa - completion[t]
        elif k == b:
            fb = completion_time(fb, ready[t, b], proc[t, b])
            delta += fb - completion[t]
    sa = _first_after(qorder, qstart[a], qstart[a + 1], j)
    delta += _tail_change(qstart[a], qstart[a + 1], sa, fa - free_before[j + 1, a], gap_cum, gap_pre, slack, tree,
                          tail_min)
    delta += _tail_change(qstart[b], qstart[b + 1], fpos[j] + 1, fb - free_before[j + 1, b], gap_cum, gap_pre,
                          slack, tree, tail_min)
    return delta


# Where the queues resync soon (most of a load-0.9 instance) the walk is the cheaper price: the index costs
# a rebuild after every change taken. A walk still running LONG_WALK tasks past the change marks a backlog:
# the next INDEX_SPELL tasks' candidates are priced on the index, then a walk probes again.
LONG_WALK = 256
INDEX_SPELL = 32


@nb.njit(cache=True, nogil=True)
def _price(arrival, ready, proc, x, completion, free_before, i, c, swap, end):
    """The walk's `(price, stop)` of moving task `i` to provider `c`, or (`swap`) of swapping it with task `c`;
    `end` as for `_move_delta`."""
    if swap:
        return _swap_delta(arrival, ready, proc, x, completion, free_before, i, c, end)
    return _move_delta(arrival, ready, proc, x, completion, free_before, i, c, end)


@nb.njit(cache=True, nogil=True)
def _queue_gain(arrival, ready, proc, x, completion, free_before, i, end):
    """`(change of the delays of the later tasks on i's provider if task i left it, whether the walk got to where
    that queue resyncs before `end` (< 0: no end))`: the part of every move of i that does not depend on where it
    goes."""
    n = arrival.shape[0]
    stop = n if end < 0 else min(end, n)
    a = x[i]
    fa = free_before[i, a]
    gain = 0.0
    for j in range(i + 1, stop):
        if fa == free_before[j, a]:
            return gain, True
        if x[j] == a:
            c = completion_time(fa, ready[j, a], proc[j, a])
            fa = c
            gain += max(c - arrival[j], 0.0) - max(completion[j] - arrival[j], 0.0)
    return gain, stop == n


@nb.njit(cache=True, nogil=True)
def _queue_gain_queued(arrival, ready, proc, completion, free_before, qstart, qorder, fpos, a, i):
    """`_queue_gain` (no end) walking only queue `a`'s tasks, from the grouping of `_group_by_queue`."""
    fa = free_before[i, a]
    gain = 0.0
    for p in range(fpos[i] + 1, qstart[a + 1]):
        t = qorder[p]
        if fa == free_before[t, a]:
            break
        c = completion_time(fa, ready[t, a], proc[t, a])
        fa = c
        gain += max(c - arrival[t], 0.0) - max(completion[t] - arrival[t], 0.0)
    return gain


@nb.njit(cache=True, nogil=True)
def _best_candidate(arrival, ready, proc, x, completion, free_before, qstart, qorder, fpos, gap_cum, gap_pre, slack,
                    tree, tail_min, i, swap, swap_window, tol, step, walk_from, stale, bound):
    """Task `i`'s best move (each other provider) or (`swap`) best swap (each task at most `swap_window` later on
    another provider) priced below `tol`: `(provider or task, -1 if none; whether a price came from the index;
    walk_from; stale)`. Prices come from the walk while `step >= walk_from`; a walk still running LONG_WALK tasks
    past the change sets `walk_from` INDEX_SPELL steps on, and prices come from the queue index (rebuilt first
    when `stale`)."""
    n = arrival.shape[0]
    lo, hi = (i + 1, min(n, i + 1 + swap_window)) if swap else (0, free_before.shape[1])
    best = -1
    best_d = tol
    indexed = False
    # A move's price is (i's own change) + (what i's old queue gains, the same for every b) + (what b's queue
    # loses, >= 0). The first two bound it from below at O(1) per b, so most providers are passed over unpriced
    # at large K. The margin is far above the rounding by which the walk's interleaved sum can differ.
    bounded = False
    gain = 0.0
    margin = -tol * (n + 1.0)
    if bound and not swap:
        a = x[i]
        if step < walk_from:
            if stale:
                _index_queues(ready, x, free_before, qstart, qorder, fpos, gap_cum, gap_pre, slack, tree, tail_min)
                stale = False
            gain = _tail_change(qstart[a], qstart[a + 1], fpos[i] + 1, free_before[i, a] - completion[i], gap_cum,
                                gap_pre, slack, tree, tail_min)
            bounded = True
        else:
            gain, bounded = _queue_gain(arrival, ready, proc, x, completion, free_before, i, i + 1 + LONG_WALK)
    for c in range(lo, hi):
        if (x[c] if swap else c) == x[i]:
            continue
        if bounded and _move_start(arrival, ready, proc, x, completion, free_before, i, c)[3] + gain > best_d + margin:
            continue
        d = np.inf
        if step >= walk_from:
            end = (c if swap else i) + 1 + LONG_WALK
            d, stop = _price(arrival, ready, proc, x, completion, free_before, i, c, swap, end)
            if stop == end and stop < n:
                walk_from = step + INDEX_SPELL  # queues are backlogged here: price on the index
        if step < walk_from:
            if stale:
                _index_queues(ready, x, free_before, qstart, qorder, fpos, gap_cum, gap_pre, slack, tree, tail_min)
                stale = False
            if swap:
                d = _indexed_swap(arrival, ready, proc, x, completion, free_before, qstart, qorder, fpos, gap_cum,
                                  gap_pre, slack, tree, tail_min, i, c)
            else:
                d = _indexed_move(arrival, ready, proc, x, completion, free_before, qstart, qorder, fpos, gap_cum,
                                  gap_pre, slack, tree, tail_min, i, c)
            indexed = True
        if d < best_d:
            best_d = d
            best = c
    return best, indexed, walk_from, stale


@nb.njit(cache=True, nogil=True)
def _local_search(arrival, ready, proc, x, free0, max_sweeps, start, swap_window, deadline, bound):
    """First-improvement descent over single-task moves, in place on `x`; returns (total, sweeps).

    A sweep tries every task (beginning at `start`, wrapping around) on every other provider and
    takes each improving move at once (then its best swap with a task at most `swap_window` later).
    Candidates are priced by the walk; once a walk runs past `LONG_WALK` tasks without resyncing, those of
    the next `INDEX_SPELL` tasks are priced on the queue index (O(log n), above), and the best of them is
    confirmed by the whole walk before it is taken. Stops at a local optimum, after `max_sweeps` sweeps, or when
    `time.perf_counter()` passes `deadline` (checked every 32 tasks; `inf`: never checked).
    """
    n = arrival.shape[0]
    kk = free0.shape[0]
    completion = np.empty(n, dtype=np.float64)
    free_before = np.empty((n + 1, kk), dtype=np.float64)
    total = _history(arrival, ready, proc, x, free0, completion, free_before, 0)
    size = 1
    while size < n:
        size *= 2
    qstart = np.empty(kk + 1, dtype=np.int64)
    qorder = np.empty(n, dtype=np.int64)
    fpos = np.empty(n, dtype=np.int64)
    gap_cum = np.empty(n, dtype=np.float64)
    gap_pre = np.empty(n, dtype=np.float64)
    slack = np.empty(n, dtype=np.float64)
    tree = np.empty(2 * size, dtype=np.float64)
    tail_min = np.empty(n, dtype=np.float64)
    stale = True  # the index is rebuilt when next needed after a change
    walk_from = 0  # sweep step from which candidates are walked again (before it: priced on the index)
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
            for swap in range(2):  # the best single move, then the best near swap
                if swap and (i + 1 >= n or swap_window <= 0):
                    break
                tol = -1e-9 * (1.0 + total) / (n + 1.0)
                c, indexed, walk_from, stale = _best_candidate(
                    arrival, ready, proc, x, completion, free_before, qstart, qorder, fpos, gap_cum, gap_pre, slack,
                    tree, tail_min, i, swap == 1, swap_window, tol, step, walk_from, stale, bound)
                # a price from the index is confirmed by the whole walk before the change is taken
                if c < 0 or (indexed and not _price(arrival, ready, proc, x, completion, free_before, i, c,
                                                    swap == 1, -1)[0] < tol):
                    continue
                a = x[i]
                if swap:
                    x[i] = x[c]
                    x[c] = a
                else:
                    x[i] = c
                total = _history_of_two(arrival, ready, proc, x, completion, free_before, i, a, x[i])
                stale = True
                improved = True
        if not improved:
            break
    return total, sweeps


# From this many providers, and up to GROUPED_TASKS_PER_K2 * K^2 tasks, the models' descent prices moves on the
# tasks grouped by queue (`_move_delta_queued`): the same answers. Pricing alone is faster from K = 5 (every
# task's moves: 1.1-1.3x at K = 5, 1.5x at 8, 4x at 32, 10x at 128, 40x at 1024; `bench_queued_moves.py`), a
# saving that grows about as K^2 (K moves, each walk reading K-wide rows). But a descent also keeps the grouping
# after each change it takes (`_group_move` shifts the tasks between two queues' places: O(n)), and a search's
# kicks change tasks all the time, so on many tasks the upkeep costs more than the pricing saves: a descent and
# 300 kicks grouped took 0.99-1.39x the time at K = 5, 0.89x at K = 8 on 1,000 tasks, 1.04x on 5,000, 1.13x on
# 20,000 (the whole search 2.8x on 40,000), 0.62-0.75x at K = 12 up to 5,000, 1.02x on 20,000, 0.42-0.47x at
# K = 24 (`benchmarks/bench_search_grouping.py`, results/search-grouping.md).
QUEUED_FROM = 8
GROUPED_TASKS_PER_K2 = 80


def grouped_pays(n_tasks: int, n_providers: int) -> bool:
    """Whether the search's descents should price on the tasks grouped by queue (same answers either way)."""
    return n_providers >= QUEUED_FROM and n_tasks <= GROUPED_TASKS_PER_K2 * n_providers * n_providers


# From this many providers, where it groups (the bound needs the grouping), the models' descent passes over moves whose lower bound (i's own change plus its old
# queue's gain) rules them out unpriced: the same answers, faster where most providers are far off (pricing every
# task's moves: 1.1x at K = 8, 1.25x at 12, 2.2x at 32, 4-5x at 128 and 1024; 0.6x at K = 3 and 1.0x at 5, where
# the bound's own walk costs what it saves; `benchmarks/bench_queued_moves.py`). The GA's descent bounds at every
# K and size (1.2x at K = 3 there, 7x at 128, 16x at 1024).
BOUNDED_FROM = 8

# A change at task `i` re-prices the moves of earlier tasks whose stretch (from the task to where the queues
# resync) reaches `i`. Each examined task records how far its moves reached (`reach`); a task not yet examined
# in this search is assumed to reach this many places. (On tuning instances 8 and 32 were no better than 16.)
LOOK_BACK = 16


@nb.njit(cache=True, nogil=True)
def _rewalk(arrival, ready, proc, x, completion, free_before, first, last, a, b):
    """Re-walk the stored history after `x` changed at tasks `first` (and `last` >= `first`) between providers
    `a` and `b` only (a move from one to the other, or a swap of their tasks), stopping once the queues are back
    on the stored trajectory past `last` (from there on nothing differs). Returns `(change of the total delay,
    end)`: rows before `end` were updated. Only columns `a` and `b` of the history can change, so only they are
    walked: at K = 1024 rewriting every column of every row was most of a descent's time."""
    n = arrival.shape[0]
    delta = 0.0
    fa = free_before[first, a]
    fb = free_before[first, b]
    for t in range(first, n):
        k = x[t]
        if k == a or k == b:
            c = completion_time(fa if k == a else fb, ready[t, k], proc[t, k])
            at = arrival[t]
            delta += max(c - at, 0.0) - max(completion[t] - at, 0.0)
            completion[t] = c
            if k == a:
                fa = c
            if k == b:  # not `else`: a == b (a swap within one queue) changes nothing and must stay so
                fb = c
        if free_before[t + 1, a] == fa and free_before[t + 1, b] == fb:
            if t >= last:
                return delta, t + 1
        else:
            free_before[t + 1, a] = fa
            free_before[t + 1, b] = fb
    return delta, n


# Finding the earlier tasks whose moves reach a change was a scan back over every earlier task, after every
# change a descent took: at 100,000 tasks most of a kick's time. `reach` is kept with the maximum of each block
# of REACH_BLOCK tasks, so the scan passes over a block none of whose tasks reaches that far.
REACH_BLOCK = 64


@nb.njit(cache=True, nogil=True)
def _reach_maxima(reach):
    """The maximum of `reach` over each block of REACH_BLOCK tasks."""
    n = reach.shape[0]
    out = np.zeros((n + REACH_BLOCK - 1) // REACH_BLOCK, dtype=np.int64)
    for t in range(n):
        b = t // REACH_BLOCK
        if reach[t] > out[b]:
            out[b] = reach[t]
    return out


@nb.njit(cache=True, nogil=True)
def _set_reach(reach, reach_max, i, far):
    """`reach[i] = far`, keeping its block's maximum."""
    old = reach[i]
    reach[i] = far
    b = i // REACH_BLOCK
    if far >= reach_max[b]:
        reach_max[b] = far
    elif old == reach_max[b]:  # the block's maximum may have dropped
        top = 0
        for t in range(b * REACH_BLOCK, min(reach.shape[0], (b + 1) * REACH_BLOCK)):
            if reach[t] > top:
                top = reach[t]
        reach_max[b] = top


@nb.njit(cache=True, nogil=True)
def _mark_reaching_before(marked, reach, reach_max, first, beyond):
    """Mark every task before `first` whose moves reach past `beyond`; returns `(how many were not marked
    before, the lowest of them (n: none))`."""
    added = 0
    low = marked.shape[0]
    b = (first - 1) // REACH_BLOCK if first > 0 else -1
    while b >= 0:
        if reach_max[b] > beyond:
            for t in range(min(first, (b + 1) * REACH_BLOCK) - 1, b * REACH_BLOCK - 1, -1):
                if reach[t] > beyond and not marked[t]:
                    marked[t] = True
                    added += 1
                    low = t
        b -= 1
    return added, low


@nb.njit(cache=True, nogil=True)
def _mark_change(marked, reach, reach_max, first, end, span):
    """After a change whose re-walk rewrote tasks [first, end): mark them and every earlier task whose moves reach
    `first`, and widen `span` to them; returns `(how many were not marked before, the lowest of them (n: none))`."""
    span[0] = min(span[0], first)
    span[1] = max(span[1], end)
    added = 0
    low = marked.shape[0]
    for t in range(first, end):
        if not marked[t]:
            marked[t] = True
            added += 1
            if t < low:
                low = t
    more, below = _mark_reaching_before(marked, reach, reach_max, first, first)
    return added + more, min(low, below)


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
def _descend(arrival, ready, proc, x, free0, marked, reach, max_evals, swap_window, deadline, queued):
    """First-improvement descent over the marked tasks, in place on `x` (`_descend_marked`) from its full
    history. Returns `(total delay, examinations)`."""
    n = arrival.shape[0]
    kk = free0.shape[0]
    completion = np.empty(n, dtype=np.float64)
    free_before = np.empty((n + 1, kk), dtype=np.float64)
    total = _history(arrival, ready, proc, x, free0, completion, free_before, 0)
    qstart = np.empty(kk + 1, dtype=np.int64)
    qorder = np.empty(n, dtype=np.int64)
    fpos = np.empty(n, dtype=np.int64)
    if queued:
        _group_by_queue(x, qstart, qorder, fpos)
    pending = 0
    start = n
    for t in range(n):
        if marked[t]:
            pending += 1
            if start == n:
                start = t
    span = np.empty(2, dtype=np.int64)
    evals = _descend_marked(arrival, ready, proc, x, completion, free_before, total, marked, pending, start, reach,
                            _reach_maxima(reach), max_evals, swap_window, deadline, queued, qstart, qorder, fpos, span)
    # the running total is a sum of deltas; the answer is the history's own sum
    return _history(arrival, ready, proc, x, free0, completion, free_before, 0), evals


@nb.njit(cache=True, nogil=True)
def _descend_marked(arrival, ready, proc, x, completion, free_before, total, marked, pending, start, reach,
                    reach_max, max_evals, swap_window, deadline, queued, qstart, qorder, fpos, span):
    """First-improvement descent over the marked tasks, in place on `x` and its history (`completion`,
    `free_before`, of total delay `total`; `queued`: moves priced on the grouping, which must be `x`'s): passes in task
    order from the lowest marked task (`start`; `pending` are marked), each marked task examined once (all
    moves, then swaps within `swap_window`), unmarked, and its `reach` recorded; an improving change marks
    what it re-prices, and a task marked at or before the one examined waits for the next pass. Ends when
    nothing is marked, after `max_evals` task examinations or at `deadline` (checked every 32), leaving any
    marks it did not reach. `span` [lo, hi] is widened to the tasks whose history it rewrote (rows up to hi).
    Returns the examinations."""
    n = arrival.shape[0]
    kk = free_before.shape[1]
    bounded = queued and kk >= BOUNDED_FROM  # pass over moves a lower bound rules out (needs the grouping)
    evals = 0
    while pending > 0 and evals < max_evals:
        next_start = n
        for i in range(start, n):
            if pending == 0:
                break
            if not marked[i]:
                continue
            if evals >= max_evals:
                break
            if deadline < np.inf and (evals & 31) == 0:
                with nb.objmode(now="float64"):
                    now = time.perf_counter()
                if now > deadline:
                    return evals
            marked[i] = False
            pending -= 1
            evals += 1
            tol = -1e-9 * (1.0 + total) / (n + 1.0)
            # the reach recorded is that of the most promising change examined (lowest delta, improving or not)
            best_b, low, far = _best_move(arrival, ready, proc, x, completion, free_before, i, tol, qstart, qorder,
                                          fpos, queued, bounded)
            if best_b >= 0:
                was = x[i]
                x[i] = best_b
                d, end = _rewalk(arrival, ready, proc, x, completion, free_before, i, i, was, best_b)
                total += d
                added, first_marked = _mark_change(marked, reach, reach_max, i, end, span)
                pending += added
                next_start = min(next_start, first_marked)
                if queued:
                    _group_move(qstart, qorder, fpos, i, was, best_b)
            if i + 1 < n:
                best_j, low_swap, far_swap = _best_swap(arrival, ready, proc, x, completion, free_before, i,
                                                        swap_window, tol)
                if low_swap < low:
                    far = far_swap
                if best_j >= 0:
                    tmp = x[i]
                    x[i] = x[best_j]
                    x[best_j] = tmp
                    d, end = _rewalk(arrival, ready, proc, x, completion, free_before, i, best_j, tmp, x[i])
                    total += d
                    added, first_marked = _mark_change(marked, reach, reach_max, i, end, span)
                    pending += added
                    next_start = min(next_start, first_marked)
                    if queued:
                        _group_move(qstart, qorder, fpos, i, tmp, x[i])
                        _group_move(qstart, qorder, fpos, best_j, x[i], tmp)
            _set_reach(reach, reach_max, i, far)
        start = next_start
    return evals


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
def _draw_provider(arrival, ready, proc, free, i, unit, temperature, u, weight):
    """Task `i`'s provider drawn by the uniform `u` from softmax(-latency / (unit * temperature)) on the free
    times `free` (`weight`: K scratch)."""
    kk = free.shape[0]
    best = np.inf
    for k in range(kk):
        weight[k] = completion_time(free[k], ready[i, k], proc[i, k]) - arrival[i]
        if weight[k] < best:
            best = weight[k]
    for k in range(kk):
        weight[k] = np.exp(-(weight[k] - best) / (unit * temperature))
    return draw_index(weight, u)


@nb.njit(cache=True, nogil=True)
def _redecode_window(arrival, ready, proc, x, free_start, first, end, unit, temperature, uniforms, out):
    """`out` = `x` with tasks `first..end-1` decided again in arrival order from the free times `free_start`
    (the queues before task `first`): each drawn by `_draw_provider`, one of `uniforms` per task. The other
    tasks keep their providers."""
    n = arrival.shape[0]
    free = free_start.copy()
    for i in range(n):
        out[i] = x[i]
    weight = np.empty(free.shape[0])
    for i in range(first, end):
        pick = _draw_provider(arrival, ready, proc, free, i, unit, temperature, uniforms[i - first], weight)
        out[i] = pick
        free[pick] = completion_time(free[pick], ready[i, pick], proc[i, pick])


@nb.njit(cache=True, nogil=True)
def _kick_window(arrival, ready, proc, x, completion, free_before, first, end, unit, temperature, uniforms):
    """In place on `x` and its history: tasks `first..end-1` decided again as `_redecode_window` decides them,
    and the history re-walked from `first` on every queue until it is back on its stored trajectory after the
    window. Returns where the walk stopped: tasks before it (rows up to it) were rewritten, none after."""
    n = arrival.shape[0]
    kk = free_before.shape[1]
    free = free_before[first].copy()
    weight = np.empty(kk)
    for t in range(first, n):
        if t < end:
            x[t] = _draw_provider(arrival, ready, proc, free, t, unit, temperature, uniforms[t - first], weight)
        k = x[t]
        c = completion_time(free[k], ready[t, k], proc[t, k])
        completion[t] = c
        free[k] = c
        if t >= end - 1:
            same = True
            for q in range(kk):
                if free_before[t + 1, q] != free[q]:
                    same = False
                    break
            if same:
                return t + 1
        for q in range(kk):
            free_before[t + 1, q] = free[q]
    return n


@nb.njit(cache=True, nogil=True)
def _mark_kicked(x, best_x, free_before, best_free_before, first, stop, reach, reach_max, marked):
    """`_mark_changed` for a kick whose history differs from the best's on tasks [first, stop) at most
    (`_kick_window`): mark the tasks there whose provider or queue state differs, and every earlier task whose
    moves reach the next such task. `marked` must be clear. Returns `(marked, the lowest (n: none))`."""
    kk = free_before.shape[1]
    next_changed = x.shape[0]
    pending = 0
    low = x.shape[0]
    for t in range(stop - 1, first - 1, -1):
        changed = x[t] != best_x[t]
        if not changed:
            for q in range(kk):
                if free_before[t, q] != best_free_before[t, q]:
                    changed = True
                    break
        if changed or reach[t] > next_changed:
            marked[t] = True
            pending += 1
            low = t
        if changed:
            next_changed = t
    more, below = _mark_reaching_before(marked, reach, reach_max, first, next_changed)
    return pending + more, min(low, below)


@nb.njit(cache=True, nogil=True)
def _window_kick_descent(arrival, ready, proc, x, completion, free_before, best_x, best_completion, best_free_before,
                         best_total, first, end, unit, temperature, uniforms, marked, reach, reach_max, max_evals,
                         swap_window, deadline, queued, qstart, qorder, fpos):
    """One kick of the iterated search, in place: the working allocation `x` and its history (equal to the best's
    on entry; with `queued` its grouping too, kept as `x`'s) get tasks `first..end-1` re-decoded
    (`_kick_window`), the marked descent repairs it, and the rows it touched are copied to the best's arrays if
    its total delay is below `best_total`, or back from them if not, so both are equal again on exit. Costs the window, the stretches the descent re-walks and two sums of the
    delays (the same answers as `descend(redecode_window(...), changed_from=best)`, bit for bit, without
    rebuilding the history of all n tasks). Returns `(the kicked and repaired allocation's delay,
    examinations)`."""
    n = arrival.shape[0]
    stop = _kick_window(arrival, ready, proc, x, completion, free_before, first, end, unit, temperature, uniforms)
    pending, start = _mark_kicked(x, best_x, free_before, best_free_before, first, stop, reach, reach_max, marked)
    if queued:  # the grouping (kept as x's) follows the window
        for t in range(first, end):
            _group_move(qstart, qorder, fpos, t, best_x[t], x[t])
    span = np.empty(2, dtype=np.int64)
    span[0] = first
    span[1] = stop
    evals = _descend_marked(arrival, ready, proc, x, completion, free_before, _total_delay(arrival, completion),
                            marked, pending, start, reach, reach_max, max_evals, swap_window, deadline, queued,
                            qstart, qorder, fpos, span)
    total = _total_delay(arrival, completion)
    lo = span[0]
    hi = min(span[1], n)
    if total < best_total:
        best_x[lo:hi] = x[lo:hi]
        best_completion[lo:hi] = completion[lo:hi]
        best_free_before[lo:hi + 1] = free_before[lo:hi + 1]
    else:
        if queued:
            for t in range(lo, hi):
                _group_move(qstart, qorder, fpos, t, x[t], best_x[t])
        x[lo:hi] = best_x[lo:hi]
        completion[lo:hi] = best_completion[lo:hi]
        free_before[lo:hi + 1] = best_free_before[lo:hi + 1]
    marked[:] = False  # a budget or a deadline may have left marks (n bytes: cheap beside the sums)
    return total, evals


def queue_history(instance: Instance, x: np.ndarray, free_times: np.ndarray | None = None) -> np.ndarray:
    """(n + 1, K): the providers' free times just before each task under allocation `x` (row n: after all)."""
    k, n = instance.n_providers, instance.n_tasks
    free0 = np.zeros(k) if free_times is None else np.asarray(free_times, dtype=np.float64)
    free_before = np.empty((n + 1, k))
    _history(instance.arrival, instance.ready, instance.processing,
             np.ascontiguousarray(x, dtype=ASSIGNMENT_DTYPE), free0,
             np.empty(n), free_before, 0)
    return free_before


def redecode_window(instance: Instance, x: np.ndarray, history: np.ndarray, first: int, size: int, temperature: float,
                    rng: np.random.Generator, unit: float | None = None) -> np.ndarray:
    """A kick for the iterated search: a copy of `x` (int16) whose tasks `first .. first+size-1` are decided
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
    out = np.empty(n, dtype=ASSIGNMENT_DTYPE)
    _redecode_window(instance.arrival, instance.ready, instance.processing,
                     np.ascontiguousarray(x, dtype=ASSIGNMENT_DTYPE),
                     np.ascontiguousarray(history[first], dtype=np.float64), first, end, unit if unit > 0 else 1.0,
                     float(temperature), rng.random(end - first), out)
    return out


class WindowKicks:
    """The iterated search's window kicks on a best allocation kept with its history: `kick` re-decodes a window,
    repairs it with the marked descent and keeps the result if it is better, in place. Each kick costs the
    stretch it changes plus two O(n) sums, where building the kicked allocation's history from scratch cost
    O(n K) and made a search of 40,000 tasks spend 90 % of its time rebuilding. The answers are those of
    `descend(redecode_window(best, ...), changed_from=best)` bit for bit (tested)."""

    def __init__(self, instance: Instance, x: np.ndarray, free_times: np.ndarray | None, reach: np.ndarray, *,
                 queued: bool | None = None) -> None:
        """`reach`: as `descend` takes it, updated in place; from here on only the kicks may change it. `queued`:
        price moves on the tasks grouped by queue (None: where `grouped_pays`; the same answers)."""
        k, n = instance.n_providers, instance.n_tasks
        free0 = np.zeros(k) if free_times is None else np.asarray(free_times, dtype=np.float64)
        self._inst = instance
        self.best_x = np.ascontiguousarray(x, dtype=ASSIGNMENT_DTYPE).copy()
        self._best_completion = np.empty(n)
        self._best_free_before = np.empty((n + 1, k))
        _history(instance.arrival, instance.ready, instance.processing, self.best_x, free0, self._best_completion,
                 self._best_free_before, 0)
        self._x = self.best_x.copy()
        self._completion = self._best_completion.copy()
        self._free_before = self._best_free_before.copy()
        self._marked = np.zeros(n, dtype=np.bool_)
        self._reach, self._reach_max = reach, _reach_maxima(reach)
        self._groups = (np.empty(k + 1, dtype=np.int64), np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64))
        self._queued = grouped_pays(n, k) if queued is None else bool(queued)
        if self._queued:  # the working allocation's grouping, kept by the kicks
            _group_by_queue(self._x, *self._groups)

    def kick(self, first: int, size: int, temperature: float, rng: np.random.Generator, unit: float, best_delay: float,
             *, max_evals: int, swap_window: int, deadline: float = np.inf) -> tuple[float, int]:
        """Re-decode tasks `first .. first+size-1` of `best_x` as `redecode_window` does (drawing the same
        uniforms from `rng`), descend, and keep the result as `best_x` if its delay is below `best_delay`.
        Returns `(that delay, task examinations)`."""
        inst = self._inst
        n = inst.n_tasks
        first = int(min(max(first, 0), n))
        end = int(min(n, first + max(size, 0)))
        uniforms = rng.random(end - first)
        if end == first:  # nothing to re-decode (an empty instance): the best, unchanged
            return float(_total_delay(inst.arrival, self._best_completion)), 0
        total, evals = _compiled(_window_kick_descent, inst.arrival, inst.ready, inst.processing, self._x,
                                 self._completion, self._free_before, self.best_x, self._best_completion,
                                 self._best_free_before, float(best_delay), first, end, unit if unit > 0 else 1.0,
                                 float(temperature), uniforms, self._marked, self._reach, self._reach_max,
                                 int(max_evals), int(swap_window), float(deadline), self._queued, *self._groups)
        return float(total), int(evals)


def unknown_reach(n_tasks: int) -> np.ndarray:
    """`reach` before any task was examined: each task's moves assumed to reach `LOOK_BACK` places on."""
    return np.minimum(np.arange(n_tasks, dtype=np.int64) + 1 + LOOK_BACK, n_tasks)


def descend(instance: Instance, x: np.ndarray, free_times: np.ndarray | None = None, *, max_evals: int,
            swap_window: int = 0, changed_from: np.ndarray | None = None, reach: np.ndarray | None = None,
            deadline: float = np.inf, queued: bool | None = None) -> tuple[np.ndarray, float, int]:
    """Descend from `x` examining marked tasks only: `(improved copy of x, its delay, task examinations)`.
    Every task starts marked, or with `changed_from` (the allocation `x` was kicked from, a local optimum)
    only the changed ones and those whose moves reach them. `reach` (n,) int64, updated in place: how far
    each task's moves reached when last examined; a search passes the same array to all its descents (None:
    `unknown_reach`). `deadline`: a `time.perf_counter()` value. `queued`: price moves on the tasks grouped by
    queue (None: where `grouped_pays`; the same answers)."""
    k, n = instance.n_providers, instance.n_tasks
    free0 = np.zeros(k) if free_times is None else np.asarray(free_times, dtype=np.float64)
    out = np.ascontiguousarray(x, dtype=ASSIGNMENT_DTYPE).copy()
    reach = unknown_reach(n) if reach is None else reach
    if changed_from is None:
        marked = np.ones(n, dtype=np.bool_)
    else:
        marked = np.zeros(n, dtype=np.bool_)
        _mark_changed(instance.arrival, instance.ready, instance.processing,
                      np.ascontiguousarray(changed_from, dtype=ASSIGNMENT_DTYPE), out, free0, reach, marked)
    total, evals = _compiled(_descend, instance.arrival, instance.ready, instance.processing, out, free0, marked,
                             reach, int(max_evals), int(swap_window), float(deadline),
                             grouped_pays(n, k) if queued is None else bool(queued))
    return out, float(total), int(evals)


def _compiled(fn, *args):
    """`fn(*args)` for the compiled descents, whose deadline checks read the clock in Python (objmode): a Ctrl-C
    raised there comes out of Numba as a SystemError caused by the KeyboardInterrupt. This raises the
    KeyboardInterrupt itself, so every caller's Ctrl-C handling sees a Ctrl-C, not an internal error."""
    try:
        return fn(*args)
    except SystemError as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):
            raise exc.__cause__ from None
        raise


def local_search(instance: Instance, x: np.ndarray, free_times: np.ndarray | None = None, max_sweeps: int = 1_000_000,
                 start: int = 0, swap_window: int = 0, deadline: float = np.inf) -> tuple[np.ndarray, float, int]:
    """Descend from `x` by single-task moves (and swaps of two tasks at most `swap_window` apart):
    `(improved copy of x, its delay, sweeps)`; `deadline` is a `time.perf_counter()` value."""
    k = instance.n_providers
    free0 = np.zeros(k) if free_times is None else np.asarray(free_times, dtype=np.float64)
    out = np.ascontiguousarray(x, dtype=ASSIGNMENT_DTYPE).copy()
    total, sweeps = _compiled(_local_search, instance.arrival, instance.ready, instance.processing, out, free0,
                              int(max_sweeps), int(start) % max(instance.n_tasks, 1), int(swap_window),
                              float(deadline), True)
    return out, float(total), int(sweeps)


def local_search_inplace(instance: Instance, x: np.ndarray, free0: np.ndarray, max_sweeps: int, start: int = 0,
                         swap_window: int = 0, deadline: float = np.inf) -> float:
    """Descend in place on a contiguous int16 row (a GA individual); returns its delay. `deadline`: a
    `time.perf_counter()` value after which the descent stops (`inf`: never)."""
    total, _ = _compiled(_local_search, instance.arrival, instance.ready, instance.processing, x, free0,
                         int(max_sweeps), int(start) % max(instance.n_tasks, 1), int(swap_window), float(deadline),
                         True)
    return float(total)
