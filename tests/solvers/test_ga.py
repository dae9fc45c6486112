"""The GA meta strategy: never worse than greedy, optimal on tiny instances, deterministic per seed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgepoc.errors import InputError
from edgepoc.game.generators import generate
from edgepoc.game.kernel import greedy_assignment, simulate
from edgepoc.solvers.exact import brute_force
from edgepoc.solvers.ga import GAConfig, PolicyModel, solve_ga
from edgepoc.solvers.localsearch import _history, _move_delta, _swap_delta, local_search
from edgepoc.solvers.registry import SolveOptions, solve
from tests.conftest import random_instance, run_cli


def busy_instance(seed: int, n: int, k: int, task_delays: bool = False):
    """Tasks arriving fast enough that queues interact (otherwise every method is optimal)."""
    rng = np.random.default_rng(seed)
    inst = random_instance(rng, n, k, task_delays=task_delays)
    inst.arrival[:] = inst.arrival * 0.2
    return inst


@pytest.mark.parametrize("seed", range(6))
def test_move_delta_matches_kernel(seed):
    rng = np.random.default_rng(seed)
    inst = busy_instance(seed, 60, 3, task_delays=bool(seed % 2))
    free0 = rng.uniform(0, 2, size=3)
    x = rng.integers(0, 3, size=60).astype(np.int8)
    completion, free_before = np.empty(60), np.empty((61, 3))
    base = _history(inst.arrival, inst.ready, inst.processing, x, free0, completion, free_before, 0)
    assert base == simulate(inst, x, free0)
    for i in rng.integers(0, 60, size=20):
        b = (int(x[i]) + 1) % 3
        moved = x.copy()
        moved[i] = b
        d, _ = _move_delta(inst.arrival, inst.ready, inst.processing, x, completion, free_before, int(i), b)
        assert d == pytest.approx(simulate(inst, moved, free0) - base, abs=1e-9)
    for i in rng.integers(0, 59, size=20):
        j = int(min(59, i + rng.integers(1, 6)))
        if x[i] == x[j]:
            continue
        swapped = x.copy()
        swapped[i], swapped[j] = x[j], x[i]
        d, _ = _swap_delta(inst.arrival, inst.ready, inst.processing, x, completion, free_before, int(i), j)
        assert d == pytest.approx(simulate(inst, swapped, free0) - base, abs=1e-9)


@pytest.mark.parametrize("swap_window", [0, 4])
def test_local_search_reaches_a_local_optimum(swap_window):
    inst = generate("paper", seed=3, count=1, n_tasks=300)[0]
    x0, g = greedy_assignment(inst)
    x, total, _ = local_search(inst, x0, swap_window=swap_window)
    assert total == simulate(inst, x.astype(np.int64)) and total < g
    for i in range(0, 300, 7):  # no single move (and no swap within the window) improves any more
        for b in range(3):
            y = x.astype(np.int64)
            y[i] = b
            assert simulate(inst, y) >= total - 1e-9
        for j in range(i + 1, min(300, i + swap_window)):
            y = x.astype(np.int64)
            y[i], y[j] = y[j], y[i]
            assert simulate(inst, y) >= total - 1e-9


@pytest.mark.parametrize("seed", range(5))
def test_never_worse_than_greedy_seed(seed):
    inst = generate("varied", seed=seed, count=1)[0]
    rng = np.random.default_rng(seed)
    free = rng.uniform(0, 5, size=inst.n_providers)
    cfg = GAConfig(generations=5, population=8, local_search=0.0 if seed % 2 else 1.0)
    res = PolicyModel(cfg, seed=seed).solve(inst, free_times=free)
    assert res.total_latency == simulate(inst, res.assignment, free)
    assert res.total_latency <= greedy_assignment(inst, free)[1]
    assert res.greedy_latency == greedy_assignment(inst, free)[1]


def test_clearly_better_than_greedy_on_paper_instance():
    inst = generate("paper", seed=0, count=1, n_tasks=400)[0]
    res = PolicyModel(GAConfig(generations=20), seed=0).solve(inst)
    assert res.total_latency < 0.95 * res.greedy_latency


@pytest.mark.parametrize("seed", range(8))
def test_reaches_brute_force_optimum_on_tiny_instances(seed):
    rng = np.random.default_rng(100 + seed)
    n, k = int(rng.integers(6, 11)), int(rng.integers(2, 4))
    inst = busy_instance(100 + seed, n, k, task_delays=bool(seed % 2))
    _, f_opt = brute_force(inst)
    res = PolicyModel(GAConfig(generations=60, stall=None), seed=seed).solve(inst)
    assert res.total_latency == pytest.approx(f_opt, rel=1e-12, abs=1e-12)


def test_deterministic_for_a_seed_and_generation_budget():
    inst = generate("paper", seed=1, count=1, n_tasks=200)[0]
    cfg = GAConfig(generations=8)
    a = PolicyModel(cfg, seed=5).solve(inst)
    b = PolicyModel(cfg, seed=5).solve(inst)
    assert np.array_equal(a.assignment, b.assignment) and a.history == b.history


def test_stop_rules():
    inst = generate("paper", seed=2, count=1, n_tasks=300)[0]
    assert PolicyModel(GAConfig(generations=3)).solve(inst).stop_reason == "generations"
    timed = PolicyModel(GAConfig()).solve(inst, seconds=0.3)
    assert timed.stop_reason in ("seconds", "stall") and timed.seconds < 1.5
    assert PolicyModel(GAConfig(stall=2, generations=10_000)).solve(inst).stop_reason == "stall"
    cpu = PolicyModel(GAConfig(clock="cpu")).solve(inst, seconds=0.3)
    assert cpu.stop_reason in ("seconds", "stall") and cpu.seconds < 1.0


def test_registry_params_and_bad_input():
    inst = generate("paper", seed=0, count=1, n_tasks=100)[0]
    res = solve(inst, "ga", SolveOptions(seed=1, params={"generations": 3, "population": 6}))
    assert res.extra["generations"] == 3 and res.extra["settings"]["population"] == 6
    assert res.total_latency <= res.extra["greedy_latency"]
    with pytest.raises(InputError, match="unknown parameter"):
        solve_ga(inst, SolveOptions(params={"popsize": 3}))
    with pytest.raises(InputError, match="mutation"):
        solve_ga(inst, SolveOptions(params={"mutation": 2}))
    with pytest.raises(InputError, match="elite"):
        solve_ga(inst, SolveOptions(params={"population": 4, "elite": 4}))


def test_cli_solve_ga(tmp_path):
    inst_path = tmp_path / "inst.json"
    assert run_cli("generate", "--preset", "paper", "--n-tasks", "200", "--out", str(inst_path)).returncode == 0
    done = run_cli("solve", str(inst_path), "--method", "ga", "--seconds", "0.5", "--seed", "3")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["method"] == "ga" and len(doc["assignment"]) == 200
    assert doc["total_latency"] <= doc["greedy_latency"]
    bad = run_cli("solve", str(inst_path), "--method", "ga", "--param", "crossover=7")
    assert bad.returncode == 2 and "crossover" in bad.stderr and "Traceback" not in bad.stderr


def test_the_ga_reports_its_progress_in_generations_or_seconds():
    """`solve --method ga` shows a bar on a terminal: a run on a long backlog takes minutes (a 3000-task burst:
    about 6 min at the default 20 generations), and it said nothing until the end."""
    from edgepoc.solvers.registry import SolveOptions, solve

    inst = generate("paper", seed=3, count=1, n_tasks=200)[0]
    seen: list[tuple[float, float]] = []
    solve(inst, "ga", SolveOptions(params={"generations": 4}, progress=lambda done, of: seen.append((done, of))))
    assert {of for _, of in seen} == {5}, "the initial population, then 4 generations"
    done = [d for d, _ in seen]
    assert done == sorted(done) and done[-1] == 5 and 0 < done[0] < 1, "fractions while the first population improves"
    seen.clear()
    solve(inst, "ga", SolveOptions(seconds=0.5, progress=lambda done, of: seen.append((done, of))))
    assert seen and {of for _, of in seen} == {0.5} and all(0 <= d <= 0.5 for d, _ in seen)
