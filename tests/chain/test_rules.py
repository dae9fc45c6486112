"""Unit tests of the pure consensus rules, the contribution game, types, store and the state machine."""

from __future__ import annotations

import itertools
import json
from math import factorial

import numpy as np
import pytest

from edgepoc.chain import consensus as rules
from edgepoc.chain.consensus import InvalidBlock
from edgepoc.chain.contribution import coalition_value, shapley
from edgepoc.chain.crypto import SigningKey, canonical, verify
from edgepoc.chain.genesis import ConsensusParams, Genesis, make_validators
from edgepoc.chain.state_machine import HeightMachine, Step
from edgepoc.chain.store import BlockStore
from edgepoc.chain.types import PRECOMMIT, PREVOTE, Block, Commit, Proposal, TaskRequest, Vote
from edgepoc.errors import InputError
from edgepoc.game.instance import Instance
from edgepoc.game.kernel import greedy_assignment, simulate, simulate_state
from tests.conftest import random_instance

KEYS = [SigningKey.from_seed(f"test-node-{i}".encode()) for i in range(4)]
ARBITER = SigningKey.from_seed(b"test-arbiter")
CLIENT = SigningKey.from_seed(b"test-client")


def make_genesis(**params) -> Genesis:
    g = Genesis("test-chain", 1000.0, make_validators([k.public_hex for k in KEYS], seed=3), ARBITER.public_hex,
                ConsensusParams(**params))
    return Genesis.from_dict(json.loads(json.dumps(g.to_dict())))


def tasks(n: int, chain_id: str = "test-chain", nonce0: int = 0, seed: int = 0) -> list[TaskRequest]:
    rng = np.random.default_rng(seed)
    out = [TaskRequest(chain_id, CLIENT.public_hex, nonce0 + i, float(i) * 0.05, rng.uniform(0.05, 0.4, 2).tolist()).signed(CLIENT)
           for i in range(n)]
    return sorted(out, key=rules.task_order_key)


def sign_vote(genesis: Genesis, i: int, vtype: str, height: int, round_: int, block_hash: str | None) -> Vote:
    v = Vote(genesis.chain_id, height, round_, vtype, block_hash, KEYS[i].address)
    v.sig = KEYS[i].sign(v.sign_bytes())
    return v


def commit_for(genesis: Genesis, block: Block, signers=(0, 1, 2)) -> Commit:
    return Commit(block.height, block.round, block.hash,
                  [sign_vote(genesis, i, PRECOMMIT, block.height, block.round, block.hash) for i in signers])


def propose(genesis: Genesis, state, txs, assignment=None, round_=0, last_commit=None, **kw) -> Block:
    who = rules.proposer_index(genesis, state, round_)
    if assignment is None:
        assignment = greedy_assignment(rules.block_instance(genesis, txs), state.free_times)[0].tolist() if txs else []
    return rules.build_block(genesis, state, round_=round_, time=state.last_time + 1.0, proposer=KEYS[who].address,
                             tasks=txs, assignment=assignment, evidence=kw.get("evidence", []), last_commit=last_commit,
                             arbitration=kw.get("arbitration"))


def check(genesis, state, block, committed=frozenset(), evidence_ok=None):
    return rules.check_block(genesis, state, block, task_is_new=lambda t: t not in committed, evidence_ok=evidence_ok)


# ------------------------------------------------------------------ crypto and types

def test_signatures_and_canonical_encoding():
    msg = canonical({"b": 1.1, "a": [1, 2]})
    assert msg == b'{"a":[1,2],"b":1.1}'
    sig = KEYS[0].sign(msg)
    assert verify(KEYS[0].public_hex, msg, sig)
    assert not verify(KEYS[1].public_hex, msg, sig)
    assert not verify(KEYS[0].public_hex, msg + b" ", sig)
    assert not verify("zz", msg, "not hex")


def test_task_round_trip_and_malformed_fields():
    t = tasks(1)[0]
    again = TaskRequest.from_dict(json.loads(json.dumps(t.to_dict())))
    assert again == t and again.signature_ok() and again.id == t.id
    for bad in [{**t.to_dict(), "nonce": "1"}, {**t.to_dict(), "demand": [0.1, -1]}, {**t.to_dict(), "arrival": float("nan")},
                {**t.to_dict(), "sig": "xy"}, {**t.to_dict(), "extra": 1}, [1, 2], {k: v for k, v in t.to_dict().items() if k != "client"}]:
        with pytest.raises(InputError):
            TaskRequest.from_dict(bad)
    forged = TaskRequest.from_dict({**t.to_dict(), "demand": [0.3, 0.3]})
    assert not forged.signature_ok()


