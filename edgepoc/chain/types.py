"""The chain's data: plain dataclasses that turn into canonical JSON and back.

`from_dict` is the only way untrusted bytes become these objects: every field is type-checked and a
bad one raises `InputError` naming it, so a malformed message is dropped, never half-used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from edgepoc.chain.crypto import SigningKey, canonical, sha256_hex, verify
from edgepoc.errors import InputError

PREVOTE = "prevote"
PRECOMMIT = "precommit"
VOTE_TYPES = (PREVOTE, PRECOMMIT)
HASH_LEN = 64


def _req(d: Any, key: str, kind, where: str):
    if not isinstance(d, dict):
        raise InputError(f"{where}: expected an object")
    if key not in d:
        raise InputError(f"{where}.{key}: missing")
    v = d[key]
    if kind is float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise InputError(f"{where}.{key}: expected a finite number, got {v!r:.40}")
        return float(v)
    if kind is int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise InputError(f"{where}.{key}: expected an integer, got {v!r:.40}")
        return v
    if not isinstance(v, kind):
        raise InputError(f"{where}.{key}: expected {getattr(kind, '__name__', kind)}, got {type(v).__name__}")
    return v


def _hex(v: Any, where: str, length: int | None = None) -> str:
    if not isinstance(v, str) or (length is not None and len(v) != length):
        raise InputError(f"{where}: expected {length or ''} hex characters")
    try:
        bytes.fromhex(v)
    except ValueError:
        raise InputError(f"{where}: not hex") from None
    return v


def _floats(v: Any, where: str) -> list[float]:
    if not isinstance(v, list):
        raise InputError(f"{where}: expected a list of numbers")
    out = []
    for i, x in enumerate(v):
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
            raise InputError(f"{where}[{i}]: expected a finite number")
        out.append(float(x))
    return out


@dataclass
class TaskRequest:
    """A client's signed request to have one task served; `(client, nonce)` is unique on the chain."""

    chain_id: str
    client: str  # Ed25519 public key, hex
    nonce: int
    arrival: float  # seconds on the chain's clock (since genesis time)
    demand: list[float]
    delays: list[float] | None = None
    sig: str = ""

    def body(self) -> dict:
        d = {"chain_id": self.chain_id, "client": self.client, "nonce": self.nonce, "arrival": self.arrival,
             "demand": self.demand}
        if self.delays is not None:
            d["delays"] = self.delays
        return d

    def sign_bytes(self) -> bytes:
        return canonical({"type": "task", **self.body()})

    @cached_property
    def id(self) -> str:
        """The task id: a hash of chain, client and nonce, so a replay has the same id."""
        return sha256_hex(f"{self.chain_id}:{self.client}:{self.nonce}".encode())[:32]

    def to_dict(self) -> dict:
        return {**self.body(), "sig": self.sig}

    def signed(self, key: SigningKey) -> "TaskRequest":
        self.sig = key.sign(self.sign_bytes())
        return self

    def signature_ok(self) -> bool:
        return verify(self.client, self.sign_bytes(), self.sig)

    @classmethod
    def from_dict(cls, d: Any, where: str = "task") -> "TaskRequest":
        nonce = _req(d, "nonce", int, where)
        if nonce < 0 or nonce >= 2**63:
            raise InputError(f"{where}.nonce: must be in 0..2^63-1")
        arrival = _req(d, "arrival", float, where)
        if arrival < 0:
            raise InputError(f"{where}.arrival: must be >= 0")
        demand = _floats(_req(d, "demand", list, where), f"{where}.demand")
        if not demand or any(x <= 0 for x in demand):
            raise InputError(f"{where}.demand: must be non-empty and > 0")
        delays = None
        if d.get("delays") is not None:
            delays = _floats(d["delays"], f"{where}.delays")
            if any(x < 0 for x in delays):
                raise InputError(f"{where}.delays: must be >= 0")
        extra = set(d) - {"chain_id", "client", "nonce", "arrival", "demand", "delays", "sig"}
        if extra:
            raise InputError(f"{where}: unknown fields {sorted(extra)}")
        return cls(_req(d, "chain_id", str, where), _hex(_req(d, "client", str, where), f"{where}.client", 64),
                   nonce, arrival, demand, delays, _hex(_req(d, "sig", str, where), f"{where}.sig", 128))


