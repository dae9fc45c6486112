"""End-to-end tests of the chain on CometBFT: real cometbft and app processes on 127.0.0.1.

One 4-node network serves the module's tests in order (commit, attacks, arbiter, crashes); the
Byzantine-proposer and arbitration tests start their own.
"""

from __future__ import annotations

import json
import os
import stat
import time

import pytest

from edgepoc.chain.abci import network
from edgepoc.chain.abci.app import arbitration_bytes
from edgepoc.chain.abci.arbiter import request_bytes, validator_key
from edgepoc.chain.abci.verify import verify_app_chain
from edgepoc.chain.abci.wire import TaskBatch
from edgepoc.chain.crypto import SigningKey, verify
from edgepoc.chain.genesis import Genesis
from edgepoc.chain.httpapi import HttpClient
from tests.chain.cometnet import CometNet, raw_tx


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    n = CometNet(tmp_path_factory.mktemp("comet") / "net")
    try:
        n.up()
        yield n
    finally:
        n.down()


def _same_blocks(net: CometNet, nodes, upto: int) -> None:
    ref = net.block_hashes(nodes[0], upto)
    for i in nodes[1:]:
        assert net.block_hashes(i, upto) == ref, f"node{i} diverges from node{nodes[0]}"


def test_tasks_commit_once_on_every_node_and_the_chain_verifies(net):
    ids, res = net.submit_and_wait(0, 3000, poll_node=1)
    assert not res.missing, f"{len(res.missing)} tasks not committed"
    st = net.status(2)
    assert st["engine"] == "cometbft" and st["tasks_committed"] >= 3000
    top = min(net.heights(range(4)).values())
    _same_blocks(net, [0, 1, 2, 3], top)
    h = next(iter(res.committed.values()))["height"]
    doc = net.block(3, h)
    b = doc["block"]
    assert doc["hash"] and len(b["allocation"]["assignment"]) == len(b["tasks"]) == len(b["allocation"]["latencies"])
    assert all(t["arrival"] == b["clock"] for t in b["tasks"])  # the chain stamps arrival with the block time
    table = net.get(1, "/contributions")["validators"]
    total = sum(r["power"] for r in table)
    assert all(r["power"] >= 10 and 3 * r["power"] < total for r in table)  # floor, and below a third


def test_client_attacks_are_rejected_by_checktx(net):
    key, cid = net.client_key, net.chain_id
    good = TaskBatch(cid, key.public_hex, [(10**12, [0.1, 0.1])]).signed(key)

    def body(**change) -> dict:
        d = {**good.body(), **change}
        return {**d, "sig": key.sign(json.dumps(d, sort_keys=True, separators=(",", ":")).encode())}

    cases = {
        "huge demand": (body(tasks=[{"nonce": 1, "demand": [1e308, 0.1]}]), "demand"),
        "zero demand": (body(tasks=[{"nonce": 2, "demand": [0.0, 0.1]}]), "demand"),
        "client arrival": (body(tasks=[{"nonce": 3, "demand": [0.1, 0.1], "arrival": 1e12}]), "arrival"),
        "client delays": (body(tasks=[{"nonce": 4, "demand": [0.1, 0.1], "delays": [1e6, 0, 1e6, 1e6]}]), "delays"),
        "duplicate nonce": (body(tasks=[{"nonce": 5, "demand": [0.1, 0.1]}, {"nonce": 5, "demand": [0.2, 0.1]}]),
                            "twice"),
        "bad signature": ({**good.to_dict(), "sig": "00" * 64}, "sig"),
        "other chain": (body(chain_id="other"), "chain_id"),
    }
    for name, (doc, needle) in cases.items():
        out = net.post(0, "/tasks", {"tasks": [doc]})
        assert out["accepted"] == 0 and needle in out["rejected"][0]["error"], (name, out)
        res = net.broadcast(1, raw_tx(doc))  # around the API: CheckTx itself stops it
        assert res["code"] != 0 and needle in res["log"], (name, res)
    res = net.broadcast(1, raw_tx({"type": "allocation", "assignment": [], "claimed_latency": 0, "shapley": [],
                                   "stderr": 0}))
    assert res["code"] != 0 and "proposers only" in res["log"]

    # The same (client, nonce) in two differently signed batches: committed once, the chain goes on.
    a = TaskBatch(cid, key.public_hex, [(7 * 10**12, [0.1, 0.1])]).signed(key)
    b = TaskBatch(cid, key.public_hex, [(7 * 10**12, [0.2, 0.2]), (7 * 10**12 + 1, [0.1, 0.1])]).signed(key)
    before = net.status(0)["tasks_committed"]
    net.post(0, "/tasks", {"tasks": [a.to_dict(), b.to_dict()]})
    ids, res = net.submit_and_wait(2, 200)
    assert not res.missing
    # node 0 answers for itself: it may apply the last blocks (and a's or b's) a little after node 2 says they
    # are committed, so wait until it holds the id, then two heights more for b's second task, if it comes
    deadline = time.monotonic() + 60
    while net.get(0, f"/tasks/{a.ids[0]}")["status"] != "committed" and time.monotonic() < deadline:
        time.sleep(0.2)
    net.wait_height([0], net.status(0)["height"] + 2)
    after = net.status(0)["tasks_committed"]
    assert after - before in (200 + 1, 200 + 2)  # a's task, or b's two: never the id twice
    # Replays of committed tasks: the same batch, or the nonce re-signed with another demand.
    for replay in (a, TaskBatch(cid, key.public_hex, [(7 * 10**12, [0.3, 0.3])]).signed(key)):
        out = net.post(1, "/tasks", {"tasks": [replay.to_dict()]})
        if out["accepted"]:  # `a` lost to `b`: its id was still committed once, by `b`
            assert a.ids[0] in [t for t in out["ids"]] and net.get(1, f"/tasks/{a.ids[0]}")["status"] == "committed"
        else:
            assert "replay" in out["rejected"][0]["error"]
    res = net.broadcast(3, replay.tx())
    assert res["code"] != 0 and "replay" in res["log"]
    ids, res = net.submit_and_wait(3, 100)
    assert not res.missing, "the chain stopped after the attacks"


