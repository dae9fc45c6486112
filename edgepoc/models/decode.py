"""Decoders: turn the model's `P` (n, K) into an allocation (SPEC §4, "decoding beyond argmax").

* `argmax`: task i goes to `argmax_k P_ik`. Ignores the queues the earlier tasks build.
* `guided`: a sequential pass that walks the tasks in arrival order with the live provider free
  times and picks `argmax_k log P_ik - lam * regret_ik`, where `regret_ik` is how much later task i
  would finish on k than on its best provider (in units of the mean processing time). `lam = 0` is
  argmax; a very large `lam` is earliest-completion-time dispatch (greedy). A small grid of `lam`
  values gives a handful of candidates, all scored in ONE `simulate_population` call.
* `sample`: `samples` allocations drawn from `P` as a categorical (with a temperature) plus argmax,
  scored in one `simulate_population` call.
* `search` (the default): the `guided` candidates; descent by single-task moves and swaps of nearby
  tasks (`edgepoc.solvers.localsearch`, the GA's compiled local search) from the best `starts`;
  then, until the time budget is spent, iterated local search whose kicks re-assign a random
  `kick_fraction` of the tasks to another provider drawn from `P` (without the current one).

Said openly: the lambda grid's last value makes greedy-ECT one of the `guided` candidates, so
`guided` and `search` are never worse than greedy; the model's `P` guides the search (which start
points exist, where kicks send tasks) rather than dictating the answer. `info["source"]` says which
start won, and `lambdas` without the greedy extreme (`--param lambdas=[0,1,2,4]`) removes it. The
`_guided` pass and the local search only track queue state to make choices; the reported delay is
always re-simulated by the shared kernel.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numba as nb
import numpy as np

from edgepoc.errors import InputError
from edgepoc.game.instance import Instance
from edgepoc.game.kernel import completion_time, simulate, simulate_population

DECODERS = ("argmax", "guided", "sample", "search")
DEFAULT_LAMBDAS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 1e9)
GREEDY_LAMBDA = 1e8  # lambdas at or above this mean pure earliest completion time


def wall_budget_s(params: dict, seconds: float | None, default: float | None) -> float | None:
    """A decoder's wall-clock budget: `budget_ms` in params wins over `--seconds`; else `default`."""
    if "budget_ms" in params:
        return float(params["budget_ms"]) / 1000.0
    return default if seconds is None else float(seconds)


@dataclass
class DecodeOptions:
    method: str = "search"
    budget_s: float = 0.05  # wall-clock budget per instance (`search`); inference counts if started_at is given
    lambdas: tuple[float, ...] = DEFAULT_LAMBDAS
    samples: int = 64  # allocations drawn by `sample`
    temperature: float = 1.0  # of the categorical draws from P (`sample`, `search` kicks)
    starts: int = 3  # guided candidates polished by local search before the kicks
    kick_fraction: float = 0.01  # share of tasks re-assigned by one kick
    swap_window: int = 8  # local search also swaps providers of two tasks at most this far apart (0: off)
    seed: int = 0

    @classmethod
    def from_params(cls, params: dict, seconds: float | None = None, seed: int = 0) -> "DecodeOptions":
        """From `--param decode=search --param budget_ms=50 ...` (and `--seconds`)."""
        opts = cls(seed=seed)
        known = {"decode", "budget_ms", "samples", "temperature", "starts", "kick_fraction", "lambdas",
                 "swap_window"}
        unknown = set(params) - known
        if unknown:
            raise InputError(f"--param: unknown model setting(s) {sorted(unknown)}; known: {sorted(known)}")
        opts.method = str(params.get("decode", opts.method))
        if opts.method not in DECODERS:
            raise InputError(f"decode: expected one of {', '.join(DECODERS)}, got {opts.method!r}")
        opts.budget_s = wall_budget_s(params, seconds, opts.budget_s)
        opts.samples = int(params.get("samples", opts.samples))
        opts.temperature = float(params.get("temperature", opts.temperature))
        opts.starts = int(params.get("starts", opts.starts))
        opts.kick_fraction = float(params.get("kick_fraction", opts.kick_fraction))
        opts.swap_window = int(params.get("swap_window", opts.swap_window))
        if "lambdas" in params:
            lams = params["lambdas"]
            if not isinstance(lams, list) or not lams:
                raise InputError("lambdas: expected a non-empty JSON list, e.g. lambdas=[0,1,4]")
            opts.lambdas = tuple(float(v) for v in lams)
        if (opts.budget_s < 0 or opts.samples < 1 or opts.temperature <= 0 or opts.starts < 0
                or not 0 < opts.kick_fraction <= 1 or min(opts.lambdas) < 0 or opts.swap_window < 0):
            raise InputError("decode settings: budget_ms >= 0, samples >= 1, temperature > 0, starts >= 0, "
                             "0 < kick_fraction <= 1, lambdas >= 0, swap_window >= 0")
        return opts