@dataclass
class Vote:
    """A validator's signed prevote or precommit for a block hash (None: nil) at one height and round."""

    chain_id: str
    height: int
    round: int
    type: str
    block_hash: str | None
    validator: str  # address
    sig: str = ""

    def sign_bytes(self) -> bytes:
        return canonical({"type": "vote", "chain_id": self.chain_id, "height": self.height, "round": self.round,
                          "vote_type": self.type, "block_hash": self.block_hash, "validator": self.validator})

    def to_dict(self) -> dict:
        return {"chain_id": self.chain_id, "height": self.height, "round": self.round, "type": self.type,
                "block_hash": self.block_hash, "validator": self.validator, "sig": self.sig}

    @classmethod
    def from_dict(cls, d: Any, where: str = "vote") -> "Vote":
        vtype = _req(d, "type", str, where)
        if vtype not in VOTE_TYPES:
            raise InputError(f"{where}.type: expected prevote or precommit")
        bh = d.get("block_hash") if isinstance(d, dict) else None
        if bh is not None:
            _hex(bh, f"{where}.block_hash", HASH_LEN)
        height, rnd = _req(d, "height", int, where), _req(d, "round", int, where)
        if height < 1 or rnd < 0:
            raise InputError(f"{where}: height must be >= 1 and round >= 0")
        return cls(_req(d, "chain_id", str, where), height, rnd, vtype, bh,
                   _hex(_req(d, "validator", str, where), f"{where}.validator", 40),
                   _hex(_req(d, "sig", str, where), f"{where}.sig", 128))


@dataclass
class Commit:
    """More than 2/3 of the voting power precommitting one block: the proof that it is final."""

    height: int
    round: int
    block_hash: str
    votes: list[Vote]

    def to_dict(self) -> dict:
        return {"height": self.height, "round": self.round, "block_hash": self.block_hash,
                "votes": [v.to_dict() for v in self.votes]}

    @classmethod
    def from_dict(cls, d: Any, where: str = "commit") -> "Commit":
        votes = _req(d, "votes", list, where)
        return cls(_req(d, "height", int, where), _req(d, "round", int, where),
                   _hex(_req(d, "block_hash", str, where), f"{where}.block_hash", HASH_LEN),
                   [Vote.from_dict(v, f"{where}.votes[{i}]") for i, v in enumerate(votes)])


EQUIVOCATION = "equivocation"
INVALID_PROPOSAL = "invalid-proposal"


@dataclass
class Evidence:
    """Proof that a validator misbehaved, checkable by anyone from the evidence alone (+ the chain).

    equivocation: `a` and `b` are two votes signed by `validator` for the same height, round and type
    but different blocks. invalid-proposal: `a` is a signed proposal whose block breaks a
    deterministic rule (wrong claimed latency, or far worse than the greedy reference).
    """

    kind: str
    validator: str
    height: int
    round: int
    a: dict
    b: dict | None = None

    def to_dict(self) -> dict:
        return {"kind": self.kind, "validator": self.validator, "height": self.height, "round": self.round,
                "a": self.a, "b": self.b}

    @cached_property
    def id(self) -> str:
        """One id per offence (who, where, what), so the same offence is punished once."""
        return sha256_hex(canonical([self.kind, self.validator, self.height, self.round]))[:32]

    @classmethod
    def from_dict(cls, d: Any, where: str = "evidence") -> "Evidence":
        kind = _req(d, "kind", str, where)
        if kind not in (EQUIVOCATION, INVALID_PROPOSAL):
            raise InputError(f"{where}.kind: unknown evidence kind {kind!r:.40}")
        b = d.get("b")
        if b is not None and not isinstance(b, dict):
            raise InputError(f"{where}.b: expected an object")
        return cls(kind, _hex(_req(d, "validator", str, where), f"{where}.validator", 40),
                   _req(d, "height", int, where), _req(d, "round", int, where), _req(d, "a", dict, where), b)


