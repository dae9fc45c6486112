"""Honest budgets (issue 18, item 6): compiling is never inside a time budget, so a cold Numba cache gives
the same result as a warm one; a method that could not use its budget says so (`budget_note`, a warning
on stderr); a budget is not overrun silently."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from edgepoc.game.files import write_instance
from edgepoc.game.generators import generate
from edgepoc.solvers import registry
from edgepoc.solvers.registry import SolveOptions, solve
from tests.conftest import run_cli

COLD = textwrap.dedent("""
    import json, sys
    from edgepoc.game.files import read_instance
    from edgepoc.solvers.registry import SolveOptions, solve
    inst = read_instance(sys.argv[1])
    ga = solve(inst, "ga", SolveOptions(seed=5, seconds=1.5, params={"generations": 3}))
    search = solve(inst, "search", SolveOptions(seed=5, params={"budget_ms": 300}))
    print(json.dumps({"ga": ga.assignment.tolist(), "ga_extra": {k: v for k, v in ga.extra.items() if k != "settings"},
                      "search_extra": search.extra}))
""")


def test_a_cold_numba_cache_gives_the_warm_result(tmp_path):
    """The GA at 1.5 s and 3 generations: on a cold cache compiling alone takes longer than the budget, and
    before the fix the run stopped at 0 generations with a worse answer."""
    inst = generate("paper", seed=21, count=1, n_tasks=200)[0]
    path = tmp_path / "x.json"
    write_instance(path, inst)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}  # empty: everything compiles
    done = subprocess.run([sys.executable, "-c", COLD, str(path)], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    cold = json.loads(done.stdout.strip().splitlines()[-1])
    assert any((tmp_path / "numba-cache").rglob("*.nbi")), "the run did not use the fresh cache"
    assert cold["ga_extra"]["generations"] == 3 and "budget_note" not in cold["ga_extra"]
    assert cold["ga_extra"]["warm_up_seconds"] > 0.05  # the compile was paid, outside the budget
    warm = solve(inst, "ga", SolveOptions(seed=5, seconds=1.5, params={"generations": 3}))
    assert cold["ga"] == warm.assignment.tolist()
    assert cold["search_extra"]["descents"] > 0 and "budget_note" not in cold["search_extra"]


def test_ga_that_cannot_use_its_budget_says_so_on_stderr_and_in_the_json(tmp_path):
    inst = generate("paper", seed=22, count=1, n_tasks=2000, load=1.2)[0]
    path = tmp_path / "big.json"
    write_instance(path, inst)
    r = run_cli("solve", str(path), "--method", "ga", "--seconds", "0.001")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["generations"] == 0 and "ended before the first generation" in doc["budget_note"]
    assert {"format", "instance", "method", "assignment", "total_latency", "seconds"} <= set(doc)  # SPEC §2
    assert "warning: ga: the time budget of 0.001 s ended before the first generation" in r.stderr
    assert doc["seconds"] < 0.5, "the initial local search stops at the deadline too"


def test_a_search_that_never_started_says_so():
    inst = generate("paper", seed=23, count=1, n_tasks=1000)[0]
    res = solve(inst, "search", SolveOptions(params={"budget_ms": 1e-6}))
    assert res.extra["descents"] == 0 and "ended before the first descent" in res.extra["budget_note"]
    res = solve(inst, "student", SolveOptions(seconds=1e-9))
    assert "ended before the first descent" in res.extra["budget_note"]
    ok = solve(inst, "search", SolveOptions(params={"sweeps": 5}))  # a work budget: no clock, no note
    assert "budget_note" not in ok.extra


def test_a_work_budget_ignores_the_cache_state():
    inst = generate("paper", seed=24, count=1, n_tasks=300)[0]
    a = solve(inst, "ga", SolveOptions(seed=1, params={"generations": 4}))
    b = solve(inst, "ga", SolveOptions(seed=1, params={"generations": 4}))
    assert np.array_equal(a.assignment, b.assignment) and "budget_note" not in a.extra


def _slow(instance, options):
    time.sleep(0.3)
    return np.zeros(instance.n_tasks, dtype=np.int64), {}


def _no_warm_up():
    pass


def test_an_overrun_budget_is_reported(monkeypatch, caplog):
    monkeypatch.setitem(registry.METHODS, "slow", (f"{__name__}:_slow", "sleeps"))
    monkeypatch.setitem(registry.WARM_UPS, "slow", f"{__name__}:_no_warm_up")
    inst = generate("paper", seed=25, count=1, n_tasks=20)[0]
    with caplog.at_level("WARNING", logger="edgepoc.solvers"):
        res = solve(inst, "slow", SolveOptions(seconds=0.05))
    assert res.extra["budget_note"].startswith("slow: ran 0.") and "on a time budget of 0.05 s" in res.extra["budget_note"]
    assert "warning: slow: ran" in caplog.text
    assert "budget_note" not in solve(inst, "slow", SolveOptions(seconds=5.0)).extra
    # on a CPU-time budget, sleeping (like waiting for a loaded machine's cores) is not an overrun
    assert "budget_note" not in solve(inst, "slow", SolveOptions(seconds=0.05, params={"clock": "cpu"})).extra


@pytest.mark.parametrize("method", sorted(registry.TIME_BUDGET_METHODS))
def test_every_time_budget_method_has_a_warm_up(method):
    registry._import(registry.WARM_UPS[method])()


def test_a_negative_seed_is_named_not_an_internal_error():
    """numpy refuses negative seeds deep inside a method; `solve` names the field first, for every method."""
    from edgepoc.errors import InputError
    inst = generate("paper", seed=0, n_tasks=20)[0]
    for method in ("random", "ga", "search"):
        with pytest.raises(InputError, match="seed: must be an integer >= 0, got -1"):
            solve(inst, method, SolveOptions(seed=-1))
