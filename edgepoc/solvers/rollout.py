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

The base policy: greedy (the default), or *priced* greedy (`price > 0`). On heavy-tailed workloads
(Alibaba windows) greedy is a poor pilot: it sends a long task to whichever queue finishes it first,
so every queue is blocked in turn and the short tasks behind them wait. The GA instead keeps one
queue as a "slow lane" for long tasks and the others clear (measured: it overrules greedy's own
choice on 31% of the tasks, at half its total delay). Priced greedy charges a task, beyond its own
latency, for the delay it imposes on the tasks that follow it to the same provider:

    score_k = latency_k + price * p_ik * (rate_k * p_ik)

`rate_k * p_ik` is how many tasks reach `k` while it serves this one, with `rate_k` the decaying
count of tasks recently sent to `k`, per second, with memory `memory` (in the instance's mean
processing times: `time_unit`). A queue that takes few tasks (the slow lane) is cheap for a long
task, however long its backlog; a busy express queue is dear. Pilots of priced greedy carry their
own copy of the rates. (Pricing the backlog too, `rate_k * (wait_k + p_ik)`, was 11% worse on
tuning Alibaba windows and 2.5% better on paper ones.) Measured on held-out windows in
`benchmarks/results/model.md` (the `priced rollout` column); greedy pilots, unlike priced ones, get
worse with a longer look-ahead.

The *mixed* base (`--param base=mixed`, `mix`): a pilot's cost is a blend. A share `mix` of it is the cost
of the same look-ahead tasks on a FIXED plan, the rest the priced pilot's own cost. That plan is
priced greedy's choices for them from the queues without task `i`, computed once per task. An adaptive pilot
re-decides every later task after each candidate, so the difference between two candidates is partly the
pilot's own discrete reshuffling of the tasks behind them: the longer the look-ahead, the more of that noise,
which is why longer greedy pilots get worse. On the fixed plan only the candidate differs, and the cost is
what it imposes on the tasks already headed for that queue. Measured on tuning windows (seed 4000, H = 100):
alibaba 1.18 x GA-5s against 1.29 for priced pilots; varied 1.10 against 1.12; paper 1.19 against 1.10
(on light tails the adaptive pilot is the better guide). So by default (`mix=auto`, `fixed_plan_weight`) the
share is 0.5 on heavy-tailed instances and 0 on light-tailed ones, and the look-ahead grows with it
(`mixed_horizon`: 50 tasks, 75 at share 0.5): the fixed plan has no reshuffling noise to grow with distance.
On heavy tails it also runs with no share and keeps the better (`plan_shares`): the share was chosen on Alibaba
windows and does harm on other heavy tails. The general model's `mixed` pilot feature is this cost, at the same
share and look-ahead, and its deployed one-pass tries the same shares.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numba as nb
import numpy as np

from edgepoc.errors import InputError
from edgepoc.game.instance import Instance
from edgepoc.game.kernel import _free_times, _greedy, completion_time, simulate
from edgepoc.solvers.registry import SolveOptions

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

DEFAULT_HORIZON = 20
DEFAULT_PRICE = 4.0  # priced base policy: the weight of the time a task holds a busy provider
DEFAULT_MEMORY = 20.0  # and the memory of the per-provider task rate, in mean processing times
PRICED_HORIZON = 100  # the look-ahead `--param base=priced` uses unless a horizon is given
# base "mixed": up to this share of each priced pilot's cost is replaced by the cost of the same tasks on a FIXED
# plan, on heavy-tailed instances only (`fixed_plan_weight`: none at a coefficient of variation of the task sizes
# <= TAIL_CV_LOW, all of it at >= TAIL_CV_HIGH; chosen on tuning instances, docs/models.md "Mixed pilots")
FIXED_PLAN_WEIGHT = 0.5
TAIL_CV_LOW, TAIL_CV_HIGH = 0.8, 1.2
MIXED_HORIZON = 50  # base "mixed" looks `mixed_horizon(MIXED_HORIZON, share)` tasks ahead unless a horizon is given


def time_unit(instance: Instance) -> float:
    """The instance's mean processing time (the unit of `memory`; 1 for an empty instance)."""
    s = float(instance.processing.mean()) if instance.n_tasks else 1.0
    return s if s > 0 else 1.0


