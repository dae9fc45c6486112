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

import base64
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
MODULE = "module"
RECEIPTS = "receipts"
MEMPOOL_REPORT = "mempool_report"  # a validator's vote extension
REPORTS = "reports"  # the last commit's vote extensions, first in a block
RECEIPT_STATUSES = ("ok", "out_of_fuel", "trap")
MAX_ARGS = 16
MAX_RESULT_INTS = 16
MAX_FUNCTION_NAME = 64
MAX_LABEL = 64  # an allocator or arbiter method name (a label in the block record, never trusted)


def task_id(chain_id: str, client: str, nonce: int) -> str:
    """A hash of chain, client and nonce: a replay (or a resubmission) has the same id."""
    return sha256_hex(f"{chain_id}:{client}:{nonce}".encode())[:32]


@dataclass
class Work:
    """What a task runs (SPEC §7b): an exported function of a module on chain, its integer arguments, and
    its demand as fuel and memory (bytes). The chain derives the task's queue demand from these."""

    module: str  # SHA-256 hex of the module's binary
    function: str
    args: list[int]
    fuel: int
    memory: int

    def to_dict(self) -> dict:
        return {"module": self.module, "function": self.function, "args": self.args, "fuel": self.fuel,
                "memory": self.memory}

    @classmethod
    def from_dict(cls, t: dict, where: str) -> "Work":
        if set(t) != {"nonce", "module", "function", "args", "fuel", "memory"}:
            raise InputError(f"{where}: a work task has exactly nonce, module, function, args, fuel, memory")
        m, f, a, fuel, mem = t["module"], t["function"], t["args"], t["fuel"], t["memory"]
        if not isinstance(m, str) or len(m) != 64 or not _is_hex(m) or m != m.lower():
            raise InputError(f"{where}.module: expected the module's SHA-256 (64 lowercase hex characters)")
        if not isinstance(f, str) or not 0 < len(f) <= MAX_FUNCTION_NAME:
            raise InputError(f"{where}.function: expected a name of 1..{MAX_FUNCTION_NAME} characters")
        if not isinstance(a, list) or len(a) > MAX_ARGS:
            raise InputError(f"{where}.args: expected a list of at most {MAX_ARGS} 64-bit integers")
        for j, x in enumerate(a):
            if isinstance(x, bool) or not isinstance(x, int) or not -2**63 <= x < 2**64:
                raise InputError(f"{where}.args[{j}]: expected a 64-bit integer (-2^63 .. 2^64-1), "
                                 f"got {str(x)[:24]}")
        for name, v in (("fuel", fuel), ("memory", mem)):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 < v < 2**63:
                raise InputError(f"{where}.{name}: expected a positive integer below 2^63")
        return cls(m, f, list(a), fuel, mem)


@dataclass
class ModuleTx:
    """A client-signed WebAssembly module: every node compiles it in CheckTx and keeps it once committed."""

    chain_id: str
    client: str
    wasm: bytes
    sig: str = ""

    def body(self) -> dict:
        return {"type": MODULE, "chain_id": self.chain_id, "client": self.client,
                "wasm": base64.b64encode(self.wasm).decode()}

    def signed(self, key: SigningKey) -> "ModuleTx":
        self.sig = key.sign(canonical(self.body()))
        return self

    def tx(self) -> bytes:
        return canonical({**self.body(), "sig": self.sig})

    @property
    def hash(self) -> str:
        return sha256_hex(self.wasm)

    def signature_ok(self) -> bool:
        return verify(self.client, canonical(self.body()), self.sig)

    @classmethod
    def from_dict(cls, d: dict) -> "ModuleTx":
        if set(d) != {"type", "chain_id", "client", "wasm", "sig"}:
            raise InputError("module tx: expected exactly type, chain_id, client, wasm, sig")
        for name, n in (("client", 64), ("sig", 128)):
            v = d[name]
            if not isinstance(v, str) or len(v) != n or not _is_hex(v):
                raise InputError(f"module tx.{name}: expected {n} hex characters")
        if not isinstance(d["chain_id"], str) or not isinstance(d["wasm"], str):
            raise InputError("module tx: chain_id and wasm (base64) must be strings")
        try:
            wasm = base64.b64decode(d["wasm"], validate=True)
        except ValueError:
            raise InputError("module tx.wasm: not base64") from None
        m = cls(d["chain_id"], d["client"], wasm, d["sig"])
        if m.body()["wasm"] != d["wasm"]:
            raise InputError("module tx.wasm: not canonical base64")
        return m


