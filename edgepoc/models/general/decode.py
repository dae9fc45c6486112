"""The general model's strategies: `onepass`, a step-by-step decode on the live queues, and `search` from it.

One-pass: tasks are decided in arrival order. At task `i`, with the providers' free times `F` that
the decoder's OWN earlier choices built, every provider `k` gets dynamic features (`DYN_FEATURES`):
its completion latency if `i` went there now, the queue wait, and the pilot values of the rollout
method (`i` on `k`, then the next 5 / `horizon` tasks completed greedily: `rollout.pilot_cost`; with
`Head.pilot` "both" or "mixed", one of them is the priced pilot, and with "mixed" half of its cost is
taken on a fixed plan of the look-ahead tasks: `PILOTS`), each as a regret against the best provider,
in units of the instance's mean processing time. The score is

    score_ik = w . tanh(gain * E_ik + A t(dyn_ik) + b) + c . dyn_ik

(`t`: the identity, or with `Head.dyn_input == "log"` sign(v) log(1 + |v|); the time unit is the
instance's mean processing time, or with `Head.scale == "median"` its median: options, off by default)

where `E_ik` (n, K, H) is the static pair embedding computed once by the torch encoders (task GNN,
provider set encoder) and `(A, b, w, c, gain)` is the small dynamic head. The task goes to the best
score (ties: the lowest provider index). With more than `SHORTLIST` providers (the most the model was
trained on) only the `SHORTLIST` that would finish the task first are scored, and past `EMBEDDING_MAX_PROVIDERS`
`E` is left out (`uses_embedding`). `c` starts at "minus the pilot regret", i.e. the rollout method; training
teaches the rest of the head to correct it. Where the mixed pilot's fixed-plan share applies (heavy tails), the
deployed one-pass (`best_onepass`) decodes with it and without it and keeps the better (`plan_shares` says why).
Everything here is float64 Numba, so the same input gives the bit-identical allocation on every node.

Search: the one-pass allocation, `samples` one-pass decodes drawn at `temperature` and greedy, ranked
by delay; the best `starts` of them descended by the shared search loop (`edgepoc.models.decoding.search`),
whose kicks re-decode windows of tasks by sampled greedy (with `kick_window=0`, point kicks drawn from the
model's per-step softmax: no better than uniform ones on tuning instances). The local search reaches nearly the same
optimum from greedy as from the one-pass on light-tailed instances; diverse good starts from the model
are what the search cannot make itself. Its default budget
is WORK (`sweeps`), so the same input and seed give the same allocation; a wall-clock deadline
(`budget_ms`, `--seconds`) is an explicit option.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numba as nb
import numpy as np

from edgepoc.errors import InputError
from edgepoc.game.instance import Instance
from edgepoc.game.kernel import _free_times, _greedy, completion_time, earliest_finishers, greedy_assignment
from edgepoc.models.budget import Budget
from edgepoc.models.decoding import DEFAULT_SWEEPS, SEARCH_KEYS, DecodeOptions, search
from edgepoc.solvers.localsearch import draw_index
from edgepoc.solvers.rollout import (DEFAULT_MEMORY, DEFAULT_PRICE, decay_rates, fixed_plan, fixed_plan_cost,
                                     fixed_plan_weight, mixed_horizon, pilot_cost, priced_cost, priced_pilot_cost,
                                     time_unit)
from edgepoc.solvers.rollout import plan_shares as rollout_plan_shares

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

DYN_FEATURES = ("lat_regret", "pilot5_regret", "pilot_regret", "wait", "log_lat", "log_lat_regret",
                "log_pilot_regret", "log_idle")
N_DYN = len(DYN_FEATURES)
PILOT_INDEX = DYN_FEATURES.index("pilot_regret")
DEFAULT_HORIZON = 20
SHORT_HORIZON = 5
# The unit every time feature is measured in (`time_scale`): "mean" processing time (the default, what the
# bundled models use) or "median" (robust to heavy tails: on Alibaba trace windows the mean is ~5x the
# typical task's time, so a typical task's features sit near 0 and a few long tasks set the unit).
SCALE_RULES = ("mean", "median")
# What the head's tanh layer sees of the dynamic features: "linear" (the default, the bundled models) or "log",
# sign(v) log(1 + |v|). On Alibaba windows the linear features reach 50-80 (99th percentile; 5-10 on `paper`),
# half the tanh units of the bundled head saturate there and the linear pilot term swamps the learned
# correction; "log" keeps the tanh's inputs bounded. The linear term c . dyn (the rollout prior) is unchanged.
DYN_INPUTS = ("linear", "log")
# The base policy of the pilot features: "greedy" (the bundled models before 2026-11-29) or "priced" (greedy that
# charges a task for the delay it imposes on the tasks that follow it; `edgepoc.solvers.rollout`): on heavy-tailed
# windows greedy pilots are a poor guide, priced ones a much better one; on many providers the reverse. "both":
# greedy pilots, with the priced long pilot's regret in place of the short greedy one (`pilot5_regret`). "mixed": as
# "both", with part of that priced pilot's cost taken on a FIXED plan of the same tasks on heavy-tailed instances
# (`rollout.fixed_plan_weight`; the rollout module's doc says why) and its look-ahead as much longer
# (`rollout.mixed_horizon`): on light tails it is "both", bit for bit.
PILOTS = ("greedy", "priced", "both", "mixed")
# The most providers a task is decided among: the general model is trained on 2-12 providers (`train.py`), and
# past that range its one-pass got worse with every provider (the teacher on held-out 1,000-task `paper` markets:
# 1.02 x greedy at K = 32, 1.16 x at 64, 1.23 x at 127; `benchmarks/bench_many_providers.py`), each extra
# provider one more chance for a score's error to win. So with more providers each
# task is decided among the SHORTLIST that would finish it first (greedy's choice among them), whose pilots still
# run on every provider; with up to SHORTLIST providers the decode is unchanged, bit for bit.
SHORTLIST = 12
# Past twice that, the static embedding is left out (E = 0: the head decides from the shortlist's dynamic features
# alone). The encoders' inputs carry the market's size (1/K, each provider's share of the market, a task's rank of
# providers and its fastest and slowest over all K), and there the embedding steered the one-pass off its own
# pilots: on held-out `paper` markets of 32-127 providers the shortlisted teacher was 1.00-1.03 x greedy with it and
# 0.95-0.96 without (docs/models.md, "Past the trained provider counts"). Up to 24 providers it still paid on
# heavy tails (alibaba, K = 16-24: 2.5 % better with it), so it stays there.
EMBEDDING_MAX_PROVIDERS = 2 * SHORTLIST


def uses_embedding(n_providers: int) -> bool:
    """Whether the decoder takes the model's static embedding for a market of `n_providers` (else E = 0)."""
    return n_providers <= EMBEDDING_MAX_PROVIDERS