@nb.njit(cache=True, nogil=True)
def decay_rates(rate, dt, memory):
    """The per-provider task rates `dt` seconds later (in place)."""
    if dt > 0.0:
        f = np.exp(-dt / memory)
        for k in range(rate.shape[0]):
            rate[k] *= f


@nb.njit(cache=True, nogil=True)
def priced_step(arrival_i, ready_i, proc_i, free, rate, price, memory):
    """Priced greedy's choice for one task: `(k, completion)`, ties to the lowest index; updates `free` and
    `rate` (the caller decays `rate` to this task's arrival first)."""
    best_k = 0
    best_s = np.inf
    best_c = np.inf
    for k in range(free.shape[0]):
        c = completion_time(free[k], ready_i[k], proc_i[k])
        lat = c - arrival_i
        if lat < 0.0:
            lat = 0.0
        s = lat + price * proc_i[k] * (rate[k] * proc_i[k])
        if s < best_s:
            best_s = s
            best_c = c
            best_k = k
    free[best_k] = best_c
    rate[best_k] += 1.0 / memory
    return best_k, best_c


@nb.njit(cache=True, nogil=True)
def priced_cost(arrival, ready, proc, lo, hi, free, rate, price, memory):
    """Total delay of tasks `lo..hi-1` completed by priced greedy from `free` and `rate` (both advanced in
    place; `rate` is as of task `lo - 1`'s arrival)."""
    total = 0.0
    for i in range(lo, hi):
        decay_rates(rate, arrival[i] - arrival[i - 1], memory)
        _, c = priced_step(arrival[i], ready[i], proc[i], free, rate, price, memory)
        lat = c - arrival[i]
        if lat > 0.0:
            total += lat
    return total


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
def priced_pilot_cost(arrival, ready, proc, free, rate, k, c, lo, hi, price, memory, trial, trial_rate):
    """`pilot_cost` with the priced base policy: the task before `lo` completes at `c` on `k` (and counts in
    `k`'s rate), then tasks `lo..hi-1` follow priced greedy. `trial`, `trial_rate` are left at the pilot's end."""
    for q in range(free.shape[0]):
        trial[q] = free[q]
        trial_rate[q] = rate[q]
    trial[k] = c
    trial_rate[k] += 1.0 / memory
    if hi <= lo:
        return 0.0
    return priced_cost(arrival, ready, proc, lo, hi, trial, trial_rate, price, memory)


@nb.njit(cache=True, nogil=True)
def fixed_plan(arrival, ready, proc, free, rate, i, end, price, memory, trial, trial_rate, plan):
    """Priced greedy's decisions for tasks `i+1..end-1` from `free`, `rate` as if task `i` did not exist
    (into `plan`)."""
    for q in range(free.shape[0]):
        trial[q] = free[q]
        trial_rate[q] = rate[q]
    for j in range(i + 1, end):
        decay_rates(trial_rate, arrival[j] - arrival[j - 1], memory)
        plan[j - i - 1], _ = priced_step(arrival[j], ready[j], proc[j], trial, trial_rate, price, memory)


@nb.njit(cache=True, nogil=True)
def fixed_plan_cost(arrival, ready, proc, free, k, c, i, end, plan, trial):
    """Delay of tasks `i+1..end-1` on the fixed `plan` when task `i` completes at `c` on `k` first."""
    for q in range(free.shape[0]):
        trial[q] = free[q]
    trial[k] = c
    total = 0.0
    for j in range(i + 1, end):
        q = plan[j - i - 1]
        cj = completion_time(trial[q], ready[j, q], proc[j, q])
        trial[q] = cj
        if cj > arrival[j]:
            total += cj - arrival[j]
    return total


