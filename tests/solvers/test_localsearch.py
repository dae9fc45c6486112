"""The marked descent (`descend`): its short re-walk keeps the stored history exact, it never makes an
allocation worse, it keeps its work budget, and a kick's repair examines only the tasks around the kick.
The window kick (`redecode_window`) changes only its window, and at a cold temperature is greedy there; the
search's in-place kicks (`WindowKicks`) give its answers bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from edgepoc.game.generators import generate
from edgepoc.game.kernel import completion_time, greedy_assignment, simulate
from edgepoc.models.decoding import DecodeOptions, search, uniform_weights
from edgepoc.game.instance import Instance
from edgepoc.solvers.localsearch import (_history, _move_delta, _rewalk, _swap_delta, descend, local_search, queue_history,
                                         redecode_window)
from tests.solvers.test_ga import busy_instance


@pytest.mark.parametrize("seed", range(4))
def test_rewalk_leaves_the_same_history_as_a_full_recompute(seed):
    """It walks only the two providers the change touched (at K = 1024 rewriting every column was most of a
    descent's time): the history it leaves is a full recompute's, and it stops at the first row past `last` where
    the new history meets the old one."""
    rng = np.random.default_rng(seed)
    n, k = 200, (3 if seed < 2 else 40)
    inst = busy_instance(seed, n, k, task_delays=bool(seed % 2))
    free0 = rng.uniform(0, 2, size=k)
    x = rng.integers(0, k, size=n).astype(np.int8)
    completion, free_before = np.empty(n), np.empty((n + 1, k))
    total = _history(inst.arrival, inst.ready, inst.processing, x, free0, completion, free_before, 0)
    for _ in range(30):
        i = int(rng.integers(0, n - 5))
        j = i if rng.random() < 0.5 else i + int(rng.integers(1, 5))
        a, b = int(x[i]), int(x[j]) if j > i else (int(x[i]) + 1) % k
        if j == i:
            x[i] = b
        else:
            x[i], x[j] = x[j], x[i]
        old = free_before.copy()
        delta, end = _rewalk(inst.arrival, inst.ready, inst.processing, x, completion, free_before, i, j, a, b)
        assert j < end <= n
        c_ref, f_ref = np.empty(n), np.empty((n + 1, k))
        ref = _history(inst.arrival, inst.ready, inst.processing, x, free0, c_ref, f_ref, 0)
        met = [r for r in range(j + 1, n + 1) if np.array_equal(old[r], f_ref[r])]
        assert end == (met[0] if met else n)
        # the stretch it stopped at is exact: every stored completion and free time equals a full re-walk
        assert np.array_equal(completion, c_ref) and np.array_equal(free_before, f_ref)
        assert total + delta == pytest.approx(ref, rel=1e-12, abs=1e-9)
        total = ref


@pytest.mark.parametrize("seed, k", [(0, 2), (1, 3), (2, 9), (3, 40), (4, 300)])
def test_moves_priced_on_the_queues_alone_are_the_walks_prices_bit_for_bit(seed, k):
    """Where `grouped_pays` the descent prices a move walking only the two queues' tasks (37x faster at
    K = 1024); it must give every price, and where each change stops, exactly as the walk over all tasks: the
    search's allocations (and a chain's blocks) must not depend on which pricing ran."""
    from edgepoc.solvers.localsearch import _best_move, _group_by_queue, _move_delta_queued

    rng = np.random.default_rng(seed)
    n = 150
    inst = busy_instance(seed, n, k, task_delays=bool(seed % 2))
    x = rng.integers(0, k, size=n).astype(np.int16)
    x[rng.random(n) < 0.5] = 0  # one long queue among short ones
    free0 = rng.uniform(0, 1, size=k)
    completion, free_before = np.empty(n), np.empty((n + 1, k))
    _history(inst.arrival, inst.ready, inst.processing, x, free0, completion, free_before, 0)
    qstart, qorder, fpos = np.empty(k + 1, np.int64), np.empty(n, np.int64), np.empty(n, np.int64)
    _group_by_queue(x, qstart, qorder, fpos)
    args = (inst.arrival, inst.ready, inst.processing, x, completion, free_before)
    for i in range(n):
        for b in range(k):
            if b != x[i]:
                assert _move_delta_queued(*args, qstart, qorder, fpos, i, b) == _move_delta(*args, i, b), (i, b)
        walked = _best_move(*args, i, -1e-12, qstart, qorder, fpos, False, False)
        assert walked == _best_move(*args, i, -1e-12, qstart, qorder, fpos, True, False)
        # and with the moves that the lower bound rules out passed over unpriced (from BOUNDED_FROM providers)
        assert walked == _best_move(*args, i, -1e-12, qstart, qorder, fpos, True, True)


@pytest.mark.parametrize("seed, k", [(0, 2), (1, 3), (2, 9), (3, 40), (4, 40)])
def test_a_moves_lower_bound_is_never_above_its_price(seed, k):
    """Both descents pass over a move whose lower bound (the task's own change plus what its old queue gains
    without it) is above the best price so far: on idle, busy and burst queues, per-task delays and a queue
    state, the bound is at most the walk's price for every move, and its three ways (the walk, the walk over
    the queue's own tasks, the queue index) agree."""
    from edgepoc.solvers.localsearch import _queue_gain, _queue_gain_queued, _tail_change

    rng = np.random.default_rng(seed)
    n = 200
    inst = busy_instance(seed, n, k, task_delays=bool(seed % 2))
    if seed % 2:
        inst.arrival[:80] = 0.0  # a burst: those queues never idle
    free0 = rng.uniform(0, 2, size=k) if seed % 3 else np.zeros(k)
    for x in (rng.integers(0, k, size=n).astype(np.int16), greedy_assignment(inst, free0)[0].astype(np.int16)):
        args, index = _history_and_index(inst, x, free0)
        completion, free_before = args[4], args[5]
        qstart, qorder, fpos, gap_cum, gap_pre, slack, tree, tail_min = index
        ruled_out = 0
        for i in range(n):
            a = x[i]
            gain, complete = _queue_gain(*args, i, -1)
            assert complete and gain <= 0.0
            assert _queue_gain_queued(inst.arrival, inst.ready, inst.processing, completion, free_before, qstart,
                                      qorder, fpos, a, i) == gain
            on_index = _tail_change(qstart[a], qstart[a + 1], fpos[i] + 1, free_before[i, a] - completion[i],
                                    gap_cum, gap_pre, slack, tree, tail_min)
            assert on_index == pytest.approx(gain, rel=1e-9, abs=1e-9)
            for b in range(k):
                if b == a:
                    continue
                price = _move_delta(*args, i, b)[0]
                bound = completion_time(free_before[i, b], inst.ready[i, b], inst.processing[i, b]) - completion[i] + gain
                assert bound <= price + 1e-9 * (1.0 + abs(price)), (i, b)
                ruled_out += bound > 0.0
        assert ruled_out > 0  # the bound rules some moves out, or the test shows nothing