@nb.njit(cache=True, nogil=True)
def _dyn_features(arrival, ready, proc, free, rate, i, cand, horizon, scale, mode, price, memory, mix, trial,
                  trial_rate, scratch, plan, cost_short, cost_long, out):
    """Fill `out[j]` (row j of (K, N_DYN)) with task `i`'s dynamic features on provider `cand[j]`, for the candidate
    providers `cand` (all K, or a shortlist: `kernel.earliest_finishers`), given the free times `free` and the task
    rates `rate` (both unchanged; the pilots run on every provider). Regrets are against the best candidate. `mode` (the index
    in `PILOTS`) 0: greedy pilots; 1: priced-greedy pilots (`rollout.priced_cost` at `price`); 2: greedy pilots, and
    feature 1 is the priced long pilot's regret; 3: as 2, with share `mix` of feature 1's cost taken on priced
    greedy's fixed plan (`rollout.fixed_plan`, into `plan`, >= 2 horizon), its look-ahead
    `rollout.mixed_horizon(horizon, mix)`."""
    n = arrival.shape[0]
    short_end = min(n, i + 1 + min(horizon, 5))
    long_end = min(n, i + 1 + horizon)
    priced_end = long_end
    if mode >= 2:  # both: greedy pilots at their own best look-ahead (<= DEFAULT_HORIZON), priced ones at `horizon`
        long_end = min(n, i + 1 + min(horizon, DEFAULT_HORIZON))
    if mode == 3:  # mixed: the priced pilot looks further, as far as the plan's share (`rollout.mixed_horizon`)
        priced_end = min(n, i + 1 + mixed_horizon(horizon, mix))
    if mode == 3 and mix > 0.0:
        fixed_plan(arrival, ready, proc, free, rate, i, priced_end, price, memory, trial, trial_rate, plan)
    best_lat = np.inf
    best_short = np.inf
    best_long = np.inf
    nc = cand.shape[0]
    for j in range(nc):
        k = cand[j]
        c = completion_time(free[k], ready[i, k], proc[i, k])
        lat = c - arrival[i]
        if lat < 0.0:
            lat = 0.0
        if mode == 1:
            cs = lat + priced_pilot_cost(arrival, ready, proc, free, rate, k, c, i + 1, short_end, price, memory,
                                         trial, trial_rate)
        else:
            cs = lat + pilot_cost(arrival, ready, proc, free, k, c, i + 1, short_end, trial, scratch)
        cl = cs  # the long pilot continues the short one from its free times (and rates)
        if long_end > short_end:
            if mode == 1:
                cl += priced_cost(arrival, ready, proc, short_end, long_end, trial, trial_rate, price, memory)
            else:
                cl += _greedy(arrival[short_end:long_end], ready[short_end:long_end], proc[short_end:long_end],
                              trial, scratch[: long_end - short_end])
        if mode >= 2:  # both: the short greedy pilot's place goes to the long priced one
            cs = lat + priced_pilot_cost(arrival, ready, proc, free, rate, k, c, i + 1, priced_end, price, memory,
                                         trial, trial_rate)
        if mode == 3 and mix > 0.0:  # mixed: part of it is the cost of the same tasks on a fixed plan
            cs = (1.0 - mix) * cs + mix * (
                lat + fixed_plan_cost(arrival, ready, proc, free, k, c, i, priced_end, plan, trial))
        cost_short[j] = cs
        cost_long[j] = cl
        out[j, 0] = lat
        wait = free[k] - ready[i, k]
        out[j, 3] = wait / scale if wait > 0.0 else 0.0
        idle = ready[i, k] - free[k]
        out[j, 7] = np.log1p(idle / scale) if idle > 0.0 else 0.0
        if lat < best_lat:
            best_lat = lat
        if cs < best_short:
            best_short = cs
        if cl < best_long:
            best_long = cl
    for j in range(nc):
        lat = out[j, 0]
        out[j, 0] = (lat - best_lat) / scale
        out[j, 1] = (cost_short[j] - best_short) / scale
        out[j, 2] = (cost_long[j] - best_long) / scale
        out[j, 4] = np.log1p(lat / scale)
        out[j, 5] = np.log1p(out[j, 0])
        out[j, 6] = np.log1p(out[j, 2])


