"""Decoders: turn the model's `P` (n, K) into an allocation (SPEC §4, "decoding beyond argmax").

* `argmax`: task i goes to `argmax_k P_ik`. Ignores the queues the earlier tasks build.
* `guided`: a sequential pass that walks the tasks in arrival order with the live provider free
  times and picks `argmax_k log P_ik - lam * regret_ik`, where `regret_ik` is how much later task i
  would finish on k than on its best provider (in units of the mean processing time). `lam = 0` is
  argmax; a very large `lam` is earliest-completion-time dispatch (greedy). A small grid of `lam`
  values gives a handful of candidates. NOTE, said openly: the grid's last value makes greedy-ECT
  one of the candidates, so `guided`/`search` are never worse than greedy; the model's `P` guides
  the search, and `extra["source"]` tells which candidate won.
* `sample`: allocations drawn from `P` as a categorical with a temperature.
* `search` (default for solving): `guided` candidates, then rounds of P-guided neighbourhood moves
  around the best allocation (one or a few random tasks moved to another provider, drawn in
  proportion to `P` among the others) until the time budget is spent. Every round's candidates are scored in ONE `simulate_population` call, the
  shared kernel; the pass in `_guided` only tracks free times to make its choices, and the
  reported delay is always re-simulated by the kernel.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numba as nb
import numpy as np

from edgepoc.errors import InputError
from edgepoc.game.instance import Instance
from edgepoc.game.kernel import simulate_population

DECODERS = ("argmax", "guided", "sample", "search")
DEFAULT_LAMBDAS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 1e9)


@dataclass
class DecodeOptions:
    method: str = "search"
    budget_s: float = 0.05  # wall-clock budget for `search` (and `sample`), per instance
    lambdas: tuple[float, ...] = DEFAULT_LAMBDAS
    samples: int = 64  # allocations per population call
    temperature: float = 1.0
    move_fraction: float = 0.002  # a move re-assigns 1..max(2, fraction * n) tasks
    focus: float = 0.0  # share of moved tasks drawn where P doubts the current provider (else uniform)
    seed: int = 0
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_params(cls, params: dict, seconds: float | None = None, seed: int = 0) -> "DecodeOptions":
        """From `--param decode=search --param budget_ms=50 ...` (and `--seconds`)."""
        opts = cls(seed=seed)
        known = {"decode", "budget_ms", "samples", "temperature", "move_fraction", "lambdas", "focus"}
        unknown = set(params) - known
        if unknown:
            raise InputError(f"--param: unknown model setting(s) {sorted(unknown)}; known: {sorted(known)}")
        opts.method = str(params.get("decode", opts.method))
        if opts.method not in DECODERS:
            raise InputError(f"decode: expected one of {', '.join(DECODERS)}, got {opts.method!r}")
        if seconds is not None:
            opts.budget_s = float(seconds)
        if "budget_ms" in params:
            opts.budget_s = float(params["budget_ms"]) / 1000.0
        if opts.budget_s < 0:
            raise InputError("budget_ms: must be >= 0")
        opts.samples = int(params.get("samples", opts.samples))
        opts.temperature = float(params.get("temperature", opts.temperature))
        opts.move_fraction = float(params.get("move_fraction", opts.move_fraction))
        opts.focus = float(params.get("focus", opts.focus))
        if "lambdas" in params:
            opts.lambdas = tuple(float(v) for v in params["lambdas"])
        if opts.samples < 1 or opts.temperature <= 0 or not 0 < opts.move_fraction <= 1 or not 0 <= opts.focus <= 1:
            raise InputError("decode settings: samples >= 1, temperature > 0, 0 < move_fraction <= 1, 0 <= focus <= 1")
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
                s = ready[i, k]
                if free[k] > s:
                    s = free[k]
                fin[k] = s + proc[i, k]
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


def guided_candidates(inst: Instance, p: np.ndarray, lambdas=DEFAULT_LAMBDAS, free_times=None) -> np.ndarray:
    """One allocation per `lam`, shape (len(lambdas), n), int8."""
    logp = np.log(np.clip(np.asarray(p, dtype=np.float64), 1e-6, None))
    free0 = np.zeros(inst.n_providers) if free_times is None else np.asarray(free_times, dtype=np.float64).copy()
    out = np.empty((len(lambdas), inst.n_tasks), dtype=np.int8)
    scale = float(inst.processing.mean()) or 1.0
    _guided(inst.ready, inst.processing, logp, np.asarray(lambdas, dtype=np.float64), scale, free0, out)
    return out


def _categorical(p: np.ndarray, temperature: float) -> np.ndarray:
    w = np.clip(np.asarray(p, dtype=np.float64), 1e-9, None) ** (1.0 / temperature)
    return np.cumsum(w / w.sum(axis=1, keepdims=True), axis=1)


def sample_candidates(p: np.ndarray, count: int, temperature: float, rng: np.random.Generator) -> np.ndarray:
    """`count` allocations drawn independently per task from `P` (categorical), (count, n) int8."""
    cdf = _categorical(p, temperature)
    u = rng.random((count, cdf.shape[0], 1))
    return np.minimum((u > cdf[None]).sum(axis=2), cdf.shape[1] - 1).astype(np.int8)


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
    sources: list[str] = []
    if opts.method == "sample":
        cands = np.concatenate([argmax_decode(p)[None].astype(np.int8),
                                sample_candidates(p, opts.samples, opts.temperature, rng)])
        sources = ["argmax"] + ["sample"] * opts.samples
    else:
        cands = guided_candidates(inst, p, opts.lambdas, free_times)
        sources = ["greedy" if lam >= 1e8 else ("argmax-guided" if lam == 0 else f"guided(lam={lam:g})")
                   for lam in opts.lambdas]
    scores = simulate_population(inst, cands, free_times, checked=False)
    best = int(np.argmin(scores))
    best_x, best_f, source = cands[best].copy(), float(scores[best]), sources[best]
    tried, rounds = len(cands), 1
    if opts.method == "search" and inst.n_tasks > 0 and inst.n_providers > 1:
        # a move re-assigns 1..m random tasks to ANOTHER provider drawn from P without the current one
        weights = np.clip(p, 1e-3, None) ** (1.0 / opts.temperature)
        n, k = inst.n_tasks, inst.n_providers
        m_max = max(2, int(round(opts.move_fraction * n)))
        round_s = 0.0  # stop when another round would overrun the budget
        focus_cdf = None
        while time.perf_counter() - t0 + round_s < opts.budget_s:
            r0 = time.perf_counter()
            m = int(rng.integers(1, m_max + 1))
            moves = np.repeat(best_x[None], opts.samples, axis=0)
            rows = np.repeat(np.arange(opts.samples), m)
            cols = rng.integers(0, n, size=opts.samples * m)
            if opts.focus > 0:  # part of the moves target tasks whose current provider P disagrees with
                if focus_cdf is None:
                    doubt = 1.0 - weights[np.arange(n), best_x] / weights.sum(axis=1) + 1e-3
                    focus_cdf = np.cumsum(doubt) / doubt.sum()
                pick = rng.random(cols.shape[0]) < opts.focus
                cols[pick] = np.minimum(np.searchsorted(focus_cdf, rng.random(int(pick.sum()))), n - 1)
            w = weights[cols]
            w[np.arange(cols.shape[0]), moves[rows, cols]] = 0.0
            cdf = np.cumsum(w / w.sum(axis=1, keepdims=True), axis=1)
            moves[rows, cols] = np.minimum((rng.random(cols.shape[0])[:, None] > cdf).sum(axis=1), k - 1)
            scores = simulate_population(inst, moves, free_times, checked=False)
            j = int(np.argmin(scores))
            tried += opts.samples
            rounds += 1
            if scores[j] < best_f:
                best_x, best_f = moves[j].copy(), float(scores[j])
                source = source if source.endswith("+search") else source + "+search"
                focus_cdf = None
            round_s = time.perf_counter() - r0
    info = {"decode": opts.method, "source": source, "candidates": tried, "rounds": rounds,
            "decode_seconds": time.perf_counter() - t0, "decoded_latency": best_f}
    return best_x.astype(np.int64), info