@nb.njit(cache=True, nogil=True)
def rollout_step(arrival, ready, proc, i, end, free, rate, price, memory, mix, trial, trial_rate, scratch, plan):
    """The rollout's choice for task `i` (pilots over tasks `i+1..end-1`; `price` 0: greedy pilots; `mix` > 0 (with
    `price` > 0): that share of each pilot's cost is the same tasks' cost on priced greedy's fixed plan), applied to
    the free times `free` and rates `rate` (as of `i`'s arrival); returns `(provider, completion time)`.
    `trial`, `trial_rate` (K,), `scratch` and `plan` (>= end - i - 1) are work space."""
    if mix > 0.0:
        fixed_plan(arrival, ready, proc, free, rate, i, end, price, memory, trial, trial_rate, plan)
    best_k = 0
    best_cost = np.inf
    best_c = np.inf
    for k in range(free.shape[0]):
        c = completion_time(free[k], ready[i, k], proc[i, k])
        cost = c - arrival[i]
        if cost < 0.0:
            cost = 0.0
        lat = cost
        if price > 0.0:
            cost += priced_pilot_cost(arrival, ready, proc, free, rate, k, c, i + 1, end, price, memory, trial,
                                      trial_rate)
        else:
            cost += pilot_cost(arrival, ready, proc, free, k, c, i + 1, end, trial, scratch)
        if mix > 0.0:  # the same expression as the model's mixed pilot feature (decode._dyn_features)
            cost = (1.0 - mix) * cost + mix * (lat + fixed_plan_cost(arrival, ready, proc, free, k, c, i, end, plan,
                                                                     trial))
        if cost < best_cost or (cost == best_cost and c < best_c):
            best_cost = cost
            best_c = c
            best_k = k
    free[best_k] = best_c
    rate[best_k] += 1.0 / memory
    return best_k, best_c


@nb.njit(cache=True, nogil=True)
def _rollout(arrival, ready, proc, free, horizon, price, memory, mix, x):
    """Fill `x` (n,) with the rollout's decisions; `free` (K,) is advanced in place. `price` 0: greedy pilots;
    `mix` > 0: part fixed-plan pilots."""
    n = arrival.shape[0]
    kk = free.shape[0]
    trial = np.empty(kk, dtype=np.float64)
    trial_rate = np.empty(kk, dtype=np.float64)
    rate = np.zeros(kk, dtype=np.float64)
    scratch = np.empty(max(horizon, 1), dtype=np.int64)
    plan = np.empty(max(horizon, 1), dtype=np.int64)
    for i in range(n):
        if i > 0:
            decay_rates(rate, arrival[i] - arrival[i - 1], memory)
        x[i], _ = rollout_step(arrival, ready, proc, i, min(n, i + 1 + horizon), free, rate, price, memory, mix,
                               trial, trial_rate, scratch, plan)


@nb.njit(cache=True, nogil=True)
def mixed_horizon(horizon, mix):
    """The mixed pilot's look-ahead: `horizon` tasks, and `mix` times as many again (75 at 50 and share 0.5). The
    fixed plan removes the adaptive pilot's reshuffling noise, so a longer look-ahead pays with it
    (results/pilots.md: the priced pilot is best at 20-75 tasks, the half-fixed one at 75-100)."""
    return horizon + int(horizon * mix)


def fixed_plan_weight(instance: Instance) -> float:
    """The mixed base's share of fixed-plan cost on `instance`: FIXED_PLAN_WEIGHT scaled by how heavy the tail of
    its task sizes is (the coefficient of variation of each task's mean processing time, from 0 at TAIL_CV_LOW to
    all of it at TAIL_CV_HIGH). A fixed plan prices what a long task imposes on the tasks queued behind it,
    which heavy tails need; on light tails the adaptive pilot's rebalancing is the better guide (measured:
    results/pilots.md; the model's one-pass at K = 2 lost 4 % with the fixed plan's cost on light tails, and
    validation instances with a cv of 0.5-0.7 lost up to 4.5 % with a small share)."""
    if instance.n_tasks < 2:
        return 0.0
    p = instance.processing.mean(axis=1)
    m = float(p.mean())
    # std of the sizes relative to their mean: std(p) itself overflows on sizes near 1e300
    cv = float((p / m).std()) if 0 < m < np.inf else 0.0
    return FIXED_PLAN_WEIGHT * float(np.clip((cv - TAIL_CV_LOW) / (TAIL_CV_HIGH - TAIL_CV_LOW), 0.0, 1.0))


