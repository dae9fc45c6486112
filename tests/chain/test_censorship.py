"""Censorship from chain data (issue 20): vote extensions carry each validator's signed mempool report, the
next proposer must put all of them first in its block, and a block that leaves out a client reported waiting by
more than 1/3 of the power, with room and the client admissible, costs its proposer.

Driven in process with the protobuf requests CometBFT sends (ExtendVote, VerifyVoteExtension, PrepareProposal
with the extended last commit, ProcessProposal and FinalizeBlock with the last commit); the live network is in
test_hostile_live.py.
"""

from __future__ import annotations

import json

import pytest

from edgepoc.chain.abci import wire
from edgepoc.chain.abci.proto import pb
from edgepoc.chain.crypto import SigningKey, canonical
from tests.chain.test_app import CHAIN, KEYS, Harness, batch, make_genesis, ts

ACCEPT, REJECT = pb.PROCESS_PROPOSAL_STATUS_ACCEPT, pb.PROCESS_PROPOSAL_STATUS_REJECT


class Net:
    """One application (validator 0) and the other validators' signed reports, height by height."""

    def __init__(self, tmp_path, **params):
        params.setdefault("vote_extensions_height", 1)
        params.setdefault("censor_age", 0.0)
        self.h = Harness(tmp_path, make_genesis(**params))
        self.h.app.signer = KEYS[0]
        self.g = self.h.genesis
        self.t = 1.0

    def report(self, i: int, height: int, waiting: list) -> bytes:
        v = self.g.validators[i]
        return canonical(wire.MempoolReport(CHAIN, height, v.address, sorted(waiting)).signed(KEYS[i]).to_dict())

    def extended_commit(self, extensions: dict[int, bytes]):
        return pb.ExtendedCommitInfo(round=0, votes=[
            pb.ExtendedVoteInfo(validator=pb.Validator(address=bytes.fromhex(v.address), power=250),
                                vote_extension=extensions.get(i, b""), block_id_flag=2 if i in extensions else 1)
            for i, v in enumerate(self.g.validators)])

    @staticmethod
    def commit_info(ext) -> pb.CommitInfo:
        return pb.CommitInfo(round=0, votes=[pb.VoteInfo(validator=v.validator, block_id_flag=v.block_id_flag)
                                             for v in ext.votes])

    def prepare(self, mempool: list[bytes], ext=None) -> list[bytes]:
        return list(self.h.app.prepare_proposal(pb.PrepareProposalRequest(
            txs=mempool, max_tx_bytes=4 << 20, height=self.h.height + 1, time=ts(self.g.genesis_time + self.t),
            local_last_commit=ext, proposer_address=bytes.fromhex(self.g.validators[1].address))).txs)

    def process(self, txs: list[bytes], ext=None, proposer: int = 1) -> int:
        hh = bytes([self.h.height + 1]) * 32
        return self.h.app.process_proposal(pb.ProcessProposalRequest(
            txs=txs, height=self.h.height + 1, time=ts(self.g.genesis_time + self.t), hash=hh,
            proposed_last_commit=self.commit_info(ext) if ext is not None else None,
            proposer_address=bytes.fromhex(self.g.validators[proposer].address))).status

    def finalize(self, txs: list[bytes], ext=None, proposer: int = 1) -> dict:
        hh = bytes([self.h.height + 1]) * 32
        self.h.app.finalize_block(pb.FinalizeBlockRequest(
            txs=txs, height=self.h.height + 1, time=ts(self.g.genesis_time + self.t), hash=hh,
            decided_last_commit=self.commit_info(ext) if ext is not None else None,
            proposer_address=bytes.fromhex(self.g.validators[proposer].address)))
        self.h.app.commit(pb.CommitRequest())
        self.h.height += 1
        self.t += 1.0
        return self.h.app.store.block(self.h.height)

    def height(self, txs: list[bytes], ext=None, proposer: int = 1) -> dict:
        assert self.process(txs, ext, proposer) == ACCEPT
        return self.finalize(txs, ext, proposer)


