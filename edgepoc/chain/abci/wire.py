"""The chain's transactions on CometBFT: client-signed task batches and the proposer's allocation.

A transaction is canonical JSON, and only that: its bytes must equal the canonical encoding
(`crypto.canonical`: UTF-8, keys sorted, no whitespace, shortest float repr) of what they parse to.
So one request has one byte form (no padded or re-encoded copies that are new transactions to the
mempool), and size and nesting are bounded before any parser runs. `tasks`: one client signature over a batch of tasks (nonce and
demand each); the chain stamps every task's arrival with the block time, and the providers' delays
come from genesis, so neither is the client's to choose. `allocation`: the last transaction of a
block with tasks, added by the proposer in PrepareProposal (assignment, claimed latency, Shapley
values, optionally the arbiter's signature); a client can never submit one (CheckTx rejects it).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from edgepoc.chain.crypto import SigningKey, canonical, sha256_hex, verify
from edgepoc.errors import InputError

TASKS = "tasks"
ALLOCATION = "allocation"
MAX_LABEL = 64  # an allocator or arbiter method name (a label in the block record, never trusted)


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
    def from_dict(cls, d: Any, *, n_resources: int, max_demand: float, max_tasks: int,
                  min_demand: float = 1e-4) -> "TaskBatch":
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
                        or not min_demand <= x <= max_demand:
                    raise InputError(f"{where}.demand: each must be in [{min_demand:g}, {max_demand:g}], got {x!r:.40}")
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
        if arb is not None and not (isinstance(arb, dict) and set(arb) == {"sig", "method"}
                                    and isinstance(arb["sig"], str) and len(arb["sig"]) == 128
                                    and isinstance(arb["method"], str) and len(arb["method"]) <= MAX_LABEL):
            raise InputError("allocation.arbitration: expected {sig: 128 hex characters, method: a short string}")
        alloc = d.get("allocator", "")
        if not isinstance(alloc, str) or len(alloc) > MAX_LABEL:
            raise InputError(f"allocation.allocator: expected a string of at most {MAX_LABEL} characters")
        extra = set(d) - {"type", "assignment", "claimed_latency", "shapley", "stderr", "allocator", "arbitration"}
        if extra:
            raise InputError(f"allocation: unknown fields {sorted(extra)}")
        return cls(a, float(lat), [float(x) for x in sh], float(se), alloc, arb)


MAX_DEPTH = 6  # the deepest honest transaction: {"tasks": [{"demand": [..]}]} is 3 levels
_BRACKETS = bytes(range(256)).translate(None, b'[]{}"\\')  # every byte but these is deleted
_ESCAPE = re.compile(rb"\\.", re.S)
_STRING = re.compile(rb'"[^"]*"')


def nesting_depth(tx: bytes) -> int:
    """The deepest bracket nesting of JSON bytes, outside strings, in C-speed passes (no parser runs)."""
    skel = _STRING.sub(b"", _ESCAPE.sub(b"", tx).translate(None, _BRACKETS))
    depth = best = 0
    for chunk in re.findall(rb"[\[{]+|[\]}]+", skel):
        depth += len(chunk) if chunk[0] in b"[{" else -len(chunk)
        best = max(best, depth)
    return best


def decode_tx(tx: bytes, max_bytes: int = 1 << 20) -> dict:
    """The JSON object of a transaction; InputError (with the reason) unless it is canonical JSON.

    Checks run cheapest first: size, nesting depth, strict UTF-8 (no UTF-16/32, no encoded surrogates),
    then the parser, then byte equality with the canonical re-encoding (whitespace, key order, escapes,
    duplicate keys, NaN and number spellings all make a different byte string)."""
    if len(tx) > max_bytes:
        raise InputError(f"tx: {len(tx)} bytes, at most {max_bytes}")
    depth = nesting_depth(tx)
    if depth > MAX_DEPTH:
        raise InputError(f"tx: nested {depth} levels deep, at most {MAX_DEPTH}")
    try:
        text = tx.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("tx: not UTF-8") from None
    try:
        d = json.loads(text)
    except (ValueError, RecursionError):
        raise InputError("tx: not JSON") from None
    if not isinstance(d, dict):
        raise InputError("tx: expected a JSON object")
    try:
        same = canonical(d) == tx
    except (ValueError, TypeError, RecursionError):  # NaN/Infinity, lone surrogates
        same = False
    if not same:
        raise InputError("tx: not canonical JSON (UTF-8, keys sorted, no whitespace, shortest numbers)")
    return d


def _is_hex(v: str) -> bool:
    try:
        bytes.fromhex(v)
        return True
    except ValueError:
        return False


def _finite(x: Any) -> bool:
    return not isinstance(x, bool) and isinstance(x, (int, float)) and math.isfinite(x)
