"""End-to-end fault tests: real node processes on 127.0.0.1 (SPEC §7, issue 7's fault list).

Each test brings up its own 4-node testnet on free ports and always takes it down (finally).
"""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from edgepoc.chain.crypto import SigningKey, canonical
from edgepoc.chain.transport import encode_frame
from edgepoc.chain.verify import verify_chain
from tests.chain.netutil import Testnet, send_raw


@pytest.fixture
def honest_net(tmp_path):
    net = Testnet(tmp_path / "net")
    try:
        net.up()
        yield net
    finally:
        net.down()


def _same_blocks(net: Testnet, nodes, upto: int) -> None:
    """No two nodes hold different blocks at one height."""
    ref = net.block_hashes(nodes[0], upto)
    for i in nodes[1:]:
        assert net.block_hashes(i, upto) == ref, f"node{i} diverges from node{nodes[0]}"


def test_crash_restart_bad_messages_and_no_lost_task(honest_net):
    net = honest_net
    all_ids = []
    ids, res = net.submit_and_wait(0, 300, poll_node=1)
    assert not res.missing
    all_ids += ids

    # Bad messages to node0: wrong chain id, bad signature, unknown sender, oversized, malformed; it stays up.
    good_key = SigningKey.load(net.folder / "node1" / "node_key.json")
    port = net.peer_port(0)
    send_raw(port, encode_frame(good_key, "other-chain", "status", {"height": 1})[4:])
    frame = bytearray(encode_frame(good_key, net.chain_id, "status", {"height": 1})[4:])
    frame[-3] ^= 1  # body no longer matches what was signed
    send_raw(port, bytes(frame))
    send_raw(port, encode_frame(SigningKey.generate(), net.chain_id, "status", {"height": 1})[4:])
    send_raw(port, b"x" * 16, length=1 << 30)
    send_raw(port, b"{not json\n]]")
    send_raw(port, encode_frame(good_key, net.chain_id, "vote", {"height": "high"})[4:])
    send_raw(port, encode_frame(good_key, net.chain_id, "proposal", {"height": 99, "round": 0})[4:])
    c = net.api(0)
    status, _ = c.request("POST", "/tasks", {"tasks": [{"garbage": True}]})
    assert status == 200  # rejected inside, node fine
    assert c.request("POST", "/tasks", None)[0] == 400
    c.close()
    log = net.log(0)
    for needle in ("wrong chain id", "does not match", "unknown sender", "over the", "header is not JSON", "dropped vote",
                   "dropped proposal"):
        assert needle in log, needle

    # Crash node2 (SIGKILL): the other three keep committing.
    from edgepoc.chain import network
    h_before = net.status(0)["height"]
    assert network.stop_member(net.folder, "node2", kill=True)
    ids, res = net.submit_and_wait(1, 300, timeout=40)
    assert not res.missing, f"{len(res.missing)} tasks not committed with node2 down"
    all_ids += ids
    assert net.status(0)["height"] > h_before

    # Restart node2: it recovers from its store and catches up.
    network.start_member(net.folder, "node2")
    network.wait_ready(net.folder, 60, ["node2"])
    ids, res = net.submit_and_wait(2, 200, timeout=40, poll_node=3)
    assert not res.missing
    all_ids += ids
    top = min(net.heights([0, 1, 3]).values())
    hs = net.wait_height([2], top, timeout=30)
    assert hs[2] >= top, f"node2 did not catch up: {hs} < {top}"
    assert "caught up" in net.log(2)  # the blocks it missed came through block sync

    # A node killed right after accepting tasks still gets them committed once it is back.
    from edgepoc.chain.client import submit, wait_committed
    c = net.api(3)
    ids, rejected = submit(c, net.make_tasks(100))
    c.close()
    assert network.stop_member(net.folder, "node3", kill=True) and not rejected
    network.start_member(net.folder, "node3")
    network.wait_ready(net.folder, 60, ["node3"])
    c = net.api(0)
    res = wait_committed(c, ids, 40)
    c.close()
    assert not res.missing, f"{len(res.missing)} accepted tasks lost with node3's crash"
    all_ids += ids
    top = min(net.heights([0, 1, 2]).values())
    net.wait_height([3], top, timeout=30)

    # Safety and no lost task, then every node's chain verifies from its store alone.
    _same_blocks(net, [0, 1, 2, 3], top)
    c = net.api(2)
    st = c.post("/tasks/status", {"ids": all_ids})["tasks"]
    c.close()
    assert all(s["status"] == "committed" for s in st.values())
    assert sum(1 for s in st.values()) == len(set(all_ids)) == 900
    # Replays are rejected.
    c = net.api(3)
    again = c.post("/tasks", {"tasks": [net.make_tasks(1)[0].to_dict()]})
    net.nonce -= 1
    replay = c.post("/tasks", {"tasks": [net.make_tasks(1)[0].to_dict()]})
    c.close()
    assert again["accepted"] == 1 and replay["accepted"] == 0  # same (client, nonce): pending duplicate
    net.down()
    for i in range(4):
        rep = verify_chain(net.folder / f"node{i}")
        assert rep.ok, rep.problems
        assert rep.height >= top


def _committed_evidence(net: Testnet, node: int) -> list[dict]:
    c = net.api(node)
    try:
        return [e for e in c.get("/evidence")["evidence"] if e["committed_height"] is not None]
    finally:
        c.close()


