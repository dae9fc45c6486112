"""The general model's decoders: a one-pass step-by-step decode on the live queues, and a search.

One-pass: tasks are decided in arrival order. At task `i`, with the providers' free times `F` that
the decoder's OWN earlier choices built, every provider `k` gets dynamic features (`DYN_FEATURES`):
its completion latency if `i` went there now, the queue wait, and the pilot values of the rollout
method (`i` on `k`, then the next 5 / `horizon` tasks completed greedily with the kernel's `_greedy`),
each as a regret against the best provider, in units of the instance's mean processing time. The
score is

    score_ik = w . tanh(gain * E_ik + A dyn_ik + b) + c . dyn_ik

where `E_ik` (n, K, H) is the static pair embedding computed once by the torch encoders (task GNN,
provider set encoder) and `(A, b, w, c, gain)` is the small dynamic head. The task goes to the best
score (ties: the lowest provider index). `c` starts at "minus the pilot regret", i.e. the rollout
method; training teaches the rest of the head to correct it. Everything here is float64 Numba, so
the same input gives the bit-identical allocation on every node.

Search: the one-pass allocation (and greedy) polished by the compiled local search, then iterated
local search whose kicks send tasks to providers drawn from the model's per-step softmax. Its budget
is WORK (local-search sweeps), so the same input and seed give the same allocation; a wall-clock
budget is an explicit option. The no-model control (`search` method) runs the same loop from greedy
with uniform kicks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numba as nb
import numpy as np

from edgepoc.errors import InputError
from edgepoc.game.instance import Instance
from edgepoc.game.kernel import _free_times, _greedy, completion_time, greedy_assignment, simulate
from edgepoc.models.decode import wall_budget_s

DYN_FEATURES = ("lat_regret", "pilot5_regret", "pilot_regret", "wait", "log_lat", "log_lat_regret",
                "log_pilot_regret", "log_idle")
N_DYN = len(DYN_FEATURES)
PILOT_INDEX = DYN_FEATURES.index("pilot_regret")
DEFAULT_HORIZON = 20
SHORT_HORIZON = 5


@nb.njit(cache=True, nogil=True)
def _dyn_features(arrival, ready, proc, free, i, horizon, scale, trial, scratch, cost_short, cost_long, out):
    """Fill `out` (K, N_DYN) with task `i`'s dynamic features given the free times `free` (unchanged)."""
    n = arrival.shape[0]
    kk = free.shape[0]
    short_end = min(n, i + 1 + min(horizon, 5))
    long_end = min(n, i + 1 + horizon)
    best_lat = np.inf
    best_short = np.inf
    best_long = np.inf
    for k in range(kk):
        c = completion_time(free[k], ready[i, k], proc[i, k])
        lat = c - arrival[i]
        if lat < 0.0:
            lat = 0.0
        for q in range(kk):
            trial[q] = free[q]
        trial[k] = c
        cs = lat
        if short_end > i + 1:
            cs += _greedy(arrival[i + 1:short_end], ready[i + 1:short_end], proc[i + 1:short_end], trial,
                          scratch[: short_end - i - 1])
        cl = cs
        if long_end > short_end:
            cl += _greedy(arrival[short_end:long_end], ready[short_end:long_end], proc[short_end:long_end], trial,
                          scratch[: long_end - short_end])
        cost_short[k] = cs
        cost_long[k] = cl
        out[k, 0] = lat
        wait = free[k] - ready[i, k]
        out[k, 3] = wait / scale if wait > 0.0 else 0.0
        idle = ready[i, k] - free[k]
        out[k, 7] = np.log1p(idle / scale) if idle > 0.0 else 0.0
        if lat < best_lat:
            best_lat = lat
        if cs < best_short:
            best_short = cs
        if cl < best_long:
            best_long = cl
    for k in range(kk):
        lat = out[k, 0]
        out[k, 0] = (lat - best_lat) / scale
        out[k, 1] = (cost_short[k] - best_short) / scale
        out[k, 2] = (cost_long[k] - best_long) / scale
        out[k, 4] = np.log1p(lat / scale)
        out[k, 5] = np.log1p(out[k, 0])
        out[k, 6] = np.log1p(out[k, 2])