# ------------------------------------------------------------------ contribution (SPEC §6)

def test_coalition_rule_members_match_the_kernel():
    inst = random_instance(np.random.default_rng(1), 40, 4)
    free = np.array([0.5, 0.0, 1.0, 0.2])
    v, choice = coalition_value(inst, free, 3.0, [0, 2, 3])
    assert set(np.unique(choice)) <= {-1, 0, 2, 3}
    # members' tasks on the members' queues give the same latencies as the shared kernel
    on = np.flatnonzero(choice >= 0)
    sub = inst.subset(on)
    total, completion, _ = simulate_state(sub, choice[on], free)
    expected = sum(3.0 - max(0.0, c - a) for c, a in zip(completion, sub.arrival))
    assert v == pytest.approx(expected, rel=1e-12)
    # with an unreachable cloud the grand coalition is exactly the kernel's greedy
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
    v = {frozenset(s): coalition_value(inst, free, 2.0, list(s))[0] for r in range(k + 1) for s in itertools.combinations(range(k), r)}
    for i in range(k):
        phi = sum(factorial(len(s)) * factorial(k - len(s) - 1) / factorial(k) * (v[s | {i}] - v[s])
                  for s in v if i not in s)
        assert res.values[i] == pytest.approx(phi, rel=1e-9, abs=1e-9)
    # symmetric twins get equal values; a provider far away (huge delay) gets nothing
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


# ------------------------------------------------------------------ proposer, votes, commits

def test_proposer_is_deterministic_weighted_and_qualified():
    g = make_genesis(qualification=0.5)
    s = rules.initial_state(g)
    s.scores = [10.0, 0.0, 30.0, 2.0]  # node1 (0) and node3 (2 < 0.5 * 14) do not qualify
    assert rules.qualified(g, s) == [True, False, True, False]
    picks = [rules.proposer_index(g, s, r) for r in range(400)]
    assert picks == [rules.proposer_index(g, s, r) for r in range(400)]
    assert set(picks) == {0, 2}
    assert 0.6 < picks.count(2) / 400 < 0.9  # 30 : 10
    s.last_hash = "ab" * 32
    assert [rules.proposer_index(g, s, r) for r in range(50)] != picks[:50]


def test_two_thirds_needs_strictly_more():
    assert not rules.two_thirds(2, 3) and rules.two_thirds(3, 4) and not rules.two_thirds(6, 9) and rules.two_thirds(7, 10)


def test_commit_checks():
    g = make_genesis()
    s = rules.initial_state(g)
    b = propose(g, s, [])
    rules.check_commit(g, commit_for(g, b), 1, b.hash)
    with pytest.raises(InvalidBlock, match="2/3"):
        rules.check_commit(g, commit_for(g, b, signers=(0, 1)), 1, b.hash)
    dup = commit_for(g, b)
    dup.votes[2] = dup.votes[0]
    with pytest.raises(InvalidBlock):
        rules.check_commit(g, dup, 1, b.hash)
    forged = commit_for(g, b)
    forged.votes[1].sig = forged.votes[0].sig
    with pytest.raises(InvalidBlock, match="signature"):
        rules.check_commit(g, forged, 1, b.hash)


# ------------------------------------------------------------------ block validity

def test_valid_block_applies_and_round_trips():
    g = make_genesis()
    s = rules.initial_state(g)
    txs = tasks(30)
    b = propose(g, s, txs)
    wire = Block.from_dict(json.loads(json.dumps(b.to_dict())))
    assert wire.hash == b.hash
    effects, after = check(g, s, wire)
    assert after.height == 1 and after.tasks_committed == 30 and after.last_hash == b.hash
    inst = rules.block_instance(g, txs)
    assert b.claimed_latency == simulate(inst, b.assignment)
    assert after.scores == [g.params.decay * 1.0 + phi for phi in b.contributions]
    assert sum(after.balances) == pytest.approx(g.params.block_reward)
    # block 2 needs the commit of block 1
    b2 = propose(g, after, tasks(5, nonce0=100), last_commit=commit_for(g, b))
    check(g, after, b2)
    b2_bad = propose(g, after, tasks(5, nonce0=100), last_commit=None)
    with pytest.raises(InvalidBlock, match="last_commit"):
        check(g, after, b2_bad)


