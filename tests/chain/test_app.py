"""The ABCI++ application in process (no CometBFT): every rule, with the protobuf requests CometBFT sends.

Plus the pure rules it calls: canonical encoding and signatures, the coalition game and Shapley values,
the contribution -> voting power mapping.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from math import factorial

import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from edgepoc.chain.abci import wire
from edgepoc.chain.abci.app import PocApplication, make_application, voting_powers
from edgepoc.chain.abci.proto import pb
from edgepoc.chain.abci.store import AppStore
from edgepoc.chain.contribution import coalition_value, shapley
from edgepoc.chain.crypto import SigningKey, canonical, verify
from edgepoc.chain.genesis import ConsensusParams, Genesis, make_validators
from edgepoc.errors import InputError
from edgepoc.game.instance import Instance
from edgepoc.game.kernel import greedy_assignment, simulate_state
from tests.conftest import random_instance

KEYS = [SigningKey.generate() for _ in range(4)]
ARBITER = SigningKey.generate()
CLIENT = SigningKey.generate()
CHAIN = "test-chain"


def make_genesis(**params) -> Genesis:
    """The test genesis; vote extensions off unless asked for (CometBFT sends them; tests/chain/test_censorship.py
    drives them in process)."""
    params.setdefault("vote_extensions_height", 0)
    g = Genesis(CHAIN, 1000.0, make_validators([k.public_hex for k in KEYS], seed=3), ARBITER.public_hex,
                ConsensusParams(**params))
    return Genesis.from_dict(json.loads(json.dumps(g.to_dict())))


def batch(n: int, nonce0: int = 0, seed: int = 0, key: SigningKey = CLIENT) -> wire.TaskBatch:
    rng = np.random.default_rng(seed)
    return wire.TaskBatch(CHAIN, key.public_hex, [(nonce0 + i, rng.uniform(0.05, 0.4, 2).round(6).tolist())
                                                  for i in range(n)]).signed(key)


def ts(seconds: float) -> Timestamp:
    return Timestamp(seconds=int(seconds), nanos=int(round((seconds % 1) * 1e9)))


class Harness:
    """One application and the CometBFT calls of each height, in order."""

    def __init__(self, tmp_path, genesis: Genesis | None = None, byzantine=None, name: str = "app"):
        self.genesis = genesis or make_genesis()
        self.path = tmp_path / f"{name}.sqlite"
        me = self.genesis.validators[0].address
        self.app = make_application(self.genesis, AppStore(self.path), None, "greedy", me, byzantine)
        self.height = 0

    def check(self, b: wire.TaskBatch | bytes):
        tx = b if isinstance(b, bytes) else b.tx()
        return self.app.check_tx(pb.CheckTxRequest(tx=tx, type=pb.CHECK_TX_TYPE_CHECK))

    def prepare(self, txs: list[bytes], t: float):
        return list(self.app.prepare_proposal(pb.PrepareProposalRequest(
            txs=txs, max_tx_bytes=4 << 20, height=self.height + 1, time=ts(self.genesis.genesis_time + t))).txs)

    def process(self, txs: list[bytes], t: float, block_hash: bytes = b"h" * 32) -> int:
        return self.app.process_proposal(pb.ProcessProposalRequest(
            txs=txs, height=self.height + 1, time=ts(self.genesis.genesis_time + t), hash=block_hash,
            proposer_address=bytes.fromhex(self.genesis.validators[1].address))).status

    def finalize(self, txs: list[bytes], t: float, block_hash: bytes = b"h" * 32, misbehavior=()):
        res = self.app.finalize_block(pb.FinalizeBlockRequest(
            txs=txs, height=self.height + 1, time=ts(self.genesis.genesis_time + t), hash=block_hash,
            proposer_address=bytes.fromhex(self.genesis.validators[1].address), misbehavior=list(misbehavior)))
        self.app.commit(pb.CommitRequest())
        self.height += 1
        return res

    def block(self, txs: list[bytes], t: float, **kw):
        """A whole height: prepare, process (must accept), finalize, commit."""
        proposal = self.prepare(txs, t)
        h = bytes([self.height + 1]) * 32
        assert self.process(proposal, t, h) == pb.PROCESS_PROPOSAL_STATUS_ACCEPT
        return proposal, self.finalize(proposal, t, h, **kw)


def tampered(proposal: list[bytes], **change) -> list[bytes]:
    alloc = json.loads(proposal[-1])
    alloc.update(change)
    return [*proposal[:-1], canonical(alloc)]


# ------------------------------------------------------------------ crypto, wire

def test_signatures_and_canonical_encoding():
    msg = canonical({"b": 1.1, "a": [1, 2]})
    assert msg == b'{"a":[1,2],"b":1.1}'
    sig = KEYS[0].sign(msg)
    assert verify(KEYS[0].public_hex, msg, sig)
    assert not verify(KEYS[1].public_hex, msg, sig)
    assert not verify(KEYS[0].public_hex, msg + b" ", sig)
    assert not verify("zz", msg, "not hex")


def test_batch_round_trip_bounds_and_forgery():
    b = batch(3)
    again = wire.TaskBatch.from_dict(json.loads(b.tx()), n_resources=2, max_demand=10, max_tasks=5)
    assert again.ids == b.ids and again.signature_ok() and len(set(b.ids)) == 3
    d = b.to_dict()
    for bad in [{**d, "tasks": [{"nonce": "1", "demand": [0.1, 0.1]}]}, {**d, "tasks": [{"nonce": 1, "demand": [0.1]}]},
                {**d, "tasks": [{"nonce": 1, "demand": [0.1, 11.0]}]}, {**d, "tasks": []}, {**d, "sig": "xy"},
                {**d, "extra": 1}, {**d, "tasks": [{"nonce": 1, "demand": [0.1, 0.1], "arrival": 5.0}]}, [1, 2]]:
        with pytest.raises(InputError):
            wire.TaskBatch.from_dict(bad, n_resources=2, max_demand=10, max_tasks=5)
    with pytest.raises(InputError, match="at most 2"):
        wire.TaskBatch.from_dict(d, n_resources=2, max_demand=10, max_tasks=2)
    forged = wire.TaskBatch.from_dict({**d, "tasks": [{"nonce": 0, "demand": [0.3, 0.3]}]}, n_resources=2,
                                      max_demand=10, max_tasks=5)
    assert not forged.signature_ok()


def test_replay_batches_follow_the_instance_arrivals():
    from edgepoc.chain.abci.client import replay_batches

    inst = random_instance(np.random.default_rng(3), 9, 2)
    arrival = np.array([0.0, 0.02, 0.05, 0.3, 0.31, 1.0, 1.0, 1.0, 1.05])
    inst = Instance.create(inst.capacity, inst.provider_delay, arrival, inst.demand)
    batches, offsets = replay_batches(inst, CLIENT, CHAIN, 100, window=0.1, batch=2)
    assert [len(b.tasks) for b in batches] == [2, 1, 2, 2, 2]  # within 0.1 s of the batch's first, at most 2
    assert offsets == [0.0, 0.05, 0.3, 1.0, 1.0]
    assert [i for b in batches for i in b.ids] == [wire.task_id(CHAIN, CLIENT.public_hex, 100 + i) for i in range(9)]
    assert all(b.signature_ok() for b in batches)


# ------------------------------------------------------------------ contribution and power

def test_coalition_rule_members_match_the_kernel():
    inst = random_instance(np.random.default_rng(1), 40, 4)
    free = np.array([0.5, 0.0, 1.0, 0.2])
    v, choice = coalition_value(inst, free, 3.0, [0, 2, 3])
    assert set(np.unique(choice)) <= {-1, 0, 2, 3}
    on = np.flatnonzero(choice >= 0)
    sub = inst.subset(on)
    _, completion, _ = simulate_state(sub, choice[on], free)
    assert v == pytest.approx(sum(3.0 - max(0.0, c - a) for c, a in zip(completion, sub.arrival)), rel=1e-12)
    g_x, g_total = greedy_assignment(inst, free)
    v_all, c_all = coalition_value(inst, free, 1e9, [0, 1, 2, 3])
    assert np.array_equal(c_all, g_x)
    assert v_all == pytest.approx(inst.n_tasks * 1e9 - g_total, rel=1e-12)


def test_exact_shapley_axioms_and_brute_force():
    inst = random_instance(np.random.default_rng(2), 30, 4)
    free = np.zeros(4)
    res = shapley(inst, free, 2.0)
    assert res.exact and res.stderr == 0.0
    assert sum(res.values) == pytest.approx(res.grand_value, rel=1e-9)  # efficiency
    k = 4
    v = {frozenset(s): coalition_value(inst, free, 2.0, list(s))[0] for r in range(k + 1)
         for s in itertools.combinations(range(k), r)}
    for i in range(k):
        phi = sum(factorial(len(s)) * factorial(k - len(s) - 1) / factorial(k) * (v[s | {i}] - v[s])
                  for s in v if i not in s)
        assert res.values[i] == pytest.approx(phi, rel=1e-9, abs=1e-9)
    twin = Instance.create([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]], [0.0, 0.0, 100.0], inst.arrival, inst.demand)
    t = shapley(twin, np.zeros(3), 2.0)
    assert t.values[0] == pytest.approx(t.values[1]) and t.values[2] == 0.0


def test_monte_carlo_shapley_is_seeded_and_within_its_error():
    inst = random_instance(np.random.default_rng(3), 40, 6)
    exact = shapley(inst, np.zeros(6), 2.0)
    mc = shapley(inst, np.zeros(6), 2.0, exact_max=4, samples=400, seed=5)
    again = shapley(inst, np.zeros(6), 2.0, exact_max=4, samples=400, seed=5)
    assert not mc.exact and mc.values == again.values and mc.stderr > 0
    for e, m in zip(exact.values, mc.values):
        assert abs(e - m) <= 5 * mc.stderr + 1e-9


@pytest.mark.parametrize("scores", [[1, 1, 1, 1], [100, 1, 1, 1], [0, 0, 0, 50], [5, 3, 0, -2, 9, 1, 1],
                                    [1e9, 1e9, 1, 0, 0, 0, 0, 0, 0, 0]])
def test_voting_power_follows_contribution_with_a_floor_and_a_cap(scores):
    p = ConsensusParams()
    powers = voting_powers(p, [float(s) for s in scores])
    total = sum(powers)
    assert all(x >= p.power_floor for x in powers)  # nobody is dropped
    if len(scores) >= 4:
        assert all(3 * x < total for x in powers)  # nobody alone can halt the chain
    order = np.argsort(scores, kind="stable")
    assert all(powers[a] <= powers[b] for a, b in zip(order, order[1:]))  # monotone in the score


# ------------------------------------------------------------------ the application

def test_checktx_accepts_signed_batches_and_names_every_rejection(tmp_path):
    h = Harness(tmp_path)
    assert h.check(batch(5)).code == 0
    other = SigningKey.generate()
    d = batch(2).to_dict()
    cases = [
        (b"not json", "not JSON"),
        (canonical({**d, "sig": other.sign(b"x")}), "sig"),
        (canonical({**d, "chain_id": "x"}), "chain_id"),
        (wire.Allocation([], 0.0, [], 0.0).tx(), "proposers only"),
        (wire.TaskBatch(CHAIN, CLIENT.public_hex, [(1, [1e308, 0.1])]).signed(CLIENT).tx(), "demand"),
        (wire.TaskBatch(CHAIN, CLIENT.public_hex, [(1, [0.1, 0.1]), (1, [0.2, 0.2])]).signed(CLIENT).tx(), "twice"),
    ]
    for tx, needle in cases:
        res = h.check(tx)
        assert res.code != 0 and needle in res.log, (tx[:40], res.log)


def test_a_height_runs_prepare_process_finalize_commit_and_info(tmp_path):
    h = Harness(tmp_path)
    b1, b2 = batch(30, 0, 1), batch(20, 100, 2)
    proposal, res = h.block([b1.tx(), b2.tx()], 5.0)
    alloc = json.loads(proposal[-1])
    assert alloc["type"] == "allocation" and len(alloc["assignment"]) == 50
    st = h.app.state
    assert st.height == 1 and st.tasks_committed == 50 and res.app_hash.hex() == st.hash
    row = h.app.store.task(b1.ids[0])
    assert row["height"] == 1 and row["arrival"] == 5.0  # arrival is the block time
    info = h.app.info(pb.InfoRequest())
    assert info.last_block_height == 1 and info.last_block_app_hash == res.app_hash
    # the same store after a restart: same state; a replayed task is refused everywhere
    again = PocApplication(h.genesis, AppStore(h.path), None, "greedy")
    assert again.state.to_dict() == st.to_dict()
    assert "replay" in h.check(b1).log
    assert h.prepare([b1.tx()], 6.0) == []
    assert h.process([b1.tx(), proposal[-1]], 6.0) == pb.PROCESS_PROPOSAL_STATUS_REJECT


def test_process_proposal_rejects_every_broken_rule(tmp_path):
    h = Harness(tmp_path)
    b = batch(40, 0, 3)
    good = h.prepare([b.tx()], 2.0)
    alloc = json.loads(good[-1])
    n = len(alloc["assignment"])
    bad = {
        "latency": tampered(good, claimed_latency=alloc["claimed_latency"] * 0.5),
        "shapley": tampered(good, shapley=[x + 1e-9 for x in alloc["shapley"]]),
        "short assignment": tampered(good, assignment=alloc["assignment"][:-1]),
        "provider out of range": tampered(good, assignment=[7] * n),
        "no allocation": good[:-1],
        "duplicated batch": [good[0], good[0], good[-1]],
        "forged arbitration": tampered(good, arbitration={"sig": "00" * 64}),
        "client-signed garbage": [b"{}", good[-1]],
    }
    for name, txs in bad.items():
        assert h.process(txs, 2.0) == pb.PROCESS_PROPOSAL_STATUS_REJECT, name
    # grab-all: kernel-consistent claims, far worse than greedy
    byz = Harness(tmp_path, byzantine=["grab-all"], name="byz")
    grab = byz.prepare([b.tx()], 2.0)
    assert set(json.loads(grab[-1])["assignment"]) == {0}
    assert h.process(grab, 2.0) == pb.PROCESS_PROPOSAL_STATUS_REJECT
    assert h.process(good, 2.0) == pb.PROCESS_PROPOSAL_STATUS_ACCEPT
    assert h.app.rejections.get("quality") == 1


def test_evidence_lowers_the_score_and_the_power(tmp_path):
    h = Harness(tmp_path)
    h.block([batch(30).tx()], 1.0)
    before = h.app.state
    offender = h.genesis.validators[2]
    mis = pb.Misbehavior(type=pb.MISBEHAVIOR_TYPE_DUPLICATE_VOTE, height=1,
                         validator=pb.Validator(address=bytes.fromhex(offender.address), power=250))
    _, res = h.block([batch(30, 100).tx()], 2.0, misbehavior=[mis])
    after = h.app.state
    assert after.scores[2] == 0.0 and after.penalties[2] == before.penalties[2] + 1
    update = {u.pub_key_bytes.hex(): u.power for u in res.validator_updates}
    assert update[offender.public_key] == ConsensusParams().power_floor
    assert h.app.store.evidence()[0]["name"] == offender.name


def test_chain_verify_replays_the_store_and_detects_tampering(tmp_path):
    from edgepoc.chain.abci.verify import verify_app_chain

    home = tmp_path / "node"
    (home / "data").mkdir(parents=True)
    (home / "cometbft" / "config").mkdir(parents=True)
    g = make_genesis()
    (home / "cometbft" / "config" / "genesis.json").write_text(json.dumps({"app_state": g.to_dict()}))
    h = Harness(tmp_path, g)
    h.path = home / "data" / "app.sqlite"
    h.app = PocApplication(g, AppStore(h.path), None, "greedy")
    for k in range(3):
        h.block([batch(25, 100 * k, k).tx()], 1.0 + k)
    rep = verify_app_chain(home)
    assert rep.ok and rep.height == 3 and rep.tasks == 75 and rep.signatures == 3, rep.problems
    db = sqlite3.connect(h.path)
    db.execute("UPDATE tasks SET latency = latency + 1 WHERE height = 2")
    db.commit()
    db.close()
    rep = verify_app_chain(home)
    assert not rep.ok and "task index" in rep.problems[0]


def test_beyond_ten_providers_blocks_carry_a_seeded_monte_carlo_estimate(tmp_path):
    keys = [SigningKey.generate() for _ in range(12)]
    g = Genesis(CHAIN, 0.0, make_validators([k.public_hex for k in keys], seed=4), ARBITER.public_hex,
                ConsensusParams(shapley_samples=32))
    h = Harness(tmp_path, Genesis.from_dict(g.to_dict()))
    proposal, _ = h.block([batch(60).tx()], 1.0)
    alloc = json.loads(proposal[-1])
    assert alloc["stderr"] > 0 and len(alloc["shapley"]) == 12
