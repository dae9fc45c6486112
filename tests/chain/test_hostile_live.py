"""Hostile bytes and crashes against a real 4-node CometBFT network (issue 20).

Each critical input is sent straight to CometBFT's RPC (around the app's API, so CheckTx alone must
stop it); after all of them ordinary tasks still commit and every node's chain verifies. Then the
application process alone is SIGKILLed again and again under load: cometbft must die with it (no
orphan holding the ports), and the node comes back each time.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from edgepoc.chain.abci import network
from edgepoc.chain.abci.verify import verify_app_chain
from edgepoc.chain.abci.wire import TaskBatch
from tests.chain.cometnet import CometNet


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    n = CometNet(tmp_path_factory.mktemp("hostile") / "net")
    try:
        n.up()
        yield n
    finally:
        n.down()


def test_one_hostile_transaction_never_stops_the_chain(net):
    key, cid = net.client_key, net.chain_id
    good = TaskBatch(cid, key.public_hex, [(10**13 + i, [0.1, 0.1]) for i in range(3)]).signed(key)
    text = json.dumps(good.to_dict(), sort_keys=True, separators=(",", ":"))
    attacks = {
        "utf-16": text.encode("utf-16"),
        "utf-32": text.encode("utf-32"),
        "padded": good.tx() + b" " * (1 << 20),
        "nested": b"[" * 50_000 + b"]" * 50_000,
        "cesu-8 surrogate": text.replace('"tasks"', '"t\\ud800asks"').encode(),
        "huge number": text.replace('"nonce":10000000000000', '"nonce":' + "9" * 5000, 1).encode(),
    }
    h0 = net.status(0)["height"]
    for name, tx in attacks.items():
        res = net.broadcast(1, tx)
        assert res["code"] != 0, (name, res)
    assert net.broadcast(2, good.tx())["code"] == 0, "the canonical form of the same batch is accepted"
    ids, res = net.submit_and_wait(0, 300, timeout=90)
    assert not res.missing, "ordinary tasks still commit after every attack"
    hs = net.wait_height([0, 1, 2, 3], h0 + 3, timeout=60)
    assert min(hs.values()) >= h0 + 3, hs
    for i in range(4):
        report = verify_app_chain(net.home(i))
        assert report.ok, (i, report.problems)


def _pid(path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


@pytest.mark.slow
def test_app_only_sigkill_under_load_leaves_no_orphan_and_the_node_comes_back(net):
    rounds = int(os.environ.get("EDGEPOC_KILL_ROUNDS", "5"))
    home = net.home(3)
    for r in range(rounds):
        ids, res = net.submit_and_wait(0, 100, timeout=90)
        assert not res.missing
        app_pid, comet_pid = _pid(home / "node.pid"), _pid(home / "cometbft.pid")
        assert _alive(app_pid) and _alive(comet_pid), f"round {r}: node3 not running"
        os.kill(app_pid, signal.SIGKILL)  # the application only: its cometbft child must not outlive it
        deadline = time.monotonic() + 15
        while _alive(comet_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(comet_pid), f"round {r}: cometbft {comet_pid} orphaned after its app was killed"
        network.start_member(net.folder, "node3")
        target = net.status(0)["height"]
        assert net.wait_height([3], target, timeout=90)[3] >= target, f"round {r}: node3 did not catch up"
    ids, res = net.submit_and_wait(0, 100, timeout=90, poll_node=3)
    assert not res.missing, "the restarted node has every task committed since"
    report = verify_app_chain(home)
    assert report.ok, report.problems
