"""CP-SAT: proves optimality on tiny instances and agrees with brute force; bounds are valid."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgepoc.errors import InputError
from edgepoc.game.generators import generate
from edgepoc.game.instance import Instance
from edgepoc.game.kernel import greedy_assignment, simulate
from edgepoc.solvers.bounds import block_bound, trivial_bound
from edgepoc.solvers.cpsat import solve_cpsat
from edgepoc.solvers.exact import brute_force
from edgepoc.solvers.registry import SolveOptions, solve
from tests.conftest import run_cli
from tests.solvers.test_ga import busy_instance


@pytest.mark.parametrize("seed", range(6))
def test_cpsat_alone_proves_brute_force_optimum(seed):
    rng = np.random.default_rng(200 + seed)
    n, k = int(rng.integers(7, 13)), int(rng.integers(2, 4))
    inst = busy_instance(200 + seed, n, k, task_delays=bool(seed % 2))
    free = rng.uniform(0, 1, size=k) if seed % 3 == 0 else None
    x_opt, f_opt = brute_force(inst, free)
    # no warm start, no block bound: the model itself must find and prove the optimum
    res = solve(inst, "cpsat", SolveOptions(seconds=20, free_times=free,
                                            params={"warm_start": "none", "block": 0, "workers": 1}))
    assert res.extra["optimal"] and res.extra["status"] == "OPTIMAL"
    assert res.total_latency == pytest.approx(f_opt, rel=1e-6)
    assert res.extra["lower_bound"] <= f_opt + 1e-12
    assert res.extra["gap"] < 1e-5


@pytest.mark.parametrize("seed", range(10))
def test_bounds_are_valid(seed):
    rng = np.random.default_rng(300 + seed)
    n, k = int(rng.integers(6, 11)), int(rng.integers(2, 4))
    inst = busy_instance(300 + seed, n, k, task_delays=bool(seed % 2))
    f_opt = brute_force(inst)[1]
    assert trivial_bound(inst) <= f_opt
    for block in (1, 3, 5, n):
        value, pieces, unproven = block_bound(inst, block=block)
        assert unproven == 0
        assert value <= f_opt * (1 + 1e-12)
        assert sum(hi - lo for lo, hi, _ in pieces) == n
    assert block_bound(inst, block=n)[0] == pytest.approx(f_opt, rel=1e-9)  # one block = the whole problem
    assert block_bound(inst, block=4, lookback=3)[0] <= f_opt * (1 + 1e-12)


def test_a_block_bound_out_of_time_counts_the_rest_trivially_and_stays_valid():
    inst = busy_instance(77, 10, 3)
    f_opt = brute_force(inst)[1]
    value, pieces, unproven = block_bound(inst, block=3, deadline=0.0)  # out of time before the first block
    assert (pieces, unproven) == ([], 10)
    assert value == pytest.approx(trivial_bound(inst), rel=1e-9)
    assert trivial_bound(inst) * (1 - 1e-9) <= value <= f_opt


def test_large_instance_warm_started_and_bounded():
    inst = generate("paper", seed=0, count=1, n_tasks=300)[0]
    x, extra = solve_cpsat(inst, SolveOptions(seconds=3, params={"workers": 1}))
    f = simulate(inst, x)
    assert f <= extra["warm_start_latency"] <= greedy_assignment(inst)[1]
    assert extra["trivial_bound"] < extra["lower_bound"] <= f
    assert extra["gap"] == pytest.approx(f / extra["lower_bound"] - 1)
    assert extra["gap"] < 0.5


def test_bad_params():
    inst = generate("paper", seed=0, count=1, n_tasks=20)[0]
    with pytest.raises(InputError, match="unknown parameter"):
        solve_cpsat(inst, SolveOptions(params={"threads": 2}))
    with pytest.raises(InputError, match="resolution"):
        solve_cpsat(inst, SolveOptions(params={"resolution": 0}))


def test_cli_solve_cpsat(tmp_path):
    inst_path = tmp_path / "inst.json"
    assert run_cli("generate", "--preset", "paper", "--n-tasks", "10", "--out", str(inst_path)).returncode == 0
    done = run_cli("solve", str(inst_path), "--method", "cpsat", "--seconds", "5")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["optimal"] is True and doc["lower_bound"] <= doc["total_latency"]


def test_a_budget_too_small_for_the_model_returns_the_warm_start_in_time():
    """20,000 tasks: building the CP-SAT model alone takes tens of seconds; a 0.5 s budget must not wait for it."""
    import time
    inst = generate("paper", seed=3, count=1, n_tasks=20_000)[0]
    t0 = time.perf_counter()
    x, extra = solve_cpsat(inst, SolveOptions(seconds=0.5, params={"workers": 1, "warm_start": "greedy"}))
    assert time.perf_counter() - t0 < 10.0  # not the ~60 s a full model would take
    assert extra["status"] == "NOT_STARTED" and "building the model" in extra["budget_note"]
    assert np.array_equal(x, greedy_assignment(inst)[0])
    assert trivial_bound(inst) * (1 - 1e-9) <= extra["lower_bound"] <= simulate(inst, x)


def _shifted(inst, offset: float):
    return Instance.create(inst.capacity, inst.provider_delay, inst.arrival + offset, inst.demand,
                           task_delays=inst.task_delays, name=inst.name)


def test_arrivals_far_from_zero_solve_as_near_it():
    # A Unix-like clock in microsecond-sized units: 1e10 s at 1 us per unit is past 2^52 integers unless
    # times count from the first arrival.
    inst = busy_instance(410, 9, 3)
    near = solve(inst, "cpsat", SolveOptions(seconds=20, params={"warm_start": "none", "block": 0, "workers": 1}))
    far = solve(_shifted(inst, 1e10), "cpsat",
                SolveOptions(seconds=20, params={"warm_start": "none", "block": 0, "workers": 1}))
    assert near.extra["optimal"] and far.extra["optimal"]
    assert far.total_latency == pytest.approx(near.total_latency, rel=1e-4)
    assert far.extra["lower_bound"] == pytest.approx(near.extra["lower_bound"], rel=1e-4)


def test_a_long_schedule_coarsens_the_default_resolution_and_refuses_an_asked_one():
    inst = busy_instance(411, 8, 2)
    huge = Instance.create(inst.capacity, inst.provider_delay, inst.arrival * 1e9, inst.demand * 1e9, name="huge")
    res = solve(huge, "cpsat", SolveOptions(seconds=5, params={"workers": 1}))
    unit = res.extra["resolution"]
    assert 1e-6 < unit <= 1e-4 and f"units of {unit:g} s" in res.extra["budget_note"]
    assert res.extra["lower_bound"] <= res.total_latency and res.extra["gap"] < 1e-3
    with pytest.raises(InputError, match=f"resolution={unit:g} or coarser"):
        solve(huge, "cpsat", SolveOptions(seconds=5, params={"resolution": 1e-6, "workers": 1}))