@nb.njit(cache=True, nogil=True)
def _head_scores(emb_i, dyn, a_mat, b_vec, w_vec, c_vec, v_mat, gain, log_input, tdyn, scores):
    """scores[k] = w . tanh(gain * emb_i[k] + A t(dyn[k]) + b) + (c + V emb_i[k]) . dyn[k], where t is the identity
    or, with `log_input`, sign(v) log(1 + |v|) (`tdyn`: scratch (N_DYN,)); `V` (N_DYN, H), the gate, may be
    empty (0, 0): no gate."""
    kk = dyn.shape[0]
    hh = b_vec.shape[0]
    nd = dyn.shape[1]
    gated = v_mat.shape[0] > 0
    for k in range(kk):
        total = 0.0
        for d in range(nd):
            cd = c_vec[d]
            if gated:
                for h in range(hh):
                    cd += v_mat[d, h] * emb_i[k, h]
            total += cd * dyn[k, d]
        if log_input:
            for d in range(nd):
                v = dyn[k, d]
                tdyn[d] = np.log1p(v) if v >= 0.0 else -np.log1p(-v)
            for h in range(hh):
                z = gain * emb_i[k, h] + b_vec[h]
                for d in range(nd):
                    z += a_mat[h, d] * tdyn[d]
                total += w_vec[h] * np.tanh(z)
        else:
            for h in range(hh):
                z = gain * emb_i[k, h] + b_vec[h]
                for d in range(nd):
                    z += a_mat[h, d] * dyn[k, d]
                total += w_vec[h] * np.tanh(z)
        scores[k] = total


