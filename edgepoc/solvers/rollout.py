"""Rollout (the pilot method of Duin and Voß): greedy with a look-ahead, compiled with Numba.

Tasks are decided in arrival order on the live queues. For task `i` every provider `k` is tried:
`i` goes to `k`, then the next `H` tasks are completed greedily (earliest completion, the kernel's
own `_greedy` on a copy of the free times), and the pilot's cost is the delay of those `H + 1`
tasks. The provider with the lowest cost is kept (ties: earlier completion of task `i`, then the
lower index), the queues advance by that one task and the next task is decided.

This is the classical control for any one-pass decoder: it sees the queues its own earlier
decisions built, as a learned step-by-step decoder does, and costs `O(n K H K)` task steps
(about 1 ms per 1000 tasks at `K = 3`, `H = 20`).

Two properties the tests check: with `H = 0` it is greedy exactly; with `H >= n - 1` it is
never worse than greedy (greedy is sequentially consistent, so the rollout improves on it).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from edgepoc.errors import InputError
from edgepoc.game.instance import Instance
from edgepoc.game.kernel import _free_times, _greedy, completion_time
from edgepoc.solvers.registry import SolveOptions

DEFAULT_HORIZON = 20


@nb.njit(cache=True, nogil=True)
def pilot_cost(arrival, ready, proc, free, k, c, lo, hi, trial, scratch):
    """The pilot's look-ahead: the task before `lo` completes at `c` on provider `k`, then tasks `lo..hi-1`
    are completed greedily from the free times `free` (unchanged). Returns their total delay; `trial` is
    left at the pilot's free times, so a caller can look further from there."""
    for q in range(free.shape[0]):
        trial[q] = free[q]
    trial[k] = c
    if hi <= lo:
        return 0.0
    return _greedy(arrival[lo:hi], ready[lo:hi], proc[lo:hi], trial, scratch[: hi - lo])


@nb.njit(cache=True, nogil=True)
def _rollout(arrival, ready, proc, free, horizon, x):
    """Fill `x` (n,) with the rollout's decisions; `free` (K,) is advanced in place."""
    n = arrival.shape[0]
    kk = free.shape[0]
    trial = np.empty(kk, dtype=np.float64)
    scratch = np.empty(max(horizon, 1), dtype=np.int64)
    for i in range(n):
        end = min(n, i + 1 + horizon)
        best_k = 0
        best_cost = np.inf
        best_c = np.inf
        for k in range(kk):
            c = completion_time(free[k], ready[i, k], proc[i, k])
            cost = c - arrival[i]
            if cost < 0.0:
                cost = 0.0
            cost += pilot_cost(arrival, ready, proc, free, k, c, i + 1, end, trial, scratch)
            if cost < best_cost or (cost == best_cost and c < best_c):
                best_cost = cost
                best_c = c
                best_k = k
        x[i] = best_k
        free[best_k] = best_c


def rollout_assignment(instance: Instance, horizon: int = DEFAULT_HORIZON, free_times=None) -> np.ndarray:
    """The rollout allocation of `instance` from the providers' `free_times` (default: all idle)."""
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 0:
        raise InputError(f"horizon: must be an integer >= 0, got {horizon!r}")
    x = np.empty(instance.n_tasks, dtype=np.int64)
    _rollout(instance.arrival, instance.ready, instance.processing, _free_times(instance, free_times),
             int(horizon), x)
    return x


def solve_rollout(instance: Instance, options: SolveOptions) -> tuple[np.ndarray, dict]:
    params = dict(options.params)
    horizon = params.pop("horizon", DEFAULT_HORIZON)
    if params:
        raise InputError(f"--param: rollout takes only horizon, got {', '.join(sorted(params))}")
    return rollout_assignment(instance, horizon, options.free_times), {"horizon": int(horizon)}
