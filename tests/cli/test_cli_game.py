"""The CLI contract of SPEC §2, run as a user runs it: a real subprocess."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli


def test_generate_solve_evaluate(tmp_path):
    inst = tmp_path / "inst.json"
    r = run_cli("generate", "--preset", "paper", "--seed", "3", "--n-tasks", "200", "--out", str(inst))
    assert r.returncode == 0, r.stderr
    totals = {}
    for method in ("random", "round-robin", "greedy"):
        r = run_cli("solve", str(inst), "--method", method, "--out", str(tmp_path / f"{method}.json"))
        assert r.returncode == 0, r.stderr
        assert len(r.stdout.strip().splitlines()) == 1 and r.stdout.startswith(f"wrote {tmp_path}")  # a summary
        doc = json.loads((tmp_path / f"{method}.json").read_text())
        assert doc["format"] == "edgepoc-allocation/1" and len(doc["assignment"]) == 200
        totals[method] = doc["total_latency"]
    assert totals["greedy"] < totals["round-robin"]
    r = run_cli("evaluate", str(inst), str(tmp_path / "greedy.json"))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["total_latency"] == totals["greedy"]
    r = run_cli("evaluate", str(inst), str(tmp_path / "greedy.json"), "--table")
    assert r.returncode == 0 and "total_latency" in r.stdout


def test_generate_many_to_folder(tmp_path):
    r = run_cli("generate", "--preset", "varied", "--count", "3", "--out", str(tmp_path / "set"))
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "set").glob("*.json"))) == 3


@pytest.mark.parametrize("args, message", [
    (["solve", "{inst}", "--method", "magic"], "unknown method 'magic'; known: random, round-robin, greedy"),
    (["solve", "{dir}/missing.json"], "no such file"),
    (["evaluate", "{inst}", "{bad_alloc}"], "assignment[0]: provider index 7 out of range"),
    (["solve", "{bad_inst}"], "tasks[1].arrival"),
    (["generate", "--preset", "nope", "--out", "{dir}/x.json"], "unknown preset"),
    # Click's usage errors took three lines (usage, a hint, the error)
    (["solve", "{inst}", "--seconds", "abc"], "error: Invalid value for '--seconds'"),
    (["solve"], "error: Missing argument 'instance' (see `edgepoc solve --help`)"),
    (["sovle", "{inst}"], "error: No such command 'sovle'"),
    # an option the method does not read was ignored silently; --out onto the instance replaced it
    (["solve", "{inst}", "--method", "greedy", "--model", "{inst}"], "--model: method greedy uses no model"),
    (["solve", "{inst}", "--method", "random", "--param", "generations=9"], "--param: method random takes no settings"),
    (["solve", "{inst}", "--out", "{inst}"], "is the instance file itself"),
])
def test_bad_input_is_one_line_and_non_zero(tmp_path, args, message):
    inst = tmp_path / "inst.json"
    run_cli("generate", "--n-tasks", "5", "--out", str(inst))
    doc = json.loads(inst.read_text())
    bad_alloc = tmp_path / "bad_alloc.json"
    bad_alloc.write_text(json.dumps({"format": "edgepoc-allocation/1", "assignment": [7, 0, 0, 0, 0]}))
    doc["tasks"][1]["arrival"] = float("nan")
    bad_inst = tmp_path / "bad_inst.json"
    bad_inst.write_text(json.dumps(doc).replace("NaN", "-3"))
    argv = [a.format(inst=inst, dir=tmp_path, bad_alloc=bad_alloc, bad_inst=bad_inst) for a in args]
    r = run_cli(*argv)
    assert r.returncode != 0
    assert message in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_every_method_allocates_an_empty_instance(tmp_path):
    """An instance with no tasks is valid; every method (learned ones too) answers an empty allocation."""
    from edgepoc.solvers.registry import METHODS

    inst = tmp_path / "empty.json"
    inst.write_text(json.dumps({"format": "edgepoc-instance/1", "name": "empty", "tasks": [],
                                "providers": [{"id": "p0", "capacity": [1.0, 1.0], "delay": 0.0},
                                              {"id": "p1", "capacity": [2.0, 1.0], "delay": 0.1}]}))
    for method in METHODS:
        r = run_cli("solve", str(inst), "--method", method)
        assert r.returncode == 0, (method, r.stderr)
        doc = json.loads(r.stdout)
        assert doc["assignment"] == [] and doc["total_latency"] == 0.0
