"""Tasks that really run (issue 17), on a real 4-node CometBFT network with real wasmtime workers.

A client puts a module on chain, submits tasks that call it, and gets every result back checked
against its receipt; a provider SIGKILLed mid-stream stops getting tasks, its work is reassigned and
finishes elsewhere; hostile modules are refused with a reason while the chain keeps committing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgepoc.chain.abci import network
from edgepoc.chain.abci.verify import verify_app_chain
from edgepoc.execution import workload_path
from tests.chain.cometnet import CometNet

MODULES = Path(__file__).parent.parent / "execution" / "modules"


def edgepoc(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgepoc.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout)


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    n = CometNet(tmp_path_factory.mktemp("exec") / "net", params={"receipt_grace": 3.0})
    try:
        n.up()
        yield n
    finally:
        n.down()


@pytest.fixture(scope="module")
def primes(net):
    res = edgepoc("module", "add", str(workload_path("primes")), "--dir", str(net.folder))
    assert res.returncode == 0, res.stderr
    doc = last_json(res.stdout)
    assert len(doc["module"]) == 64 and doc["height"] >= 1 and "count" in doc["functions"]
    return doc["module"]


def test_tasks_run_on_the_providers_and_every_result_checks_against_its_receipt(net, primes, tmp_path):
    out = tmp_path / "results"
    res = edgepoc("submit", "--dir", str(net.folder), "--module", primes, "--function", "count", "--args", "10000",
                  "--fuel", "5000000", "--count", "200", "--results", str(out), "--timeout", "120")
    assert res.returncode == 0, res.stderr[-2000:]
    doc = last_json(res.stdout)
    assert doc["executed"] == 200 and doc["verified"] == 200 and doc["failed"] == 0, doc
    files = sorted(out.glob("*.json"))
    assert len(files) == 200
    one = json.loads(files[0].read_text())
    assert one["result"] == 1229 and one["status"] == "ok" and one["measured_latency"] > 0
    assert 0 < one["fuel_used"] <= 5_000_000  # the receipt's metered fuel, within what the task declared
    assert len({json.loads(f.read_text())["provider"] for f in files}) >= 2, "work spread over providers"
    t = edgepoc("task", one["id"], "--dir", str(net.folder))
    assert t.returncode == 0, t.stderr
    st = last_json(t.stdout)
    assert st["status"] == "executed" and st["result"] == 1229 and st["measured_latency"] > 0
    assert st["provider"] == one["provider"] and net.doc["nodes"][st["provider_index"]]["name"] == one["provider"]
    # a task that needs more fuel than it declared stops honestly
    res = edgepoc("submit", "--dir", str(net.folder), "--module", primes, "--function", "count", "--args", "100000",
                  "--fuel", "100000", "--count", "3", "--results", str(tmp_path / "oof"), "--timeout", "60")
    assert res.returncode == 0, res.stderr[-2000:]
    assert {json.loads(f.read_text())["status"] for f in (tmp_path / "oof").glob("*.json")} == {"out_of_fuel"}


def test_hostile_modules_and_unknown_modules_are_refused_with_a_reason(net, primes):
    for name, why in [("wasi_import.wat", "import"), ("host_import.wat", "import")]:
        path = MODULES / name
        if not path.exists():
            pytest.skip(f"{path} missing")
        res = edgepoc("module", "add", str(path), "--dir", str(net.folder), timeout=60)
        assert res.returncode != 0 and why in res.stderr.lower(), res.stderr
    res = edgepoc("submit", "--dir", str(net.folder), "--module", "ab" * 32, "--function", "count", "--args", "1",
                  "--count", "1", "--wait", timeout=60)
    assert res.returncode != 0 and "unknown module" in res.stderr, res.stderr
    res = edgepoc("submit", "--dir", str(net.folder), "--module", primes, "--function", "nope", "--count", "1",
                  timeout=60)
    assert "not exported" in res.stderr, res.stderr
    # an i32 argument past 2^32 - 1: it was committed and then killed every worker that took it
    res = edgepoc("submit", "--dir", str(net.folder), "--module", primes, "--function", "count", "--args",
                  str(1 << 32), "--count", "1", timeout=60)
    assert res.returncode != 0 and "argument 0 of 'count' (i32) is out of range: 4294967296" in res.stderr, res.stderr
    # a doubled comma is a typo, not fewer arguments: "1,,2" was sent as (1, 2)
    res = edgepoc("submit", "--dir", str(net.folder), "--module", primes, "--function", "count", "--args", "10,,1",
                  "--count", "1", timeout=60)
    assert res.returncode == 2 and res.stderr.strip() == ("error: --args: an empty value at position 2 of '10,,1'; "
                                                          "expected comma-separated integers"), res.stderr


def test_a_module_over_the_chains_size_limit_is_named_as_such(net, tmp_path):
    """Over CometBFT's 1 MiB transaction limit the refusal read "Internal error Tx too large"."""
    big = tmp_path / "big.wat"
    big.write_text('(module (memory 16) (data (i32.const 0) "' + "A" * 800_000 + '") (func (export "x")))')
    res = edgepoc("module", "add", str(big), "--dir", str(net.folder), timeout=60)
    assert res.returncode != 0 and "module is too large: 800" in res.stderr and "max_module_bytes" in res.stderr, \
        res.stderr


