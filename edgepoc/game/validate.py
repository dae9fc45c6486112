"""Checks shared by the constructors and the file readers; every failure names the field."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from edgepoc.errors import InputError

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from edgepoc.game.instance import Instance


def _finite(name: str, a: np.ndarray) -> None:
    bad = ~np.isfinite(a)
    if bad.any():
        where = np.argwhere(bad)[0]
        raise InputError(f"{name}{list(where)}: must be a finite number, got {a[tuple(where)]!r}")


# Allocations are int16 rows everywhere (the GA's population, the compiled search, stored labels): compact, and
# one dtype so the compiled loops are built once. int8 bounded markets at 127 providers; 1024 keeps the (n, K)
# arrays of every method (CP-SAT's literals, the models' pair features) within a few GiB at thousands of tasks.
ASSIGNMENT_DTYPE = np.int16
MAX_PROVIDERS = 1024
# Reading a JSON instance peaks near 850 MB per million tasks, and the methods keep several (n, K) float64
# arrays: 10 million tasks, and 1e8 task-provider pairs (0.8 GB an array), stay within a 24 GB machine, and a
# larger file is refused in one line rather than ending in the kernel's out-of-memory kill.
MAX_TASKS = 10_000_000
MAX_PAIRS = 100_000_000


def check_size(n_tasks: int, n_providers: int) -> None:
    """Refuse an instance too large to hold in memory (MAX_TASKS, MAX_PAIRS), naming the limit."""
    if n_tasks > MAX_TASKS:
        raise InputError(f"tasks: at most {MAX_TASKS:,} tasks per instance (about 850 MB of memory per million to "
                         f"read), got {n_tasks:,}: split the trace into windows")
    if n_tasks * n_providers > MAX_PAIRS:
        raise InputError(f"tasks: at most {MAX_PAIRS:,} task-provider pairs per instance (the methods keep several "
                         f"n x K arrays), got {n_tasks:,} x {n_providers:,}: split the trace into windows")


def validate_arrays(capacity: np.ndarray, provider_delay: np.ndarray, arrival: np.ndarray, demand: np.ndarray,
                    task_delays: np.ndarray | None = None) -> np.ndarray:
    """Raise `InputError` naming the first bad field; return the processing times (n, K), checked finite."""
    if capacity.ndim != 2 or capacity.shape[0] == 0 or capacity.shape[1] == 0:
        raise InputError(f"providers[].capacity: need at least one provider and one resource, got shape {capacity.shape}")
    k, r = capacity.shape
    if k > MAX_PROVIDERS:
        raise InputError(f"providers: at most {MAX_PROVIDERS} providers (the methods' arrays grow with n x K), "
                         f"got {k}")
    _finite("providers[].capacity", capacity)
    if (capacity <= 0).any():
        j = int(np.argwhere(capacity <= 0)[0][0])
        raise InputError(f"providers[{j}].capacity: must be > 0, got {capacity[j].tolist()}")
    if provider_delay.shape != (k,):
        raise InputError(f"providers[].delay: expected {k} values, got shape {provider_delay.shape}")
    _finite("providers[].delay", provider_delay)
    if (provider_delay < 0).any():
        j = int(np.argmin(provider_delay))
        raise InputError(f"providers[{j}].delay: must be >= 0, got {provider_delay[j]}")
    if arrival.ndim != 1:
        raise InputError(f"tasks[].arrival: expected a 1-D array, got shape {arrival.shape}")
    n = arrival.shape[0]
    check_size(n, k)
    _finite("tasks[].arrival", arrival)
    if (arrival < 0).any():
        i = int(np.argmax(arrival < 0))
        raise InputError(f"tasks[{i}].arrival: must be >= 0, got {arrival[i]}")
    if n > 1 and (np.diff(arrival) < 0).any():
        i = int(np.argmax(np.diff(arrival) < 0)) + 1
        raise InputError(f"tasks[{i}].arrival: arrivals must be non-decreasing, got {arrival[i]} after {arrival[i - 1]}")
    if demand.shape != (n, r):
        raise InputError(f"tasks[].demand: expected {n} tasks x {r} resources, got shape {demand.shape}")
    _finite("tasks[].demand", demand)
    if n and (demand <= 0).any():
        i = int(np.argwhere(demand <= 0)[0][0])
        raise InputError(f"tasks[{i}].demand: must be > 0, got {demand[i].tolist()}")
    if task_delays is not None:
        if task_delays.shape != (n, k):
            raise InputError(f"tasks[].delays: expected {k} delays per task, got shape {task_delays.shape}")
        _finite("tasks[].delays", task_delays)
        if (task_delays < 0).any():
            i = int(np.argwhere(task_delays < 0)[0][0])
            raise InputError(f"tasks[{i}].delays: must be >= 0, got {task_delays[i].tolist()}")
    return _times_fit(capacity, provider_delay, arrival, demand, task_delays)


def _times_fit(capacity, provider_delay, arrival, demand, task_delays) -> np.ndarray:
    """The processing times; each of them, and the latest any task could finish, must be finite in float64: a
    demand of 1e308 on a capacity of 0.5 would otherwise make an infinite time and a meaningless (or infinite)
    total latency."""
    from edgepoc.game.instance import processing_times

    proc = processing_times(demand, capacity)
    if arrival.shape[0] == 0:
        return proc
    with np.errstate(over="ignore", invalid="ignore"):
        if not np.isfinite(proc).all():
            i, j = (int(v) for v in np.argwhere(~np.isfinite(proc))[0])
            raise InputError(f"tasks[{i}].demand: processing time on providers[{j}] (demand / capacity) overflows "
                             f"float64, got demand {demand[i].tolist()} on capacity {capacity[j].tolist()}")
        delay = provider_delay.max() if task_delays is None else task_delays.max()
        # C_i - a_i <= delay + every processing time (a task waits at most for all earlier ones), and C_i itself
        # is at most the last arrival plus that
        worst = delay + proc.max(axis=1).sum()
        if not (np.isfinite(arrival[-1] + worst) and np.isfinite(worst * arrival.shape[0])):
            raise InputError("tasks[]: arrival, delay and processing times too large: the total latency could "
                             "overflow float64 (rescale the time unit)")
    return proc


def validate_assignment(assignment: ArrayLike, n_tasks: int, n_providers: int, field: str = "assignment") -> np.ndarray:
    """Return the assignment as int64, or raise naming the bad position."""
    try:
        x = np.asarray(assignment)
    except Exception as exc:  # ragged lists and the like
        raise InputError(f"{field}: not an array of provider indices ({exc})") from None
    if x.ndim != 1:
        raise InputError(f"{field}: expected a flat list of provider indices, got shape {x.shape}")
    if x.shape[0] != n_tasks:
        raise InputError(f"{field}: expected {n_tasks} entries (one per task), got {x.shape[0]}")
    if n_tasks == 0:
        return np.zeros(0, dtype=np.int64)
    if x.dtype.kind == "f":
        if not np.isfinite(x).all() or (x != np.round(x)).any():
            i = int(np.argmax(~np.isfinite(x) | (x != np.round(x))))
            raise InputError(f"{field}[{i}]: provider index must be an integer, got {float(x[i])!r}")
    elif x.dtype.kind not in "iu":  # strings, booleans, integers beyond 64 bits, mixed: name the first bad entry
        items = list(assignment) if isinstance(assignment, (list, tuple)) else x.tolist()  # before numpy's casts
        for i, v in enumerate(items):
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                raise InputError(f"{field}[{i}]: provider index must be an integer, got {str(v)[:40]!r}")
            if not 0 <= v < n_providers:
                raise InputError(f"{field}[{i}]: provider index {str(v)[:40]} out of range 0..{n_providers - 1}")
        return np.array(items, dtype=np.int64)
    bad = (x < 0) | (x >= n_providers)  # before the cast, so a huge unsigned index is not wrapped
    if bad.any():
        i = int(np.argmax(bad))
        # as given: numpy reads [0, -1, 2**63] as floats, which would print -1.0 and 9.2e+18
        shown = assignment[i] if isinstance(assignment, (list, tuple)) else x[i]
        shown = int(shown) if isinstance(shown, (float, np.floating)) and float(shown).is_integer() else shown
        raise InputError(f"{field}[{i}]: provider index {str(shown)[:40]} out of range 0..{n_providers - 1}")
    return x.astype(np.int64)


def check_time_resolution(inst: Instance) -> None:
    """Refuse an instance whose times are so large that float64 cannot resolve a typical processing time at
    their magnitude (arrivals near 1e300 make every latency 0: a silently wrong answer). For instance files
    only: epoch seconds resolve 2.4e-7 s, and the chain's clock (seconds since genesis) must never start
    refusing blocks as it grows, so the constructors do not apply it."""
    if inst.n_tasks == 0:
        return
    latest = float(inst.ready.max())  # the largest arrival plus delay: the times' magnitude
    typical = float(np.median(inst.processing.min(axis=1)))
    if np.spacing(latest) <= 0.01 * typical:
        return
    arrivals = float(np.abs(inst.arrival).max())
    resolves = f"(float64 resolves {np.spacing(latest):.3g} at {latest:.6g})"
    if np.spacing(arrivals) <= 0.01 * typical:  # the arrivals alone are fine: the delays make the times large
        raise InputError(f"providers[].delay: arrival plus delay reaches {latest:.6g}, too large to resolve processing "
                         f"times of about {typical:.3g} {resolves}: the delays are out of scale")
    if typical < 1e-6:  # under a microsecond of work: the demands or capacities are what is out of scale
        raise InputError(f"tasks[].demand: processing times of about {typical:.3g} (demand / capacity) are too small "
                         f"to resolve at arrival times up to {arrivals:.6g} {resolves}: rescale the demands or capacities")
    raise InputError(f"tasks[].arrival: arrival times up to {arrivals:.6g} are too large for float64 to resolve "
                     f"processing times of about {typical:.3g} {resolves}: shift the arrivals to start near 0")


def check_seed(seed: object) -> None:
    """numpy seeds are non-negative integers: anything else is named here, not as an error from deep in a run."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed: must be an integer >= 0, got {seed!r}")