@nb.njit(cache=True, nogil=True)
def _head_scores(emb_i, dyn, a_mat, b_vec, w_vec, c_vec, gain, scores):
    """scores[k] = w . tanh(gain * emb_i[k] + A dyn[k] + b) + c . dyn[k]."""
    kk = dyn.shape[0]
    hh = b_vec.shape[0]
    nd = dyn.shape[1]
    for k in range(kk):
        total = 0.0
        for d in range(nd):
            total += c_vec[d] * dyn[k, d]
        for h in range(hh):
            z = gain * emb_i[k, h] + b_vec[h]
            for d in range(nd):
                z += a_mat[h, d] * dyn[k, d]
            total += w_vec[h] * np.tanh(z)
        scores[k] = total


@nb.njit(cache=True, nogil=True)
def _onepass(arrival, ready, proc, free, emb, a_mat, b_vec, w_vec, c_vec, gain, horizon, scale, x, scores_out):
    """Decide every task in order; `free` advances in place; `scores_out` (n, K) keeps each step's scores
    (empty: not kept). Returns the total delay of the decoded allocation (kernel semantics)."""
    n = arrival.shape[0]
    kk = free.shape[0]
    keep = scores_out.shape[0] > 0
    dyn = np.empty((kk, 8))
    trial = np.empty(kk)
    scratch = np.empty(max(horizon, 1), dtype=np.int64)
    cost_short = np.empty(kk)
    cost_long = np.empty(kk)
    scores = np.empty(kk)
    total = 0.0
    for i in range(n):
        _dyn_features(arrival, ready, proc, free, i, horizon, scale, trial, scratch, cost_short, cost_long, dyn)
        _head_scores(emb[i], dyn, a_mat, b_vec, w_vec, c_vec, gain, scores)
        best_k = 0
        best_s = scores[0]
        for k in range(1, kk):
            if scores[k] > best_s:
                best_s = scores[k]
                best_k = k
        if keep:
            for k in range(kk):
                scores_out[i, k] = scores[k]
        x[i] = best_k
        c = completion_time(free[best_k], ready[i, best_k], proc[i, best_k])
        free[best_k] = c
        lat = c - arrival[i]
        if lat > 0.0:
            total += lat
    return total


@nb.njit(cache=True, nogil=True)
def _trajectory_features(arrival, ready, proc, free, x, horizon, scale, out):
    """Dynamic features (n, K, N_DYN) at every state of a GIVEN allocation `x` (teacher forcing)."""
    n = arrival.shape[0]
    kk = free.shape[0]
    trial = np.empty(kk)
    scratch = np.empty(max(horizon, 1), dtype=np.int64)
    cost_short = np.empty(kk)
    cost_long = np.empty(kk)
    for i in range(n):
        _dyn_features(arrival, ready, proc, free, i, horizon, scale, trial, scratch, cost_short, cost_long, out[i])
        k = x[i]
        free[k] = completion_time(free[k], ready[i, k], proc[i, k])


@dataclass
class Head:
    """The dynamic head's weights as float64 arrays (what the compiled decoder runs)."""

    a: np.ndarray  # (H, N_DYN)
    b: np.ndarray  # (H,)
    w: np.ndarray  # (H,)
    c: np.ndarray  # (N_DYN,)
    gain: float = 1.0
    horizon: int = DEFAULT_HORIZON

    @classmethod
    def rollout_prior(cls, hidden: int, horizon: int = DEFAULT_HORIZON) -> "Head":
        """All corrections zero: the decode is the rollout method's choice (pilot regret)."""
        c = np.zeros(N_DYN)
        c[PILOT_INDEX] = -1.0
        return cls(np.zeros((hidden, N_DYN)), np.zeros(hidden), np.zeros(hidden), c, 1.0, horizon)

    def flat(self) -> np.ndarray:
        return np.concatenate([self.a.ravel(), self.b, self.w, self.c, [self.gain]])

    def with_flat(self, v: np.ndarray) -> "Head":
        h, nd = self.a.shape
        o = 0
        a = v[o:o + h * nd].reshape(h, nd); o += h * nd
        b = v[o:o + h]; o += h
        w = v[o:o + h]; o += h
        c = v[o:o + nd]; o += nd
        return Head(np.ascontiguousarray(a), b.copy(), w.copy(), c.copy(), float(v[o]), self.horizon)


