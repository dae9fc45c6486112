"""The queue simulation (SPEC §1): the single implementation every component calls.

Walking tasks in arrival order, provider `k = x_i` starts task `i` at
`S_i = max(a_i + delta_ik, F_k)`, finishes at `C_i = S_i + p_ik` and is free again at `C_i`.
The objective is `f(x) = sum_i max(0, C_i - a_i)`, summed in float64 in task order so every
node of the network computes the bit-identical value.

The loops are compiled with Numba. The population variant evaluates many allocations per call
(the GA's fitness, sampling decoders); it runs the very same per-allocation loop, so its results
equal the single-allocation results bit for bit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numba as nb
import numpy as np

from edgepoc.game.instance import Instance
from edgepoc.game.validate import validate_assignment
from edgepoc.errors import InputError

if TYPE_CHECKING:
    from numpy.typing import ArrayLike


@nb.njit(cache=True, nogil=True, fastmath=False)
def completion_time(free_k, ready_ik, proc_ik):
    """The FIFO queue step (SPEC §1): a task ready at `ready_ik` on a provider free at `free_k` starts at
    the later of the two and completes `proc_ik` later. Every compiled decoder and search calls this one
    step (Numba inlines it), so they cannot drift from the kernel's arithmetic."""
    s = ready_ik
    if free_k > s:
        s = free_k
    return s + proc_ik


@nb.njit(cache=True, nogil=True)
def earliest_finishers(free, ready_i, proc_i, width, finish, out):
    """Fill `out` (width,) with the `width` providers that would finish one task first (ready `ready_i` (K,),
    processing `proc_i` (K,)) on queues free at `free` (K,), ties to the lower index, in index order; `finish`
    (K,) is scratch. Greedy's choice is always among them: a policy trained on fewer providers than a market
    has decides among these (the general model's one-pass, the RL dispatchers)."""
    kk = free.shape[0]
    for k in range(kk):
        finish[k] = completion_time(free[k], ready_i[k], proc_i[k])
    taken = 0
    for k in range(kk):  # k joins if fewer than `width` providers finish strictly before it or tie at a lower index
        ahead = 0
        for q in range(kk):
            if finish[q] < finish[k] or (finish[q] == finish[k] and q < k):
                ahead += 1
                if ahead >= width:
                    break
        if ahead < width:
            out[taken] = k
            taken += 1


@nb.njit(cache=True, nogil=True, fastmath=False)
def _run(arrival, ready, proc, x, free, completion):
    """Simulate one allocation; `free` (K,) is updated in place; fills `completion` if non-empty."""
    total = 0.0
    keep = completion.shape[0] > 0
    for i in range(arrival.shape[0]):
        k = x[i]
        c = completion_time(free[k], ready[i, k], proc[i, k])
        free[k] = c
        if keep:
            completion[i] = c
        lat = c - arrival[i]
        if lat > 0.0:
            total += lat
    return total


@nb.njit(cache=True, nogil=True)
def _run_population_serial(arrival, ready, proc, xs, free0, out):
    free = np.empty_like(free0)
    empty = np.empty(0, dtype=np.float64)
    for p in range(xs.shape[0]):
        free[:] = free0
        out[p] = _run(arrival, ready, proc, xs[p], free, empty)


@nb.njit(cache=True, nogil=True, parallel=True)
def _run_population_parallel(arrival, ready, proc, xs, free0, out):
    empty = np.empty(0, dtype=np.float64)
    for p in nb.prange(xs.shape[0]):
        free = free0.copy()
        out[p] = _run(arrival, ready, proc, xs[p], free, empty)


@nb.njit(cache=True, nogil=True)
def _greedy(arrival, ready, proc, free, x):
    """Earliest completion time, ties to the lowest provider index; updates `free` and fills `x`."""
    total = 0.0
    kk = free.shape[0]
    for i in range(arrival.shape[0]):
        best_k = 0
        best_c = np.inf
        for k in range(kk):
            c = completion_time(free[k], ready[i, k], proc[i, k])
            if c < best_c:
                best_c = c
                best_k = k
        x[i] = best_k
        free[best_k] = best_c
        lat = best_c - arrival[i]
        if lat > 0.0:
            total += lat
    return total


def _free_times(instance: Instance, free_times) -> np.ndarray:
    if free_times is None:
        return np.zeros(instance.n_providers, dtype=np.float64)
    f = np.array(free_times, dtype=np.float64)  # a copy: the kernel writes into it
    if f.shape != (instance.n_providers,):
        raise InputError(f"free_times: expected {instance.n_providers} values, got shape {f.shape}")
    if not np.isfinite(f).all():
        raise InputError("free_times: must be finite")
    return f


def _assignment(instance: Instance, assignment, checked: bool) -> np.ndarray:
    if checked:
        return validate_assignment(assignment, instance.n_tasks, instance.n_providers)
    return np.ascontiguousarray(assignment)


def simulate(instance: Instance, assignment: ArrayLike, free_times: ArrayLike | None = None, *,
             checked: bool = True) -> float:
    """Total delay `f(x)` (paper Eq. 1) of one allocation."""
    x = _assignment(instance, assignment, checked)
    return float(_run(instance.arrival, instance.ready, instance.processing, x,
                      _free_times(instance, free_times), np.empty(0)))


def simulate_state(instance: Instance, assignment: ArrayLike, free_times: ArrayLike | None = None, *,
                   checked: bool = True) -> tuple[float, np.ndarray, np.ndarray]:
    """`(total, completion (n,), final free times (K,))`: what the chain carries from block to block."""
    x = _assignment(instance, assignment, checked)
    free = _free_times(instance, free_times)
    completion = np.empty(instance.n_tasks, dtype=np.float64)
    total = _run(instance.arrival, instance.ready, instance.processing, x, free, completion)
    return float(total), completion, free


def simulate_completion(instance: Instance, assignment: ArrayLike, free_times: ArrayLike | None = None, *,
                        checked: bool = True) -> np.ndarray:
    """Per-task completion times `C_i`."""
    return simulate_state(instance, assignment, free_times, checked=checked)[1]


def simulate_population(
    instance: Instance,
    assignments: np.ndarray,
    free_times: ArrayLike | None = None,
    *,
    parallel: bool = False,
    checked: bool = True,
) -> np.ndarray:
    """Total delay of each row of `assignments` (P, n); any integer dtype (int16, ASSIGNMENT_DTYPE, is what the solvers pass)."""
    xs = np.ascontiguousarray(assignments)
    if xs.ndim != 2 or xs.shape[1] != instance.n_tasks:
        raise InputError(f"assignments: expected shape (P, {instance.n_tasks}), got {xs.shape}")
    if xs.dtype.kind not in "iu":
        raise InputError(f"assignments: provider indices must be integers, got {xs.dtype}")
    if checked and xs.size and (xs.min() < 0 or xs.max() >= instance.n_providers):
        raise InputError(f"assignments: provider index out of range 0..{instance.n_providers - 1}")
    out = np.empty(xs.shape[0], dtype=np.float64)
    run = _run_population_parallel if parallel else _run_population_serial
    run(instance.arrival, instance.ready, instance.processing, xs, _free_times(instance, free_times), out)
    return out


def greedy_assignment(instance: Instance, free_times: ArrayLike | None = None) -> tuple[np.ndarray, float]:
    """Earliest-completion-time dispatch: `(assignment, total delay)`."""
    x = np.empty(instance.n_tasks, dtype=np.int64)
    total = _greedy(instance.arrival, instance.ready, instance.processing, _free_times(instance, free_times), x)
    return x, float(total)
