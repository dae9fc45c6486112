"""The consensus rules as pure functions over plain data (ethereum consensus-specs style).

Nothing here does I/O or keeps state between calls: the node, the state machine, the catch-up path
and `chain verify` all call the same functions, so the rules a reader checks against
docs/consensus.md are the rules that run. A violated rule raises `InvalidBlock` with the reason.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from edgepoc.chain.contribution import ShapleyResult, shapley
from edgepoc.chain.crypto import canonical, sha256_hex, verify
from edgepoc.chain.genesis import Genesis
from edgepoc.chain.types import (EQUIVOCATION, INVALID_PROPOSAL, PRECOMMIT, Block, Commit, Evidence, Proposal,
                                 TaskRequest, Vote)
from edgepoc.errors import EdgepocError, InputError
from edgepoc.game.instance import Instance
from edgepoc.game.kernel import greedy_assignment, simulate_state


class InvalidBlock(EdgepocError):
    """A block (or evidence, or commit) that breaks a consensus rule; the message says which."""


@dataclass
class ChainState:
    """What the chain carries from block to block (besides the blocks themselves)."""

    height: int  # last committed height; 0 = genesis
    last_hash: str  # hash of the last block (the genesis hash at height 0)
    last_time: float
    free_times: list[float]  # providers' queue state: when each becomes free (chain clock)
    scores: list[float]  # decayed contribution scores (proof of contribution weights)
    balances: list[float]  # reward ledger
    penalties: list[int] = field(default_factory=list)  # committed evidence per validator
    tasks_committed: int = 0

    def to_dict(self) -> dict:
        return {"height": self.height, "last_hash": self.last_hash, "last_time": self.last_time,
                "free_times": self.free_times, "scores": self.scores, "balances": self.balances,
                "penalties": self.penalties, "tasks_committed": self.tasks_committed}

    @classmethod
    def from_dict(cls, d: dict) -> "ChainState":
        return cls(**d)

    @property
    def hash(self) -> str:
        """Hash of the state after a block (its `last_hash`/`height` excluded: they are the block's own)."""
        d = self.to_dict()
        d.pop("last_hash")
        return sha256_hex(canonical(d))


def initial_state(genesis: Genesis) -> ChainState:
    k = len(genesis.validators)
    p = genesis.params
    return ChainState(0, genesis.hash, genesis.genesis_time, [0.0] * k, [p.initial_score] * k, [0.0] * k, [0] * k, 0)


# ---------------------------------------------------------------- proof of contribution: proposer

def qualified(genesis: Genesis, state: ChainState) -> list[bool]:
    """Who may propose: score >= qualification x the mean positive score (all, if nobody would be)."""
    pos = [s for s in state.scores if s > 0]
    if not pos:
        return [True] * len(genesis.validators)
    bar = genesis.params.qualification * (sum(pos) / len(pos))
    out = [s > 0 and s >= bar for s in state.scores]
    return out if any(out) else [True] * len(genesis.validators)


def proposer_weights(genesis: Genesis, state: ChainState) -> list[int]:
    """Integer weights (micro-units of score) of the qualified validators; the rest weigh 0."""
    q = qualified(genesis, state)
    w = [int(round(max(s, 0.0) * 1e6)) if ok else 0 for s, ok in zip(state.scores, q)]
    if sum(w) == 0:
        w = [1 if ok else 0 for ok in q]
    return w


def proposer_index(genesis: Genesis, state: ChainState, round_: int) -> int:
    """The proposer of height `state.height + 1`, round `round_`: drawn in proportion to the weights
    from a seed every node derives from the previous block hash."""
    w = proposer_weights(genesis, state)
    seed = hashlib.sha256(f"{state.last_hash}:{state.height + 1}:{round_}".encode()).digest()
    ticket = int.from_bytes(seed, "big") % sum(w)
    for i, wi in enumerate(w):
        if ticket < wi:
            return i
        ticket -= wi
    raise AssertionError("unreachable")


# ---------------------------------------------------------------- votes and commits

def two_thirds(power: int, total: int) -> bool:
    """More than two thirds of the voting power (integers: no rounding)."""
    return 3 * power > 2 * total


def one_third(power: int, total: int) -> bool:
    """At least f+1: more than one third, so at least one honest validator is among them."""
    return 3 * power > total


def vote_ok(genesis: Genesis, vote: Vote) -> bool:
    i = genesis.index_of(vote.validator)
    return (vote.chain_id == genesis.chain_id and i is not None
            and verify(genesis.validators[i].public_key, vote.sign_bytes(), vote.sig))


def check_commit(genesis: Genesis, commit: Commit, height: int, block_hash: str) -> None:
    """A commit for `block_hash` at `height`: distinct validators' valid precommits, > 2/3 of the power."""
    if commit.height != height or commit.block_hash != block_hash:
        raise InvalidBlock(f"commit: for height {commit.height} block {commit.block_hash[:12]}, "
                           f"expected height {height} block {block_hash[:12]}")
    seen: set[str] = set()
    power = 0
    for v in commit.votes:
        if (v.type != PRECOMMIT or v.height != height or v.round != commit.round or v.block_hash != block_hash
                or v.validator in seen):
            raise InvalidBlock(f"commit: vote of {v.validator[:8]} does not belong to this commit")
        if not vote_ok(genesis, v):
            raise InvalidBlock(f"commit: bad signature from {v.validator[:8]}")
        seen.add(v.validator)
        power += genesis.validators[genesis.index_of(v.validator)].power
    if not two_thirds(power, genesis.total_power):
        raise InvalidBlock(f"commit: {power} of {genesis.total_power} voting power is not more than 2/3")


# ---------------------------------------------------------------- the block's game

def task_order_key(t: TaskRequest) -> tuple[float, str]:
    return (t.arrival, t.id)


def block_instance(genesis: Genesis, tasks: list[TaskRequest], height: int = 0) -> Instance:
    """The game instance of a block's tasks on the validators' capacities and delays."""
    k, r = len(genesis.validators), genesis.n_resources
    for i, t in enumerate(tasks):
        if len(t.demand) != r:
            raise InvalidBlock(f"tasks[{i}].demand: expected {r} resources, got {len(t.demand)}")
        if t.delays is not None and len(t.delays) != k:
            raise InvalidBlock(f"tasks[{i}].delays: expected {k} delays, got {len(t.delays)}")
    task_delays = None
    if any(t.delays is not None for t in tasks):
        task_delays = [t.delays if t.delays is not None else [v.delay for v in genesis.validators] for t in tasks]
    try:
        return Instance.create(genesis.capacity, genesis.delays, [t.arrival for t in tasks],
                               np.array([t.demand for t in tasks], dtype=np.float64).reshape(len(tasks), r),
                               task_delays, name=f"block-{height}", provider_ids=[v.name for v in genesis.validators],
                               task_ids=[t.id for t in tasks])
    except InputError as exc:
        raise InvalidBlock(str(exc)) from None


def contribution_seed(prev_hash: str, height: int) -> int:
    return int(sha256_hex(f"shapley:{prev_hash}:{height}".encode())[:16], 16)


@dataclass
class BlockEffects:
    claimed_latency: float
    free_after: list[float]
    shapley: ShapleyResult


def block_effects(genesis: Genesis, state: ChainState, tasks: list[TaskRequest], assignment) -> BlockEffects:
    """Re-run the kernel and the contribution game for a block: the numbers every node must agree on."""
    p = genesis.params
    if not tasks:
        return BlockEffects(0.0, list(state.free_times), ShapleyResult([0.0] * len(genesis.validators), 0.0, True, 0.0))
    inst = block_instance(genesis, tasks, state.height + 1)
    try:
        total, _, free_after = simulate_state(inst, assignment, state.free_times)
    except InputError as exc:
        raise InvalidBlock(str(exc)) from None
    sh = shapley(inst, state.free_times, p.l_cloud, p.shapley_exact_max, p.shapley_samples,
                 contribution_seed(state.last_hash, state.height + 1))
    return BlockEffects(total, [float(f) for f in free_after], sh)


def next_state(genesis: Genesis, state: ChainState, block: Block, effects: BlockEffects) -> ChainState:
    """The state after `block`: queue state, decayed scores + Shapley values, rewards, evidence penalties."""
    p = genesis.params
    scores = list(state.scores)
    balances = list(state.balances)
    penalties = list(state.penalties)
    if block.tasks:
        phi = effects.shapley.values
        scores = [p.decay * s + f for s, f in zip(scores, phi)]
        positive = [max(f, 0.0) for f in phi]
        total = sum(positive)
        if total > 0:
            balances = [b + p.block_reward * f / total for b, f in zip(balances, positive)]
    for ev in block.evidence:
        i = genesis.index_of(ev.validator)
        scores[i] = scores[i] * (1.0 - p.evidence_penalty)
        penalties[i] += 1
    return ChainState(block.height, block.hash, block.time, effects.free_after, scores, balances, penalties,
                      state.tasks_committed + len(block.tasks))


def greedy_reference_latency(genesis: Genesis, state: ChainState, tasks: list[TaskRequest]) -> float:
    if not tasks:
        return 0.0
    return greedy_assignment(block_instance(genesis, tasks), state.free_times)[1]


def within_tolerance(claimed: float, reference: float, tolerance: float, tolerance_abs: float) -> bool:
    """The prevote rule: the proposal's latency is at most the reference's, plus the tolerance."""
    return claimed <= reference * (1.0 + tolerance) + tolerance_abs


def arbitration_bytes(chain_id: str, height: int, prev_hash: str, task_ids: list[str], assignment: list[int]) -> bytes:
    return canonical({"type": "arbitration", "chain_id": chain_id, "height": height, "prev_hash": prev_hash,
                      "tasks": task_ids, "assignment": assignment})


def arbitration_ok(genesis: Genesis, block: Block) -> bool:
    """The arbiter signed exactly this allocation of exactly these tasks, at a round where it may."""
    if block.arbitration is None or block.round < genesis.params.arbitration_rounds:
        return False
    msg = arbitration_bytes(genesis.chain_id, block.height, block.prev_hash, [t.id for t in block.tasks],
                            block.assignment)
    return verify(genesis.arbiter_public_key, msg, str(block.arbitration.get("sig", "")))


# ---------------------------------------------------------------- blocks

TaskCheck = Callable[[TaskRequest], bool]


def check_block(genesis: Genesis, state: ChainState, block: Block, *,
                task_is_new: Callable[[str], bool],
                task_signature_ok: TaskCheck = TaskRequest.signature_ok,
                evidence_ok: Callable[[Evidence], None] | None = None) -> tuple[BlockEffects, ChainState]:
    """Every deterministic rule a block must satisfy on top of `state`; returns its effects and the next state.

    The subjective rule (latency within tolerance of the validator's own allocation) is separate:
    `within_tolerance`. `task_is_new(id)` says a task id was never committed; `evidence_ok` checks
    one piece of evidence (raising InvalidBlock) against the chain's history.
    """
    p = genesis.params
    if block.chain_id != genesis.chain_id:
        raise InvalidBlock(f"chain_id: {block.chain_id!r:.40} is not {genesis.chain_id!r}")
    if block.height != state.height + 1:
        raise InvalidBlock(f"height: {block.height}, expected {state.height + 1}")
    if block.prev_hash != state.last_hash:
        raise InvalidBlock("prev_hash: does not extend the last block")
    if not block.time > state.last_time:
        raise InvalidBlock("time: not after the previous block's")
    if block.round < 0:
        raise InvalidBlock("round: negative")
    expected = genesis.validators[proposer_index(genesis, state, block.round)].address
    if block.proposer != expected:
        raise InvalidBlock(f"proposer: {block.proposer[:8]} is not the proposer of round {block.round} ({expected[:8]})")
    if block.height == 1:
        if block.last_commit is not None:
            raise InvalidBlock("last_commit: block 1 has none")
    else:
        if block.last_commit is None:
            raise InvalidBlock("last_commit: missing")
        check_commit(genesis, block.last_commit, block.height - 1, state.last_hash)
    if len(block.tasks) > p.max_block_tasks:
        raise InvalidBlock(f"tasks: {len(block.tasks)} > max_block_tasks {p.max_block_tasks}")
    if len(block.assignment) != len(block.tasks):
        raise InvalidBlock("assignment: one provider per task needed")
    k = len(genesis.validators)
    if any(not 0 <= x < k for x in block.assignment):
        raise InvalidBlock("assignment: provider index out of range")
    prev_key = None
    for i, t in enumerate(block.tasks):
        key = task_order_key(t)
        if prev_key is not None and not key > prev_key:
            raise InvalidBlock(f"tasks[{i}]: not in (arrival, id) order or duplicated")
        prev_key = key
        if t.chain_id != genesis.chain_id:
            raise InvalidBlock(f"tasks[{i}]: wrong chain id")
        if not task_is_new(t.id):
            raise InvalidBlock(f"tasks[{i}]: {t.id} was already committed (replay)")
        if not task_signature_ok(t):
            raise InvalidBlock(f"tasks[{i}]: bad client signature")
    if block.arbitration is not None and not arbitration_ok(genesis, block):
        raise InvalidBlock("arbitration: not a valid arbiter signature for this allocation and round")
    seen_ev = set()
    for i, ev in enumerate(block.evidence):
        if ev.id in seen_ev:
            raise InvalidBlock(f"evidence[{i}]: duplicated")
        seen_ev.add(ev.id)
        if ev.height > block.height:
            raise InvalidBlock(f"evidence[{i}]: from the future")
        if evidence_ok is None:
            raise InvalidBlock(f"evidence[{i}]: cannot be checked here")
        evidence_ok(ev)
    effects = block_effects(genesis, state, block.tasks, block.assignment)
    if effects.claimed_latency != block.claimed_latency:
        raise InvalidBlock(f"claimed_latency: {block.claimed_latency!r} but the kernel gives {effects.claimed_latency!r}")
    if effects.shapley.values != block.contributions or effects.shapley.stderr != block.contribution_stderr:
        raise InvalidBlock("contributions: do not match the Shapley values")
    after = next_state(genesis, state, block, effects)
    if block.state_hash != after.hash:
        raise InvalidBlock("state_hash: does not match the state after the block")
    return effects, after


def build_block(genesis: Genesis, state: ChainState, *, round_: int, time: float, proposer: str,
                tasks: list[TaskRequest], assignment: list[int], evidence: list[Evidence],
                last_commit: Commit | None, arbitration: dict | None = None) -> Block:
    """Assemble a block whose derived fields (latency, contributions, state hash) are right."""
    effects = block_effects(genesis, state, tasks, assignment)
    block = Block(genesis.chain_id, state.height + 1, round_, state.last_hash, max(time, state.last_time + 1e-6),
                  proposer, tasks, [int(x) for x in assignment], effects.claimed_latency, effects.shapley.values,
                  effects.shapley.stderr, evidence, last_commit, arbitration, "")
    block.state_hash = next_state(genesis, state, block, effects).hash
    block.__dict__.pop("hash", None)  # the hash was taken (as last_hash) before state_hash was set
    return block


# ---------------------------------------------------------------- evidence

def equivocation(genesis: Genesis, a: Vote, b: Vote) -> Evidence | None:
    """Evidence when two validly signed votes of one validator conflict at one height, round and type."""
    if (a.validator == b.validator and a.height == b.height and a.round == b.round and a.type == b.type
            and a.block_hash != b.block_hash and vote_ok(genesis, a) and vote_ok(genesis, b)):
        first, second = sorted([a.to_dict(), b.to_dict()], key=canonical)
        return Evidence(EQUIVOCATION, a.validator, a.height, a.round, first, second)
    return None


def proposal_ok(genesis: Genesis, proposal: Proposal) -> bool:
    i = genesis.index_of(proposal.proposer)
    block = proposal.block
    fresh = proposal.pol_round == -1
    return (proposal.chain_id == genesis.chain_id and i is not None and block.height == proposal.height
            and (block.round == proposal.round and block.proposer == proposal.proposer if fresh
                 else block.round <= proposal.pol_round < proposal.round)
            and verify(genesis.validators[i].public_key, proposal.sign_bytes(), proposal.sig))


def proposal_offence(genesis: Genesis, state: ChainState, block: Block) -> str | None:
    """A deterministic reason to punish the proposer of `block` built on `state`, or None.

    Only objective faults count: a claimed latency the kernel does not reproduce, or (without the
    arbiter's signature) a latency worse than the greedy reference by more than `evidence_tolerance`
    (the grab-all proposer). A merely worse-than-my-student block is voted down, not punished.
    """
    if block.arbitration is not None:
        return None
    try:
        effects = block_effects(genesis, state, block.tasks, block.assignment)
        reference = greedy_reference_latency(genesis, state, block.tasks)
    except InvalidBlock:
        return None
    if effects.claimed_latency != block.claimed_latency:
        return "claimed latency does not match the kernel"
    p = genesis.params
    if not within_tolerance(block.claimed_latency, reference, p.evidence_tolerance, p.tolerance_abs):
        return f"latency {block.claimed_latency:.4g} is far worse than greedy {reference:.4g}"
    return None


def check_evidence(genesis: Genesis, ev: Evidence, state_before: Callable[[int], ChainState | None]) -> None:
    """Raise InvalidBlock unless `ev` proves misbehaviour; `state_before(h)` is the state at height h-1."""
    if genesis.index_of(ev.validator) is None:
        raise InvalidBlock("evidence: unknown validator")
    if ev.kind == EQUIVOCATION:
        try:
            a, b = Vote.from_dict(ev.a), Vote.from_dict(ev.b)
        except InputError as exc:
            raise InvalidBlock(f"evidence: {exc}") from None
        if equivocation(genesis, a, b) is None or (a.validator, a.height, a.round) != (ev.validator, ev.height, ev.round):
            raise InvalidBlock("evidence: the two votes do not prove an equivocation")
        return
    if ev.kind == INVALID_PROPOSAL:
        try:
            prop = Proposal.from_dict(ev.a)
        except InputError as exc:
            raise InvalidBlock(f"evidence: {exc}") from None
        if (not proposal_ok(genesis, prop) or prop.pol_round != -1
                or (prop.proposer, prop.height, prop.round) != (ev.validator, ev.height, ev.round)):
            raise InvalidBlock("evidence: not a proposal signed by the accused")
        before = state_before(prop.height)
        if before is None or before.last_hash != prop.block.prev_hash:
            raise InvalidBlock("evidence: the proposal does not build on the chain")
        if proposal_offence(genesis, before, prop.block) is None:
            raise InvalidBlock("evidence: the proposal is not objectively invalid")
        return
    raise InvalidBlock(f"evidence: unknown kind {ev.kind!r}")


def evidence_power(genesis: Genesis, votes: Iterable[Vote]) -> int:
    return sum(genesis.validators[genesis.index_of(v.validator)].power for v in votes)