def test_extend_vote_reports_waiting_clients_and_verify_checks_every_field(tmp_path):
    n = Net(tmp_path, timeout_commit=0.0)  # the next proposer may begin at once: a batch after the commit is fresh
    waiting, inblock = batch(3, nonce0=0, seed=1), batch(3, nonce0=10, seed=2, key=SigningKey.generate())
    assert n.h.check(waiting).code == 0 and n.h.check(inblock).code == 0
    late = batch(3, nonce0=20, seed=3, key=SigningKey.generate())
    n.height(n.prepare([]))  # height 1 (reports not due yet) left both out
    assert n.h.check(late).code == 0  # after the last commit: the next proposer may not have it yet
    voted = n.prepare([inblock.tx()], n.extended_commit({i: n.report(i, 1, []) for i in range(4)}))
    ext = n.h.app.extend_vote(pb.ExtendVoteRequest(hash=b"x" * 32, height=2, txs=voted)).vote_extension
    report = json.loads(ext)
    assert report["validator"] == n.g.validators[0].address and report["height"] == 2
    assert [c for c, *_ in report["waiting"]] == [waiting.client], "in the block voted for, or too fresh: not waiting"
    assert report["waiting"][0][1:] == [pytest.approx(report["waiting"][0][1]), 3, len(waiting.tx())]
    assert report["waiting"][0][1] > 0, "with its batch's work, tasks and bytes"

    def verify(raw: bytes, height: int = 2, who: int = 0) -> int:
        return n.h.app.verify_vote_extension(pb.VerifyVoteExtensionRequest(
            hash=b"x" * 32, validator_address=bytes.fromhex(n.g.validators[who].address), height=height,
            vote_extension=raw)).status

    ok, bad = pb.VERIFY_VOTE_EXTENSION_STATUS_ACCEPT, pb.VERIFY_VOTE_EXTENSION_STATUS_REJECT
    assert verify(ext) == ok
    assert verify(ext, height=3) == bad, "another height"
    assert verify(ext, who=1) == bad, "another validator's report"
    assert verify(b"") == bad and verify(b"\x00" * 100) == bad and verify(b"[" * 10_000) == bad
    forged = {**report, "waiting": []}
    assert verify(canonical(forged)) == bad, "changed after signing"
    many = [[f"{i:064x}", 0.1, 1, 100] for i in range(n.g.params.max_report_clients + 1)]
    assert verify(n.report(0, 2, many)) == bad, "more clients than max_report_clients"
    assert verify(ext + b" ") == bad, "not canonical"


def test_the_block_must_carry_exactly_the_last_commits_reports(tmp_path):
    n = Net(tmp_path)
    n.height(n.prepare([]))
    ext = n.extended_commit({0: n.report(0, 1, []), 1: n.report(1, 1, []), 2: n.report(2, 1, [])})
    honest = n.prepare([], ext)
    assert len(honest) == 1 and json.loads(honest[0])["type"] == "reports"
    assert n.process(honest, ext) == ACCEPT
    assert n.process([], ext) == REJECT, "no reports"
    rep = json.loads(honest[0])
    drop = canonical({**rep, "reports": rep["reports"][:2]})
    assert n.process([drop], ext) == REJECT, "a signer's report left out"
    extra = canonical({**rep, "reports": [*rep["reports"], json.loads(n.report(3, 1, []))]})
    assert n.process([extra], ext) == REJECT, "a report of a validator that did not sign"
    twice = canonical({**rep, "reports": [rep["reports"][0]] * 3})
    assert n.process([twice], ext) == REJECT, "one report three times"
    r0 = {**rep["reports"][0], "waiting": []}
    r0["sig"] = KEYS[1].sign(canonical({k: v for k, v in r0.items() if k != "sig"}))
    assert n.process([canonical({**rep, "reports": [r0, *rep["reports"][1:]]})], ext) == REJECT, "forged signature"
    assert n.process([canonical({**rep, "height": 0})], ext) == REJECT, "another height"
    assert n.h.check(honest[0]).code != 0, "reports come from proposers only, never the mempool"
    n.finalize(honest, ext)


def _censoring_heights(n: Net, reporters: list[int], include: bool, client_key: SigningKey, proposer: int) -> dict:
    """Two heights: `proposer`'s block, which serves another client and `client_key`'s batch only if `include`;
    then the next block, whose reports (on the first) name `client_key` as waiting by `reporters`. Returns the
    second block's record."""
    b = batch(5, nonce0=n.h.height * 100, seed=n.h.height, key=client_key)
    other = batch(5, nonce0=n.h.height * 100, seed=n.h.height + 50)
    assert n.h.check(other).code == 0 and (not include or n.h.check(b).code == 0)
    blank = n.extended_commit({i: n.report(i, n.h.height, []) for i in range(4)})
    n.height(n.prepare([other.tx(), *([b.tx()] if include else [])], blank), blank, proposer=proposer)
    ext = n.extended_commit({i: n.report(i, n.h.height, [[b.client, 0.01, 5, 900]] if i in reporters else [])
                             for i in range(4)})
    return n.height(n.prepare([], ext), ext, proposer=(proposer + 1) % 4)