@nb.njit(cache=True, nogil=True)
def _onepass(arrival, ready, proc, free, emb, a_mat, b_vec, w_vec, c_vec, v_mat, gain, log_input, horizon, scale,
             mode, price, memory, mix, width, uniforms, temperature, x, scores_out):
    """Decide every task in order: the best score (ties: the lowest index), or, with `uniforms` (n,) given
    (empty: not; training's sampled decodes), a draw from softmax(scores / temperature). With more than `width`
    providers each task is decided among the `width` that would finish it first (`kernel.earliest_finishers`; the
    others score -inf). `free` advances in place; `scores_out` (n, K) keeps each step's scores (empty: not kept). Returns the
    total delay of the decoded allocation (kernel semantics)."""
    n = arrival.shape[0]
    kk = free.shape[0]
    hh = emb.shape[2]
    nc = min(kk, width)
    keep = scores_out.shape[0] > 0
    sample = uniforms.shape[0] > 0
    prob = np.empty(nc)
    dyn = np.empty((nc, 8))
    trial = np.empty(kk)
    trial_rate = np.empty(kk)
    rate = np.zeros(kk)
    scratch = np.empty(max(horizon, 1), dtype=np.int64)
    plan = np.empty(max(2 * horizon, 1), dtype=np.int64)
    cost_short = np.empty(nc)
    cost_long = np.empty(nc)
    scores = np.empty(nc)
    tdyn = np.empty(dyn.shape[1])
    cand = np.arange(nc)
    finish = np.empty(kk)
    emb_c = np.empty((nc, hh))
    total = 0.0
    for i in range(n):
        if i > 0:
            decay_rates(rate, arrival[i] - arrival[i - 1], memory)
        emb_i = emb[i]
        if nc < kk:
            earliest_finishers(free, ready[i], proc[i], nc, finish, cand)
            for j in range(nc):
                emb_c[j] = emb[i, cand[j]]
            emb_i = emb_c
        _dyn_features(arrival, ready, proc, free, rate, i, cand, horizon, scale, mode, price, memory, mix, trial,
                      trial_rate, scratch, plan, cost_short, cost_long, dyn)
        _head_scores(emb_i, dyn, a_mat, b_vec, w_vec, c_vec, v_mat, gain, log_input, tdyn, scores)
        if sample:
            top = scores.max()
            for j in range(nc):
                prob[j] = np.exp((scores[j] - top) / temperature)
            best_j = draw_index(prob, uniforms[i])
        else:
            best_j = 0
            best_s = scores[0]
            for j in range(1, nc):
                if scores[j] > best_s:
                    best_s = scores[j]
                    best_j = j
        if keep:
            if nc < kk:
                scores_out[i, :] = -np.inf
            for j in range(nc):
                scores_out[i, cand[j]] = scores[j]
        best_k = cand[best_j]
        x[i] = best_k
        c = completion_time(free[best_k], ready[i, best_k], proc[i, best_k])
        free[best_k] = c
        rate[best_k] += 1.0 / memory
        lat = c - arrival[i]
        if lat > 0.0:
            total += lat
    return total


