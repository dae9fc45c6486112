"""Generators are seeded, sized as asked, and run at the load asked for."""

from __future__ import annotations

import numpy as np
import pytest

from edgepoc.errors import InputError
from edgepoc.game.generators import arrival_rate_for_load, generate
from edgepoc.game.kernel import greedy_assignment


@pytest.mark.parametrize("preset", ["paper", "varied", "alibaba", "heavy"])
def test_same_seed_same_instances_whatever_the_count(preset):
    a = generate(preset, seed=4, count=3, n_tasks=200)
    b = generate(preset, seed=4, count=1, start_index=2, n_tasks=200)
    assert np.array_equal(a[2].arrival, b[0].arrival) and np.array_equal(a[2].demand, b[0].demand)
    c = generate(preset, seed=5, count=1, n_tasks=200)
    assert not np.array_equal(a[0].demand, c[0].demand)


def test_paper_preset_shape():
    inst = generate("paper", seed=0)[0]
    assert (inst.n_tasks, inst.n_providers, inst.n_resources) == (1000, 3, 2)
    assert (inst.demand > 0).all() and (inst.demand <= 1).all()
    assert (np.diff(inst.arrival) >= 0).all()


def test_load_sets_arrival_rate():
    inst = generate("paper", seed=1, n_tasks=5000, load=0.8)[0]
    rate = (inst.n_tasks - 1) / inst.arrival[-1]
    assert rate == pytest.approx(arrival_rate_for_load(inst.demand, inst.capacity, 0.8), rel=0.05)


def test_higher_load_means_more_delay():
    light = generate("paper", seed=2, load=0.5)[0]
    heavy = generate("paper", seed=2, load=1.1)[0]
    assert greedy_assignment(heavy)[1] > greedy_assignment(light)[1]


def test_alibaba_window_is_the_real_trace():
    inst = generate("alibaba", seed=0, n_tasks=500, start=100)[0]
    assert inst.n_tasks == 500 and inst.arrival[0] == 0.0
    assert (np.diff(inst.arrival) >= 0).all()
    assert len(np.unique(inst.arrival)) < 500  # the real trace submits tasks in batches


def test_varied_draws_sizes_and_provider_counts():
    insts = generate("varied", seed=0, count=12)
    assert len({i.n_tasks for i in insts}) > 5 and len({i.n_providers for i in insts}) > 1


@pytest.mark.parametrize("kwargs, msg", [
    ({"preset": "nope"}, "unknown preset"),
    ({"preset": "paper", "n_tasks": 0}, "n_tasks"),
    ({"preset": "paper", "load": -1.0}, "load"),
    ({"preset": "alibaba", "n_tasks": 10**6}, "n_tasks"),
    ({"preset": "paper", "load": float("inf")}, "load: must be a number > 0 and at most"),
    ({"preset": "paper", "load": 1e308}, "load: must be a number > 0 and at most"),
    ({"preset": "paper", "seed": -1}, "seed: must be an integer >= 0"),
    ({"preset": "paper", "providers": 0}, "providers: must be an integer >= 1"),
    ({"preset": "alibaba", "providers": 0}, "providers"),
    ({"preset": "varied", "providers": 0}, "providers"),
])
def test_bad_generator_arguments(kwargs, msg):
    with pytest.raises(InputError, match=msg):
        generate(**kwargs)


@pytest.mark.parametrize("tail", ["pareto", "lognormal", "bimodal"])
def test_heavy_tails_are_heavy_and_at_the_load_asked(tail):
    inst = generate("heavy", seed=3, n_tasks=4000, tail=tail, providers=4, load=0.6)[0]
    size = inst.processing.mean(axis=1)
    assert size.std() / size.mean() > 1.2  # the models' pilots count a tail as heavy from a cv of 1.2
    assert inst.n_providers == 4 and tail in inst.name
    rate = (inst.n_tasks - 1) / inst.arrival[-1]
    assert rate == pytest.approx(arrival_rate_for_load(inst.demand, inst.capacity, 0.6), rel=0.1)
    with pytest.raises(InputError, match="tail"):
        generate("heavy", seed=3, tail="cauchy")
