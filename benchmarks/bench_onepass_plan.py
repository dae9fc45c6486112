"""How much could a per-instance plan above the teacher's one-pass gain? (issue 18, item 4: measured, not adopted)

The one-pass decides each task once from its live queues and look-ahead pilots. A "planning step above it"
would fix, per instance, something the step-by-step decoder cannot see. The simplest such plan is a score
offset per provider, `beta_k` (lanes: "send less to k"), or an offset that grows with the task's size,
`beta_k + gamma_k log(p_ik / unit)` (a slow lane for long tasks). This benchmark measures, on TUNING
instances (seed 4000; never the held-out ones):

* the ceiling: offsets chosen in hindsight on the instance itself by a (1+6) evolution strategy, 60
  iterations (360 one-pass decodes), against the plain one-pass; both as ratios to GA-5s (CPU);
* whether such a plan can be known ahead: offsets fitted on the first half of the tasks (the half's own
  delay), then applied to the whole instance; the second half's delay against the plain one-pass's second
  half, beside the hindsight offsets fitted on that second half itself.

If the prefix-fitted offsets do not help the second half, the hindsight gain is the instance's own noise,
and a planner that learns offsets from the instance would have little to learn.

Beside them, a deeper look-ahead with no model: the nested rollout, whose pilots follow the priced rollout
(itself with 50-task priced pilots) for 50 tasks, against the plain priced rollout at H = 50 and the
teacher's one-pass, with CPU milliseconds per 1000 tasks.

The offsets enter through the production decoder: one extra unit of the head whose tanh reproduces the
offset exactly (`w * tanh(atanh(o / w)) = o`, `o` the offset for task i on provider k), so the decode
is `edgepoc.models.general.decode.onepass` unchanged.

    python benchmarks/bench_onepass_plan.py                 # 12 instances of alibaba, paper, varied -> results/onepass-plan.md
    python benchmarks/bench_onepass_plan.py --quick         # 3 instances, 300 tasks, GA 1 s -> runs/
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numba
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgepoc.experiments.stats import mean_interval  # noqa: E402
from edgepoc.game.generators import generate  # noqa: E402
from edgepoc.game.instance import Instance  # noqa: E402
from edgepoc.game.kernel import _free_times, completion_time, simulate, simulate_completion  # noqa: E402
from edgepoc.models.general.decode import Head, onepass, time_scale  # noqa: E402
from edgepoc.models.solve import load_general_or_torch  # noqa: E402
from edgepoc.solvers.registry import SolveOptions, solve  # noqa: E402
from edgepoc.solvers.rollout import (DEFAULT_MEMORY, DEFAULT_PRICE, decay_rates, rollout_assignment,  # noqa: E402
                                     rollout_step, time_unit)

FAMILIES = ("alibaba", "paper", "varied")
TUNING_SEED = 4000
ES_ITERATIONS, ES_CHILDREN = 60, 6
OFFSET_SCALE = 1e3  # the extra unit's output weight: offsets stay far inside (-1e3, 1e3)
NESTED_HORIZON = 50  # both levels of the nested rollout


@numba.njit(cache=True)
def _nested_rollout(arrival, ready, proc, free, horizon, price, memory, x):
    """Rollout whose base policy is the priced rollout: task i goes to the provider after which `horizon` tasks
    decided by the priced rollout (its own pilots `horizon` long) cost least. A pilot stops once it is dearer
    than the best so far."""
    n, kk = arrival.shape[0], free.shape[0]
    rate, pf, pr = np.zeros(kk), np.empty(kk), np.empty(kk)
    trial, trial_rate, scratch = np.empty(kk), np.empty(kk), np.empty(1, dtype=np.int64)  # priced pilots: no scratch
    for i in range(n):
        if i > 0:
            decay_rates(rate, arrival[i] - arrival[i - 1], memory)
        best_k, best_cost, best_c = 0, np.inf, np.inf
        for k in range(kk):
            c = completion_time(free[k], ready[i, k], proc[i, k])
            cost = max(c - arrival[i], 0.0)
            pf[:] = free
            pr[:] = rate
            pf[k] = c
            pr[k] += 1.0 / memory
            for j in range(i + 1, min(n, i + 1 + horizon)):
                decay_rates(pr, arrival[j] - arrival[j - 1], memory)
                _, cj = rollout_step(arrival, ready, proc, j, min(n, j + 1 + horizon), pf, pr, price, memory, 0.0,
                                     trial, trial_rate, scratch, scratch)
                cost += max(cj - arrival[j], 0.0)
                if cost >= best_cost:
                    break
            if cost < best_cost or (cost == best_cost and c < best_c):
                best_k, best_cost, best_c = k, cost, c
        x[i] = best_k
        free[best_k] = best_c
        rate[best_k] += 1.0 / memory


def nested_rollout(inst: Instance) -> np.ndarray:
    x = np.empty(inst.n_tasks, dtype=np.int64)
    _nested_rollout(inst.arrival, inst.ready, inst.processing, _free_times(inst, None), NESTED_HORIZON, DEFAULT_PRICE,
                    DEFAULT_MEMORY * time_unit(inst), x)
    return x


def with_offset_unit(emb: np.ndarray, head: Head, offset: np.ndarray) -> tuple[np.ndarray, Head]:
    """`emb` and `head` with one more hidden unit whose output is exactly `offset[i, k]` added to the score."""
    z = np.arctanh(np.clip(offset / OFFSET_SCALE, -0.999999, 0.999999)) / head.gain
    emb2 = np.ascontiguousarray(np.concatenate([emb, z[:, :, None]], axis=2))
    nd = head.a.shape[1]
    v = None if head.v is None else np.ascontiguousarray(np.concatenate([head.v, np.zeros((nd, 1))], axis=1))
    h2 = replace(head, a=np.ascontiguousarray(np.vstack([head.a, np.zeros((1, nd))])), b=np.append(head.b, 0.0),
                 w=np.append(head.w, OFFSET_SCALE), v=v)
    return emb2, h2


def latencies(inst: Instance, x: np.ndarray) -> np.ndarray:
    return np.maximum(0.0, simulate_completion(inst, x) - inst.arrival)


def prefix(inst: Instance, m: int) -> Instance:
    td = None if inst.task_delays is None else inst.task_delays[:m]
    return Instance.create(inst.capacity, inst.provider_delay, inst.arrival[:m], inst.demand[:m], td, name=inst.name)


class PlannedOnePass:
    """The teacher's one-pass on `inst` (or its first `m` tasks) with per-provider offsets `v` = (beta[, gamma])."""

    def __init__(self, model, inst: Instance):
        self.inst, self.head = inst, model.head()
        self.emb = np.ascontiguousarray(model.embed(inst), dtype=np.float64)
        self.log_size = np.log(inst.processing / time_scale(inst, self.head.scale))

    def decode(self, v: np.ndarray, m: int | None = None) -> np.ndarray:
        kk = self.inst.n_providers
        off = v[None, :kk] + (v[None, kk:] * self.log_size if v.shape[0] > kk else 0.0)
        emb, head = with_offset_unit(self.emb, self.head, np.broadcast_to(off, self.emb.shape[:2]))
        inst = self.inst if m is None else prefix(self.inst, m)
        # a prefix is decoded as an instance of its own (its own time unit and pilot memory): all that a
        # planner that has seen only the prefix could know
        return onepass(inst, emb[: inst.n_tasks], head)[0]