@nb.njit(cache=True, nogil=True)
def _trajectory_features(arrival, ready, proc, free, rate, x, horizon, scale, mode, price, memory, mix, out):
    """Dynamic features (n, K, N_DYN) at every state of a GIVEN allocation `x` (teacher forcing); `free` and
    `rate` (the task rates as of the first task's arrival) advance in place."""
    n = arrival.shape[0]
    kk = free.shape[0]
    trial = np.empty(kk)
    trial_rate = np.empty(kk)
    scratch = np.empty(max(horizon, 1), dtype=np.int64)
    plan = np.empty(max(2 * horizon, 1), dtype=np.int64)
    cost_short = np.empty(kk)
    cost_long = np.empty(kk)
    every = np.arange(kk)
    for i in range(n):
        if i > 0:
            decay_rates(rate, arrival[i] - arrival[i - 1], memory)
        _dyn_features(arrival, ready, proc, free, rate, i, every, horizon, scale, mode, price, memory, mix, trial,
                      trial_rate, scratch, plan, cost_short, cost_long, out[i])
        k = x[i]
        free[k] = completion_time(free[k], ready[i, k], proc[i, k])
        rate[k] += 1.0 / memory


@dataclass
class Head:
    """The dynamic head's weights as float64 arrays (what the compiled decoder runs)."""

    a: np.ndarray  # (H, N_DYN)
    b: np.ndarray  # (H,)
    w: np.ndarray  # (H,)
    c: np.ndarray  # (N_DYN,)
    gain: float = 1.0
    horizon: int = DEFAULT_HORIZON
    scale: str = "mean"  # the time unit of the dynamic features (`time_scale`; not a weight)
    dyn_input: str = "linear"  # what the tanh sees of the dynamic features: "linear" or "log" (`DYN_INPUTS`)
    pilot: str = "greedy"  # the pilots' base policy: "greedy", "priced" or "both" (`PILOTS`, `rollout.priced_step`)
    v: np.ndarray | None = None  # (N_DYN, H) the gate: the linear term's weights per pair are c + V E_ik (None: c)

    def gate(self) -> np.ndarray:
        return np.zeros((0, 0)) if self.v is None else self.v

    @classmethod
    def rollout_prior(cls, hidden: int, horizon: int = DEFAULT_HORIZON, scale: str = "mean") -> "Head":
        """All corrections zero: the decode is the rollout method's choice (pilot regret)."""
        c = np.zeros(N_DYN)
        c[PILOT_INDEX] = -1.0
        return cls(np.zeros((hidden, N_DYN)), np.zeros(hidden), np.zeros(hidden), c, 1.0, horizon, scale)

    def flat(self) -> np.ndarray:
        return np.concatenate([self.a.ravel(), self.b, self.w, self.c, [self.gain], self.gate().ravel()])

    def with_flat(self, v: np.ndarray) -> "Head":
        h, nd = self.a.shape
        o = 0
        a = v[o:o + h * nd].reshape(h, nd); o += h * nd
        b = v[o:o + h]; o += h
        w = v[o:o + h]; o += h
        c = v[o:o + nd]; o += nd
        gain = float(v[o]); o += 1
        gate = None if self.v is None else np.ascontiguousarray(v[o:o + nd * h].reshape(nd, h))
        return Head(np.ascontiguousarray(a), b.copy(), w.copy(), c.copy(), gain, self.horizon, self.scale,
                    self.dyn_input, self.pilot, gate)


def time_scale(inst: Instance, rule: str = "mean") -> float:
    """The instance's time unit: the mean (default) or the median of its processing times (`SCALE_RULES`)."""
    if rule not in SCALE_RULES:
        raise InputError(f"time scale: expected one of {', '.join(SCALE_RULES)}, got {rule!r}")
    if rule == "mean":
        return time_unit(inst)  # the rollout's unit too (its rate memory)
    if not inst.n_tasks:
        return 1.0
    s = float(np.median(inst.processing))
    return s if s > 0 else 1.0


