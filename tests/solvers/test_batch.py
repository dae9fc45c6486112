"""The batch allocator (a block's tasks arrive at once): exact move prices, determinism, and what it beats."""

from __future__ import annotations

import numpy as np
import pytest

from edgepoc.game.instance import Instance
from edgepoc.game.kernel import greedy_assignment, simulate_state
from edgepoc.solvers.batch import batch_allocate, is_batch
from edgepoc.solvers.localsearch import local_search


def batch_instance(n: int, k: int, seed: int) -> tuple[Instance, np.ndarray]:
    rng = np.random.default_rng(seed)
    inst = Instance.create(rng.uniform(0.5, 1.5, (k, 2)), rng.uniform(0.0, 0.1, k), [7.0] * n,
                           rng.uniform(0.002, 0.3, (n, 2)), None, name=f"batch-{seed}")
    return inst, rng.uniform(5.0, 12.0, k)


@pytest.mark.parametrize("seed", range(6))
def test_a_batch_local_optimum_is_the_general_local_searchs(seed):
    """The O(log n) move prices are exact: from the batch search's result, the general local search (which
    re-walks the queues) finds no improving single move, and the kernel agrees on every improvement."""
    inst, free = batch_instance(300, 2 + seed % 4, seed)
    x = batch_allocate(inst, free, sweeps=1000)
    total = simulate_state(inst, x, free)[0]
    y, again, _ = local_search(inst, x, free, max_sweeps=5)
    assert again == pytest.approx(total, rel=1e-12) and np.array_equal(y, x)
    g, greedy_total = greedy_assignment(inst, free)
    assert total < greedy_total


def test_each_sweep_only_improves_and_the_result_is_deterministic():
    inst, free = batch_instance(500, 4, 11)
    totals = [simulate_state(inst, batch_allocate(inst, free, sweeps=s), free)[0] for s in (0, 1, 2, 4, 50)]
    assert all(b <= a + 1e-9 for a, b in zip(totals, totals[1:]))
    assert np.array_equal(batch_allocate(inst, free, 7), batch_allocate(inst, free, 7))
    start = np.zeros(inst.n_tasks, dtype=np.int64)
    assert simulate_state(inst, batch_allocate(inst, free, 50, start), free)[0] < simulate_state(inst, start, free)[0]


def test_only_batches_are_accepted():
    rng = np.random.default_rng(0)
    inst = Instance.create(rng.uniform(0.5, 1.5, (3, 2)), rng.uniform(0, 0.1, 3), np.sort(rng.uniform(0, 5, 20)),
                           rng.uniform(0.01, 0.3, (20, 2)), None, name="stream")
    assert not is_batch(inst)
    with pytest.raises(ValueError):
        batch_allocate(inst, np.zeros(3), 1)
