"""Providers that misbehave at execution, on a real 4-node network (issue 17), with test builds of the
worker: node1 returns wrong results (`wrong`), node2 runs every task 0.4 s late (`slow:0.4`).

Audits (a third of the tasks here) catch and penalise the wrong results; the slow provider's measured
capacity, deadlines and contribution take work away from it within a bounded number of blocks.
"""

from __future__ import annotations

import json
import time

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
    h0 = net.status(0)["height"]
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
    assert sup.describe() == {"running": False, "pid": None, "restarts": 5, "left_down": True}
    assert "app.json does not exist" in (tmp_path / "worker.log").read_text()
    assert "exited 6 times within a minute (last code 2); left down" in caplog.text