@pytest.mark.parametrize("seed", range(4))
def test_a_change_stops_where_the_prices_say(seed):
    """`_move_delta` / `_swap_delta` say from which task on a change alters nothing; the marks rely on it."""
    rng = np.random.default_rng(seed)
    n, k = 120, 3
    inst = busy_instance(seed, n, k, task_delays=bool(seed % 2))
    x = rng.integers(0, k, size=n).astype(np.int8)
    free0 = np.zeros(k)
    completion, free_before = np.empty(n), np.empty((n + 1, k))
    _history(inst.arrival, inst.ready, inst.processing, x, free0, completion, free_before, 0)
    for _ in range(20):
        i = int(rng.integers(0, n - 4))
        y = x.copy()
        if rng.random() < 0.5:
            y[i] = (x[i] + 1) % k
            _, stop = _move_delta(inst.arrival, inst.ready, inst.processing, x, completion, free_before, i, int(y[i]))
        else:
            j = next((j for j in range(i + 1, n) if x[j] != x[i]), None)
            if j is None:
                continue
            y[i], y[j] = x[j], x[i]
            _, stop = _swap_delta(inst.arrival, inst.ready, inst.processing, x, completion, free_before, i, j)
        c_y, f_y = np.empty(n), np.empty((n + 1, k))
        _history(inst.arrival, inst.ready, inst.processing, y, free0, c_y, f_y, 0)
        assert i < stop <= n and np.array_equal(c_y[stop:], completion[stop:])


