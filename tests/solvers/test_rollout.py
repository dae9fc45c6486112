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
    with pytest.raises(InputError, match="rollout takes only horizon"):
        solve(inst, "rollout", params={"depth": 3})


def test_cli(tmp_path):
    path = tmp_path / "hand.json"
    write_instance(path, hand_instance())
    r = run_cli("solve", str(path), "--method", "rollout", "--param", "horizon=1")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["assignment"] == [0, 1, 0] and doc["total_latency"] == 5.0
    r = run_cli("solve", str(path), "--method", "rollout", "--param", "horizon=x")
    assert r.returncode != 0 and r.stderr.strip().startswith("error: horizon")