@dataclass
class Block:
    """One block: header fields, the tasks with their providers, the claimed total delay, contributions."""

    chain_id: str
    height: int
    round: int
    prev_hash: str
    time: float
    proposer: str  # address
    tasks: list[TaskRequest]
    assignment: list[int]
    claimed_latency: float
    contributions: list[float]  # Shapley value of each validator for this block's tasks
    contribution_stderr: float  # 0 when exact
    evidence: list[Evidence] = field(default_factory=list)
    last_commit: Commit | None = None
    arbitration: dict | None = None  # {"sig": arbiter's signature over the allocation}
    state_hash: str = ""  # hash of the state after this block

    def to_dict(self) -> dict:
        return {"chain_id": self.chain_id, "height": self.height, "round": self.round, "prev_hash": self.prev_hash,
                "time": self.time, "proposer": self.proposer, "tasks": [t.to_dict() for t in self.tasks],
                "assignment": self.assignment, "claimed_latency": self.claimed_latency,
                "contributions": self.contributions, "contribution_stderr": self.contribution_stderr,
                "evidence": [e.to_dict() for e in self.evidence],
                "last_commit": self.last_commit.to_dict() if self.last_commit else None,
                "arbitration": self.arbitration, "state_hash": self.state_hash}

    @cached_property
    def hash(self) -> str:
        return sha256_hex(canonical(self.to_dict()))

    @classmethod
    def from_dict(cls, d: Any, where: str = "block") -> "Block":
        tasks = _req(d, "tasks", list, where)
        assignment = _req(d, "assignment", list, where)
        if any(isinstance(k, bool) or not isinstance(k, int) for k in assignment):
            raise InputError(f"{where}.assignment: expected integers")
        evidence = _req(d, "evidence", list, where)
        lc = d.get("last_commit")
        arb = d.get("arbitration")
        if arb is not None and not (isinstance(arb, dict) and isinstance(arb.get("sig"), str)):
            raise InputError(f"{where}.arbitration: expected an object with sig")
        prev = _req(d, "prev_hash", str, where)
        if prev:
            _hex(prev, f"{where}.prev_hash", HASH_LEN)
        return cls(
            _req(d, "chain_id", str, where), _req(d, "height", int, where), _req(d, "round", int, where), prev,
            _req(d, "time", float, where), _hex(_req(d, "proposer", str, where), f"{where}.proposer", 40),
            [TaskRequest.from_dict(t, f"{where}.tasks[{i}]") for i, t in enumerate(tasks)], assignment,
            _req(d, "claimed_latency", float, where), _floats(_req(d, "contributions", list, where),
                                                              f"{where}.contributions"),
            _req(d, "contribution_stderr", float, where),
            [Evidence.from_dict(e, f"{where}.evidence[{i}]") for i, e in enumerate(evidence)],
            None if lc is None else Commit.from_dict(lc, f"{where}.last_commit"), arb,
            _req(d, "state_hash", str, where),
        )


@dataclass
class Proposal:
    """The round's proposer's signed block (pol_round: the round of a prevote quorum it re-proposes, or -1)."""

    chain_id: str
    height: int
    round: int
    pol_round: int
    block: Block
    proposer: str
    sig: str = ""

    def sign_bytes(self) -> bytes:
        return canonical({"type": "proposal", "chain_id": self.chain_id, "height": self.height, "round": self.round,
                          "pol_round": self.pol_round, "block_hash": self.block.hash, "proposer": self.proposer})

    def to_dict(self) -> dict:
        return {"chain_id": self.chain_id, "height": self.height, "round": self.round, "pol_round": self.pol_round,
                "block": self.block.to_dict(), "proposer": self.proposer, "sig": self.sig}

    @classmethod
    def from_dict(cls, d: Any, where: str = "proposal") -> "Proposal":
        return cls(_req(d, "chain_id", str, where), _req(d, "height", int, where), _req(d, "round", int, where),
                   _req(d, "pol_round", int, where), Block.from_dict(_req(d, "block", dict, where), f"{where}.block"),
                   _hex(_req(d, "proposer", str, where), f"{where}.proposer", 40),
                   _hex(_req(d, "sig", str, where), f"{where}.sig", 128))