@pytest.mark.parametrize("tamper,match", [
    (lambda b: setattr(b, "claimed_latency", b.claimed_latency * (1 + 1e-15) + 1e-12), "claimed_latency"),
    (lambda b: b.contributions.__setitem__(0, b.contributions[0] + 1e-9), "contributions"),
    (lambda b: setattr(b, "proposer", KEYS[(rules.proposer_index(make_genesis(), rules.initial_state(make_genesis()), 0) + 1) % 4].address), "proposer"),
    (lambda b: setattr(b, "tasks", list(reversed(b.tasks))), "order"),
    (lambda b: setattr(b, "assignment", b.assignment[:-1]), "assignment"),
    (lambda b: setattr(b, "prev_hash", "00" * 32), "prev_hash"),
    (lambda b: setattr(b, "chain_id", "other"), "chain_id"),
    (lambda b: b.tasks.__setitem__(0, TaskRequest.from_dict({**b.tasks[0].to_dict(), "demand": [0.2, 0.2]})), "signature"),
])
def test_invalid_blocks_are_rejected(tamper, match):
    g = make_genesis()
    s = rules.initial_state(g)
    b = propose(g, s, tasks(12))
    tamper(b)
    b.__dict__.pop("hash", None)
    with pytest.raises(InvalidBlock, match=match):
        check(g, s, b)


def test_replayed_task_is_rejected():
    g = make_genesis()
    s = rules.initial_state(g)
    txs = tasks(5)
    b = propose(g, s, txs)
    with pytest.raises(InvalidBlock, match="replay"):
        check(g, s, b, committed={txs[2].id})


def test_grab_all_is_outside_tolerance_and_is_evidence():
    g = make_genesis()
    s = rules.initial_state(g)
    txs = tasks(40)
    who = rules.proposer_index(g, s, 0)
    greedy = propose(g, s, txs)
    grab = propose(g, s, txs, assignment=[who] * len(txs))
    check(g, s, grab)  # deterministically well-formed ...
    own = greedy.claimed_latency
    assert rules.within_tolerance(greedy.claimed_latency, own, g.params.tolerance, g.params.tolerance_abs)
    assert not rules.within_tolerance(grab.claimed_latency, own, g.params.tolerance, g.params.tolerance_abs)  # ... but voted down
    assert rules.proposal_offence(g, s, grab) is not None and rules.proposal_offence(g, s, greedy) is None
    prop = Proposal(g.chain_id, 1, 0, -1, grab, KEYS[who].address)
    prop.sig = KEYS[who].sign(prop.sign_bytes())
    ev = rules.Evidence("invalid-proposal", KEYS[who].address, 1, 0, prop.to_dict())
    rules.check_evidence(g, ev, lambda h: s)
    honest = Proposal(g.chain_id, 1, 0, -1, greedy, KEYS[who].address)
    honest.sig = KEYS[who].sign(honest.sign_bytes())
    with pytest.raises(InvalidBlock):
        rules.check_evidence(g, rules.Evidence("invalid-proposal", KEYS[who].address, 1, 0, honest.to_dict()), lambda h: s)


def test_arbitrated_allocation_is_accepted_only_when_signed_by_the_arbiter_late_enough():
    g = make_genesis(arbitration_rounds=2)
    s = rules.initial_state(g)
    txs = tasks(10)
    x = [0] * len(txs)
    sig = ARBITER.sign(rules.arbitration_bytes(g.chain_id, 1, s.last_hash, [t.id for t in txs], x))
    b = propose(g, s, txs, assignment=x, round_=2, arbitration={"sig": sig})
    assert rules.arbitration_ok(g, b)
    check(g, s, b)
    early = propose(g, s, txs, assignment=x, round_=1, arbitration={"sig": sig})
    with pytest.raises(InvalidBlock, match="arbitration"):
        check(g, s, early)
    forged_sig = KEYS[0].sign(rules.arbitration_bytes(g.chain_id, 1, s.last_hash, [t.id for t in txs], x))
    with pytest.raises(InvalidBlock, match="arbitration"):
        check(g, s, propose(g, s, txs, assignment=x, round_=2, arbitration={"sig": forged_sig}))


