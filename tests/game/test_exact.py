"""Brute force is the optimum; greedy is never below it."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edgepoc.game.kernel import greedy_assignment, simulate
from edgepoc.solvers.exact import brute_force
from edgepoc.errors import InputError
from tests.conftest import random_instance


@pytest.mark.parametrize("seed", range(8))
def test_brute_force_optimum_and_greedy_never_below(seed):
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(3, 9)), int(rng.integers(2, 4))
    inst = random_instance(rng, n, k, task_delays=bool(seed % 2))
    x_opt, f_opt = brute_force(inst)
    assert f_opt == simulate(inst, x_opt)
    # enumerate independently, one simulate() call per allocation
    assert f_opt == min(simulate(inst, np.array(x)) for x in itertools.product(range(k), repeat=n))
    assert greedy_assignment(inst)[1] >= f_opt


def test_ten_tasks_three_providers():
    inst = random_instance(np.random.default_rng(11), 10, 3)
    _, f_opt = brute_force(inst)
    assert greedy_assignment(inst)[1] >= f_opt


def test_brute_force_refuses_huge():
    inst = random_instance(np.random.default_rng(0), 40, 3)
    with pytest.raises(InputError, match="too many"):
        brute_force(inst)