def _assert_score_zeroed(net: Testnet, node: int, offender: int, evidence: list[dict]) -> None:
    """In the block that committed the evidence, the offender's score went to 0 (evidence_penalty 1)."""
    from edgepoc.chain.store import BlockStore
    store = BlockStore(net.folder / f"node{node}" / "data" / "chain.sqlite")
    try:
        for e in evidence:
            h = e["committed_height"]
            before, after = store.state(h - 1), store.state(h)
            assert after.scores[offender] == 0.0 and after.penalties[offender] > (before.penalties[offender] if before else 0)
            assert all(after.scores[k] > 0 for k in range(4) if k != offender)
    finally:
        store.close()


BYZ = 0


def test_byzantine_grab_all_proposer_is_voted_down_and_punished(tmp_path):
    # node0 has the largest bottleneck capacity of seed 1, hence the largest contribution and the
    # most proposals: it gets to misbehave within a few heights.
    net = Testnet(tmp_path / "net", byzantine={BYZ: ["grab-all"]})
    try:
        net.up()
        byz = net.doc["nodes"][BYZ]["address"]
        all_ids = []
        for _ in range(60):  # until the Byzantine node has proposed a block with tasks (drawn by contribution)
            ids, res = net.submit_and_wait(1, 40, timeout=40)
            assert not res.missing, "a task was lost or never committed"
            all_ids += ids
            if any(e["kind"] == "invalid-proposal" for e in _committed_evidence(net, 1)):
                break
        evidence = _committed_evidence(net, 1)
        assert any(e["kind"] == "invalid-proposal" for e in evidence), "the grab-all proposer never got caught"
        assert all(e["validator"] == byz for e in evidence)
        assert "prevote nil" in net.log(1) + net.log(2) + net.log(3)
        top = min(net.heights([0, 1, 2, 3]).values())
        _same_blocks(net, [0, 1, 2, 3], top)
        for h in range(1, top + 1):
            b = net.block(0, h)
            if b["proposer"] == byz and len(b["tasks"]) > 1:
                assert not all(x == BYZ for x in b["assignment"]), "a grab-all block was committed"
        c = net.api(1)
        table = c.get("/contributions")["validators"]
        st = c.post("/tasks/status", {"ids": all_ids})["tasks"]
        c.close()
        assert table[BYZ]["penalties"] >= 1
        assert all(s["status"] == "committed" for s in st.values())
        net.down()
        rep = verify_chain(net.folder / "node1")
        assert rep.ok and rep.evidence >= 1, rep.problems
        _assert_score_zeroed(net, 1, BYZ, evidence)
    finally:
        net.down()


def test_equivocating_node_is_caught_and_its_evidence_committed(tmp_path):
    net = Testnet(tmp_path / "net", byzantine={2: ["equivocate"]})
    try:
        net.up()
        byz = net.doc["nodes"][2]["address"]
        for _ in range(10):
            ids, res = net.submit_and_wait(1, 100, timeout=40)
            assert not res.missing
            if _committed_evidence(net, 0):
                break
        evidence = _committed_evidence(net, 0)
        assert evidence and all(e["kind"] == "equivocation" and e["validator"] == byz for e in evidence)
        top = min(net.heights([0, 1, 2, 3]).values())
        _same_blocks(net, [0, 1, 2, 3], top)
        c = net.api(0)
        table = c.get("/contributions")["validators"]
        c.close()
        assert table[2]["penalties"] >= 1
        net.down()
        rep = verify_chain(net.folder / "node3")
        assert rep.ok and rep.evidence >= 1, rep.problems
        _assert_score_zeroed(net, 0, 2, evidence)  # node0 reported the evidence committed: it holds that height
    finally:
        net.down()


def test_arbiter_settles_heights_the_students_cannot(tmp_path):
    # A negative tolerance: no node accepts any other's allocation, so only arbitrated blocks commit.
    net = Testnet(tmp_path / "net", params={"tolerance": -0.5, "arbitration_rounds": 1})
    try:
        net.up()
        ids, res = net.submit_and_wait(0, 100, timeout=40)
        assert not res.missing
        heights = {s["height"] for s in res.committed.values()}
        for h in heights:
            b = net.block(1, h)
            assert b["arbitration"] is not None and b["round"] >= 1
    finally:
        net.down()


def test_nodes_allocate_with_their_student(tmp_path):
    """The student path end to end: every node loads a (here untrained, 4-provider) student checkpoint,
    proposes with it through the solver registry and judges others' blocks against its own."""
    import torch

    from edgepoc.chain import consensus as rules
    from edgepoc.chain.genesis import Genesis
    from edgepoc.chain.types import Block
    from edgepoc.models.checkpoint import build_model, save_checkpoint
    from edgepoc.models.features import FeatureConfig
    from edgepoc.models.student import student_config

    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "student.pt", build_model(student_config(FeatureConfig(4, 2))).eval())
    net = Testnet(tmp_path / "net", params={"allocator": "auto", "allocator_seconds": 0.05, "timeout_propose": 1.0},
                  student=str(ckpt))
    try:
        net.up()
        assert net.status(0)["allocator"] == "student"
        ids, res = net.submit_and_wait(0, 200, timeout=60)
        assert not res.missing
        genesis = Genesis.load(net.folder / "genesis.json")
        from edgepoc.chain.store import BlockStore
        net.down()
        store = BlockStore(net.folder / "node0" / "data" / "chain.sqlite")  # node0 answered: it holds every height
        for h in sorted({s["height"] for s in res.committed.values()}):
            block = store.block(h)
            before = store.state(h - 1) if h > 1 else rules.initial_state(genesis)
            greedy = rules.greedy_reference_latency(genesis, before, block.tasks)
            assert isinstance(block, Block) and block.claimed_latency <= greedy * (1 + genesis.params.evidence_tolerance)
        store.close()
    finally:
        net.down()