def test_equivocation_evidence_lowers_the_score():
    g = make_genesis()
    s = rules.initial_state(g)
    a = sign_vote(g, 3, PREVOTE, 1, 0, "aa" * 32)
    b = sign_vote(g, 3, PREVOTE, 1, 0, None)
    ev = rules.equivocation(g, a, b)
    assert ev is not None and rules.equivocation(g, a, a) is None
    assert rules.equivocation(g, a, sign_vote(g, 3, PREVOTE, 1, 1, None)) is None  # other round: fine
    rules.check_evidence(g, ev, lambda h: s)
    blk = propose(g, s, tasks(8), evidence=[ev])
    _, after = check(g, s, blk, evidence_ok=lambda e: rules.check_evidence(g, e, lambda h: s))
    assert after.penalties[3] == 1 and after.scores[3] == 0.0 and all(x > 0 for x in after.scores[:3])
    forged = dict(ev.b)
    forged["sig"] = KEYS[0].sign(b"x")
    bad = rules.Evidence("equivocation", ev.validator, 1, 0, ev.a, forged)
    with pytest.raises(InvalidBlock):
        rules.check_evidence(g, bad, lambda h: s)


# ------------------------------------------------------------------ store

def test_store_never_signs_two_votes_for_one_height_round_even_after_reopening(tmp_path):
    g = make_genesis()
    store = BlockStore(tmp_path / "chain.sqlite")
    v1 = store.sign_vote_once(Vote(g.chain_id, 5, 0, PREVOTE, "aa" * 32, KEYS[0].address), KEYS[0].sign)
    store.close()
    store = BlockStore(tmp_path / "chain.sqlite")  # "after a crash"
    v2 = store.sign_vote_once(Vote(g.chain_id, 5, 0, PREVOTE, None, KEYS[0].address), KEYS[0].sign)
    assert v2.block_hash == v1.block_hash and v2.sig == v1.sig
    v3 = store.sign_vote_once(Vote(g.chain_id, 5, 1, PREVOTE, None, KEYS[0].address), KEYS[0].sign)
    assert v3.block_hash is None and rules.vote_ok(g, v3)


def test_store_keeps_blocks_state_tasks_and_pending(tmp_path):
    g = make_genesis()
    s = rules.initial_state(g)
    txs = tasks(6)
    store = BlockStore(tmp_path / "chain.sqlite")
    store.add_pending(txs)
    b = propose(g, s, txs)
    _, after = check(g, s, b)
    store.save_block(b, commit_for(g, b), after, [1.0] * 6)
    store.close()
    store = BlockStore(tmp_path / "chain.sqlite")
    assert store.height() == 1 and store.block(1).hash == b.hash and store.state().to_dict() == after.to_dict()
    assert store.pending() == [] and store.task(txs[0].id)["status"] == "committed"


# ------------------------------------------------------------------ the state machine, four in memory

class MemoryNet:
    """Four honest machines wired through a FIFO of messages (no sockets), for the round logic."""

    def __init__(self, genesis, state, offline=()):
        self.genesis, self.state, self.queue, self.timers, self.decided = genesis, state, [], [], {}
        self.machines = {}
        for i in range(4):
            if i in offline:
                continue
            drv = _Driver(self, i)
            self.machines[i] = HeightMachine(genesis, state, i, drv, {"propose": 1, "prevote": 1, "precommit": 1, "delta": 0})

    def run(self, max_steps=10000):
        for m in self.machines.values():
            m.start_round(0)
        for _ in range(max_steps):
            if self.queue:
                target, kind, msg = self.queue.pop(0)
                m = self.machines[target]
                m.on_proposal(msg) if kind == "proposal" else m.on_vote(msg)
            elif self.timers:
                target, step, h, r = self.timers.pop(0)
                self.machines[target].on_timeout(step, h, r)
            else:
                return


class _Driver:
    def __init__(self, net, i):
        self.net, self.i = net, i

    def _all(self, kind, msg):
        for j in self.net.machines:
            self.net.queue.append((j, kind, msg))

    def propose(self, height, round_, valid_block, valid_round):
        b = valid_block or propose(self.net.genesis, self.net.state, tasks(5), round_=round_)
        p = Proposal(self.net.genesis.chain_id, height, round_, valid_round if valid_block else -1, b, KEYS[self.i].address)
        self._all("proposal", p)

    def vote(self, vtype, height, round_, block_hash):
        self._all("vote", sign_vote(self.net.genesis, self.i, vtype, height, round_, block_hash))

    def schedule(self, step, height, round_, delay):
        self.net.timers.append((self.i, step, height, round_))

    def acceptable(self, block, round_):
        return True

    def valid(self, block):
        return True

    def decide(self, block, commit):
        self.net.decided[self.i] = (block.hash, commit)

    def equivocation(self, a, b):
        raise AssertionError("honest nodes do not equivocate")

    def missing_block(self, height, round_, block_hash):
        pass