def _worker_pids(home: Path) -> list[int]:
    """The pids of `home`'s worker processes once they run the worker: `python -m edgepoc.chain.abci.worker`, not
    the short-lived `node._tied` trampoline that execs it (same pid; while it execs, its cmdline reads empty)."""
    out = []
    for p in Path("/proc").iterdir():
        try:
            cmd = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd[1:3] == [b"-m", b"edgepoc.chain.abci.worker"] and str(home).encode() in cmd:
            out.append(int(p.name))
    return out


def test_a_killed_worker_is_restarted_by_its_node_and_its_provider_keeps_executing(net, primes, tmp_path):
    """The worker alone dies (OOM killer, a crash): its node, still voting, keeps getting tasks, so it must
    bring the worker back; the new one resumes the open work from the committed ledger."""
    victim = 1
    home = net.folder / net.doc["nodes"][victim]["home"]
    name = net.doc["nodes"][victim]["name"]
    before = _worker_pids(home)
    assert len(before) == 1, before
    os.kill(before[0], signal.SIGKILL)
    deadline = time.monotonic() + 30
    after: list[int] = []
    while time.monotonic() < deadline and not after:  # the scan that finds it is the one asserted on: a second
        time.sleep(0.2)                                  # scan could read the new process mid-exec
        after = [p for p in _worker_pids(home) if p != before[0]]
    assert len(after) == 1, f"the node did not restart its worker: {after}"
    assert "the worker exited with code -9; restarting it" in (home / "node.log").read_text()
    w = net.status(victim)["worker"]
    assert w["running"] and w["pid"] == after[0] and w["restarts"] == 1 and not w["left_down"], w
    st = edgepoc("network", "status", "--dir", str(net.folder), "--json")
    assert st.returncode == 0, st.stderr
    rows = {r["name"]: r for r in json.loads(st.stdout.strip().splitlines()[-1])}
    assert rows[name]["worker"]["restarts"] == 1 and rows["node0"]["worker"]["restarts"] == 0
    out = tmp_path / "results"
    res = edgepoc("submit", "--dir", str(net.folder), "--module", primes, "--function", "count", "--args", "1000",
                  "--fuel", "1000000", "--count", "200", "--results", str(out), "--timeout", "120")
    assert res.returncode == 0, res.stderr[-2000:]
    doc = last_json(res.stdout)
    assert doc["executed"] == 200 and doc["verified"] == 200, doc
    ran = [json.loads(f.read_text())["provider"] for f in out.glob("*.json")]
    assert ran.count(name) > 0, "the provider whose worker was restarted executed nothing"


