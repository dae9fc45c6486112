"""Lower bounds on the optimal total delay `f*` (SPEC §1): what tells a user how far a solution can be from optimal.

**Trivial bound.** Every task finishes no earlier than its best provider would finish it on an empty
queue: `f* >= sum_i min_k (a_i + delta_ik + p_ik - a_i)`. Valid, but far below `f*` once queues form.

**Block bound.** Cut the arrival sequence into consecutive blocks and solve each block *alone*
(earlier tasks removed, providers at their initial free times) to optimality. Taking tasks out of a FIFO
queue never delays the ones that stay, so in any full allocation the tasks of a block cost at least that
block's isolated optimum, and `f* >= sum_B OPT(B)`. Each block is solved by a compiled depth-first
branch and bound (children in earliest-completion order, pruned with the state-aware bound
`sum_j min_k max(ready_jk, F_k) + p_jk - a_j` over the block's remaining tasks). A block whose search
exceeds its node budget is split in two and each half solved instead, which keeps the bound valid.
Cuts are placed at the widest gaps between arrivals, where queues interact least. `lookback` > 0 also
lets the `L` tasks before a block occupy providers without counting their delay (still valid, it
keeps some of the queue carried into the block), but those uncounted tasks defeat the pruning, blocks
get split, and on `paper` instances the bound came out lower (measured: 0.79 vs 0.80 of the best known
at L=4, 0.74 at L=8), so it is off by default. The per-block
optima are also handed to CP-SAT as extra constraints (`cpsat.py`), which tightens its own bound.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import numba as nb
import numpy as np

from edgepoc.game.instance import Instance

if TYPE_CHECKING:
    from numpy.typing import ArrayLike


def alone_delays(instance: Instance, free0: np.ndarray) -> np.ndarray:
    """(n,) `min_k (max(ready_ik, F0_k) + p_ik) - a_i`: each task's delay alone on its best provider."""
    c = np.maximum(instance.ready, free0[None, :]) + instance.processing
    return np.maximum(c.min(axis=1) - instance.arrival, 0.0)


def trivial_bound(instance: Instance, free_times: ArrayLike | None = None) -> float:
    """`sum_i min_k (max(ready_ik, F0_k) + p_ik) - a_i`: each task alone on its best provider."""
    free0 = np.zeros(instance.n_providers) if free_times is None else np.asarray(free_times, dtype=np.float64)
    return float(np.sum(alone_delays(instance, free0)))


def proven_gap(total: float, lower: float) -> float:
    """`total / lower - 1`: how far an allocation of delay `total` can be above the optimum, given a bound."""
    return total / lower - 1.0 if lower > 0 else (0.0 if total == 0 else float("inf"))


@nb.njit(cache=True, nogil=True)
def _block_optimum(arrival, ready, proc, lo, hi, counted, free0, node_limit):
    """Least total delay of tasks `counted..hi-1` when only tasks `lo..hi-1` exist (providers free at
    `free0`); tasks `lo..counted-1` occupy providers but their delay is not counted. `(value, proven)`."""
    m = hi - lo
    kk = free0.shape[0]
    free = np.empty((m + 1, kk))
    free[0, :] = free0
    cost = np.zeros(m + 1)
    order = np.empty((m, kk), dtype=np.int64)
    pos = np.zeros(m, dtype=np.int64)
    done = np.empty(kk)
    best = np.inf
    nodes = 0
    depth = 0
    for q in range(kk):  # children in earliest-completion order: the first dive is greedy
        s = ready[lo, q]
        if free[0, q] > s:
            s = free[0, q]
        done[q] = s + proc[lo, q]
    order[0, :] = np.argsort(done)
    pos[0] = 0
    while depth >= 0:
        if pos[depth] == kk:
            depth -= 1
            continue
        k = order[depth, pos[depth]]
        pos[depth] += 1
        i = lo + depth
        s = ready[i, k]
        if free[depth, k] > s:
            s = free[depth, k]
        c = s + proc[i, k]
        lat = c - arrival[i]
        new_cost = cost[depth] + (lat if (lat > 0.0 and i >= counted) else 0.0)
        nodes += 1
        if nodes > node_limit:
            return best, False
        if depth + 1 == m:
            if new_cost < best:
                best = new_cost
            continue
        free[depth + 1, :] = free[depth, :]
        free[depth + 1, k] = c
        bound = new_cost
        for j in range(max(i + 1, counted), hi):
            low = np.inf
            for q in range(kk):
                s = ready[j, q]
                if free[depth + 1, q] > s:
                    s = free[depth + 1, q]
                if s + proc[j, q] < low:
                    low = s + proc[j, q]
            if low - arrival[j] > 0.0:
                bound += low - arrival[j]
        if bound >= best:
            continue
        depth += 1
        cost[depth] = new_cost
        j = lo + depth
        for q in range(kk):
            s = ready[j, q]
            if free[depth, q] > s:
                s = free[depth, q]
            done[q] = s + proc[j, q]
        order[depth, :] = np.argsort(done)
        pos[depth] = 0
    return best, True


def _cuts(arrival: np.ndarray, block: int) -> list[tuple[int, int]]:
    """Consecutive blocks of at most `block` tasks, each cut at the widest arrival gap in its second half."""
    n = arrival.shape[0]
    out, lo = [], 0
    while lo < n:
        hi = min(n, lo + block)
        if hi < n:
            first = lo + max(1, block // 2)
            gaps = arrival[first: hi + 1] - arrival[first - 1: hi]  # gap before task first..hi
            hi = first + int(np.argmax(gaps))
        out.append((lo, hi))
        lo = hi
    return out


def block_bound(instance: Instance, free_times: ArrayLike | None = None, block: int = 16, lookback: int = 0,
                node_limit: int = 200_000, deadline: float = math.inf) -> tuple[float, list[tuple[int, int, float]], int]:
    """`(bound, [(lo, hi, isolated optimum), ...], unproven)`; the blocks' optima sum to the bound.

    `deadline` (a `time.perf_counter()` value): the blocks not reached by then count with the trivial bound
    of their tasks (each alone on its best provider), which keeps the sum a valid bound; `unproven` is how
    many tasks that covers (0 when every block was solved)."""
    free0 = np.zeros(instance.n_providers) if free_times is None else np.asarray(free_times, dtype=np.float64)
    arrival, ready, proc = instance.arrival, instance.ready, instance.processing
    pieces: list[tuple[int, int, float]] = []
    stack = list(reversed(_cuts(arrival, max(1, block))))
    while stack and time.perf_counter() < deadline:
        lo, hi = stack.pop()
        value, proven = _block_optimum(arrival, ready, proc, max(0, lo - lookback), hi, lo, free0, node_limit)
        if proven:
            pieces.append((lo, hi, float(value) * (1.0 - 1e-12)))  # guard against summation-order rounding
        else:
            mid = (lo + hi) // 2
            stack.extend([(mid, hi), (lo, mid)])
    pieces.sort()
    total = float(sum(v for _, _, v in pieces))
    unproven = 0
    if stack:  # out of time: each remaining task alone on its best provider
        alone = alone_delays(instance, free0)
        for lo, hi in stack:
            total += float(alone[lo:hi].sum()) * (1.0 - 1e-12)
            unproven += hi - lo
    return total, pieces, unproven