@pytest.mark.parametrize("seed, k", [(s, 4) for s in range(6)] + [(6, 20), (7, 20)])
def test_on_a_batch_the_marked_descent_ends_at_a_true_local_optimum(seed, k):
    """A chain block: every task arrives at once, so the queues never resync and a change re-prices every
    earlier task's moves; the marks must follow (a fixed look-back of 16 tasks stopped short on seed 4 here,
    and on a 400-task Alibaba block missed an allocation 6 % better)."""
    rng = np.random.default_rng(seed)
    n = 150
    inst = Instance.create(rng.uniform(0.5, 2.0, size=(k, 2)), rng.uniform(0.0, 0.2, size=k), [0.0] * n,
                           rng.lognormal(0.0, 1.2, size=(n, 2)), None, name="batch")
    g, _ = greedy_assignment(inst)
    y, f, _ = descend(inst, g, max_evals=10**9, swap_window=8)
    _, f_full, _ = local_search(inst, y, swap_window=8)
    assert f_full == pytest.approx(f, rel=1e-12)  # nothing left for a full sweep to find


@pytest.mark.parametrize("seed", range(3))
def test_descend_improves_keeps_its_budget_and_reports_the_kernels_delay(seed):
    inst = busy_instance(seed, 300, 3)
    g, g_total = greedy_assignment(inst)
    y, f, evals = descend(inst, g, max_evals=10**9, swap_window=8)
    assert f == simulate(inst, y) and f < g_total
    # close to the full-sweep descent's local optimum (the marks are an approximation of "everything")
    _, f_full, _ = local_search(inst, g, swap_window=8)
    assert f <= f_full * 1.02
    _, _, few = descend(inst, g, max_evals=7, swap_window=8)
    assert few == 7
    # nothing changed since the local optimum: nothing to examine
    _, f_again, none = descend(inst, y, max_evals=10**9, swap_window=8, changed_from=y)
    assert none == 0 and f_again == f


def test_a_kick_repair_examines_only_the_tasks_around_it():
    inst = next(iter(generate("paper", seed=11, count=1, n_tasks=1000)))
    g, _ = greedy_assignment(inst)
    y, f, _ = descend(inst, g, max_evals=10**9, swap_window=8)
    kicked = y.copy()
    kicked[500] = (kicked[500] + 1) % inst.n_providers
    z, fz, evals = descend(inst, kicked, max_evals=10**9, swap_window=8, changed_from=y)
    assert 1 <= evals < inst.n_tasks // 4 and fz == simulate(inst, z)
    # so the search's 30-sweep work budget buys many kicks, not a handful
    res = search(inst, [("greedy", g)], uniform_weights(inst), DecodeOptions(seed=0))
    assert res.kicks >= 50 and res.sweeps <= 30 and res.latency <= f