@pytest.mark.parametrize("offline", [(), (0,), (1,), (2,), (3,)])
def test_state_machine_agrees_with_one_node_down(offline):
    g = make_genesis()
    net = MemoryNet(g, rules.initial_state(g), offline)
    net.run()
    hashes = {h for h, _ in net.decided.values()}
    assert len(net.decided) == 4 - len(offline) and len(hashes) == 1
    for _, commit in net.decided.values():
        rules.check_commit(g, commit, 1, commit.block_hash)


def test_state_machine_stalls_without_a_quorum():
    g = make_genesis()
    net = MemoryNet(g, rules.initial_state(g), offline=(0, 1))
    net.run(max_steps=500)
    assert net.decided == {}


# ------------------------------------------------------------------ chain verify catches tampering

def _write_chain(home, n_blocks=3):
    from edgepoc.chain.store import BlockStore
    g = make_genesis()
    g.save(home / "genesis.json")
    store = BlockStore(home / "data" / "chain.sqlite")
    s, prev_commit = rules.initial_state(g), None
    for h in range(n_blocks):
        txs = tasks(10, nonce0=100 * h, seed=h)
        b = propose(g, s, txs, last_commit=prev_commit)
        _, after = check(g, s, b)
        inst = rules.block_instance(g, txs)
        _, completion, _ = simulate_state(inst, b.assignment, s.free_times)
        store.save_block(b, commit_for(g, b), after, [max(0.0, c - t.arrival) for c, t in zip(completion, txs)])
        s, prev_commit = after, commit_for(g, b)
    store.close()


@pytest.mark.parametrize("sql,problem", [
    (None, None),
    ("UPDATE tasks SET provider = (provider + 1) % 4 WHERE position = 3 AND height = 2", "task index"),
    ("UPDATE tasks SET latency = latency + 1e-9 WHERE position = 0 AND height = 3", "task index"),
    ("UPDATE blocks SET body = replace(body, '\"round\": 0', '\"round\": 1') WHERE height = 2", "height 2"),
    ("UPDATE blocks SET commit_body = replace(commit_body, '\"sig\": \"', '\"sig\": \"00') WHERE height = 3", "height 3"),
    ("UPDATE states SET body = replace(body, '\"tasks_committed\": 20', '\"tasks_committed\": 21') WHERE height = 2", "state"),
])
def test_chain_verify_detects_tampering(tmp_path, sql, problem):
    import sqlite3
    from edgepoc.chain.verify import verify_chain
    _write_chain(tmp_path)
    if sql:
        db = sqlite3.connect(tmp_path / "data" / "chain.sqlite")
        assert db.execute(sql).rowcount >= 1
        db.commit()
        db.close()
    rep = verify_chain(tmp_path)
    if problem is None:
        assert rep.ok and rep.blocks == 3 and rep.tasks == 30
    else:
        assert not rep.ok and problem in " ".join(rep.problems), rep.problems


def test_beyond_ten_providers_blocks_carry_a_seeded_monte_carlo_estimate():
    keys = [SigningKey.from_seed(f"big-{i}".encode()) for i in range(12)]
    g = Genesis("big", 0.0, make_validators([k.public_hex for k in keys], seed=4), ARBITER.public_hex,
                ConsensusParams(shapley_samples=32))
    s = rules.initial_state(g)
    txs = sorted([TaskRequest("big", CLIENT.public_hex, i, 0.01 * i, [0.2, 0.3]).signed(CLIENT) for i in range(60)],
                 key=rules.task_order_key)
    who = rules.proposer_index(g, s, 0)
    x = greedy_assignment(rules.block_instance(g, txs), s.free_times)[0].tolist()
    b = rules.build_block(g, s, round_=0, time=1.0, proposer=keys[who].address, tasks=txs, assignment=x,
                          evidence=[], last_commit=None)
    assert b.contribution_stderr > 0 and len(b.contributions) == 12
    _, after = rules.check_block(g, s, Block.from_dict(json.loads(json.dumps(b.to_dict()))), task_is_new=lambda t: True)
    assert after.height == 1
