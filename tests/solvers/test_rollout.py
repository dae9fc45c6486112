"""The rollout (pilot) method: a hand-checked instance, a literal reference, greedy as its two limits."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from edgepoc.errors import InputError
from edgepoc.game.files import write_instance
from edgepoc.game.instance import Instance
from edgepoc.game.kernel import greedy_assignment, simulate
from edgepoc.solvers.exact import brute_force
from edgepoc.solvers.registry import solve
from edgepoc.solvers.rollout import rollout_assignment
from tests.conftest import random_instance, run_cli


def hand_instance() -> Instance:
    """Two equal providers, p1 one second further away; tasks at t = 0, 1, 2 taking 2, 1, 1 s.

    Greedy: t0 -> p0 (C 2 vs 3), t1 -> p0 (C 3 vs 3, tie to the lower index), t2 -> p0 (C 4 vs 4):
    delays 2 + 2 + 2 = 6. Rollout with H = 1: t0 -> p0 (pilot costs 4 and 4, p0 completes first);
    t1 -> p1 (pilot: p0 gives 2 + 2, p1 gives 2 + 1 because t2 then starts at once on p0);
    t2 -> p0 (C 3 vs 4): delays 2 + 2 + 1 = 5, the optimum.
    """
    return Instance.create(capacity=[[1.0], [1.0]], provider_delay=[0.0, 1.0], arrival=[0.0, 1.0, 2.0],
                           demand=[[2.0], [1.0], [1.0]], name="hand")


def test_hand_checked_instance():
    inst = hand_instance()
    g, g_total = greedy_assignment(inst)
    assert g.tolist() == [0, 0, 0] and g_total == 6.0
    x = rollout_assignment(inst, horizon=1)
    assert x.tolist() == [0, 1, 0]
    assert simulate(inst, x) == 5.0 == brute_force(inst)[1]


def reference_rollout(inst: Instance, horizon: int, free=None) -> list[int]:
    """The pilot method written out with the public kernel calls on sliced instances."""
    free = np.zeros(inst.n_providers) if free is None else np.array(free, dtype=np.float64)
    out = []
    for i in range(inst.n_tasks):
        end = min(inst.n_tasks, i + 1 + horizon)
        tail = Instance.create(inst.capacity, inst.provider_delay, inst.arrival[i + 1:end], inst.demand[i + 1:end],
                               None if inst.task_delays is None else inst.task_delays[i + 1:end])
        best = None
        for k in range(inst.n_providers):
            c = max(inst.ready[i, k], free[k]) + inst.processing[i, k]
            trial = free.copy()
            trial[k] = c
            cost = max(c - inst.arrival[i], 0.0) + (greedy_assignment(tail, trial)[1] if end > i + 1 else 0.0)
            if best is None or (cost, c) < best[:2]:
                best = (cost, c, k)
        out.append(best[2])
        free[best[2]] = best[1]
    return out


case = st.tuples(st.integers(0, 2**32 - 1), st.integers(1, 25), st.integers(1, 5), st.booleans(), st.booleans(),
                 st.integers(0, 6))


def _make(seed, n, k, per_task, busy):
    rng = np.random.default_rng(seed)
    inst = random_instance(rng, n, k, task_delays=per_task)
    inst.arrival[:] = inst.arrival * 0.3  # queues interact
    free = rng.uniform(0, 3, size=k) if busy else None
    return inst, free


@settings(max_examples=80, deadline=None)
@given(case)
def test_equals_the_literal_definition(c):
    inst, free = _make(*c[:5])
    assert rollout_assignment(inst, c[5], free).tolist() == reference_rollout(inst, c[5], free)


@settings(max_examples=80, deadline=None)
@given(case)
def test_horizon_zero_is_greedy(c):
    inst, free = _make(*c[:5])
    assert rollout_assignment(inst, 0, free).tolist() == greedy_assignment(inst, free)[0].tolist()


@settings(max_examples=80, deadline=None)
@given(case)
def test_full_horizon_never_worse_than_greedy(c):
    """Greedy is sequentially consistent, so the rollout over the whole remaining horizon improves on it."""
    inst, free = _make(*c[:5])
    x = rollout_assignment(inst, inst.n_tasks, free)
    g_total = greedy_assignment(inst, free)[1]
    assert simulate(inst, x, free) <= g_total * (1 + 1e-12) + 1e-12


def test_registry_and_free_times():
    inst, free = _make(3, 40, 3, True, True)
    res = solve(inst, "rollout", seed=0, free_times=free, params={"horizon": 5})
    assert res.assignment.tolist() == reference_rollout(inst, 5, free)
    assert res.total_latency == simulate(inst, res.assignment, free)
    assert res.extra["horizon"] == 5
    assert solve(inst, "rollout", free_times=free).assignment.tolist() == reference_rollout(inst, 20, free)
    with pytest.raises(InputError, match="horizon"):
        solve(inst, "rollout", params={"horizon": -1})
    with pytest.raises(InputError, match="rollout takes only base, horizon"):
        solve(inst, "rollout", params={"depth": 3})
    with pytest.raises(InputError, match="base: expected one of greedy, priced"):
        solve(inst, "rollout", params={"base": "best"})
    with pytest.raises(InputError, match="price: only with base=priced"):
        solve(inst, "rollout", params={"price": 2.0})
    for bad in ({"price": -1.0}, {"memory": 0.0}, {"price": "high"}):
        with pytest.raises(InputError, match="must be a number"):
            solve(inst, "rollout", params={"base": "priced", **bad})


def reference_priced_rollout(inst: Instance, horizon: int, price: float, memory: float, free=None) -> list[int]:
    """The priced rollout written out in plain Python: rates decay with exp(-dt / memory), +1/memory per task."""
    mem = memory * float(inst.processing.mean())
    free = np.zeros(inst.n_providers) if free is None else np.array(free, dtype=np.float64)
    rate = np.zeros(inst.n_providers)
    a, r, p = inst.arrival, inst.ready, inst.processing

    def step(i, fr, rt):
        best = None
        for k in range(inst.n_providers):
            c = max(r[i, k], fr[k]) + p[i, k]
            s = max(c - a[i], 0.0) + price * p[i, k] * (rt[k] * p[i, k])
            if best is None or s < best[0]:
                best = (s, c, k)
        return best[2], best[1]

    out = []
    for i in range(inst.n_tasks):
        if i:
            rate *= np.exp(-(a[i] - a[i - 1]) / mem)
        best = None
        for k in range(inst.n_providers):
            c = max(r[i, k], free[k]) + p[i, k]
            fr, rt = free.copy(), rate.copy()
            fr[k] = c
            rt[k] += 1.0 / mem
            cost = max(c - a[i], 0.0)
            for j in range(i + 1, min(inst.n_tasks, i + 1 + horizon)):
                rt *= np.exp(-(a[j] - a[j - 1]) / mem)
                q, cq = step(j, fr, rt)
                fr[q] = cq
                rt[q] += 1.0 / mem
                cost += max(cq - a[j], 0.0)
            if best is None or (cost, c) < best[:2]:
                best = (cost, c, k)
        out.append(best[2])
        free[best[2]] = best[1]
        rate[best[2]] += 1.0 / mem
    return out


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 12), st.booleans())
def test_priced_rollout_matches_the_written_out_reference(seed, horizon, busy):
    inst, free = _make(seed, 30, seed % 4 + 2, seed % 2 == 0, busy)
    x = rollout_assignment(inst, horizon, free, price=3.0, memory=10.0)
    assert x.tolist() == reference_priced_rollout(inst, horizon, 3.0, 10.0, free)
    assert rollout_assignment(inst, horizon, free, price=0.0).tolist() == reference_rollout(inst, horizon, free)


def test_priced_pilots_beat_greedy_pilots_on_heavy_tails():
    """Alibaba windows (heavy-tailed task sizes): greedy pilots send long tasks to every queue in turn; priced
    pilots keep a slow lane (held-out figures: benchmarks/results/model.md)."""
    from edgepoc.game.generators import generate
    insts = generate("alibaba", seed=4100, count=4, n_tasks=400)
    greedy = np.array([simulate(i, solve(i, "rollout").assignment) for i in insts])
    priced = np.array([simulate(i, solve(i, "rollout", params={"base": "priced"}).assignment) for i in insts])
    assert np.exp(np.log(priced / greedy).mean()) < 0.9


def test_cli(tmp_path):
    path = tmp_path / "hand.json"
    write_instance(path, hand_instance())
    r = run_cli("solve", str(path), "--method", "rollout", "--param", "horizon=1")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["assignment"] == [0, 1, 0] and doc["total_latency"] == 5.0
    r = run_cli("solve", str(path), "--method", "rollout", "--param", "horizon=x")
    assert r.returncode != 0 and r.stderr.strip().startswith("error: horizon")


def test_the_tail_share_is_scale_free_and_does_not_overflow_on_huge_sizes():
    """The fixed-plan share reads the sizes' coefficient of variation, which no unit of time changes; sizes near
    1e300 (a valid instance) once overflowed its std into a RuntimeWarning on stderr and an infinite cv."""
    import warnings

    from edgepoc.solvers.rollout import fixed_plan_weight
    demand = np.array([[1.0], [3.0], [40.0], [2.0], [500.0], [1.0]])
    arrival = np.arange(6, dtype=float)

    def share(scale: float) -> float:
        inst = Instance.create(capacity=[[1.0], [2.0]], provider_delay=[0.0, 0.1], arrival=arrival,
                               demand=demand * scale, name="tail")
        return fixed_plan_weight(inst)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        huge = share(1e297)
    assert 0.0 < huge < 1.0 and huge == pytest.approx(share(1.0), rel=1e-12)