def test_arbiter_answers_only_validators_and_signs_everything_it_depends_on(net):
    genesis = Genesis.load(net.folder / "genesis.json")
    arb = HttpClient(net.doc["arbiter"]["url"], timeout=30)
    st = net.status(0)
    body = {"height": st["height"] + 1, "state": st["app_hash"], "free_times": [0.0, 1.0, 0.5, 0.0], "nonce": "n" * 32,
            "tasks": [{"id": "t1", "client": "c", "nonce": 1, "demand": [0.2, 0.1], "arrival": 3.0}]}
    outsider = SigningKey.generate()
    v0 = validator_key(net.home(0))

    def signed(b: dict, key=v0) -> dict:
        return {"validator": v0.address, "body": b, "sig": key.sign(request_bytes(net.chain_id, b))}

    made_up = {**body, "state": "ab" * 32, "nonce": "m" * 32}
    bad = [{"body": body},  # unauthenticated
           {"validator": outsider.address, "body": body, "sig": outsider.sign(request_bytes(net.chain_id, body))},
           signed(body, outsider),  # a validator's name, someone else's signature
           signed({k: v for k, v in body.items() if k != "nonce"}),  # no nonce
           signed(made_up)]  # a state no node reports: the arbiter cannot check it
    for req in bad:
        status, doc = arb.request("POST", "/arbitrate", req)
        assert status == 400, doc
    status, doc = arb.request("POST", "/arbitrate", signed(body))
    assert status == 200, doc
    status, again = arb.request("POST", "/arbitrate", signed(body))
    assert status == 400 and "replay" in again["error"], again
    status, _ = arb.request("POST", "/arbitrate", {"pad": "x" * (9 << 20)})
    assert status == 413  # refused before parsing or authenticating
    arb.close()
    msg = arbitration_bytes(net.chain_id, body["height"], body["state"], body["tasks"], body["free_times"],
                            doc["assignment"])
    assert verify(genesis.arbiter_public_key, msg, doc["sig"])
    other = arbitration_bytes(net.chain_id, body["height"], body["state"], body["tasks"], [9.0, 1.0, 0.5, 0.0],
                              doc["assignment"])
    assert not verify(genesis.arbiter_public_key, other, doc["sig"])  # free times are covered
    heavier = [{**body["tasks"][0], "demand": [0.9, 0.1]}]
    assert not verify(genesis.arbiter_public_key, arbitration_bytes(net.chain_id, body["height"], body["state"], heavier,
                                                                    body["free_times"], doc["assignment"]), doc["sig"])


def test_keys_are_fresh_and_private(net, tmp_path):
    other = network.init_network(tmp_path / "again", 4, 0, seed=1)  # same seed, same chain id
    assert {n["address"] for n in other["nodes"]}.isdisjoint({n["address"] for n in net.doc["nodes"]})
    for path in [net.folder / "client_key.json", net.folder / "arbiter" / "arbiter_key.json",
                 net.home(0) / "cometbft" / "config" / "priv_validator_key.json",
                 net.home(0) / "cometbft" / "config" / "node_key.json"]:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path