def onepass(inst: Instance, emb: np.ndarray, head: Head, free_times: ArrayLike | None = None, keep_scores: bool = False,
            uniforms: np.ndarray | None = None, temperature: float = 1.0,
            plan_share: float | None = None) -> tuple[np.ndarray, float, np.ndarray | None]:
    """`(assignment, total delay, per-step scores (n, K) or None)` of the one-pass decode; with `uniforms`
    (n,) in [0, 1) each step's provider is drawn from softmax(scores / temperature) instead (training).
    `plan_share`: the mixed pilot's fixed-plan share in place of the instance's (`rollout.fixed_plan_weight`)."""
    n, k = inst.n_tasks, inst.n_providers
    emb = np.ascontiguousarray(emb, dtype=np.float64)
    if emb.shape[:2] != (n, k) or emb.shape[2] != head.b.shape[0]:
        raise InputError(f"embedding: expected shape ({n}, {k}, {head.b.shape[0]}), got {emb.shape}")
    x = np.empty(n, dtype=np.int64)
    scores = np.empty((n, k) if keep_scores else (0, k))
    total = _onepass(inst.arrival, inst.ready, inst.processing, _free_times(inst, free_times), emb,
                     head.a, head.b, head.w, head.c, head.gate(), float(head.gain), head.dyn_input == "log",
                     int(head.horizon),
                     time_scale(inst, head.scale), *pilot_settings(inst, head.pilot, plan_share), SHORTLIST,
                     np.empty(0) if uniforms is None else np.ascontiguousarray(uniforms, dtype=np.float64),
                     float(temperature), x, scores)
    return x, float(total), (scores if keep_scores else None)


def trajectory_features(inst: Instance, x: np.ndarray, horizon: int = DEFAULT_HORIZON,
                        free_times: ArrayLike | None = None,
                        scale: str = "mean", pilot: str = "greedy") -> np.ndarray:
    """(n, K, N_DYN) dynamic features along allocation `x` (what the decoder would see following it)."""
    out = np.empty((inst.n_tasks, inst.n_providers, N_DYN))
    _trajectory_features(inst.arrival, inst.ready, inst.processing, _free_times(inst, free_times),
                         np.zeros(inst.n_providers), np.ascontiguousarray(x, dtype=np.int64), int(horizon),
                         time_scale(inst, scale), *pilot_settings(inst, pilot), out)
    return out


def pilot_settings(inst: Instance, pilot: str, plan_share: float | None = None) -> tuple[int, float, float, float]:
    """`(mode, price, memory in seconds, fixed-plan share)` of the compiled pilot features for base policy `pilot`
    (`PILOTS`) on `inst`: the one place that says how the model's pilots are priced. `plan_share` overrides the
    mixed pilot's share (default: `rollout.fixed_plan_weight` of `inst`)."""
    if pilot not in PILOTS:
        raise InputError(f"pilot: expected one of {', '.join(PILOTS)}, got {pilot!r}")
    share = 0.0 if pilot != "mixed" else fixed_plan_weight(inst) if plan_share is None else float(plan_share)
    return PILOTS.index(pilot), DEFAULT_PRICE, DEFAULT_MEMORY * time_unit(inst), share


def plan_shares(inst: Instance, head: Head) -> tuple[float, ...]:
    """The fixed-plan shares the deployed one-pass decodes `inst` with, the better decode kept: with the mixed
    pilot, `rollout.plan_shares` (the instance's share, and on a heavy tail none as well; it says why); else one."""
    return rollout_plan_shares(inst) if head.pilot == "mixed" else (0.0,)


def best_onepass(inst: Instance, emb: np.ndarray, head: Head, free_times: ArrayLike | None = None,
                 keep_scores: bool = False,
                 shares: tuple[float, ...] | None = None) -> tuple[np.ndarray, float, np.ndarray | None, float]:
    """The deployed one-pass: `onepass` at each of `shares` (default `plan_shares`), the lowest delay kept (ties:
    the first, the instance's share); `(assignment, total delay, scores or None, the share it used)`."""
    best = None
    for share in plan_shares(inst, head) if shares is None else shares:
        x, total, scores = onepass(inst, emb, head, free_times, keep_scores=keep_scores, plan_share=share)
        if best is None or total < best[1]:
            best = (x, total, scores, share)
    return best


