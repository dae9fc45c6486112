"""The Lagrangian lower bound is a valid bound on f* (SPEC §1) and `solve --method bound` reports it."""

from __future__ import annotations

import numpy as np
import pytest

from edgepoc.game.generators import generate
from edgepoc.game.instance import Instance
from edgepoc.game.kernel import simulate
from edgepoc.solvers.exact import brute_force
from edgepoc.solvers.lagrange import _dual, lagrangian_bound
from edgepoc.solvers.registry import SolveOptions, solve


def _small(seed: int) -> tuple[Instance, np.ndarray | None]:
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 4))
    n = int(rng.integers(3, 10 if k == 2 else 8))
    preset = ["paper", "varied", "alibaba"][seed % 3]
    params = {"n_tasks": n, "providers": k, "load": float(rng.uniform(0.5, 2.5))}
    if preset == "alibaba":
        params.pop("providers")
    inst = generate(preset, seed=seed, **params)[0]
    if seed % 5 == 0:  # per-task delays
        inst = Instance.create(inst.capacity, inst.provider_delay, inst.arrival, inst.demand,
                               task_delays=rng.uniform(0, 0.2, size=(inst.n_tasks, inst.n_providers)))
    free = rng.uniform(0, 1.0, size=inst.n_providers) if seed % 2 else None
    return inst, free


@pytest.mark.parametrize("labels", [2, 3, 16384])
def test_bound_never_exceeds_the_optimum(labels):
    """On 60 random small instances (all presets, queue state, per-task delays, exact and merged pricing):
    the bound is <= the brute-force optimum, and every priced L(lam) along the way is too."""
    for seed in range(60):
        inst, free = _small(seed)
        _, opt = brute_force(inst, free)
        res = lagrangian_bound(inst, free, upper=opt * 1.05, iterations=60, labels=labels)
        assert res["bound"] <= opt * (1 + 1e-12), (seed, res["bound"], opt)
        assert max(res["history"]) * (1 - 1e-9) <= opt * (1 + 1e-12)


def test_random_prices_give_valid_bounds():
    """Validity holds for any prices, not only the ascent's."""
    rng = np.random.default_rng(7)
    for seed in range(20):
        inst, free = _small(seed)
        _, opt = brute_force(inst, free)
        f0 = np.zeros(inst.n_providers) if free is None else free
        taken = np.zeros((inst.n_providers, inst.n_tasks), dtype=np.bool_)
        for _ in range(20):
            lam = rng.uniform(-1, 3 * opt / inst.n_tasks, size=inst.n_tasks)
            value, _ = _dual(inst.arrival, inst.ready, inst.processing, lam, f0, 16384, taken)
            assert value <= opt + 1e-9


def test_bound_is_tight_on_small_instances():
    """Exact pricing closes most of the gap on small instances (it is the set-partitioning LP bound)."""
    gaps = []
    for seed in range(12):
        inst, free = _small(seed)
        _, opt = brute_force(inst, free)
        gaps.append(1 - lagrangian_bound(inst, free, upper=opt, iterations=200)["bound"] / opt)
    assert np.mean(gaps) < 0.05


def test_solve_method_bound_contract():
    inst = generate("paper", seed=3, n_tasks=120)[0]
    res = solve(inst, "bound", SolveOptions(seed=0, seconds=2.0, params={"iterations": 100}))
    e = res.extra
    assert res.total_latency == simulate(inst, res.assignment)
    assert 0 < e["lower_bound"] <= res.total_latency
    assert e["lower_bound"] >= max(e["block_bound"], e["trivial_bound"], e["lagrangian_bound"]) * (1 - 1e-12)
    assert e["gap"] == pytest.approx(res.total_latency / e["lower_bound"] - 1)
    assert e["bound_source"] in ("lagrangian", "block", "trivial")
    assert e["gap"] < 0.1


def test_solve_method_bound_rejects_unknown_params():
    from edgepoc.errors import InputError

    inst = generate("paper", seed=3, n_tasks=10)[0]
    with pytest.raises(InputError, match="bound: unknown parameter"):
        solve(inst, "bound", SolveOptions(params={"nope": 1}))


def test_a_tight_budget_shrinks_the_label_cap_so_iterations_fit_and_the_bound_stays_valid():
    from edgepoc.solvers.lagrange import _labels_that_fit
    from edgepoc.game.kernel import greedy_assignment
    inst = generate("varied", seed=11, n_tasks=6000)[0]
    x, upper = greedy_assignment(inst)
    lam = np.full(inst.n_tasks, upper / inst.n_tasks)
    free0 = np.zeros(inst.n_providers)
    args = (inst.arrival, inst.ready, inst.processing, lam, free0)
    assert _labels_that_fit(*args, 16384, per_iteration=1e9) == 16384  # room: the cap stays
    assert _labels_that_fit(*args, 16384, per_iteration=1e-6) == 16  # no room: the smallest cap
    out = lagrangian_bound(inst, upper=upper, assignment=x, seconds=2.0)
    assert out["iterations"] >= 1 and 0 <= out["bound"] <= upper
    assert out["seconds"] < 10.0  # the default cap's first iteration alone would take longer here


def test_without_a_budget_the_bound_stops_on_its_default_cap_and_says_so():
    from edgepoc.errors import InputError

    inst = generate("varied", seed=3, n_tasks=600)[0]
    res = solve(inst, "bound", SolveOptions(params={"upper": "greedy", "bound_seconds": 0.2}))
    e = res.extra
    assert e["iterations"] < 300 and "default cap of 0.2 s" in e["budget_note"]
    assert e["trivial_bound"] * (1 - 1e-9) <= e["lower_bound"] <= res.total_latency
    with pytest.raises(InputError, match="bound_seconds"):
        solve(inst, "bound", SolveOptions(params={"bound_seconds": 0}))


def test_solve_method_bound_reports_its_progress_in_seconds_of_its_budget():
    """`solve --method bound` takes the GA's 5 s and up to 120 s of bounds by default, and said nothing meanwhile;
    on a terminal it now shows a bar in seconds of that budget (or of --seconds)."""
    inst = generate("paper", seed=3, n_tasks=120)[0]
    seen: list[tuple[float, float]] = []
    res = solve(inst, "bound", SolveOptions(seed=0, seconds=1.0, params={"iterations": 50},
                                            progress=lambda done, of: seen.append((done, of))))
    assert {of for _, of in seen} == {1.0} and len(seen) >= 2
    done = [d for d, _ in seen]
    assert done == sorted(done) and done[0] < 0.1 and all(0 <= d <= 1.0 for d in done)
    assert res.extra["lower_bound"] > 0
    seen.clear()
    solve(inst, "bound", SolveOptions(seed=0, params={"iterations": 5, "upper": "greedy", "bound_seconds": 3.0},
                                      progress=lambda done, of: seen.append((done, of))))
    assert seen and {of for _, of in seen} == {3.0}, "the default budget: the bounds' cap (no GA with upper=greedy)"