@dataclass
class Receipt:
    """A provider's account of one task it ran: the result and its hash, the status, the fuel used."""

    task: str  # the work id (a task id, or `<task id>/audit<n>` for an audit copy)
    status: str
    result: int | list[int] | None
    result_hash: str
    fuel: int

    def to_dict(self) -> dict:
        return {"task": self.task, "status": self.status, "result": self.result, "result_hash": self.result_hash,
                "fuel": self.fuel}

    @classmethod
    def from_dict(cls, r: Any, where: str) -> "Receipt":
        if not isinstance(r, dict) or set(r) != {"task", "status", "result", "result_hash", "fuel"}:
            raise InputError(f"{where}: expected exactly task, status, result, result_hash, fuel")
        task, status, result, rh, fuel = r["task"], r["status"], r["result"], r["result_hash"], r["fuel"]
        if not isinstance(task, str) or not 0 < len(task) <= 48:
            raise InputError(f"{where}.task: expected a task id")
        if status not in RECEIPT_STATUSES:
            raise InputError(f"{where}.status: expected one of {', '.join(RECEIPT_STATUSES)}")
        ints = result if isinstance(result, list) else [] if result is None else [result]
        if len(ints) > MAX_RESULT_INTS or any(isinstance(x, bool) or not isinstance(x, int) or not -2**63 <= x < 2**64
                                              for x in ints):
            raise InputError(f"{where}.result: expected null, an integer or at most {MAX_RESULT_INTS} integers")
        if not isinstance(rh, str) or len(rh) != 64 or not _is_hex(rh):
            raise InputError(f"{where}.result_hash: expected 64 hex characters")
        if isinstance(fuel, bool) or not isinstance(fuel, int) or not 0 <= fuel < 2**63:
            raise InputError(f"{where}.fuel: expected a non-negative integer")
        return cls(task, status, result, rh, fuel)


@dataclass
class ReceiptBatch:
    """Receipts signed by one provider's validator key (the key CometBFT votes with)."""

    chain_id: str
    provider: str  # validator address, hex
    receipts: list[Receipt]
    sig: str = ""

    def body(self) -> dict:
        return {"type": RECEIPTS, "chain_id": self.chain_id, "provider": self.provider,
                "receipts": [r.to_dict() for r in self.receipts]}

    def signed(self, key: SigningKey) -> "ReceiptBatch":
        self.sig = key.sign(canonical(self.body()))
        return self

    def tx(self) -> bytes:
        return canonical({**self.body(), "sig": self.sig})

    def signature_ok(self, public_key: str) -> bool:
        return verify(public_key, canonical(self.body()), self.sig)

    @classmethod
    def from_dict(cls, d: dict, max_receipts: int) -> "ReceiptBatch":
        if set(d) != {"type", "chain_id", "provider", "receipts", "sig"}:
            raise InputError("receipts tx: expected exactly type, chain_id, provider, receipts, sig")
        if not isinstance(d["chain_id"], str) or not isinstance(d["provider"], str) or len(d["provider"]) != 40:
            raise InputError("receipts tx: chain_id and provider (a validator address) expected")
        sig = d["sig"]
        if not isinstance(sig, str) or len(sig) != 128 or not _is_hex(sig):
            raise InputError("receipts tx.sig: expected 128 hex characters")
        rs = d["receipts"]
        if not isinstance(rs, list) or not 0 < len(rs) <= max_receipts:
            raise InputError(f"receipts tx.receipts: expected 1..{max_receipts} receipts")
        out = [Receipt.from_dict(r, f"receipts[{i}]") for i, r in enumerate(rs)]
        if len({r.task for r in out}) != len(out):
            raise InputError("receipts tx: a task appears twice")
        return cls(d["chain_id"], d["provider"], out, sig)