def test_a_killed_provider_gets_no_new_work_and_its_work_finishes_elsewhere(net, primes, tmp_path):
    from edgepoc.chain.abci.client import fetch_results
    from edgepoc.client import EdgepocClient

    victim = 2
    name = net.doc["nodes"][victim]["name"]
    before = tmp_path / "before"
    res = edgepoc("submit", "--dir", str(net.folder), "--module", primes, "--function", "count", "--args", "1000",
                  "--fuel", "1000000", "--count", "60", "--results", str(before), "--timeout", "120")
    assert res.returncode == 0 and last_json(res.stdout)["verified"] == 60, res.stderr[-2000:]
    ids = [f.stem for f in before.glob("*.json")]
    network.stop_member(net.folder, name, kill=True)
    # its results, executed and on chain before it died, are not "failed": the provider's copy cannot be compared
    # now, so they are unverified, as long as the receipt's own result matches its hash
    urls = {n["name"]: n["api"] for n in net.doc["nodes"]}
    client = EdgepocClient([net.doc["nodes"][0]["api"]])
    done = client.tasks(ids)
    theirs = sorted(t for t, d in done.items() if d["provider_name"] == name)
    assert theirs, "the victim ran none of the 60 tasks"
    check = fetch_results(done, urls, client)
    assert sorted(check.unverified) == theirs and not check.failed and len(check.verified) == 60 - len(theirs)
    forged = {theirs[0]: {**done[theirs[0]], "result": 7}}  # a receipt whose result is not the one it hashed
    assert list(fetch_results(forged, urls, client).failed) == theirs[:1]
    client.close()
    stopped = net.status(0)["height"]
    try:
        res = edgepoc("submit", "--dir", str(net.folder), "--node", net.doc["nodes"][0]["api"], "--module", primes,
                      "--function", "count", "--args", "1000", "--fuel", "1000000", "--count", "300", "--rate", "100",
                      "--results", str(tmp_path / "r"), "--timeout", "120")
        assert res.returncode == 0, res.stderr[-2000:]
        doc = last_json(res.stdout)
        assert doc["executed"] == 300 and doc["verified"] == 300, doc
        late = []
        for f in (tmp_path / "r").glob("*.json"):
            d = json.loads(f.read_text())
            assert d["provider"] != name, "an executed task's accepted result came from the dead provider"
        # tasks given to the dead provider after it stopped signing: at most a few heights' worth
        for h in range(stopped + 1, net.status(0)["height"] + 1):
            blk = net.block(0, h)["block"]
            alloc = blk.get("allocation") or {}
            if name in (alloc.get("providers") or []) and h > stopped + 3:
                late.append(h)
        assert not late, f"tasks assigned to {name} at heights {late} after it stopped at {stopped}"
    finally:
        network.start_member(net.folder, name)
    net.wait_height([0, 1, 2, 3], net.status(0)["height"] + 2, timeout=120)
    report = verify_app_chain(net.home(0))
    assert report.ok, report.problems


def test_ctrl_c_while_waiting_for_results_keeps_what_ran(net, primes, tmp_path):
    """Ctrl-C after the tasks committed, while `submit --results` waits for them to run: before, "interrupted"
    and nothing else; the results that had come were not written. Now the report covers what ran so far, its
    results are written and checked, and one line says the rest run without the command."""
    import re

    from tests.conftest import interrupt_cli

    out = tmp_path / "results"
    before = net.status(0)["tasks_committed"]
    r = interrupt_cli("submit", "--dir", str(net.folder), "--module", primes, "--function", "count", "--args",
                      "1000000", "--fuel", "400000000", "--count", "60", "--results", str(out), "--timeout", "300",
                      when=lambda: net.status(0)["tasks_committed"] >= before + 60, settle=2.0)
    assert r.returncode == 130, r.stderr[-2000:]
    m = re.fullmatch(r"interrupted while waiting for results: (\d+) of 60 tasks executed so far \(their results are "
                     r"in (.+)/\); the others are committed and run without this command \(`edgepoc task ID` gives "
                     r"each one's result\)", r.stderr.strip().splitlines()[-1])
    assert m and m.group(2) == str(out), r.stderr[-2000:]
    doc = last_json(r.stdout)
    ran = int(m.group(1))
    assert doc["submitted"] == 60 and doc["committed"] == 60 and doc["executed"] == ran == doc["verified"], doc
    assert len(list(out.glob("*.json"))) == ran