def time_scale(inst: Instance) -> float:
    s = float(inst.processing.mean()) if inst.n_tasks else 1.0
    return s if s > 0 else 1.0


def onepass(inst: Instance, emb: np.ndarray, head: Head, free_times=None,
            keep_scores: bool = False) -> tuple[np.ndarray, float, np.ndarray | None]:
    """`(assignment, total delay, per-step scores (n, K) or None)` of the one-pass decode."""
    n, k = inst.n_tasks, inst.n_providers
    emb = np.ascontiguousarray(emb, dtype=np.float64)
    if emb.shape[:2] != (n, k) or emb.shape[2] != head.b.shape[0]:
        raise InputError(f"embedding: expected shape ({n}, {k}, {head.b.shape[0]}), got {emb.shape}")
    x = np.empty(n, dtype=np.int64)
    scores = np.empty((n, k) if keep_scores else (0, k))
    total = _onepass(inst.arrival, inst.ready, inst.processing, _free_times(inst, free_times), emb,
                     head.a, head.b, head.w, head.c, float(head.gain), int(head.horizon), time_scale(inst), x, scores)
    return x, float(total), (scores if keep_scores else None)


def trajectory_features(inst: Instance, x: np.ndarray, horizon: int = DEFAULT_HORIZON, free_times=None) -> np.ndarray:
    """(n, K, N_DYN) dynamic features along allocation `x` (what the decoder would see following it)."""
    out = np.empty((inst.n_tasks, inst.n_providers, N_DYN))
    _trajectory_features(inst.arrival, inst.ready, inst.processing, _free_times(inst, free_times),
                         np.ascontiguousarray(x, dtype=np.int64), int(horizon), time_scale(inst), out)
    return out


# ----------------------------------------------------------------------------------------------- search

DEFAULT_SWEEPS = 30  # the "50 ms-equivalent" work budget: median 47 ms of CPU on 1000-task paper instances


@dataclass
class SearchOptions:
    sweeps: int = DEFAULT_SWEEPS  # local-search sweeps in all (work budget: deterministic)
    budget_s: float | None = None  # wall-clock budget instead (explicit option; not reproducible)
    kick_fraction: float = 0.01
    swap_window: int = 8
    temperature: float = 1.0
    seed: int = 0


def softmax_weights(scores: np.ndarray | None, shape: tuple[int, int], temperature: float) -> np.ndarray:
    """Kick weights per task: the softmax of the one-pass scores, or uniform (the no-model control)."""
    if scores is None:
        return np.ones(shape)
    z = scores / temperature
    z = z - z.max(axis=1, keepdims=True)
    w = np.exp(np.clip(z, -30.0, 0.0))
    return w / w.sum(axis=1, keepdims=True) + 1e-3


_WARM = False


def warm_up() -> None:
    """Compile (or load from Numba's cache) the one-pass decode, the search and the kernel once per process,
    outside any clock: both run on a 4-task instance with the same array types as a real call."""
    global _WARM
    if _WARM:
        return
    _WARM = True
    inst = Instance.create([[1.0], [2.0]], [0.0, 0.01], [0.0, 0.1, 0.2, 0.3], [[0.5], [0.9], [0.4], [0.7]],
                           name="warm-up")
    head = Head.rollout_prior(2)
    x, _, scores = onepass(inst, np.zeros((4, 2, 2)), head, keep_scores=True)
    g, _ = greedy_assignment(inst)
    search(inst, [("onepass", x), ("greedy", g)], softmax_weights(scores, (4, 2), 1.0),
           SearchOptions(sweeps=4, budget_s=None))