@dataclass
class MempoolReport:
    """A validator's vote extension at `height`: the clients whose task batches waited in its mempool, valid and
    not in the block it votes for, since before the proposer began (docs/consensus.md); with each client's
    oldest waiting batch's work (seconds of the network's capacity), task count and bytes. Signed with its
    validator key."""

    chain_id: str
    height: int
    validator: str  # address, hex
    waiting: list[list]  # [[client public key hex, work seconds, tasks, bytes], ...] sorted by client
    sig: str = ""

    def body(self) -> dict:
        return {"type": MEMPOOL_REPORT, "chain_id": self.chain_id, "height": self.height,
                "validator": self.validator, "waiting": self.waiting}

    def signed(self, key: SigningKey) -> "MempoolReport":
        self.sig = key.sign(canonical(self.body()))
        return self

    def to_dict(self) -> dict:
        return {**self.body(), "sig": self.sig}

    def signature_ok(self, public_key: str) -> bool:
        return verify(public_key, canonical(self.body()), self.sig)

    @classmethod
    def from_dict(cls, d: Any, max_clients: int) -> "MempoolReport":
        if not isinstance(d, dict) or set(d) != {"type", "chain_id", "height", "validator", "waiting", "sig"} \
                or d["type"] != MEMPOOL_REPORT:
            raise InputError("mempool report: expected exactly type, chain_id, height, validator, waiting, sig")
        h, v, sig, w = d["height"], d["validator"], d["sig"], d["waiting"]
        if isinstance(h, bool) or not isinstance(h, int) or h < 1 or not isinstance(d["chain_id"], str):
            raise InputError("mempool report: chain_id and a height >= 1 expected")
        if not isinstance(v, str) or len(v) != 40 or not _is_hex(v):
            raise InputError("mempool report.validator: expected a validator address (40 hex characters)")
        if not isinstance(sig, str) or len(sig) != 128 or not _is_hex(sig):
            raise InputError("mempool report.sig: expected 128 hex characters")
        if not isinstance(w, list) or len(w) > max_clients:
            raise InputError(f"mempool report.waiting: expected at most {max_clients} clients")
        for e in w:
            if not (isinstance(e, list) and len(e) == 4 and isinstance(e[0], str) and len(e[0]) == 64
                    and _is_hex(e[0]) and _finite(e[1]) and e[1] >= 0
                    and all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in e[2:])):
                raise InputError("mempool report.waiting: expected [client public key hex, work >= 0, tasks > 0, "
                                 "bytes > 0] entries")
        if [e[0] for e in w] != sorted({e[0] for e in w}):
            raise InputError("mempool report.waiting: clients must be sorted and distinct")
        return cls(d["chain_id"], h, v, w, sig)


@dataclass
class Reports:
    """The vote extensions of the last commit, put first in the next block by its proposer."""

    height: int  # the height the reports are about (the block's height - 1)
    reports: list[MempoolReport]

    def tx(self) -> bytes:
        return canonical({"type": REPORTS, "height": self.height, "reports": [r.to_dict() for r in self.reports]})

    @classmethod
    def from_dict(cls, d: Any, max_clients: int, max_reports: int) -> "Reports":
        if not isinstance(d, dict) or set(d) != {"type", "height", "reports"} or d["type"] != REPORTS:
            raise InputError("reports: expected exactly type, height, reports")
        h, rs = d["height"], d["reports"]
        if isinstance(h, bool) or not isinstance(h, int) or not isinstance(rs, list) or len(rs) > max_reports:
            raise InputError(f"reports: a height and at most {max_reports} reports expected")
        return cls(h, [MempoolReport.from_dict(r, max_clients) for r in rs])


@dataclass
class TaskBatch:
    """A client's signed request to have some tasks served; `(client, nonce)` is unique on the chain."""

    chain_id: str
    client: str  # Ed25519 public key, hex
    tasks: list[tuple[int, list[float]]]  # (nonce, demand per resource); a work task's demand is [] here
    sig: str = ""
    work: list[Work | None] | None = None  # per task: the WebAssembly call it names, if any

    def body(self) -> dict:
        out = []
        for i, (n, d) in enumerate(self.tasks):
            w = self.work[i] if self.work else None
            out.append({"nonce": n, **w.to_dict()} if w is not None else {"nonce": n, "demand": d})
        return {"type": TASKS, "chain_id": self.chain_id, "client": self.client, "tasks": out}

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
        work: list[Work | None] = []
        for i, t in enumerate(tasks):
            where = f"tx.tasks[{i}]"
            is_work = isinstance(t, dict) and "module" in t  # a task that runs: its field set is Work's
            if not is_work and (not isinstance(t, dict) or set(t) != {"nonce", "demand"}):
                raise InputError(f"{where}: expected exactly nonce and demand (arrival and delays are set by the chain)")
            nonce = t.get("nonce")
            if isinstance(nonce, bool) or not isinstance(nonce, int) or not 0 <= nonce < 2**63:
                raise InputError(f"{where}.nonce: expected an integer in 0..2^63-1")
            if is_work:
                work.append(Work.from_dict(t, where))
                out.append((nonce, []))
                continue
            work.append(None)
            demand = t["demand"]
            if not isinstance(demand, list) or len(demand) != n_resources:
                raise InputError(f"{where}.demand: expected {n_resources} numbers")
            for x in demand:
                if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) \
                        or not min_demand <= x <= max_demand:
                    raise InputError(f"{where}.demand: each must be in [{min_demand:g}, {max_demand:g}], got {x!r:.40}")
            out.append((nonce, [float(x) for x in demand]))
        return cls(chain_id, client, out, sig, work if any(w is not None for w in work) else None)


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