@pytest.mark.parametrize("seed", range(3))
def test_a_window_kick_redecodes_its_window_on_the_queues_before_it(seed):
    rng = np.random.default_rng(seed)
    inst = busy_instance(seed, 300, 4, task_delays=bool(seed % 2))
    free0 = rng.uniform(0, 3, size=4)
    x = rng.integers(0, 4, size=300).astype(np.int8)
    history = queue_history(inst, x, free0)
    assert np.array_equal(history[0], free0)
    # cold: the window is greedy's choice on the queues x built before it; the tasks outside keep theirs
    cold = redecode_window(inst, x, history, 120, 40, 1e-12, np.random.default_rng(0))
    assert np.array_equal(cold[:120], x[:120]) and np.array_equal(cold[160:], x[160:])
    free = history[120].copy()
    for i in range(120, 160):
        lat = np.maximum(free, inst.ready[i]) + inst.processing[i] - inst.arrival[i]
        assert cold[i] == int(np.argmin(lat))
        free[cold[i]] = np.maximum(free[cold[i]], inst.ready[i, cold[i]]) + inst.processing[i, cold[i]]
    # the whole instance from the start, cold, is the greedy allocation
    g, _ = greedy_assignment(inst, free0)
    assert np.array_equal(redecode_window(inst, x, history, 0, 300, 1e-12, np.random.default_rng(0)), g)
    # warm: a draw, the same for the same generator state; a window past the end is cut at n
    warm = [redecode_window(inst, x, history, 280, 50, 0.3, np.random.default_rng(7)) for _ in range(2)]
    assert np.array_equal(warm[0], warm[1]) and np.array_equal(warm[0][:280], x[:280])


def test_window_kicks_find_what_point_kicks_find_and_keep_the_work_budget():
    inst = next(iter(generate("paper", seed=12, count=1, n_tasks=1000)))
    g, fg = greedy_assignment(inst)
    window = search(inst, [("greedy", g)], uniform_weights(inst), DecodeOptions(seed=0))
    point = search(inst, [("greedy", g)], uniform_weights(inst), DecodeOptions(seed=0, kick_window=0))
    assert window.kicks >= 50 and window.sweeps <= 30 and window.latency == simulate(inst, window.assignment)
    assert window.latency < fg and window.latency <= point.latency * 1.005
    again = search(inst, [("greedy", g)], uniform_weights(inst), DecodeOptions(seed=0))
    assert np.array_equal(again.assignment, window.assignment)


@pytest.mark.parametrize("case", ["paper", "busy", "batch-k5", "burst-k8"])
def test_window_kicks_in_place_give_the_rebuilt_answers_bit_for_bit(case):
    """The search keeps its best allocation's history and kicks it in place (`WindowKicks`); each kick must give
    what re-decoding a copy and descending it from a full rebuild gives (`redecode_window` + `descend`), delay and
    examinations, and keep the better allocation the same way, on queues that resync soon (paper), backlogs
    (busy), a block of simultaneous arrivals at K = 5 (the grouped pricing, forced on where the search would walk:
    the rebuilt answers walk) and a burst at K = 8 (grouped and bounded, as the search runs it); small budgets end
    descents with marks left, which the next kick must not see."""
    from edgepoc.solvers.localsearch import WindowKicks, _group_by_queue, grouped_pays, unknown_reach
    rng = np.random.default_rng(3)
    if case == "paper":
        inst = generate("paper", seed=21, n_tasks=600)[0]
    elif case == "busy":
        inst = busy_instance(5, 400, 3, task_delays=True)
    else:
        k, n = (5, 150) if case == "batch-k5" else (8, 300)
        arrival = np.zeros(n) if case == "batch-k5" else np.sort(rng.uniform(0, 2.0, n))
        inst = Instance.create(rng.uniform(0.5, 2.0, size=(k, 2)), rng.uniform(0.0, 0.2, size=k), arrival,
                               rng.lognormal(0.0, 1.0, size=(n, 2)), None, name=case)
    n, k = inst.n_tasks, inst.n_providers
    free0 = rng.uniform(0, 1, size=k)
    g, _ = greedy_assignment(inst, free0)
    reach_rebuilt = unknown_reach(n)
    best, best_f, _ = descend(inst, g, free0, max_evals=n, swap_window=4, reach=reach_rebuilt)
    reach_kept = reach_rebuilt.copy()
    kicks = WindowKicks(inst, best, free0, reach_kept, queued=True if case == "batch-k5" else None)
    assert kicks._queued == (case != "paper" and case != "busy") and grouped_pays(n, k) == (case == "burst-k8")
    unit = float(inst.processing.mean())
    draws_rebuilt, draws_kept = np.random.default_rng(9), np.random.default_rng(9)
    taken = 0
    for step in range(60):
        first, size, evals = int(rng.integers(0, n)), int(rng.integers(1, 30)), [6, 40, 10**6][step % 3]
        kicked = redecode_window(inst, best, queue_history(inst, best, free0), first, size, 1.0, draws_rebuilt, unit)
        y, f, ev = descend(inst, kicked, free0, max_evals=evals, swap_window=4, changed_from=best,
                           reach=reach_rebuilt)
        f_kept, ev_kept = kicks.kick(first, size, 1.0, draws_kept, unit, best_f, max_evals=evals, swap_window=4)
        assert (f_kept, ev_kept) == (f, ev), f"kick {step}"
        if f < best_f:
            best, best_f, taken = y, f, taken + 1
        assert np.array_equal(kicks.best_x, best) and np.array_equal(reach_kept, reach_rebuilt), f"kick {step}"
    assert taken >= 3  # the comparison covered kicks that were kept, not only ones thrown away
    # the kept history is still exactly the best allocation's
    completion, free_before = np.empty(n), np.empty((n + 1, k))
    _history(inst.arrival, inst.ready, inst.processing, kicks.best_x, free0, completion, free_before, 0)
    assert np.array_equal(kicks._best_completion, completion) and np.array_equal(kicks._best_free_before, free_before)
    assert np.array_equal(kicks._free_before, free_before) and not kicks._marked.any()
    if kicks._queued:  # and the grouping the kicks kept is the allocation's
        groups = (np.empty(k + 1, np.int64), np.empty(n, np.int64), np.empty(n, np.int64))
        _group_by_queue(kicks.best_x, *groups)
        assert all(np.array_equal(kept, fresh) for kept, fresh in zip(kicks._groups, groups))


