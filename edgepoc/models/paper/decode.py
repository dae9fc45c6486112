"""The paper model's strategies: turn its `P` (n, K) into an allocation (SPEC §4, "decoding beyond argmax").

* `argmax`: task i goes to `argmax_k P_ik`. Ignores the queues the earlier tasks build.
* `guided`: a sequential pass that walks the tasks in arrival order with the live provider free
  times and picks `argmax_k log P_ik - lam * regret_ik`, where `regret_ik` is how much later task i
  would finish on k than on its best provider (in units of the mean processing time). `lam = 0` is
  argmax; a very large `lam` is earliest-completion-time dispatch (greedy). A small grid of `lam`
  values gives a handful of candidates, all scored in ONE `simulate_population` call.
* `sample`: `samples` allocations drawn from `P` as a categorical (with a temperature) plus argmax,
  scored in one `simulate_population` call.
* `search` (the default): the `guided` candidates; the shared search loop (`edgepoc.models.decoding.search`:
  descent by single-task moves and swaps of nearby tasks from the best `starts`, then, until the budget
  is spent, iterated local search whose kicks re-decode a random window of `kick_window` tasks by sampled
  greedy; with `kick_window=0` they re-assign a random `kick_fraction` of the tasks to another provider
  drawn from `P`). The budget is a 50 ms deadline that counts the inference (`budget_ms`,
  `--seconds`), or work (`sweeps`).

Said openly: the lambda grid's last value makes greedy-ECT one of the `guided` candidates, so
`guided` and `search` are never worse than greedy; the model's `P` guides the search (which start
points exist; with point kicks, where kicks send tasks) rather than dictating the answer. `info["source"]` says which
start won, and `lambdas` without the greedy extreme (`--param lambdas=[0,1,2,4]`) removes it. The
`_guided` pass and the local search only track queue state to make choices; the reported delay is
always re-simulated by the shared kernel.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Sequence

import numba as nb
import numpy as np

from edgepoc.errors import InputError
from edgepoc.game.instance import Instance
from edgepoc.game.kernel import completion_time, simulate_population
from edgepoc.game.validate import ASSIGNMENT_DTYPE
from edgepoc.models.budget import Budget
from edgepoc.models.decoding import DEFAULT_LAMBDAS, PAPER_KEYS, DecodeOptions, search

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

PAPER_STRATEGIES = ("argmax", "guided", "sample", "search")
PAPER_DEFAULT_BUDGET = Budget.deadline(0.05)  # per instance, inference included
GREEDY_LAMBDA = 1e8  # lambdas at or above this mean pure earliest completion time


def paper_decode_options(params: dict, seconds: float | None = None, seed: int = 0) -> DecodeOptions:
    """From `--param decode=search --param budget_ms=50 ...` (and `--seconds`)."""
    return DecodeOptions.from_params(params, seconds, seed, strategies=PAPER_STRATEGIES, default_strategy="search",
                                     default_budget=PAPER_DEFAULT_BUDGET, keys=PAPER_KEYS)


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


def guided_candidates(inst: Instance, p: np.ndarray, lambdas: Sequence[float] = DEFAULT_LAMBDAS,
                      free_times: ArrayLike | None = None) -> np.ndarray:
    """One allocation per `lam`, shape (len(lambdas), n), int16."""
    logp = np.log(np.clip(np.asarray(p, dtype=np.float64), 1e-6, None))
    out = np.empty((len(lambdas), inst.n_tasks), dtype=ASSIGNMENT_DTYPE)
    scale = float(inst.processing.mean()) or 1.0
    _guided(inst.ready, inst.processing, logp, np.asarray(lambdas, dtype=np.float64), scale,
            _free0(inst, free_times), out)
    return out


def _weights(p: np.ndarray, temperature: float) -> np.ndarray:
    return np.clip(np.asarray(p, dtype=np.float64), 1e-3, None) ** (1.0 / temperature)


def sample_candidates(p: np.ndarray, count: int, temperature: float, rng: np.random.Generator) -> np.ndarray:
    """`count` allocations drawn independently per task from `P` (categorical), (count, n) int16."""
    w = _weights(p, temperature)
    cdf = np.cumsum(w / w.sum(axis=1, keepdims=True), axis=1)
    u = rng.random((count, cdf.shape[0], 1))
    return np.minimum((u > cdf[None]).sum(axis=2), cdf.shape[1] - 1).astype(ASSIGNMENT_DTYPE)


def _source_names(lambdas) -> list[str]:
    return ["greedy" if lam >= GREEDY_LAMBDA else ("argmax-guided" if lam == 0 else f"guided(lam={lam:g})")
            for lam in lambdas]


def decode_probabilities(inst: Instance, p: np.ndarray, opts: DecodeOptions | None = None,
                         free_times: np.ndarray | None = None,
                         started_at: float | None = None) -> tuple[np.ndarray, dict]:
    """`(assignment, info)`; info has the candidates tried, the winner's source and its delay.

    `started_at` (a `time.perf_counter()` value) makes a deadline budget count from then, so the time
    spent on inference before decoding is inside the budget.
    """
    opts = opts or DecodeOptions(budget=PAPER_DEFAULT_BUDGET)
    p = np.asarray(p, dtype=np.float64)
    if p.shape != (inst.n_tasks, inst.n_providers):
        raise InputError(f"P: expected shape ({inst.n_tasks}, {inst.n_providers}), got {p.shape}")
    t0 = time.perf_counter() if started_at is None else started_at
    if opts.strategy == "argmax":
        return argmax_decode(p), {"decode": "argmax", "source": "argmax", "candidates": 1}
    if opts.strategy == "sample":
        cands = np.concatenate([argmax_decode(p)[None].astype(ASSIGNMENT_DTYPE),
                                sample_candidates(p, opts.samples, opts.temperature, np.random.default_rng(opts.seed))])
        sources = ["argmax"] + ["sample"] * opts.samples
    else:
        cands = guided_candidates(inst, p, opts.lambdas, free_times)
        sources = _source_names(opts.lambdas)
    info = {"decode": opts.strategy, "candidates": len(cands)}
    if opts.strategy == "search":
        order = np.argsort(simulate_population(inst, cands, free_times, checked=False), kind="stable")
        found = search(inst, [(sources[j], cands[j]) for j in order], _weights(p, opts.temperature), opts,
                       free_times, descend=opts.starts, started_at=t0)
        info.update(found.info(opts.budget))
        info["decoded_latency"] = found.latency
        return found.assignment, info
    scores = simulate_population(inst, cands, free_times, checked=False)
    best = int(np.argmin(scores))
    info.update({"source": sources[best], "descents": 0, "kicks": 0, "decode_seconds": time.perf_counter() - t0,
                 "decoded_latency": float(scores[best])})
    return np.asarray(cands[best], dtype=np.int64), info