def argmax_decode(p: np.ndarray) -> np.ndarray:
    return np.asarray(p).argmax(axis=1).astype(np.int64)


@nb.njit(cache=True, nogil=True)
def _guided(ready, proc, logp, lambdas, scale, free0, out):
    """For each lam: walk tasks in order, pick argmax_k logp_ik - lam * regret_ik (see module doc)."""
    kk = free0.shape[0]
    fin = np.empty(kk)
    for li in range(lambdas.shape[0]):
        lam = lambdas[li]
        free = free0.copy()
        for i in range(ready.shape[0]):
            best_fin = np.inf
            for k in range(kk):
                fin[k] = completion_time(free[k], ready[i, k], proc[i, k])
                if fin[k] < best_fin:
                    best_fin = fin[k]
            best_k = 0
            best_score = -np.inf
            for k in range(kk):
                if lam >= 1e8:  # pure earliest completion (ties to the lowest index, like the kernel)
                    score = -(fin[k] - best_fin)
                else:
                    score = logp[i, k] - lam * (fin[k] - best_fin) / scale
                if score > best_score:
                    best_score = score
                    best_k = k
            out[li, i] = best_k
            free[best_k] = fin[best_k]


def _free0(inst: Instance, free_times) -> np.ndarray:
    if free_times is None:
        return np.zeros(inst.n_providers)
    return np.asarray(free_times, dtype=np.float64).copy()


def guided_candidates(inst: Instance, p: np.ndarray, lambdas=DEFAULT_LAMBDAS, free_times=None) -> np.ndarray:
    """One allocation per `lam`, shape (len(lambdas), n), int8."""
    logp = np.log(np.clip(np.asarray(p, dtype=np.float64), 1e-6, None))
    out = np.empty((len(lambdas), inst.n_tasks), dtype=np.int8)
    scale = float(inst.processing.mean()) or 1.0
    _guided(inst.ready, inst.processing, logp, np.asarray(lambdas, dtype=np.float64), scale,
            _free0(inst, free_times), out)
    return out


def _weights(p: np.ndarray, temperature: float) -> np.ndarray:
    return np.clip(np.asarray(p, dtype=np.float64), 1e-3, None) ** (1.0 / temperature)


def sample_candidates(p: np.ndarray, count: int, temperature: float, rng: np.random.Generator) -> np.ndarray:
    """`count` allocations drawn independently per task from `P` (categorical), (count, n) int8."""
    w = _weights(p, temperature)
    cdf = np.cumsum(w / w.sum(axis=1, keepdims=True), axis=1)
    u = rng.random((count, cdf.shape[0], 1))
    return np.minimum((u > cdf[None]).sum(axis=2), cdf.shape[1] - 1).astype(np.int8)