def test_moving_a_task_between_queues_regroups_as_a_full_grouping_does():
    """The descents update the grouping by task (`_group_move`) instead of regrouping all n tasks."""
    from edgepoc.solvers.localsearch import _group_by_queue, _group_move
    rng = np.random.default_rng(0)
    n, k = 300, 7
    x = rng.integers(0, k, n).astype(np.int16)
    kept = (np.empty(k + 1, np.int64), np.empty(n, np.int64), np.empty(n, np.int64))
    _group_by_queue(x, *kept)
    for step in range(2000):
        i = int(rng.integers(0, n))
        # moves to every other queue, to the same one, and queues left empty (few providers used)
        b = int(rng.integers(0, k if step < 1000 else 2))
        _group_move(*kept, i, x[i], b)
        x[i] = b
        fresh = (np.empty(k + 1, np.int64), np.empty(n, np.int64), np.empty(n, np.int64))
        _group_by_queue(x, *fresh)
        assert all(np.array_equal(a, f) for a, f in zip(kept, fresh)), f"step {step}"


def _history_and_index(inst, x, free0):
    """`(the pricing functions' first arguments, the queue index)` of allocation `x`."""
    from edgepoc.solvers.localsearch import _index_queues
    n, k = inst.n_tasks, inst.n_providers
    completion, free_before = np.empty(n), np.empty((n + 1, k))
    _history(inst.arrival, inst.ready, inst.processing, x, free0, completion, free_before, 0)
    size = 1 << max(n - 1, 0).bit_length()
    index = (np.empty(k + 1, np.int64), np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n), np.empty(n),
             np.empty(n), np.empty(2 * size), np.empty(n))
    _index_queues(inst.ready, x, free_before, *index)
    return (inst.arrival, inst.ready, inst.processing, x, completion, free_before), index


