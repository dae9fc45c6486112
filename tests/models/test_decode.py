"""Decoders and the teacher/student solve methods."""

from __future__ import annotations

import time

import numpy as np
import pytest

from edgepoc.errors import InputError
from edgepoc.game.generators import generate
from edgepoc.game.kernel import greedy_assignment, simulate
from edgepoc.models.budget import Budget
from edgepoc.models.decoding import DecodeOptions, kick
from edgepoc.models.paper.decode import (decode_probabilities, guided_candidates, paper_decode_options,
                                        sample_candidates)
from edgepoc.solvers.registry import SolveOptions, solve


@pytest.fixture(scope="module")
def inst():
    return generate("paper", 4, 1, n_tasks=300)[0]


def test_guided_extremes_are_argmax_and_greedy(inst):
    p = np.random.default_rng(0).random((inst.n_tasks, 3))
    cands = guided_candidates(inst, p, lambdas=(0.0, 1e9))
    assert np.array_equal(cands[0], p.argmax(axis=1))
    assert np.array_equal(cands[1], greedy_assignment(inst)[0])


def test_guided_respects_free_times(inst):
    p = np.full((inst.n_tasks, 3), 1 / 3)
    free = np.array([1e6, 0.0, 0.0])
    cands = guided_candidates(inst, p, lambdas=(1e9,), free_times=free)
    assert np.array_equal(cands[0], greedy_assignment(inst, free)[0])
    assert (cands[0] != 0).all()


def test_samples_follow_p():
    p = np.tile([0.9, 0.1, 0.0], (500, 1))
    s = sample_candidates(p, 20, 1.0, np.random.default_rng(1))
    assert s.shape == (20, 500) and set(np.unique(s)) <= {0, 1, 2}
    assert 0.85 < (s == 0).mean() < 0.95 and (s == 2).mean() < 0.01  # P is floored at 1e-3


def test_search_is_never_worse_and_keeps_budget(inst):
    p = np.random.default_rng(2).random((inst.n_tasks, 3))
    _, greedy_f = greedy_assignment(inst)
    t0 = time.perf_counter()
    x, info = decode_probabilities(inst, p, DecodeOptions("search", budget=Budget.deadline(0.05)))
    assert time.perf_counter() - t0 < 0.5
    assert info["decoded_latency"] == simulate(inst, x)
    assert info["decoded_latency"] <= greedy_f
    x2, _ = decode_probabilities(inst, p, DecodeOptions("argmax"))
    assert np.array_equal(x2, p.argmax(axis=1))
    # without swaps the descent is still valid and never worse than greedy
    x3, info3 = decode_probabilities(inst, p, DecodeOptions("search", budget=Budget.deadline(0.05), swap_window=0))
    assert info3["decoded_latency"] == simulate(inst, x3) and info3["decoded_latency"] <= greedy_f


def test_kick_moves_tasks_elsewhere():
    x = np.zeros(100, dtype=np.int8)
    y = kick(x, np.tile([0.2, 0.7, 0.1], (100, 1)), 10, np.random.default_rng(0))
    assert (y != x).sum() == 10 and set(np.unique(y)) <= {0, 1, 2}


def test_decode_params_validation():
    assert paper_decode_options({"decode": "guided", "budget_ms": 20}).budget.seconds == pytest.approx(0.02)
    with pytest.raises(InputError, match="decode: expected one of"):
        paper_decode_options({"decode": "beam"})
    with pytest.raises(InputError, match="unknown model setting"):
        paper_decode_options({"beam_width": 3})
    assert paper_decode_options({"lambdas": [0, 2]}).lambdas == (0.0, 2.0)
    with pytest.raises(InputError, match="lambdas"):
        paper_decode_options({"lambdas": 3})
    assert paper_decode_options({"swap_window": 0}).swap_window == 0
    with pytest.raises(InputError, match="swap_window"):
        paper_decode_options({"swap_window": -1})
    assert paper_decode_options({"kick_window": 0}).kick_window == 0
    assert paper_decode_options({"kick_window": "20"}).kick_window == 20
    # a setting that is not a number names itself (a CLI user sees one line, not "internal error")
    for bad in ({"kick_window": "abc"}, {"swap_window": 2.5}, {"samples": True}, {"temperature": float("nan")},
                {"kick_window": 1e400}, {"kick_window": -1}, {"sweeps": "abc"}, {"budget_ms": "soon"}):
        with pytest.raises(InputError, match=next(iter(bad))):
            paper_decode_options(bad)