def kick(x: np.ndarray, weights: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """A copy of `x` with `count` random tasks moved to another provider drawn from the weights."""
    y = x.copy()
    cols = rng.choice(x.shape[0], size=min(count, x.shape[0]), replace=False)
    w = weights[cols].copy()
    w[np.arange(cols.shape[0]), y[cols]] = 0.0
    cdf = np.cumsum(w / w.sum(axis=1, keepdims=True), axis=1)
    y[cols] = np.minimum((rng.random(cols.shape[0])[:, None] > cdf).sum(axis=1), weights.shape[1] - 1)
    return y


def _source_names(lambdas) -> list[str]:
    return ["greedy" if lam >= GREEDY_LAMBDA else ("argmax-guided" if lam == 0 else f"guided(lam={lam:g})")
            for lam in lambdas]


def decode(inst: Instance, p: np.ndarray, opts: DecodeOptions | None = None,
           free_times=None, started_at: float | None = None) -> tuple[np.ndarray, dict]:
    """`(assignment, info)`; info has the candidates tried, the winner's source and its delay.

    `started_at` (a `time.perf_counter()` value) makes the budget count from then, so the time
    spent on inference before decoding is inside the budget.
    """
    opts = opts or DecodeOptions()
    p = np.asarray(p, dtype=np.float64)
    if p.shape != (inst.n_tasks, inst.n_providers):
        raise InputError(f"P: expected shape ({inst.n_tasks}, {inst.n_providers}), got {p.shape}")
    t0 = time.perf_counter() if started_at is None else started_at
    if opts.method == "argmax":
        return argmax_decode(p), {"decode": "argmax", "source": "argmax", "candidates": 1}
    rng = np.random.default_rng(opts.seed)
    if opts.method == "sample":
        cands = np.concatenate([argmax_decode(p)[None].astype(np.int8),
                                sample_candidates(p, opts.samples, opts.temperature, rng)])
        sources = ["argmax"] + ["sample"] * opts.samples
    else:
        cands = guided_candidates(inst, p, opts.lambdas, free_times)
        sources = _source_names(opts.lambdas)
    scores = simulate_population(inst, cands, free_times, checked=False)
    best = int(np.argmin(scores))
    best_x, best_f, source = cands[best].copy(), float(scores[best]), sources[best]
    tried, descents, kicks = len(cands), 0, 0
    if opts.method == "search" and inst.n_tasks > 1 and inst.n_providers > 1:
        from edgepoc.solvers.localsearch import local_search

        last = 0.0  # duration of the last descent: do not start one that would overrun the budget
        deadline = t0 + opts.budget_s  # and stop one inside (an overloaded instance's sweep is O(n^2))
        for j in np.argsort(scores, kind="stable")[:opts.starts]:
            if time.perf_counter() - t0 + last >= opts.budget_s:
                break
            d0 = time.perf_counter()
            x, f, _ = local_search(inst, cands[j], free_times, swap_window=opts.swap_window, deadline=deadline)
            last, descents = time.perf_counter() - d0, descents + 1
            if f < best_f:
                best_x, best_f, source = x, f, sources[j] + "+ls"
        weights = _weights(p, opts.temperature)
        count = max(1, int(round(opts.kick_fraction * inst.n_tasks)))
        while time.perf_counter() - t0 + last < opts.budget_s:
            d0 = time.perf_counter()
            x, f, _ = local_search(inst, kick(best_x, weights, count, rng), free_times,
                                   swap_window=opts.swap_window, deadline=deadline)
            last, kicks = time.perf_counter() - d0, kicks + 1
            if f < best_f:
                best_x, best_f = x, f
                source = source if source.endswith("+ils") else source + "+ils"
        best_f = simulate(inst, best_x, free_times)  # the kernel has the last word
    info = {"decode": opts.method, "source": source, "candidates": tried, "descents": descents, "kicks": kicks,
            "decode_seconds": time.perf_counter() - t0, "decoded_latency": best_f}
    if opts.method == "search" and descents == 0 and inst.n_tasks > 1 and inst.n_providers > 1:
        info["budget_note"] = (f"decode: the budget of {opts.budget_s * 1000:g} ms (inference included) ended before "
                               f"the first descent; the answer is the best candidate ({source}), not a search result")
    return np.asarray(best_x, dtype=np.int64), info