def search(inst: Instance, starts: list[tuple[str, np.ndarray]], weights: np.ndarray, opts: SearchOptions,
           free_times=None) -> tuple[np.ndarray, dict]:
    """Descend from each start, then iterated local search with kicks drawn from `weights`.

    A wall-clock budget (`opts.budget_s`) starts after `warm_up()`; if it ends before the first descent,
    `info["budget_note"]` says so (the answer is then the best start, not a search result)."""
    from edgepoc.models.decode import kick
    from edgepoc.solvers.localsearch import local_search

    if opts.budget_s is not None:
        warm_up()  # compiling is not the search's time
    t0 = time.perf_counter()
    deadline = np.inf if opts.budget_s is None else t0 + opts.budget_s
    used = 0
    best_x, best_f, source = None, np.inf, ""
    for name, x in starts:
        f = simulate(inst, x, free_times, checked=False)
        if f < best_f:
            best_x, best_f, source = np.asarray(x, dtype=np.int8), f, name

    def left() -> int:
        return opts.sweeps - used if opts.budget_s is None else 1_000_000

    descents = kicks = 0
    if inst.n_tasks > 1 and inst.n_providers > 1:
        for name, x in starts:
            if left() <= 0 or time.perf_counter() >= deadline:
                break
            y, f, sw = local_search(inst, x, free_times, max_sweeps=left(), swap_window=opts.swap_window,
                                    deadline=deadline)
            used, descents = used + sw, descents + 1
            if f < best_f:
                best_x, best_f, source = y, f, name + "+ls"
        rng = np.random.default_rng(opts.seed)
        count = max(1, int(round(opts.kick_fraction * inst.n_tasks)))
        while left() > 0 and time.perf_counter() < deadline:
            y, f, sw = local_search(inst, kick(best_x, weights, count, rng), free_times, max_sweeps=left(),
                                    swap_window=opts.swap_window, deadline=deadline)
            used, kicks = used + sw, kicks + 1
            if f < best_f:
                best_x, best_f = y, f
                source = source if source.endswith("+ils") else source + "+ils"
    info = {"decode": "search", "source": source, "descents": descents, "kicks": kicks, "sweeps": used,
            "budget": f"{opts.sweeps} sweeps" if opts.budget_s is None else f"{opts.budget_s * 1000:g} ms wall clock",
            "decode_seconds": time.perf_counter() - t0}
    if opts.budget_s is not None and descents == 0 and inst.n_tasks > 1 and inst.n_providers > 1:
        info["budget_note"] = (f"search: the wall-clock budget of {opts.budget_s * 1000:g} ms ended before the first "
                               f"descent; the answer is the best start ({source}), not a search result")
    return np.asarray(best_x, dtype=np.int64), info


def search_options(params: dict, seconds: float | None, seed: int, extra_known=()) -> SearchOptions:
    """`sweeps` (work) or `budget_ms` / `--seconds` (wall clock, explicit), `kick_fraction`, `swap_window`."""
    opts = SearchOptions(seed=seed)
    if "sweeps" in params:
        opts.sweeps = int(params["sweeps"])
    opts.budget_s = wall_budget_s(params, seconds, opts.budget_s)
    opts.kick_fraction = float(params.get("kick_fraction", opts.kick_fraction))
    opts.swap_window = int(params.get("swap_window", opts.swap_window))
    opts.temperature = float(params.get("temperature", opts.temperature))
    if (opts.sweeps < 0 or (opts.budget_s is not None and opts.budget_s < 0) or not 0 < opts.kick_fraction <= 1
            or opts.swap_window < 0 or opts.temperature <= 0):
        raise InputError("search settings: sweeps >= 0, budget_ms >= 0, 0 < kick_fraction <= 1, swap_window >= 0, "
                         "temperature > 0")
    return opts


SEARCH_KEYS = {"sweeps", "budget_ms", "kick_fraction", "swap_window", "temperature"}


def solve_search_control(instance: Instance, options) -> tuple[np.ndarray, dict]:
    """The no-model control: the same search from greedy, kicks uniform over providers, same budget."""
    params = dict(options.params)
    unknown = set(params) - SEARCH_KEYS
    if unknown:
        raise InputError(f"--param: unknown search setting(s) {sorted(unknown)}; known: {sorted(SEARCH_KEYS)}")
    opts = search_options(params, options.seconds, options.seed)
    x, _ = greedy_assignment(instance, options.free_times)
    weights = softmax_weights(None, (instance.n_tasks, instance.n_providers), 1.0)
    return search(instance, [("greedy", x)], weights, opts, options.free_times)