def test_leaving_out_a_client_reported_by_over_a_third_of_the_power_costs_the_proposer(tmp_path):
    n = Net(tmp_path, max_client_backlog=2.0)
    n.height(n.prepare([]))
    victim = SigningKey.generate()
    for _ in range(8):  # some rewards to lose
        _censoring_heights(n, [], include=False, client_key=victim, proposer=2)
    balances = list(n.h.app.state.balances)
    assert balances[2] > 1_000_000
    rec = _censoring_heights(n, [0, 1], include=False, client_key=victim, proposer=2)  # 500 of 1000 > 1/3
    st = n.h.app.state
    assert rec["censored"] == {"height": n.h.height - 1, "proposer": "node2", "clients": [victim.public_hex]}
    assert st.censorships == [0, 0, 1, 0]
    paid = [a - b for a, b in zip(st.balances, balances)]
    others = [x for i, x in enumerate(paid) if i != 2]
    assert paid[2] < min(others), f"the censor pays censor_fine out of its rewards: {paid}"
    rec = _censoring_heights(n, [0], include=False, client_key=victim, proposer=2)  # 250 of 1000: not enough
    assert rec["censored"] is None and n.h.app.state.censorships == [0, 0, 1, 0], "one reporter cannot accuse"
    rec = _censoring_heights(n, [0, 1, 2, 3], include=True, client_key=victim, proposer=2)
    assert rec["censored"] is None, "served"
    # a client that is busy by the committed state may be left out: the rule excuses it
    busy = SigningKey.generate()
    heavy = batch(40, nonce0=10**6, key=busy)  # ~4 s of the network's capacity: > max_client_backlog ahead
    blank = n.extended_commit({i: n.report(i, n.h.height, []) for i in range(4)})
    n.height(n.prepare([heavy.tx()], blank), blank)
    assert n.h.app.state.client_busy[busy.public_hex] - n.h.app.state.last_time > n.g.params.max_client_backlog
    rec = _censoring_heights(n, [0, 1, 2], include=False, client_key=busy, proposer=2)
    assert rec["censored"] is None
    assert n.h.app.state.censorships == [0, 0, 1, 0]


def test_a_block_with_no_room_for_the_batch_is_excused(tmp_path):
    n = Net(tmp_path, max_block_tasks=8)  # the other client's 5 tasks + the reported 5 would not fit
    n.height(n.prepare([]))
    rec = _censoring_heights(n, [0, 1, 2, 3], include=False, client_key=SigningKey.generate(), proposer=2)
    assert rec["censored"] is None


def test_an_honest_proposer_with_the_batch_in_its_mempool_is_never_accused(tmp_path):
    n = Net(tmp_path)
    n.height(n.prepare([]))
    for k in range(5):
        rec = _censoring_heights(n, [0, 1, 2, 3], include=True, client_key=SigningKey.generate(), proposer=k % 4)
        assert rec["censored"] is None
    assert n.h.app.state.censorships == [0, 0, 0, 0]


@pytest.mark.parametrize("vote_extensions_height", [0, 3])
def test_reports_are_due_only_after_the_height_extensions_start(tmp_path, vote_extensions_height):
    n = Net(tmp_path, vote_extensions_height=vote_extensions_height)
    for h in range(1, 6):
        due = 0 < vote_extensions_height < h
        ext = n.extended_commit({i: n.report(i, h - 1, []) for i in range(4)}) if due else None
        txs = n.prepare([], ext)
        assert (len(txs) == 1) == due, (h, txs)
        if not due:
            fake = wire.Reports(h - 1, []).tx()
            assert n.process([fake], ext) == REJECT, "reports before they are due"
        n.height(txs, ext)


def test_fuzz_vote_extensions_and_reports_never_raise(tmp_path_factory):
    """Random bytes and mutated JSON as a vote extension (VerifyVoteExtension) and as a block's reports
    (ProcessProposal): always an answer, never an exception; and a valid report still verifies after."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    n = Net(tmp_path_factory.mktemp("fuzz"))
    n.height(n.prepare([]))
    ext = n.extended_commit({i: n.report(i, 1, []) for i in range(4)})
    good = json.loads(n.prepare([], ext)[0])
    ok = pb.VERIFY_VOTE_EXTENSION_STATUS_ACCEPT
    addr = bytes.fromhex(n.g.validators[0].address)

    def verify(raw: bytes) -> int:
        return n.h.app.verify_vote_extension(pb.VerifyVoteExtensionRequest(
            hash=b"x" * 32, validator_address=addr, height=1, vote_extension=raw)).status

    leaves = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False, allow_infinity=False),
                       st.text(max_size=70))
    values = st.recursive(leaves, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
                          max_leaves=20)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(raw=st.binary(max_size=300), field=st.sampled_from(["height", "reports", "type", "extra"]), value=values)
    def run(raw, field, value):
        assert verify(raw) != ok
        mutated = {**good, field: value}
        assert n.process([canonical(mutated)], ext) in (ACCEPT, REJECT)
        r0 = {**good["reports"][0], field: value}
        assert verify(canonical(r0)) != ok or r0 == good["reports"][0]

    run()
    assert verify(n.report(0, 1, [])) == ok and n.process(n.prepare([], ext), ext) == ACCEPT