def plan_shares(instance: Instance) -> tuple[float, ...]:
    """The fixed-plan shares a mixed pilot is run at on `instance`, the better run kept: the instance's
    (`fixed_plan_weight`), and where that is above 0 (a heavy tail) none as well. The share was chosen on Alibaba
    windows, where it gains 6-10 %; on other heavy tails it can cost as much or more (bimodal sizes at any load,
    Pareto and lognormal ones at low load: up to 2 x, `benchmarks/bench_heavy_tails.py`), and no statistic of the
    instance told the two apart on the tuning instances. Used by `--param base=mixed` and the general model's
    deployed one-pass (`models.general.decode.best_onepass`)."""
    share = fixed_plan_weight(instance)
    return (share, 0.0) if share > 0.0 else (share,)


def _number(name: str, value, low: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value) or value < low:
        raise InputError(f"{name}: must be a number >= {low:g}, got {value!r}")
    return float(value)


def rollout_assignment(instance: Instance, horizon: int = DEFAULT_HORIZON, free_times: ArrayLike | None = None,
                       price: float = 0.0,
                       memory: float = DEFAULT_MEMORY, mix: float = 0.0) -> np.ndarray:
    """The rollout allocation of `instance` from the providers' `free_times` (default: all idle); `price` > 0:
    priced-greedy pilots (module doc), `memory` in mean processing times; `mix` in [0, 1] (with `price` > 0):
    that share of each pilot's cost is the same tasks' cost on a fixed plan (module doc)."""
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 0:
        raise InputError(f"horizon: must be an integer >= 0, got {horizon!r}")
    price = _number("price", price, 0.0)
    memory = _number("memory", memory, 1e-9)
    mix = _number("mix", mix, 0.0)
    if mix > 1.0 or (mix > 0.0 and price == 0.0):
        raise InputError(f"mix: must be in [0, 1], and above 0 only with a price > 0; got {mix!r}")
    x = np.empty(instance.n_tasks, dtype=np.int64)
    _rollout(instance.arrival, instance.ready, instance.processing, _free_times(instance, free_times),
             int(horizon), price, memory * time_unit(instance), mix, x)
    return x


BASES = ("greedy", "priced", "mixed")


def solve_rollout(instance: Instance, options: SolveOptions) -> tuple[np.ndarray, dict]:
    params = dict(options.params)
    base = params.pop("base", "greedy")
    if base not in BASES:
        raise InputError(f"--param base: expected one of {', '.join(BASES)}, got {base!r}")
    horizon = params.pop("horizon", DEFAULT_HORIZON if base == "greedy" else PRICED_HORIZON if base == "priced"
                         else None)
    price = params.pop("price", 0.0 if base == "greedy" else DEFAULT_PRICE)
    memory = params.pop("memory", DEFAULT_MEMORY)
    mix = params.pop("mix", "auto" if base == "mixed" else 0.0)
    if params:
        raise InputError("--param: rollout takes only base, horizon, price, memory, mix; got "
                         f"{', '.join(sorted(params))}")
    if base == "greedy" and price != 0.0:
        raise InputError("--param price: only with base=priced or base=mixed")
    if base != "mixed" and mix != 0.0:
        raise InputError("--param mix: only with base=mixed")
    if mix == "auto":  # the instance's share, and on a heavy tail none as well, the better kept (`plan_shares`)
        best = None
        for share in plan_shares(instance):
            h = mixed_horizon(MIXED_HORIZON, share) if horizon is None else horizon
            y = rollout_assignment(instance, h, options.free_times, price, memory, share)
            f = simulate(instance, y, options.free_times)
            if best is None or f < best[0]:
                best = (f, y, h, share)
        _, x, horizon, mix = best
        return x, {"base": base, "horizon": int(horizon), "price": float(price), "memory": float(memory),
                   "mix": float(mix)}
    if horizon is None:  # base=mixed: the look-ahead grows with the plan's share, as the model's mixed pilot
        horizon = mixed_horizon(MIXED_HORIZON, float(mix)) if isinstance(mix, (int, float)) else MIXED_HORIZON
    x = rollout_assignment(instance, horizon, options.free_times, price, memory, mix)
    return x, {"base": base, "horizon": int(horizon), "price": float(price), "memory": float(memory),
               "mix": float(mix)}
