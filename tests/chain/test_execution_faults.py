"""Providers that misbehave at execution, on a real 4-node network (issue 17), with test builds of the
worker: node1 returns wrong results (`wrong`), node2 runs every task 0.4 s late (`slow:0.4`).

Audits (a third of the tasks here) catch and penalise the wrong results; the slow provider's measured
capacity, deadlines and contribution take work away from it within a bounded number of blocks.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from edgepoc.chain.abci.wire import ModuleTx, TaskBatch, Work
from edgepoc.execution import load_workload
from tests.chain.cometnet import CometNet

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    n = CometNet(tmp_path_factory.mktemp("faults") / "net",
                 params={"audit_per_million": 330_000, "min_receipts": 5, "receipt_grace": 2.0,
                         "overdue_cooldown": 10, "backlog_allowance": 0.5})
    for i, fault in ((1, "wrong"), (2, "slow:0.4")):
        cfg_path = n.home(i) / "app.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["worker_fault"] = fault
        cfg_path.write_text(json.dumps(cfg))
    try:
        n.up()
        yield n
    finally:
        n.down()


def test_wrong_results_are_caught_and_a_slow_provider_loses_work(net):
    key = net.client_key
    m = ModuleTx(net.chain_id, key.public_hex, load_workload("primes")).signed(key)
    assert net.post(0, "/modules", {"module": {**m.body(), "sig": m.sig}})["accepted"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            net.get(0, f"/modules/{m.hash}")
            break
        except Exception:
            time.sleep(0.2)
    work = Work(m.hash, "count", [2000], 2_000_000, 1 << 20)
    ids: list[str] = []
    nonce = 10**9
    for _ in range(20):  # 20 rounds of 12 tasks, about 0.5 s apart
        b = TaskBatch(net.chain_id, key.public_hex, [(nonce + i, []) for i in range(12)], work=[work] * 12).signed(key)
        nonce += 12
        out = net.post(0, "/tasks", {"tasks": [b.to_dict()]})
        ids.extend(out["ids"])
        time.sleep(0.5)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        docs = net.post(0, "/tasks/status", {"ids": ids})["tasks"]
        if all(d.get("status") == "executed" for d in docs.values()):
            break
        time.sleep(0.5)
    assert all(d.get("status") == "executed" for d in docs.values()), "every task ends with an accepted result"
    contrib = {v["name"]: v for v in net.get(0, "/contributions")["validators"]}
    # the lying worker: caught by audits and penalised like evidence
    assert contrib["node1"]["audits_failed"] >= 1 and contrib["node1"]["penalties"] >= 1, contrib["node1"]
    assert all(contrib[n]["audits_failed"] == 0 for n in ("node0", "node3")), contrib
    overturned = [d for d in docs.values() if (d.get("audit") or {}).get("overturned")]
    assert all(d["result"] == 303 for d in overturned), "an overturned result is the majority's (primes below 2000)"
    # the slow worker: its tasks go late, are taken away, and its measured capacity and power fall
    slow = contrib["node2"]
    assert slow["overdue"] >= 1 or slow["capacity_factor"] < 1.0, slow
    assert slow["power"] <= min(contrib[n]["power"] for n in ("node0", "node3")), contrib


def test_a_worker_that_keeps_dying_is_restarted_then_left_down_with_its_reason(tmp_path, caplog):
    """The supervisor's limit: a worker that cannot start (here: no app.json) is restarted 5 times within a
    minute, then left down with one logged reason, instead of a restart loop burning a core."""
    import logging
    import time

    from edgepoc.chain.abci.node import WorkerSupervisor

    with caplog.at_level(logging.WARNING, logger="edgepoc.node"):
        sup = WorkerSupervisor(tmp_path)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not sup.left_down:
            time.sleep(0.2)
        sup.stop()
    assert sup.left_down and sup.restarts == WorkerSupervisor.MAX_RESTARTS
    assert sup.describe() == {"running": False, "pid": None, "restarts": 5, "stalls": 0, "left_down": True,
                              "quiet_seconds": None}
    assert "app.json does not exist" in (tmp_path / "worker.log").read_text()
    assert "exited 6 times within a minute (last code 2); left down" in caplog.text


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def test_a_hung_worker_is_killed_and_restarted_but_a_waiting_one_is_left_alone(tmp_path, caplog):
    """A worker that stops making progress (here SIGSTOP; a deadlock reads the same) was shown as "up" forever
    while the chain took its work away. Its heartbeat stops, so the node kills and restarts it after
    `worker_stall_seconds`; a worker that is merely waiting (for its node's store, here) keeps beating and stays."""
    import logging
    import os
    import signal
    import subprocess
    import sys

    from edgepoc.chain.abci.node import WorkerSupervisor
    from edgepoc.chain.abci.worker import HEARTBEAT_FILE

    # 10 s: with two test workers and a network beside it, a beating worker went 3 s, then (in the next CI run)
    # 5 s without a beat seen; the node's own limit is 60 s
    LIMIT = 10.0
    folder = tmp_path / "net"
    subprocess.run([sys.executable, "-m", "edgepoc", "network", "init", "--nodes", "1", "--dir", str(folder)],
                   check=True, capture_output=True, timeout=120)
    home = folder / "node0"
    with caplog.at_level(logging.WARNING, logger="edgepoc.node"):
        sup = WorkerSupervisor(home, stall_seconds=LIMIT)
        try:
            first = sup.proc.pid
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not (home / HEARTBEAT_FILE).exists():
                time.sleep(0.1)
            assert (home / HEARTBEAT_FILE).exists(), (home / "worker.log").read_text()
            time.sleep(2 * LIMIT + 1)  # more than twice the limit: a beating worker is not touched
            assert sup.restarts == 0 and sup.stalls == 0 and sup.proc.pid == first and _alive(first)
            assert sup.describe()["quiet_seconds"] < LIMIT
            stopped_at = time.monotonic()
            os.kill(first, signal.SIGSTOP)
            while time.monotonic() < stopped_at + 30 and sup.restarts == 0:
                time.sleep(0.1)
            waited = time.monotonic() - stopped_at
            assert sup.stalls == 1 and sup.restarts == 1, sup.describe()
            assert LIMIT <= waited < LIMIT + 5.0, waited  # the limit, then a poll and the second's pause before a respawn
            assert not _alive(first) and sup.proc.pid != first and _alive(sup.proc.pid)
            d = sup.describe()
            assert d["running"] and d["stalls"] == 1 and d["restarts"] == 1 and not d["left_down"], d
        finally:
            sup.stop()
    # the quiet time it reports is what it saw at its poll (once a second) after the limit: LIMIT or one more, whole
    # seconds (a CI run saw 4 at a limit of 3; the literal "3 s" failed it)
    said = re.search(rf"the worker \(pid {first}\) has made no progress for (\d+) s \(hung or stopped\); killing it",
                     caplog.text)
    assert said and LIMIT <= int(said.group(1)) < LIMIT + 5, caplog.text
    assert "the worker exited with code -9; restarting it" in caplog.text


def test_a_long_task_keeps_the_heartbeat_going_and_a_stuck_loop_does_not(tmp_path):
    """The heartbeat's two sources: a task in progress beats from a thread (wasmtime releases the GIL), so a
    long task is never taken for a hang; without a task and without the loop's beats, the mtime stands still."""
    from edgepoc.chain.abci.worker import BEAT, Heartbeat
    from edgepoc.execution import compile_module, run_task, workload_path

    hb = Heartbeat(tmp_path / "hb")
    hb.beat()
    start = (tmp_path / "hb").stat().st_mtime
    info = compile_module(workload_path("primes").read_bytes(), max_bytes=1 << 20)
    hb.task(True)
    t0 = time.monotonic()
    n = 2_000_000
    while time.monotonic() - t0 < 3 * BEAT:  # a task of a few seconds, whatever this machine's speed
        res = run_task(info, "count", [n], fuel=10**12, memory_bytes=1 << 20)
        assert res.status == "ok"
        n *= 2
    hb.task(False)
    during = (tmp_path / "hb").stat().st_mtime
    assert during - start >= 2 * BEAT * 0.9, (start, during)
    time.sleep(3 * BEAT)
    assert (tmp_path / "hb").stat().st_mtime == during  # nothing beats: the supervisor would see a hang


def test_status_shows_a_quiet_or_hung_worker_and_app_json_bounds_the_limit(tmp_path):
    from edgepoc.chain.abci.node import AppConfig
    from edgepoc.cli.chain import _worker_cell
    from edgepoc.errors import InputError

    up = {"running": True, "pid": 7, "restarts": 0, "stalls": 0, "left_down": False, "quiet_seconds": 0.4}
    assert _worker_cell(up) == "up"
    assert _worker_cell({**up, "restarts": 2, "stalls": 1}) == "up (2 restarts, 1 hung)"
    assert "quiet 25 s" in _worker_cell({**up, "quiet_seconds": 25.0})
    assert _worker_cell({"running": True, "pid": 7, "restarts": 1, "left_down": False}) == "up (1 restart)"  # older nodes

    base = {"name": "node0", "host": "127.0.0.1", "abci_port": 1, "api_port": 2, "rpc_port": 3, "p2p_port": 4}
    (tmp_path / "app.json").write_text(json.dumps(base))
    assert AppConfig.load(tmp_path).worker_stall_seconds == 60.0
    for bad in (0, -5, "60", True, None, float("nan")):
        (tmp_path / "app.json").write_text(json.dumps({**base, "worker_stall_seconds": bad}))
        with pytest.raises(InputError, match="worker_stall_seconds must be a number of seconds >= 1"):
            AppConfig.load(tmp_path)