def test_crash_restart_and_catch_up(net):
    assert network.stop_member(net.folder, "node2", kill=True)
    ids, res = net.submit_and_wait(0, 500, poll_node=1)
    assert not res.missing, "three of four nodes must keep committing"
    top = net.status(0)["height"]
    network.start_member(net.folder, "node2")
    hs = net.wait_height([2], top, timeout=90)
    assert hs[2] >= top, f"node2 did not catch up: {hs}"
    # Every node crashes at once, then comes back from its stores.
    for i in range(4):
        network.stop_member(net.folder, f"node{i}", kill=True)
    network.up(net.folder)
    network.wait_ready(net.folder, 120, height=top)
    all_ids, res = net.submit_and_wait(3, 300, poll_node=2)
    assert not res.missing
    st = net.post(2, "/tasks/status", {"ids": ids + all_ids})["tasks"]  # node2 reported them committed
    from collections import Counter
    assert all(s["status"] == "committed" for s in st.values()), Counter(s["status"] for s in st.values())
    top = min(net.heights(range(4)).values())
    _same_blocks(net, [0, 1, 2, 3], top)
    net.down()
    for i in range(4):
        rep = verify_app_chain(net.home(i))
        assert rep.ok and rep.height >= top, rep.problems
        assert rep.tasks == net_tasks(net, i)


def net_tasks(net: CometNet, i: int) -> int:
    from edgepoc.chain.abci.store import AppStore

    store = AppStore(net.home(i) / "data" / "app.sqlite", readonly=True)
    try:
        return store.state().tasks_committed
    finally:
        store.close()


def test_byzantine_proposers_are_rejected_and_the_chain_keeps_committing(tmp_path):
    import torch

    from edgepoc.models.checkpoint import build_model, save_checkpoint
    from edgepoc.models.features import FeatureConfig
    from edgepoc.models.student import student_config

    torch.manual_seed(0)  # an untrained 4-provider student: what matters is the path, not its quality
    ckpt = save_checkpoint(tmp_path / "student.pt", build_model(student_config(FeatureConfig(4, 2))).eval())
    byz = {0: ["grab-all"], 1: ["wrong-latency"], 2: ["duplicate"]}
    net = CometNet(tmp_path / "net", byzantine=byz, params={"allocator": "auto"}, student=str(ckpt))
    try:
        net.up()
        assert net.status(3)["allocator"] == "student"  # the honest node allocates with its student
        reasons = ("quality", "latency-mismatch", "appears twice")  # grab-all, wrong-latency, duplicate
        heights: set[int] = set()
        for _ in range(12):  # until each Byzantine node has had its turn to propose a block with tasks
            ids, res = net.submit_and_wait(3, 200, timeout=120, per=50)
            assert not res.missing, f"{len(res.missing)} tasks not committed"
            heights |= {s["height"] for s in res.committed.values()}
            logs = net.log(3)
            if all(r in logs for r in reasons):
                break
        for reason in reasons:
            assert reason in logs, reason
        top = min(net.heights(range(4)).values())
        names = {n["address"]: n["name"] for n in net.doc["nodes"]}
        for h in sorted(heights):
            b = net.block(0, h)["block"]
            assert names[b["proposer"]] == "node3", f"a Byzantine block was committed at {h}"
        _same_blocks(net, [0, 1, 2, 3], top)
        net.down()
        rep = verify_app_chain(net.home(1))
        assert rep.ok, rep.problems
    finally:
        net.down()


def test_arbiter_settles_blocks_the_allocator_gets_wrong(tmp_path):
    # A node allocating at random is far worse than the reference: it asks the arbiter (the teacher, else GA),
    # signs nothing itself, and validators check the arbiter's signature and the quality. No descent from the
    # random start (proposal_sweeps 0): with it, the proposer often reaches the reference's local optimum and
    # has no reason to ask, and this test would depend on that chance. The arbiter gets 1.5 s, not the default
    # 0.6: here it shares two cores with four nodes, and its teacher took 0.1-0.8 s per block (a slow host's CI
    # run saw both blocks' answers come after 0.6 s); what this test checks is the settling, not the deadline
    # (test_hostile and test_hostile_live check the deadline).
    net = CometNet(tmp_path / "net", params={"allocator": "random", "tolerance": 0.02, "proposal_sweeps": 0,
                                             "arbiter_deadline": 1.5})
    try:
        net.up()
        ids, res = net.submit_and_wait(0, 600, timeout=120)
        assert not res.missing
        blocks = [net.block(1, h)["block"] for h in sorted({s["height"] for s in res.committed.values()})]
        arbitrated = [b for b in blocks if b["arbitration"] is not None]
        assert arbitrated, [b["allocation"]["allocator"] for b in blocks]
        assert net.get(1, "/arbitrations")["arbitrations"]
        net.down()
        rep = verify_app_chain(net.home(2))
        assert rep.ok, rep.problems
    finally:
        net.down()
