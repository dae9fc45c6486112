"""The chain's CLI end to end: init, up, submit --wait, status, contributions, verify, down."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from edgepoc.chain.abci import network


def edgepoc(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgepoc", *args], capture_output=True, text=True, timeout=timeout)


def test_network_cli_round_trip(tmp_path):
    d = str(tmp_path / "net")
    r = edgepoc("network", "init", "--nodes", "4", "--base-port", "0", "--dir", d, "-p", "timeout_propose=1.0",
                "-p", "allocator=greedy", "-p", "timeout_commit=0.05")
    assert r.returncode == 0, r.stderr
    assert edgepoc("network", "init", "--dir", d).returncode == 2  # refuses to overwrite
    try:
        r = edgepoc("network", "up", "--dir", d)
        assert r.returncode == 0, r.stderr
        inst = tmp_path / "inst.json"
        assert edgepoc("generate", "--out", str(inst), "--n-tasks", "60").returncode == 0
        r = edgepoc("submit", str(inst), "--dir", d, "--wait", "--timeout", "40")
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["submitted"] == doc["committed"] == 60 and doc["missing"] == 0
        assert "committed 60/60 tasks in blocks" in r.stderr
        r = edgepoc("submit", "--dir", d, "--count", "50", "--wait", "--timeout", "40", "--nonce", "7")
        assert json.loads(r.stdout)["committed"] == 50
        r = edgepoc("submit", "--dir", d, "--count", "50", "--nonce", "7", "--seed", "9")  # the same nonces: replays
        assert r.returncode != 0 and "replay" in r.stderr, r.stderr  # every task rejected: exit non-zero
        # --replay: an instance's tasks reach the chain at its arrival times (30 tasks over 3 s), not in one block
        doc = json.loads(inst.read_text())
        doc["tasks"] = [{**t, "arrival": 0.1 * j} for j, t in enumerate(doc["tasks"][:30])]
        paced = tmp_path / "paced.json"
        paced.write_text(json.dumps(doc))
        t0 = time.monotonic()
        r = edgepoc("submit", str(paced), "--dir", d, "--replay", "--wait", "--timeout", "40")
        took = time.monotonic() - t0
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert out["committed"] == 30 and len(out["heights"]) >= 3 and took >= 2.9, (out, took)
        assert "at the instance's arrival times (--replay)" in r.stderr
        r = edgepoc("network", "status", "--dir", d, "--json")
        rows = json.loads(r.stdout)
        assert max(row["tasks_committed"] for row in rows) == 140  # nothing committed twice
        assert len(rows) == 4 and all(row["height"] >= 1 for row in rows)
        r = edgepoc("contributions", "--dir", d, "--json")
        table = json.loads(r.stdout)["validators"]
        assert len(table) == 4 and sum(v["balance"] for v in table) > 0
        assert edgepoc("network", "stop", "node1", "--dir", d).returncode == 0
        assert "node1" not in [row["name"] for row in json.loads(edgepoc("network", "status", "--dir", d, "--json").stdout)
                               if row.get("pid")]
    finally:
        edgepoc("network", "down", "--dir", d)
    r = edgepoc("chain", "verify", "--home", f"{d}/node0")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["ok"] and rep["tasks"] == 140
    r = edgepoc("contributions", "--home", f"{d}/node0")
    assert r.returncode == 0 and "node3" in r.stdout
    assert edgepoc("chain", "verify", "--home", str(tmp_path)).returncode == 2  # no store: one-line error
    assert not network.status(tmp_path / "net")[0]["pid"]


@pytest.mark.parametrize("content, named", [
    ("{}", "nodes: expected a non-empty list"),
    ("not json", "not readable JSON"),
    ('{"nodes": [{"name": "node0"}]}', "nodes[0].api: expected a non-empty string"),
    ('{"nodes": ["node0"]}', "nodes[0]: expected an object"),
])
def test_a_damaged_network_json_is_named_in_one_line(tmp_path, content, named):
    (tmp_path / "network.json").write_text(content)
    for args in (["network", "status"], ["submit", "--count", "1"], ["contributions"], ["task", "t0"]):
        out = edgepoc(*args, "--dir", str(tmp_path))
        assert out.returncode == 2, (args, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and named in lines[0] and "network.json" in lines[0], (args, out.stderr)


def test_demands_outside_the_bounds_are_named_with_their_values_not_rounded_to_zero(tmp_path):
    """The pre-check rounded to 6 decimals: a task of demand 6e-9, refused for being under 1e-4, was shown as
    [0.0, 0.0], and the user could not see why."""
    import numpy as np

    from edgepoc.cli.chain import _check_demand_bounds
    from edgepoc.errors import InputError
    from edgepoc.game.instance import Instance

    inst = Instance.create([[1.0, 1.0], [2.0, 2.0]], [0.1, 0.2], [0.0, 1.0], np.array([[6.33e-9, 0.5], [0.2, 0.3]]))
    with pytest.raises(InputError) as err:
        _check_demand_bounds(tmp_path / "i.json", inst, [1e-4, 1000])
    assert "1 of 2 tasks have demands outside this network's bounds [0.0001, 1000]" in str(err.value)
    assert "tasks[0] (t0) [6.33e-09, 0.5];" in str(err.value), str(err.value)
    _check_demand_bounds(tmp_path / "i.json", inst, [1e-9, 1000])  # within the bounds: no error