def fit(cost, dim: int, seed: int) -> np.ndarray:
    """(1+6) evolution strategy with step adaptation (60 iterations): the offsets of lowest `cost`."""
    rng = np.random.default_rng(seed)
    best_v, best_f, sigma = np.zeros(dim), cost(np.zeros(dim)), 1.0
    for _ in range(ES_ITERATIONS):
        cands = [best_v + sigma * rng.standard_normal(dim) for _ in range(ES_CHILDREN)]
        vals = [cost(c) for c in cands]
        j = int(np.argmin(vals))
        if vals[j] < best_f:
            best_v, best_f, sigma = cands[j], vals[j], sigma * 1.3
        else:
            sigma *= 0.8
    return best_v


def measure(model, inst: Instance, ga_seconds: float, seed: int) -> dict:
    ga = solve(inst, "ga", SolveOptions(seed=seed, seconds=ga_seconds, params={"clock": "cpu"})).total_latency
    p = PlannedOnePass(model, inst)
    kk, n = inst.n_providers, inst.n_tasks
    half = n // 2
    total = lambda v: float(latencies(inst, p.decode(v)).sum())  # noqa: E731
    second = lambda v: float(latencies(inst, p.decode(v))[half:].sum())  # noqa: E731
    zero = np.zeros(kk)
    plain = latencies(inst, p.decode(zero))
    plain_total, plain_second = float(plain.sum()), float(plain[half:].sum())
    bias = fit(total, kk, seed)
    lanes = fit(total, 2 * kk, seed)
    pre = fit(lambda v: float(latencies(prefix(inst, half), p.decode(v, half)).sum()), kk, seed)
    hind2 = fit(second, kk, seed)
    t0 = time.thread_time()
    onepass_delay = solve(inst, "teacher", SolveOptions(seed=seed, params={"decode": "onepass"})).total_latency
    t1 = time.thread_time()
    priced = simulate(inst, rollout_assignment(inst, NESTED_HORIZON, None, DEFAULT_PRICE, DEFAULT_MEMORY))
    t2 = time.thread_time()
    nested = simulate(inst, nested_rollout(inst))
    t3 = time.thread_time()
    per_1000 = 1e6 / max(n, 1)
    return {"instance": inst.name, "n_tasks": n, "providers": kk, "ga": ga,
            "priced rollout": priced / ga, "nested rollout": nested / ga,
            "onepass ms": (t1 - t0) * per_1000, "priced rollout ms": (t2 - t1) * per_1000,
            "nested rollout ms": (t3 - t2) * per_1000, "teacher onepass": onepass_delay / ga,
            "onepass": plain_total / ga, "hindsight offsets": total(bias) / ga,
            "hindsight offsets + size slopes": total(lanes) / ga,
            "second half, prefix-fitted": second(pre) / plain_second,
            "second half, hindsight": second(hind2) / plain_second}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 instances per family, 300 tasks, GA 1 s (development)")
    ap.add_argument("--count", type=int, default=None, help="instances per family (default 12; quick 3)")
    ap.add_argument("--out", type=Path, default=None, help="Markdown file (+ .json beside it)")
    args = ap.parse_args()
    count = args.count or (3 if args.quick else 12)
    n_tasks, ga_seconds = (300, 1.0) if args.quick else (1000, 5.0)
    out = args.out or (ROOT / "runs" / "onepass-plan-quick.md" if args.quick
                       else Path(__file__).parent / "results" / "onepass-plan.md")
    numba.set_num_threads(1)
    model = load_general_or_torch(None, "teacher")
    warm = generate("paper", seed=4999, count=1, n_tasks=60)[0]  # compile every decoder before any clock
    solve(warm, "teacher", SolveOptions(params={"decode": "onepass"}))
    nested_rollout(warm)
    rollout_assignment(warm, 5, None, DEFAULT_PRICE)
    t_start = time.perf_counter()
    rows: dict[str, list[dict]] = {}
    for fam in FAMILIES:
        size = {} if fam == "varied" else {"n_tasks": n_tasks}
        rows[fam] = []
        for i, inst in enumerate(generate(fam, seed=TUNING_SEED, count=count, **size)):
            r = measure(model, inst, ga_seconds, i)
            rows[fam].append(r)
            print(f"{fam} {inst.name}: " + ", ".join(f"{k} {v:.3f}" for k, v in r.items()
                                                    if isinstance(v, float) and k != "ga"), flush=True)
    deeper = ["priced rollout", "nested rollout", "teacher onepass"]
    cols = ["onepass", "hindsight offsets", "hindsight offsets + size slopes", "second half, prefix-fitted",
            "second half, hindsight"]

    def cell(fam: str, col: str) -> str:
        iv = mean_interval([r[col] for r in rows[fam]])
        return f"{iv.mean:.3f} [{iv.low:.3f}, {iv.high:.3f}]"

    lines = [
        "# A per-instance plan above the teacher's one-pass: its ceiling, and whether it can be known ahead",
        "",
        f"TUNING instances (seed {TUNING_SEED}), {count} per family, {n_tasks} tasks (`varied` draws its own size); "
        f"GA {ga_seconds:g} s of CPU; offsets fitted by a (1+{ES_CHILDREN}) ES, {ES_ITERATIONS} iterations. "
        f"Run took {time.perf_counter() - t_start:.0f} s. Command: `python benchmarks/bench_onepass_plan.py`.",
        "",
        "First three columns: total delay / GA's (mean [95 % interval]). Last two: the second half's delay / the "
        "plain one-pass's second half, with offsets fitted on the first half (a plan known ahead) or on the second "
        "half itself (hindsight).",
        "",
        "| family | " + " | ".join(cols) + " |",
        "|---|" + "---:|" * len(cols),
        *[f"| {fam} | " + " | ".join(cell(fam, c) for c in cols) + " |" for fam in rows],
        "",
        f"A deeper look-ahead with no model, beside the teacher's one-pass: the priced rollout (H = {NESTED_HORIZON}) "
        f"and the nested rollout (its pilots follow the priced rollout for {NESTED_HORIZON} tasks). Ratio to GA's delay "
        "[95 % interval]; CPU ms per 1000 tasks (median).",
        "",
        "| family | " + " | ".join(deeper) + " | " + " | ".join(f"{c} ms" for c in deeper) + " |",
        "|---|" + "---:|" * (2 * len(deeper)),
        *[f"| {fam} | " + " | ".join(cell(fam, c) for c in deeper) + " | "
          + " | ".join(f"{np.median([r[c.replace('teacher ', '') + ' ms'] for r in rows[fam]]):.0f}" for c in deeper)
          + " |" for fam in rows],
        "",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    config = {"families": list(FAMILIES), "seed": TUNING_SEED, "count": count, "n_tasks": n_tasks,
              "ga_seconds": ga_seconds, "es_iterations": ES_ITERATIONS, "es_children": ES_CHILDREN,
              "nested_horizon": NESTED_HORIZON, "price": DEFAULT_PRICE, "memory": DEFAULT_MEMORY}
    out.with_suffix(".json").write_text(json.dumps({"config": config, "rows": rows}, indent=1))
    print("\n".join(lines))
    print(f"wrote {out} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