@pytest.mark.parametrize("method", ["argmax", "guided", "sample", "search"])
def test_teacher_method_through_registry(teacher_run, inst, method):
    res = solve(inst, "teacher", SolveOptions(model=str(teacher_run / "best.pt"),
                                              params={"decode": method, "budget_ms": 20}))
    assert res.assignment.shape == (inst.n_tasks,)
    assert res.extra["decode"] == method
    if method != "argmax":
        assert res.total_latency == pytest.approx(res.extra["decoded_latency"])


def test_local_search_stops_at_its_deadline():
    """A descent checks the clock inside (an overloaded instance's sweep is O(n^2)): past the deadline
    it returns at once, with the true delay of what it holds; with time left it equals no deadline."""
    from edgepoc.solvers.localsearch import local_search

    inst = generate("paper", 3, 1, n_tasks=400, load=3.0)[0]
    x0 = np.zeros(inst.n_tasks, dtype=np.int8)
    x, f, _ = local_search(inst, x0, swap_window=8, deadline=time.perf_counter() - 1.0)
    assert np.array_equal(x, x0) and f == simulate(inst, x0)
    free, _, _ = local_search(inst, x0, swap_window=8)
    timed, _, _ = local_search(inst, x0, swap_window=8, deadline=time.perf_counter() + 3600)
    assert np.array_equal(free, timed) and simulate(inst, free) < simulate(inst, x0)


def test_paper_search_takes_the_one_budget_type(inst):
    """The paper model's search runs the shared loop: a work budget is reproducible, like the general model's."""
    p = np.random.default_rng(3).random((inst.n_tasks, 3))
    opts = paper_decode_options({"sweeps": 5}, seed=2)
    assert opts.budget == Budget.work(5)
    (x1, info1), (x2, _) = decode_probabilities(inst, p, opts), decode_probabilities(inst, p, opts)
    assert np.array_equal(x1, x2) and info1["budget"] == "5 sweeps" and info1["sweeps"] <= 5
    assert paper_decode_options({"sweeps": 5, "budget_ms": 10}).budget == Budget.deadline(0.01)  # a deadline wins
    with pytest.raises(ValueError):
        Budget()


@pytest.mark.parametrize("method", ["student", "search"])
def test_the_searches_report_their_progress_in_sweeps_or_seconds(method):
    """`solve --method student|teacher|search` shows a bar on a terminal: on 100,000 tasks the default search
    takes about 40 s (a kick's repair re-walks the whole instance, so its work grows faster than the tasks;
    1,000,000 tasks: over 6 minutes), and it said nothing until the end."""
    inst = generate("paper", seed=3, count=1, n_tasks=3000)[0]
    seen: list[tuple[float, float]] = []
    without = solve(inst, method, SolveOptions(params={"sweeps": 3}))
    found = solve(inst, method, SolveOptions(params={"sweeps": 3}, progress=lambda done, of: seen.append((done, of))))
    assert np.array_equal(found.assignment, without.assignment), "told or not, the same search"
    assert seen and {of for _, of in seen} == {3.0}
    done = [d for d, _ in seen]
    assert done == sorted(done) and done[0] == 0 and 0 < done[-1] <= 3.0
    seen.clear()
    solve(inst, method, SolveOptions(seconds=0.5, progress=lambda done, of: seen.append((done, of))))
    assert seen and {of for _, of in seen} == {0.5} and all(0 <= d <= 0.5 for d, _ in seen)
