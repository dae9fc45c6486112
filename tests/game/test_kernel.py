"""The compiled queue kernel against a plain-Python reference of SPEC §1, and its invariants."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from edgepoc.game.kernel import greedy_assignment, simulate, simulate_population, simulate_state
from tests.conftest import random_instance


def reference(inst, x, free=None):
    """SPEC §1 written out literally, one task at a time, in plain Python floats."""
    F = [0.0] * inst.n_providers if free is None else [float(v) for v in free]
    total, completion = 0.0, []
    for i in range(inst.n_tasks):
        k = int(x[i])
        d = inst.task_delays[i][k] if inst.task_delays is not None else inst.provider_delay[k]
        p = max(float(inst.demand[i][r]) / float(inst.capacity[k][r]) for r in range(inst.n_resources))
        s = max(float(inst.arrival[i]) + float(d), F[k])
        c = s + p
        F[k] = c
        completion.append(c)
        total += max(0.0, c - float(inst.arrival[i]))
    return total, completion, F


case = st.tuples(
    st.integers(0, 2**32 - 1),  # seed
    st.integers(0, 40),  # tasks
    st.integers(1, 5),  # providers
    st.integers(1, 3),  # resources
    st.booleans(),  # per-task delays
    st.booleans(),  # non-zero initial free times
)


def _make(seed, n, k, r, per_task, busy):
    rng = np.random.default_rng(seed)
    inst = random_instance(rng, n, k, r, task_delays=per_task)
    x = rng.integers(0, k, size=n)
    free = rng.uniform(0, 5, size=k) if busy else None
    return inst, x, free, rng


@settings(max_examples=200, deadline=None)
@given(case)
def test_kernel_equals_reference_bit_for_bit(c):
    inst, x, free, _ = _make(*c)
    total, completion, final_free = simulate_state(inst, x, free)
    ref_total, ref_completion, ref_free = reference(inst, x, free)
    assert total == ref_total  # exact: every node must get the identical float
    assert completion.tolist() == ref_completion
    assert final_free.tolist() == ref_free


@settings(max_examples=100, deadline=None)
@given(case)
def test_latency_at_least_processing_plus_delay(c):
    inst, x, free, _ = _make(*c)
    completion = simulate_state(inst, x, free)[1]
    rows = np.arange(inst.n_tasks)
    floor = inst.processing[rows, x] + inst.delays[rows, x]
    assert np.all(completion - inst.arrival >= floor - 1e-12)


@settings(max_examples=100, deadline=None)
@given(case, st.integers(0, 10**6))
def test_moving_a_task_never_changes_earlier_tasks(c, which):
    inst, x, free, rng = _make(*c)
    if inst.n_tasks == 0:
        return
    j = which % inst.n_tasks
    moved = x.copy()
    moved[j] = rng.integers(0, inst.n_providers)
    before = simulate_state(inst, x, free)[1]
    after = simulate_state(inst, moved, free)[1]
    assert before[:j].tolist() == after[:j].tolist()


@settings(max_examples=60, deadline=None)
@given(case, st.integers(1, 30))
def test_population_equals_single(c, pop):
    inst, _, free, rng = _make(*c)
    xs = rng.integers(0, inst.n_providers, size=(pop, inst.n_tasks)).astype(np.int8)
    singles = [simulate(inst, row, free) for row in xs]
    assert simulate_population(inst, xs, free).tolist() == singles
    assert simulate_population(inst, xs, free, parallel=True).tolist() == singles


def test_greedy_is_earliest_completion_time():
    rng = np.random.default_rng(3)
    inst = random_instance(rng, 60, 4)
    x, total = greedy_assignment(inst)
    assert total == simulate(inst, x)
    free = [0.0] * inst.n_providers
    for i in range(inst.n_tasks):
        ends = [max(inst.ready[i, k], free[k]) + inst.processing[i, k] for k in range(inst.n_providers)]
        assert x[i] == int(np.argmin(ends))
        free[x[i]] = min(ends)


def test_free_times_delay_the_queue():
    inst = random_instance(np.random.default_rng(1), 5, 2)
    x = np.zeros(5, dtype=np.int64)
    assert simulate(inst, x, free_times=[100.0, 0.0]) > simulate(inst, x)
