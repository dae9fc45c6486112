"""Tendermint rounds for one height: propose, prevote, precommit, with timeouts and locking.

This is the algorithm of Buchman, Kwon and Milosevic, "The latest gossip on BFT consensus" (2018),
rule for rule (the comments name them); docs/consensus.md gives the safety argument. The machine
does no I/O: it reacts to proposals, votes and timeouts by calling its `Driver` (the node), which
signs, sends, schedules timers, checks blocks and stores the decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol

from edgepoc.chain.consensus import one_third, proposer_index, two_thirds
from edgepoc.chain.genesis import Genesis
from edgepoc.chain.types import PRECOMMIT, PREVOTE, Block, Commit, Proposal, Vote
from edgepoc.chain.consensus import ChainState


class Step(IntEnum):
    PROPOSE = 0
    PREVOTE = 1
    PRECOMMIT = 2
    DECIDED = 3


class Driver(Protocol):
    """What the machine needs from its node. `vote` and `propose` must not call back into the
    machine synchronously (the node delivers its own messages on the next loop iteration)."""

    def propose(self, height: int, round_: int, valid_block: Block | None, valid_round: int) -> None: ...
    def vote(self, vote_type: str, height: int, round_: int, block_hash: str | None) -> None: ...
    def schedule(self, step: Step, height: int, round_: int, delay: float) -> None: ...
    def acceptable(self, block: Block, round_: int) -> bool: ...  # valid and within tolerance: prevote it
    def valid(self, block: Block) -> bool: ...  # deterministic rules only: lock / commit it
    def decide(self, block: Block, commit: Commit) -> None: ...
    def equivocation(self, a: Vote, b: Vote) -> None: ...
    def missing_block(self, height: int, round_: int, block_hash: str) -> None: ...


@dataclass
class VoteSet:
    """The votes of one type at one round: first vote per validator counts; a second, different one is evidence."""

    powers: dict[str, int] = field(default_factory=dict)  # block hash ("" for nil) -> power
    votes: dict[str, Vote] = field(default_factory=dict)  # validator -> vote
    total: int = 0

    def add(self, vote: Vote, power: int) -> Vote | None:
        """Add; returns the earlier conflicting vote if `vote` equivocates."""
        old = self.votes.get(vote.validator)
        if old is not None:
            return old if old.block_hash != vote.block_hash else None
        self.votes[vote.validator] = vote
        key = vote.block_hash or ""
        self.powers[key] = self.powers.get(key, 0) + power
        self.total += power
        return None

    def power_for(self, block_hash: str | None) -> int:
        return self.powers.get(block_hash or "", 0)

    def for_hash(self, block_hash: str) -> list[Vote]:
        return [v for v in self.votes.values() if v.block_hash == block_hash]


class HeightMachine:
    """The consensus state of one height (Tendermint's `h_p` fixed); a new one per height."""

    def __init__(self, genesis: Genesis, state: ChainState, me: int | None, driver: Driver, timeouts: dict[str, float]):
        self.genesis = genesis
        self.state = state
        self.height = state.height + 1
        self.me = me
        self.driver = driver
        self.timeouts = timeouts
        self.round = -1
        self.step = Step.PROPOSE
        self.locked_block: Block | None = None
        self.locked_round = -1
        self.valid_block: Block | None = None
        self.valid_round = -1
        self.proposals: dict[int, Proposal] = {}
        self.prevotes: dict[int, VoteSet] = {}
        self.precommits: dict[int, VoteSet] = {}
        self._fired: set[tuple] = set()
        self.decided: Block | None = None

    # ---------------------------------------------------------------- helpers
    def proposer(self, round_: int) -> int:
        return proposer_index(self.genesis, self.state, round_)

    def _power(self, address: str) -> int:
        return self.genesis.validators[self.genesis.index_of(address)].power

    def _once(self, *key) -> bool:
        if key in self._fired:
            return False
        self._fired.add(key)
        return True

    def _timeout(self, name: str, round_: int) -> float:
        return self.timeouts[name] + self.timeouts["delta"] * round_

    def _vote(self, vote_type: str, block_hash: str | None) -> None:
        if self.me is not None:
            self.driver.vote(vote_type, self.height, self.round, block_hash)

    # ---------------------------------------------------------------- events
    def start_round(self, round_: int) -> None:
        """StartRound(r): the proposer proposes its valid block or a new one; others wait timeout_propose."""
        if self.decided is not None or round_ <= self.round:
            return
        self.round = round_
        self.step = Step.PROPOSE
        if self.me is not None and self.proposer(round_) == self.me:
            self.driver.propose(self.height, round_, self.valid_block, self.valid_round)
        self.driver.schedule(Step.PROPOSE, self.height, round_, self._timeout("propose", round_))
        self._evaluate()

    def on_proposal(self, proposal: Proposal) -> None:
        """A proposal whose signature and proposer the driver has checked."""
        if proposal.height != self.height or proposal.round in self.proposals:
            return
        if self.proposer(proposal.round) != self.genesis.index_of(proposal.proposer):
            return
        self.proposals[proposal.round] = proposal
        self._evaluate()

    def on_vote(self, vote: Vote) -> None:
        """A vote whose signature the driver has checked."""
        if vote.height != self.height or self.genesis.index_of(vote.validator) is None:
            return
        sets = self.prevotes if vote.type == PREVOTE else self.precommits
        vs = sets.setdefault(vote.round, VoteSet())
        earlier = vs.add(vote, self._power(vote.validator))
        if earlier is not None:
            self.driver.equivocation(earlier, vote)
            return
        self._evaluate()

    def on_timeout(self, step: Step, height: int, round_: int) -> None:
        if height != self.height or round_ != self.round or self.decided is not None:
            return
        if step == Step.PROPOSE and self.step == Step.PROPOSE:  # OnTimeoutPropose
            self.step = Step.PREVOTE
            self._vote(PREVOTE, None)
        elif step == Step.PREVOTE and self.step == Step.PREVOTE:  # OnTimeoutPrevote
            self.step = Step.PRECOMMIT
            self._vote(PRECOMMIT, None)
        elif step == Step.PRECOMMIT:  # OnTimeoutPrecommit
            self.start_round(round_ + 1)
            return
        self._evaluate()

    # ---------------------------------------------------------------- the upon rules
    def _evaluate(self) -> None:
        total = self.genesis.total_power
        if self.decided is not None:
            return
        # Decide: a proposal of any round with +2/3 precommits for it.
        for r, vs in list(self.precommits.items()):
            for block_hash, power in list(vs.powers.items()):
                if not block_hash or not two_thirds(power, total):
                    continue
                prop = self.proposals.get(r)
                if prop is None or prop.block.hash != block_hash:
                    if self._once("missing", r, block_hash):
                        self.driver.missing_block(self.height, r, block_hash)
                    continue
                if self.driver.valid(prop.block):
                    self.decided = prop.block
                    self.step = Step.DECIDED
                    self.driver.decide(prop.block, Commit(self.height, r, block_hash, vs.for_hash(block_hash)))
                    return
        # Skip ahead: f+1 power of messages from a later round.
        for r in sorted(set(self.prevotes) | set(self.precommits), reverse=True):
            if r <= self.round:
                break
            senders = set(self.prevotes.get(r, VoteSet()).votes) | set(self.precommits.get(r, VoteSet()).votes)
            if one_third(sum(self._power(a) for a in senders), total):
                self.start_round(r)
                return
        r = self.round
        if r < 0:
            return
        prop = self.proposals.get(r)
        prevotes = self.prevotes.get(r, VoteSet())
        if self.step == Step.PROPOSE and prop is not None:
            block = prop.block
            if prop.pol_round == -1:
                ok = (self.locked_round == -1 or self._is_locked(block)) and self.driver.acceptable(block, r)
                self.step = Step.PREVOTE
                self._vote(PREVOTE, block.hash if ok else None)
            elif 0 <= prop.pol_round < r and two_thirds(self.prevotes.get(prop.pol_round, VoteSet()).power_for(block.hash), total):
                ok = ((self.locked_round <= prop.pol_round or self._is_locked(block)) and self.driver.valid(block))
                self.step = Step.PREVOTE
                self._vote(PREVOTE, block.hash if ok else None)
        if self.step == Step.PREVOTE and two_thirds(prevotes.total, total) and self._once("prevote-any", r):
            self.driver.schedule(Step.PREVOTE, self.height, r, self._timeout("prevote", r))
        if (prop is not None and self.step >= Step.PREVOTE and two_thirds(prevotes.power_for(prop.block.hash), total)
                and self.driver.valid(prop.block) and self._once("polka", r)):
            if self.step == Step.PREVOTE:
                self.locked_block, self.locked_round = prop.block, r
                self.step = Step.PRECOMMIT
                self._vote(PRECOMMIT, prop.block.hash)
            self.valid_block, self.valid_round = prop.block, r
        if self.step == Step.PREVOTE and two_thirds(prevotes.power_for(None), total):
            self.step = Step.PRECOMMIT
            self._vote(PRECOMMIT, None)
        precommits = self.precommits.get(r, VoteSet())
        if two_thirds(precommits.total, total) and self._once("precommit-any", r):
            self.driver.schedule(Step.PRECOMMIT, self.height, r, self._timeout("precommit", r))

    def _is_locked(self, block: Block) -> bool:
        return self.locked_block is not None and self.locked_block.hash == block.hash