# --------------------------------------------------------------------------------------------- strategies

GENERAL_STRATEGIES = ("onepass", "search")
GENERAL_KEYS = SEARCH_KEYS | {"samples", "starts"}
# the search's starts: argmax one-pass plus 4 decodes drawn at temperature 0.3, the best 2 descended
# (chosen on tuning instances of seed 4000; docs/models.md, "Model starts")
GENERAL_SAMPLES, GENERAL_STARTS, GENERAL_TEMPERATURE = 4, 2, 0.3


def general_decode_options(params: dict[str, Any], seconds: float | None = None, seed: int = 0) -> DecodeOptions:
    """From `--param decode=onepass|search --param sweeps=30 ...` (and `--seconds`)."""
    defaults = {"samples": GENERAL_SAMPLES, "starts": GENERAL_STARTS, "temperature": GENERAL_TEMPERATURE}
    return DecodeOptions.from_params({**defaults, **params}, seconds, seed, strategies=GENERAL_STRATEGIES,
                                     default_strategy="search", default_budget=Budget.work(DEFAULT_SWEEPS),
                                     keys=GENERAL_KEYS)


def softmax_weights(scores: np.ndarray, temperature: float) -> np.ndarray:
    """Kick weights per task: the softmax of the one-pass scores (n, K)."""
    z = scores / temperature
    z = z - z.max(axis=1, keepdims=True)
    w = np.exp(np.clip(z, -30.0, 0.0))
    return w / w.sum(axis=1, keepdims=True) + 1e-3


def decode_embedding(inst: Instance, emb: np.ndarray, head: Head, opts: DecodeOptions,
                     free_times: np.ndarray | None = None,
                     started_at: float | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """`(assignment, info)`: the one-pass decode of embedding `emb` with `head`, then (`search`) the shared
    search from the best `opts.starts` of it, `opts.samples` sampled decodes and greedy. `started_at`: when
    inference began (`onepass_seconds` counts from then, and so does a deadline budget: the embedding, the
    one-pass and the sampled decodes are inside it; without it, a deadline counts from the search's start)."""
    t0 = time.perf_counter() if started_at is None else started_at
    shares = plan_shares(inst, head)
    x, total, scores, share = best_onepass(inst, emb, head, free_times, keep_scores=opts.strategy == "search",
                                           shares=shares)
    info: dict[str, Any] = {"decode": "onepass", "onepass_latency": total, "onepass_seconds": time.perf_counter() - t0}
    if len(shares) > 1:
        info["plan_share"] = share
    if opts.strategy == "search":
        cands: list[tuple[float, str, np.ndarray]] = [(total, "onepass", x)]
        rng = np.random.default_rng([opts.seed, 99])
        # a wall-clock budget bounds the draws too: they stop at half of it, the rest is the search's
        draw_until = t0 + opts.budget.seconds / 2 if opts.budget.is_deadline else np.inf
        for _ in range(opts.samples):
            if time.perf_counter() >= draw_until:
                break
            xs, fs, _ = onepass(inst, emb, head, free_times, uniforms=rng.random(inst.n_tasks),
                                temperature=opts.temperature)
            cands.append((fs, "onepass-sample", xs))
        g, g_total = greedy_assignment(inst, free_times)
        cands.append((g_total, "greedy", g))
        cands.sort(key=lambda c: c[0])  # stable: ties keep the listed order
        found = search(inst, [(name, xc) for _, name, xc in cands], softmax_weights(scores, opts.temperature),
                       opts, free_times, descend=opts.starts,
                       started_at=started_at if opts.budget.is_deadline else None)
        x = found.assignment
        info.update(found.info(opts.budget))
    return x, info
