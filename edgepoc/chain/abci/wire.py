"""The chain's transactions on CometBFT: client-signed task batches and the proposer's allocation.

A transaction is canonical JSON. `tasks`: one client signature over a batch of tasks (nonce and
demand each); the chain stamps every task's arrival with the block time, and the providers' delays
come from genesis, so neither is the client's to choose. `allocation`: the last transaction of a
block with tasks, added by the proposer in PrepareProposal (assignment, claimed latency, Shapley
values, optionally the arbiter's signature); a client can never submit one (CheckTx rejects it).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from edgepoc.chain.crypto import SigningKey, canonical, sha256_hex, verify
from edgepoc.errors import InputError

TASKS = "tasks"
ALLOCATION = "allocation"


def task_id(chain_id: str, client: str, nonce: int) -> str:
    """A hash of chain, client and nonce: a replay (or a resubmission) has the same id."""
    return sha256_hex(f"{chain_id}:{client}:{nonce}".encode())[:32]


@dataclass
class TaskBatch:
    """A client's signed request to have some tasks served; `(client, nonce)` is unique on the chain."""

    chain_id: str
    client: str  # Ed25519 public key, hex
    tasks: list[tuple[int, list[float]]]  # (nonce, demand per resource)
    sig: str = ""

    def body(self) -> dict:
        return {"type": TASKS, "chain_id": self.chain_id, "client": self.client,
                "tasks": [{"nonce": n, "demand": d} for n, d in self.tasks]}

    def sign_bytes(self) -> bytes:
        return canonical(self.body())

    def signed(self, key: SigningKey) -> "TaskBatch":
        self.sig = key.sign(self.sign_bytes())
        return self

    def to_dict(self) -> dict:
        return {**self.body(), "sig": self.sig}

    def tx(self) -> bytes:
        return canonical(self.to_dict())

    @cached_property
    def ids(self) -> list[str]:
        return [task_id(self.chain_id, self.client, n) for n, _ in self.tasks]

    def signature_ok(self) -> bool:
        return verify(self.client, self.sign_bytes(), self.sig)

    @classmethod
    def from_dict(cls, d: Any, *, n_resources: int, max_demand: float, max_tasks: int) -> "TaskBatch":
        """Parse and bound-check (not the signature): a bad field raises InputError naming it."""
        if not isinstance(d, dict):
            raise InputError("tx: expected an object")
        if d.get("type") != TASKS:
            raise InputError(f"tx.type: expected {TASKS!r}")
        extra = set(d) - {"type", "chain_id", "client", "tasks", "sig"}
        if extra:
            raise InputError(f"tx: unknown fields {sorted(extra)} (arrival and delays are set by the chain)")
        chain_id, client, sig, tasks = d.get("chain_id"), d.get("client"), d.get("sig"), d.get("tasks")
        if not isinstance(chain_id, str):
            raise InputError("tx.chain_id: expected a string")
        for name, v, n in (("client", client, 64), ("sig", sig, 128)):
            if not isinstance(v, str) or len(v) != n or not _is_hex(v):
                raise InputError(f"tx.{name}: expected {n} hex characters")
        if not isinstance(tasks, list) or not tasks:
            raise InputError("tx.tasks: expected a non-empty list")
        if len(tasks) > max_tasks:
            raise InputError(f"tx.tasks: {len(tasks)} tasks, at most {max_tasks} per batch")
        out: list[tuple[int, list[float]]] = []
        for i, t in enumerate(tasks):
            where = f"tx.tasks[{i}]"
            if not isinstance(t, dict) or set(t) != {"nonce", "demand"}:
                raise InputError(f"{where}: expected exactly nonce and demand (arrival and delays are set by the chain)")
            nonce, demand = t["nonce"], t["demand"]
            if isinstance(nonce, bool) or not isinstance(nonce, int) or not 0 <= nonce < 2**63:
                raise InputError(f"{where}.nonce: expected an integer in 0..2^63-1")
            if not isinstance(demand, list) or len(demand) != n_resources:
                raise InputError(f"{where}.demand: expected {n_resources} numbers")
            for x in demand:
                if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) \
                        or not 0 < x <= max_demand:
                    raise InputError(f"{where}.demand: each must be in (0, {max_demand:g}], got {x!r:.40}")
            out.append((nonce, [float(x) for x in demand]))
        return cls(chain_id, client, out, sig)


@dataclass
class Allocation:
    """The proposer's allocation of the block's tasks (in block order) and what it claims follows."""

    assignment: list[int]
    claimed_latency: float
    shapley: list[float]
    stderr: float
    allocator: str = ""
    arbitration: dict | None = None  # {"sig": arbiter's signature, "method": ...}

    def to_dict(self) -> dict:
        return {"type": ALLOCATION, "assignment": self.assignment, "claimed_latency": self.claimed_latency,
                "shapley": self.shapley, "stderr": self.stderr, "allocator": self.allocator,
                "arbitration": self.arbitration}

    def tx(self) -> bytes:
        return canonical(self.to_dict())

    @classmethod
    def from_dict(cls, d: Any) -> "Allocation":
        if not isinstance(d, dict) or d.get("type") != ALLOCATION:
            raise InputError("allocation: expected an allocation object")
        a, lat, sh, se = d.get("assignment"), d.get("claimed_latency"), d.get("shapley"), d.get("stderr")
        if not isinstance(a, list) or any(isinstance(x, bool) or not isinstance(x, int) for x in a):
            raise InputError("allocation.assignment: expected integers")
        if not _finite(lat) or not _finite(se) or not isinstance(sh, list) or not all(_finite(x) for x in sh):
            raise InputError("allocation: claimed_latency, stderr and shapley must be finite numbers")
        arb = d.get("arbitration")
        if arb is not None and not (isinstance(arb, dict) and isinstance(arb.get("sig"), str)):
            raise InputError("allocation.arbitration: expected an object with sig")
        alloc = d.get("allocator", "")
        return cls(a, float(lat), [float(x) for x in sh], float(se), alloc if isinstance(alloc, str) else "", arb)


def decode_tx(tx: bytes) -> dict:
    """JSON object of a transaction; InputError when it is not one."""
    try:
        d = json.loads(tx)
    except (ValueError, UnicodeDecodeError):
        raise InputError("tx: not JSON") from None
    if not isinstance(d, dict):
        raise InputError("tx: expected a JSON object")
    return d


def _is_hex(v: str) -> bool:
    try:
        bytes.fromhex(v)
        return True
    except ValueError:
        return False


def _finite(x: Any) -> bool:
    return not isinstance(x, bool) and isinstance(x, (int, float)) and math.isfinite(x)