def _indexed_prices(inst, x, free0):
    """Every move's and every near swap's price from the queue index, beside the exact walk's."""
    from edgepoc.solvers.localsearch import _indexed_move, _indexed_swap
    n, k = inst.n_tasks, inst.n_providers
    args, index = _history_and_index(inst, x, free0)
    pairs = []
    for i in range(n):
        for b in range(k):
            if b != x[i]:
                pairs.append((_indexed_move(*args, *index, i, b), _move_delta(*args, i, b)[0]))
        for j in range(i + 1, min(n, i + 9)):
            if x[j] != x[i]:
                pairs.append((_indexed_swap(*args, *index, i, j), _swap_delta(*args, i, j)[0]))
    return np.array(pairs)


@pytest.mark.parametrize("seed", range(6))
def test_the_queue_index_prices_every_move_as_the_walk_does(seed):
    """The GA's descent prices candidates on the queue index (O(log n) on a backlog, where the walk is O(n)):
    on idle, busy and bursty queues, with per-task delays and a non-empty queue state, each move's and swap's
    price equals the exact walk's to rounding, for a random allocation and for greedy's."""
    rng = np.random.default_rng(seed)
    inst = busy_instance(seed, 240, 2 + seed % 4, task_delays=bool(seed % 2))
    if seed % 3 == 2:
        inst.arrival[:120] = 0.0  # a burst: the first half's queues never idle
    free0 = rng.uniform(0, 3, inst.n_providers) if seed % 2 else np.zeros(inst.n_providers)
    for x in (rng.integers(0, inst.n_providers, inst.n_tasks).astype(np.int8),
              greedy_assignment(inst, free0)[0].astype(np.int8)):
        prices = _indexed_prices(inst, x, free0)
        assert len(prices) > inst.n_tasks
        np.testing.assert_allclose(prices[:, 0], prices[:, 1], rtol=1e-9, atol=1e-9)


def test_a_burst_descends_to_a_local_optimum_of_the_walk():
    """On 1,500 tasks arriving at once the indexed descent ends where no move or near swap improves by the
    exact walk, below greedy."""
    inst = busy_instance(3, 1500, 3)
    inst.arrival[:] = 0.0
    x0, g = greedy_assignment(inst)
    x, total, sweeps = local_search(inst, x0, swap_window=4)
    assert total == pytest.approx(simulate(inst, x), rel=1e-12) and total < g and sweeps >= 2
    prices = _indexed_prices(inst, x, np.zeros(3))
    assert prices[:, 1].min() > -1e-9 * total


@pytest.mark.parametrize("seed", range(4))
def test_rewriting_two_providers_history_equals_a_full_recompute(seed):
    """After a move or a swap the descent rewrites only the two providers' columns (`_history_of_two`): the
    stored history and the total are bit for bit a full `_history`'s."""
    from edgepoc.solvers.localsearch import _history_of_two
    rng = np.random.default_rng(seed)
    inst = busy_instance(seed, 150, 5, task_delays=bool(seed % 2))
    free0 = rng.uniform(0, 2, size=5)
    x = rng.integers(0, 5, size=150).astype(np.int8)
    completion, free_before = np.empty(150), np.empty((151, 5))
    _history(inst.arrival, inst.ready, inst.processing, x, free0, completion, free_before, 0)
    for _ in range(40):
        i = int(rng.integers(0, 140))
        a = int(x[i])
        if rng.random() < 0.5:
            b = (a + 1 + int(rng.integers(0, 4))) % 5
            x[i] = b
        else:
            j = i + 1 + int(rng.integers(0, 8))
            if x[j] == x[i]:
                continue
            b = int(x[j])
            x[i], x[j] = x[j], x[i]
        total = _history_of_two(inst.arrival, inst.ready, inst.processing, x, completion, free_before, i, a, b)
        c_ref, f_ref = np.empty(150), np.empty((151, 5))
        ref = _history(inst.arrival, inst.ready, inst.processing, x, free0, c_ref, f_ref, 0)
        assert total == ref and np.array_equal(completion, c_ref) and np.array_equal(free_before, f_ref)
