"""The PoC chain as a CometBFT ABCI++ application: one object, one method per ABCI call.

CometBFT orders and finalises blocks (Tendermint BFT, its own p2p, mempool, block sync and evidence);
this application decides what a block means. Each method is a short deterministic function of the
committed state, calling the pure rules of `consensus` and `contribution`:

- CheckTx: a client-signed task batch (`wire.TaskBatch`): bounds from genesis, signature, replay guard.
- PrepareProposal: the proposer's allocator allocates the block's tasks on the chain's queue state and
  appends the allocation (assignment, claimed latency, Shapley values) as the block's last transaction.
- ProcessProposal: re-simulates bit for bit with the kernel and checks every rule, the quality one
  against the reference (reverse greedy + exact local search, consensus.reference_allocation) every honest
  node computes identically; accept or reject, deterministically.
- FinalizeBlock: stages the next state (queues, scores, rewards, evidence penalties), returns its app
  hash and the voting powers that follow contribution; Commit persists it (one SQLite transaction).

Test builds misbehave with EDGEPOC_BYZANTINE=grab-all,wrong-latency,duplicate (proposals only): a subclass in
`byzantine.py`, never a branch in this production path.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np

from edgepoc.chain import consensus as rules
from edgepoc.chain import work as works
from edgepoc.chain.abci import wire
from edgepoc.chain.abci.proto import pb
from edgepoc.chain.abci.store import AppStore
from edgepoc.chain.consensus import ChainState, InvalidBlock
from edgepoc.chain.crypto import SigningKey, canonical, verify
from edgepoc.chain.genesis import ConsensusParams, Genesis
from edgepoc.errors import EdgepocError, InputError
from edgepoc.game.kernel import simulate_state

if TYPE_CHECKING:
    from google.protobuf.timestamp_pb2 import Timestamp

log = logging.getLogger("edgepoc.app")
OK, BAD_TX, REPLAY, BAD_SIG, PROPOSER_ONLY, BUSY = 0, 1, 2, 3, 4, 5
PENDING_TTL = 600.0  # seconds after which a task CheckTx accepted but no block carried is forgotten here
ALLOCATION_ROOM = 64 << 10  # bytes kept free in a proposal for the allocation transaction
MAX_REPORT_BYTES = 16 << 10  # a vote extension: max_report_clients (<= 64 by default) x ~80 bytes, signed
VERIFIED_CACHE = 20_000  # parsed, signature-checked batches kept for PrepareProposal/ProcessProposal
ACCEPT = pb.PROCESS_PROPOSAL_STATUS_ACCEPT
REJECT = pb.PROCESS_PROPOSAL_STATUS_REJECT


class StoreFailure(EdgepocError):
    """The store refused a committed block; the node must stop (CometBFT replays it at restart)."""


@dataclass
class BlockTask:
    """One task as the chain sees it: the client's nonce and demand, the arrival the chain stamped, and
    for a task that really runs, its WebAssembly call (its demand is then derived from fuel and memory)."""

    id: str
    client: str
    nonce: int
    demand: list[float]
    arrival: float
    work: wire.Work | None = None
    delays: None = None  # per-provider delays come from genesis, never from a client

    def to_dict(self) -> dict:
        d = {"id": self.id, "client": self.client, "nonce": self.nonce, "demand": self.demand, "arrival": self.arrival}
        if self.work is not None:
            d["work"] = self.work.to_dict()
        return d


@dataclass
class CheckedBlock:
    """What a valid block's transactions mean, computed once (ProcessProposal) and reused (FinalizeBlock)."""

    tasks: list[BlockTask]
    allocation: wire.Allocation | None
    effects: rules.BlockEffects
    reference_latency: float
    view: rules.QueueView | None = None
    last_signed: list[int] | None = None
    modules: list[tuple[wire.ModuleTx, Any]] = field(default_factory=list)
    receipts: list[wire.ReceiptBatch] = field(default_factory=list)
    client_work: dict[str, float] = field(default_factory=dict)  # seconds of network capacity per client
    # the previous block's proposer left out clients reported waiting by > 1/3 of the power: (its index, clients)
    censored: tuple[int, list[str]] | None = None


@dataclass
class StagedBlock:
    """FinalizeBlock's result, written by Commit in one store transaction."""

    state: ChainState
    record: dict
    rows: list[tuple]  # the task index
    evidence: list[dict]
    txs: list[bytes]
    work: dict[str, dict]  # work rows inserted or changed
    modules: list[tuple]  # (hash, height, functions json, wasm)


def chain_clock(genesis: Genesis, ts: Timestamp) -> float:
    """A protobuf Timestamp (the block time CometBFT agreed on) in seconds since genesis."""
    return ts.seconds + ts.nanos / 1e9 - genesis.genesis_time


def voting_powers(params: ConsensusParams, scores: list[int]) -> list[int]:
    """Contribution -> CometBFT voting power: `power_total` split by score, floored, capped below 1/3.

    The floor keeps every provider a validator (a zero-contribution provider still votes); with >= 4
    validators no one may hold a third of the power, so no single provider can halt the chain by going
    silent. The price: a provider's voting weight follows its contribution only within these bounds.
    """
    n = len(scores)
    pos = [max(int(s), 0) for s in scores]
    tot = sum(pos)
    # integers throughout; with no positive score (every task past the cloud cut-off) the shares are equal
    raw = [params.power_total * s // tot for s in pos] if tot > 0 else [params.power_total // n] * n
    powers = [max(params.power_floor, r) for r in raw]
    if n >= 4:
        for _ in range(4 * n):
            changed = False
            for i in range(n):
                cap = (sum(powers) - powers[i] - 1) // 2  # 3 p_i < total  <=>  2 p_i < others
                if powers[i] > cap:
                    powers[i] = max(params.power_floor, cap)
                    changed = True
            if not changed:
                break
    return powers


def arbitration_bytes(chain_id: str, height: int, state_hash: str, tasks: list[dict], free_times: list[float],
                      assignment: list[int], capacity: list[list[float]] | None = None) -> bytes:
    """What the arbiter signs: everything the allocation depends on (each task's id, demand and arrival, the
    queues, the capacities), and the allocation."""
    return canonical({"type": "arbitration", "chain_id": chain_id, "height": height, "state": state_hash,
                      "tasks": [[t["id"], t["demand"], t["arrival"]] for t in tasks], "free_times": free_times,
                      "capacity": capacity, "assignment": assignment})


class PocApplication:
    """The ABCI++ application of one provider; thread-safe (CometBFT calls it on several connections)."""

    def __init__(self, genesis: Genesis, store: AppStore, allocate: Callable | None = None, allocator_name: str = "greedy",
                 me: str | None = None, metrics: Any = None,
                 arbiter: Callable[[dict], dict | None] | None = None):
        self.genesis = genesis
        self.params = genesis.params
        self.store = store
        self.allocate = allocate
        self.allocator_name = allocator_name
        self.me = me  # this node's validator address (hex), for the Byzantine test build
        self.byzantine: frozenset[str] = frozenset()  # test builds only (edgepoc.chain.abci.byzantine)
        self.metrics = metrics
        self.arbiter = arbiter
        self.lock = threading.RLock()
        self.state: ChainState = store.state() or rules.initial_state(genesis)
        self.staged: StagedBlock | None = None
        self.checked: dict[bytes, CheckedBlock | str] = {}  # block hash -> result of ProcessProposal
        self.verified: dict[bytes, Any] = {}  # tx hash -> transaction parsed and signature-checked by CheckTx
        self.pending: dict[str, tuple[float, str]] = {}  # task id -> (when CheckTx accepted it here, client)
        self.pending_by_client: dict[str, int] = {}
        self.pending_modules: dict[str, float] = {}  # module hash -> when CheckTx accepted it here
        self.last_commit_time: float | None = None
        self.rejections: dict[str, int] = {}
        self.signer: SigningKey | None = None  # this node's validator key: signs its vote extensions
        self.profile: dict[str, float] = {}  # seconds spent per ABCI call and per rule (the benchmark reads it)

    def _spent(self, what: str, t0: float) -> None:
        self.profile[what] = self.profile.get(what, 0.0) + time.perf_counter() - t0

    # ---------------------------------------------------------------- info and genesis
    def info(self, req: pb.InfoRequest) -> Any:
        with self.lock:
            h = self.state.height
            return pb.InfoResponse(data="edgepoc", version="1", app_version=1, last_block_height=h,
                                   last_block_app_hash=bytes.fromhex(self.state.hash) if h else b"")

    def init_chain(self, req: pb.InitChainRequest) -> Any:
        """CometBFT's genesis must be this application's: chain id, first height, app state, validator keys
        and the powers contribution gives them at the start. A mismatch stops the node with the reason."""
        g = self.genesis
        problem = None
        if req.chain_id != g.chain_id:
            problem = f"chain id {req.chain_id!r} is not genesis' {g.chain_id!r}"
        elif req.initial_height != 1:
            problem = f"initial height {req.initial_height}, this application starts at 1"
        else:
            try:
                theirs = Genesis.from_dict(json.loads(req.app_state_bytes)).hash if req.app_state_bytes else None
            except (ValueError, EdgepocError):
                theirs = "unreadable"
            if theirs != g.hash:
                problem = "app_state differs from this node's genesis"
            else:
                powers = voting_powers(self.params, rules.initial_scores(g))
                want = [(bytes.fromhex(v.public_key), powers[i]) for i, v in enumerate(g.validators)]
                got = [(v.pub_key_bytes, v.power) for v in req.validators]
                if got and sorted(got) != sorted(want):
                    problem = "the validator set (keys and powers) differs from genesis"
                elif req.HasField("consensus_params") and \
                        req.consensus_params.feature.vote_extensions_enable_height.value != self.params.vote_extensions_height:
                    problem = (f"vote extensions enabled at height "
                               f"{req.consensus_params.feature.vote_extensions_enable_height.value}, genesis.params says "
                               f"{self.params.vote_extensions_height}")
        if problem:
            raise EdgepocError(f"InitChain: {problem}")
        return pb.InitChainResponse(app_hash=bytes.fromhex(rules.initial_state(g).hash))

    def query(self, req: pb.QueryRequest) -> Any:
        path = req.path.strip("/")
        if path.startswith("p2p/filter/"):  # filter_peers: CometBFT asks before keeping a peer (0 = keep)
            from edgepoc.chain.abci.peers import peer_filter

            code, why = peer_filter(os.path.dirname(os.path.dirname(self.store.path)), path)
            return pb.QueryResponse(code=code, log=why)
        if path.startswith("task/"):
            row = self.store.task(path[5:])
            return pb.QueryResponse(code=0 if row else 1, value=canonical(row or {}), height=self.state.height)
        if path == "state":
            return pb.QueryResponse(code=0, value=canonical(self.state.to_dict()), height=self.state.height)
        return pb.QueryResponse(code=1, log=f"unknown query path {req.path!r}; known: task/<id>, state")

    # ---------------------------------------------------------------- mempool
    def parse_batch(self, d: Any) -> wire.TaskBatch:
        p = self.params
        b = wire.TaskBatch.from_dict(d, n_resources=self.genesis.n_resources, max_demand=p.max_demand,
                                     max_tasks=p.max_batch_tasks, min_demand=p.min_demand)
        if b.chain_id != self.genesis.chain_id:
            raise InputError(f"tx.chain_id: not {self.genesis.chain_id}")
        if len(set(b.ids)) != len(b.ids):
            raise InputError("tx.tasks: a nonce appears twice in the batch")
        return b

    def check_tx(self, req: pb.CheckTxRequest) -> Any:
        try:
            return self._check_tx(req)
        except Exception as exc:  # never on the honest path: reject the transaction, keep the node
            log.exception("CheckTx failed on a %d-byte transaction", len(req.tx))
            return pb.CheckTxResponse(code=BAD_TX, log=f"internal: {type(exc).__name__}")

    def _check_tx(self, req) -> Any:
        key = hashlib.sha256(req.tx).digest()
        if req.type == pb.CHECK_TX_TYPE_RECHECK and key in self.verified:
            parsed = self.verified[key]
            stale = self._stale(parsed)
            if stale:
                self.verified.pop(key, None)
                if isinstance(parsed, wire.TaskBatch):  # a losing duplicate: its other tasks are not pending
                    self._pending_drop(parsed.ids)
                elif isinstance(parsed, tuple):
                    self.pending_modules.pop(parsed[0].hash, None)
                return pb.CheckTxResponse(code=REPLAY, log=stale)
            return pb.CheckTxResponse(code=OK)
        try:
            d = wire.decode_tx(req.tx, self.params.max_tx_bytes)
            kind = d.get("type")
            if kind in (wire.ALLOCATION, wire.REPORTS):
                return pb.CheckTxResponse(code=PROPOSER_ONLY, log=f"{kind} transactions are added by proposers only")
            if kind == wire.MODULE:
                m = self._module_tx(d)
                # bounded before the compile, the costly part: a flood of modules is answered "busy" cheaply
                busy = self._modules_busy(m.hash)
                if busy:
                    return pb.CheckTxResponse(code=BUSY, log=busy)
                parsed = (m, self._admit_module(m))
            elif kind == wire.RECEIPTS:
                parsed = self._parse_receipts(d)
            if kind in (wire.MODULE, wire.RECEIPTS):
                stale = self._stale(parsed)
                if stale:
                    return pb.CheckTxResponse(code=REPLAY, log=stale)
                self._remember(key, parsed)
                if kind == wire.MODULE:
                    self.pending_modules.setdefault(parsed[0].hash, time.time())
                return pb.CheckTxResponse(code=OK)
            b = self.parse_batch(d)
            self._check_work(b)
        except InputError as exc:
            return pb.CheckTxResponse(code=BAD_TX, log=str(exc))
        done = self.store.committed_ids(b.ids)
        if done:
            return pb.CheckTxResponse(code=REPLAY, log=f"replay: task {sorted(done)[0]} is already committed")
        if not b.signature_ok():
            return pb.CheckTxResponse(code=BAD_SIG, log="sig: bad client signature")
        try:
            busy = self._busy(b)
        except InputError as exc:
            return pb.CheckTxResponse(code=BAD_TX, log=str(exc))
        if busy:
            return pb.CheckTxResponse(code=BUSY, log=busy)
        self._remember(key, b)
        self._pending_add(b.ids, b.client)
        return pb.CheckTxResponse(code=OK, gas_wanted=len(b.ids))

    # ---------------------------------------------------------------- admission
    def next_available(self) -> list[bool]:
        """Who may take tasks at the next height, from the committed state alone (CheckTx has no votes)."""
        st = self.state
        return works.availability(self.params, st.height + 1, st.last_signed, st.cooldown_until)

    def backlog(self, available: list[bool] | None = None) -> float:
        """Seconds of queued work on the least loaded available provider as of the last block (what a new task
        would wait at best): the admission rule of CheckTx, PrepareProposal and ProcessProposal."""
        return rules.backlog(self.state, self.next_available() if available is None else available)

    def _busy(self, b: wire.TaskBatch) -> str | None:
        """Admission: "busy, retry after" when the providers are saturated, or this client already has its
        quota of tasks waiting here. One client's flood fills its own quota, not the providers' queues."""
        p = self.params
        avail = self.next_available()
        wait = self.backlog(avail)
        if wait > p.max_backlog:
            return (f"busy: the providers' backlog is {wait:.1f} s (> max_backlog {p.max_backlog:g} s); "
                    f"retry after {wait - p.max_backlog:.1f} s")
        st = self.state
        tasks = self._tasks_of_batch(b, st.last_time)
        each = rules.task_work(rules.queue_view(self.genesis, st, avail), tasks)
        work = sum(each)
        if work > p.max_client_block_seconds:  # never admissible as one batch: not "busy", a bad request
            alone = next((i for i, w in enumerate(each) if w > p.max_client_block_seconds), None)
            if alone is not None:  # no batch can carry this task: splitting would not help
                raise InputError(f"tx.tasks[{alone}]: this task alone is {each[alone]:.1f} s of the whole network's "
                                 f"capacity, more than one block takes from a client (max_client_block_seconds "
                                 f"{p.max_client_block_seconds:g} s): this network cannot take it; drop it or lower "
                                 "its demand (or size the genesis bounds with `network init --workload`)")
            fits = max(1, int(np.searchsorted(np.cumsum(each), p.max_client_block_seconds, side="right")))
            raise InputError(f"tx.tasks: this batch is {work:.1f} s of the whole network's capacity, more than one "
                             f"block takes from a client (max_client_block_seconds {p.max_client_block_seconds:g} s); "
                             f"split it: its first {fits} tasks fit in one batch")
        why = rules.admitted(p, st, b.client, work)
        if why:
            return why
        mine = self.pending_by_client.get(b.client, 0)
        if mine + len(b.ids) > p.max_client_pending:
            return (f"busy: this client has {mine} tasks waiting (max_client_pending {p.max_client_pending}); "
                    "retry after they are committed")
        return None

    def _modules_busy(self, digest: str) -> str | None:
        """Why CheckTx answers "busy": this node's mempool already holds max_pending_modules other modules."""
        n, limit = len(self.pending_modules), self.params.max_pending_modules
        if n < limit or digest in self.pending_modules:
            return None
        return (f"busy: {n} modules already wait for blocks here (max_pending_modules {limit}; a block carries "
                f"{self.params.max_block_modules}); retry in a few blocks")

    def _pending_add(self, ids: list[str], client: str) -> None:
        now = time.time()
        for i in ids:
            if i not in self.pending:
                self.pending[i] = (now, client)
                self.pending_by_client[client] = self.pending_by_client.get(client, 0) + 1

    def _pending_drop(self, ids) -> None:
        for i in ids:
            got = self.pending.pop(i, None)
            if got is not None:
                c = got[1]
                n = self.pending_by_client.get(c, 0) - 1
                if n > 0:
                    self.pending_by_client[c] = n
                else:
                    self.pending_by_client.pop(c, None)

    def _remember(self, key: bytes, parsed: Any) -> None:
        while len(self.verified) >= VERIFIED_CACHE:  # oldest first (dicts keep insertion order)
            self.verified.pop(next(iter(self.verified)))
        self.verified[key] = parsed

    def _stale(self, parsed: Any) -> str | None:
        """Why a transaction that was valid is no longer worth including (None if it still is)."""
        if isinstance(parsed, wire.TaskBatch):
            return "replay: a task of this batch is already committed" if self.store.committed_ids(parsed.ids) else None
        if isinstance(parsed, tuple):  # (ModuleTx, ModuleInfo)
            return "module: already on chain" if self.store.module_heights([parsed[0].hash]) else None
        if isinstance(parsed, wire.ReceiptBatch):
            open_ = self.store.work([r.task for r in parsed.receipts])
            i = self.genesis.index_of(parsed.provider)
            if not any(w["status"] == "assigned" and w["provider"] == i for w in open_.values()):
                return "receipts: no task of this batch is open for this provider"
        return None

    def _parse_module(self, d: dict) -> tuple[wire.ModuleTx, Any]:
        """A module transaction, signature checked and the module compiled and admitted (edgepoc.execution)."""
        m = self._module_tx(d)
        return m, self._admit_module(m)

    def _module_tx(self, d: dict) -> wire.ModuleTx:
        """A module transaction of this chain with a good client signature (its module not compiled yet)."""
        m = wire.ModuleTx.from_dict(d)
        if m.chain_id != self.genesis.chain_id:
            raise InputError(f"module tx.chain_id: not {self.genesis.chain_id}")
        if not m.signature_ok():
            raise InputError("module tx.sig: bad client signature")
        return m

    def _admit_module(self, m: wire.ModuleTx) -> Any:
        """The module compiled and admitted (edgepoc.execution.compile_module), or InputError with the reason."""
        from edgepoc.execution import compile_module

        return compile_module(m.wasm, max_bytes=self.params.max_module_bytes,
                              max_memory_bytes=self.params.max_task_memory)

    def _parse_receipts(self, d: dict) -> wire.ReceiptBatch:
        rb = wire.ReceiptBatch.from_dict(d, self.params.max_receipts)
        i = self.genesis.index_of(rb.provider)
        if rb.chain_id != self.genesis.chain_id or i is None:
            raise InputError("receipts tx: not from a validator of this chain")
        if not rb.signature_ok(self.genesis.validators[i].public_key):
            raise InputError("receipts tx.sig: not signed by that validator's key")
        return rb

    def _check_work(self, b: wire.TaskBatch) -> None:
        """Every work task names a committed module, one of its exported functions with the right number of
        arguments, and fuel and memory within genesis' bounds (InputError naming the task otherwise)."""
        if not b.work:
            return
        from edgepoc.execution.wasm import check_args

        p = self.params
        max_fuel = int(p.max_demand * p.fuel_per_unit)
        for i, w in enumerate(b.work):
            if w is None:
                continue
            where = f"tx.tasks[{i}]"
            found = self.store.module(w.module)
            if found is None:
                raise InputError(f"{where}.module: unknown module {w.module[:16]}; add it first (`edgepoc module add`)")
            funcs = found[0]
            sig = funcs.get(w.function)
            if sig is None:
                raise InputError(f"{where}.function: {w.function!r} is not exported; exports: {', '.join(sorted(funcs))}")
            try:  # the run's own rule (count and types): a committed task is always one its provider can call
                check_args(w.function, sig["params"], w.args)
            except InputError as exc:
                raise InputError(f"{where}.args: {exc}") from None
            if w.fuel > max_fuel:
                raise InputError(f"{where}.fuel: {w.fuel} > the most a task may declare, {max_fuel}")
            if w.memory > p.max_task_memory:
                raise InputError(f"{where}.memory: {w.memory} bytes > max_task_memory {p.max_task_memory}")

    # ---------------------------------------------------------------- the block's meaning
    def _parse_tx(self, j: int, tx: bytes, *, verify_sigs: bool) -> Any:
        """A block's transaction, parsed (from CheckTx's cache when this node saw it); InvalidBlock if bad."""
        parsed = self.verified.get(hashlib.sha256(tx).digest())
        if parsed is not None:
            return parsed
        try:
            d = wire.decode_tx(tx, self.params.max_tx_bytes)
            kind = d.get("type")
            if kind == wire.MODULE:
                return self._parse_module(d)
            if kind == wire.RECEIPTS:
                return self._parse_receipts(d)
            if kind == wire.ALLOCATION:
                raise InputError("an allocation is only the block's last transaction")
            if kind == wire.REPORTS:
                raise InputError("reports are only the block's first transaction")
            b = self.parse_batch(d)
        except InputError as exc:
            raise InvalidBlock(f"txs[{j}]: {exc}") from None
        if verify_sigs:
            t0 = time.perf_counter()
            ok = b.signature_ok()
            self._spent("signatures", t0)
            if not ok:
                raise InvalidBlock(f"txs[{j}]: bad client signature")
        return b

    def _classify(self, txs, clock: float, *, verify_sigs: bool) -> tuple[list[BlockTask], list, list]:
        """(tasks, modules, receipt batches) of a block's transactions (the allocation excluded)."""
        tasks: list[BlockTask] = []
        modules: list[tuple[wire.ModuleTx, Any]] = []
        receipts: list[wire.ReceiptBatch] = []
        seen: set[str] = set()
        for j, tx in enumerate(txs):
            parsed = self._parse_tx(j, tx, verify_sigs=verify_sigs)
            if isinstance(parsed, tuple):
                if any(m.hash == parsed[0].hash for m, _ in modules):
                    raise InvalidBlock(f"txs[{j}]: module {parsed[0].hash[:16]} twice in the block")
                modules.append(parsed)
                continue
            if isinstance(parsed, wire.ReceiptBatch):
                receipts.append(parsed)
                continue
            b = parsed
            try:
                self._check_work(b)
            except InputError as exc:
                raise InvalidBlock(f"txs[{j}]: {exc}") from None
            for t in self._tasks_of_batch(b, clock):
                if t.id in seen:
                    raise InvalidBlock(f"txs[{j}]: task {t.id} appears twice in the block")
                seen.add(t.id)
                tasks.append(t)
        done = self.store.committed_ids(list(seen))
        if done:
            raise InvalidBlock(f"task {sorted(done)[0]} was already committed (replay)")
        if modules and self.store.module_heights([m.hash for m, _ in modules]):
            raise InvalidBlock("a module of the block is already on chain")
        if len(modules) > self.params.max_block_modules:
            raise InvalidBlock(f"{len(modules)} modules > max_block_modules {self.params.max_block_modules}")
        if len(tasks) > self.params.max_block_tasks:
            raise InvalidBlock(f"{len(tasks)} tasks > max_block_tasks {self.params.max_block_tasks}")
        return tasks, modules, receipts

    def _tasks_of_batch(self, b: wire.TaskBatch, clock: float) -> list[BlockTask]:
        """A batch's tasks as the chain sees them, arriving at `clock`; a work task's demand from fuel and memory."""
        r = self.genesis.n_resources
        out = []
        for n, (tid, (nonce, demand)) in enumerate(zip(b.ids, b.tasks)):
            w = b.work[n] if b.work else None
            if w is not None:
                demand = works.work_demand(self.params, r, w.fuel, w.memory)
            out.append(BlockTask(tid, b.client, nonce, demand, clock, w))
        return out

    def _tasks_of(self, txs, clock: float, *, verify_sigs: bool) -> list[BlockTask]:
        return self._classify(txs, clock, verify_sigs=verify_sigs)[0]

    def _view(self, height: int, votes) -> tuple[rules.QueueView, list[int]]:
        """Liveness at `height` from the block's last commit votes, and the queues allocation sees."""
        state = self.state
        last_signed = works.signed_last_commit(self.genesis, state.last_signed, height, votes)
        available = works.availability(self.params, height, last_signed, state.cooldown_until)
        if not any(available):  # everyone cooling down after deadlines: those still signing take the work
            available = works.availability(self.params, height, last_signed, [0] * len(last_signed))
        if not any(available):  # nobody signs (cannot be, with a quorum): the chain cannot tell, trust everyone
            available = [True] * len(available)
        return rules.queue_view(self.genesis, state, available), last_signed

    def _reference(self, inst, view: rules.QueueView) -> tuple[list[int], float]:
        """The quality reference every honest node computes identically (consensus.reference_allocation)."""
        return rules.reference_allocation(self.genesis, inst, view)

    def _good_enough(self, claimed: float, reference: float) -> bool:
        p = self.params
        return rules.within_tolerance(claimed, reference, p.tolerance, p.tolerance_abs)

    def check_block(self, height: int, clock: float, txs: Iterable[bytes],
                    votes: Sequence[tuple[str, bool, int]] = ()) -> CheckedBlock:
        """Every rule a proposed block must satisfy on the committed state; raises InvalidBlock.

        `votes`: (validator address hex, signed) of the block's last commit, for liveness. Any other
        exception is a bug or an input no rule foresaw: it is logged with its cause and the block is
        invalid, so one crafted block can neither crash the node nor split honest nodes (they run the same
        code on the same bytes)."""
        try:
            return self._check_block(height, clock, txs, votes)
        except InvalidBlock:
            raise
        except Exception as exc:
            log.exception("checking the block at height %d raised", height)
            raise InvalidBlock(f"internal: {type(exc).__name__} while checking the block") from None

    def _check_block(self, height: int, clock: float, txs, votes) -> CheckedBlock:
        state = self.state
        if height != state.height + 1:
            raise InvalidBlock(f"height {height}: the application is at {state.height}")
        view, last_signed = self._view(height, votes)
        txs = list(txs)
        size = sum(len(t) for t in txs)
        if size > self.params.max_proposal_bytes:
            raise InvalidBlock(f"size: {size} bytes of transactions > max_proposal_bytes {self.params.max_proposal_bytes}")
        waiting: dict[str, float] = {}
        if self.reports_due(height):
            if not txs:
                raise InvalidBlock("reports: the block must start with its last commit's vote extensions")
            waiting = self._check_reports(height, txs[0], votes)
            txs = txs[1:]
        empty = CheckedBlock([], None, rules.block_effects(self.genesis, state, [], [], view), 0.0, view, last_signed)
        empty.censored = self._censored(height - 1, waiting)
        if not txs:
            return empty
        alloc = None
        try:
            last = wire.decode_tx(txs[-1], self.params.max_tx_bytes)
            if last.get("type") == wire.ALLOCATION:
                alloc = wire.Allocation.from_dict(last)
        except InputError as exc:
            raise InvalidBlock(f"txs[{len(txs) - 1}]: {exc}") from None
        tasks, modules, receipts = self._classify(txs[:-1] if alloc is not None else txs, clock, verify_sigs=True)
        if not tasks:
            if alloc is not None:
                raise InvalidBlock("allocation: a block without tasks carries no allocation")
            return CheckedBlock([], None, empty.effects, 0.0, view, last_signed, modules, receipts,
                                censored=empty.censored)
        if alloc is None:
            raise InvalidBlock("the last transaction must be the allocation of the block's tasks")
        p = self.params
        per_client: dict[str, int] = {}
        for t in tasks:
            per_client[t.client] = per_client.get(t.client, 0) + 1
        if max(per_client.values()) > p.max_client_block_tasks:
            raise InvalidBlock(f"quota: a client has {max(per_client.values())} tasks in the block "
                               f"(max_client_block_tasks {p.max_client_block_tasks})")
        work_by_client = rules.client_work(view, tasks)
        for client, work in sorted(work_by_client.items()):
            why = rules.admitted(p, state, client, work)
            if why:
                raise InvalidBlock(f"admission: {why}")
        wait = self.backlog(view.available)
        if wait > p.max_backlog:
            raise InvalidBlock(f"admission: the providers' backlog is {wait:.1f} s > max_backlog {p.max_backlog:g} s; "
                               "no new tasks until it drains")
        k = len(self.genesis.validators)
        if len(alloc.assignment) != len(tasks):
            raise InvalidBlock(f"assignment: {len(alloc.assignment)} providers for {len(tasks)} tasks")
        if any(not 0 <= x < k for x in alloc.assignment):
            raise InvalidBlock("assignment: provider index out of range")
        t0 = time.perf_counter()
        inst = rules.block_instance(self.genesis, tasks, height, view.capacity)
        effects = rules.block_effects(self.genesis, state, tasks, alloc.assignment, view, inst)
        self._spent("re-simulation+shapley", t0)
        if effects.claimed_latency != alloc.claimed_latency:
            raise InvalidBlock(f"latency-mismatch: claimed {alloc.claimed_latency!r}, the kernel gives "
                               f"{effects.claimed_latency!r}")
        if effects.shapley.values != alloc.shapley or effects.shapley.stderr != alloc.stderr:
            raise InvalidBlock("shapley: the contributions do not match the Shapley values")
        if alloc.arbitration is not None:
            msg = arbitration_bytes(self.genesis.chain_id, height, state.hash, [t.to_dict() for t in tasks],
                                    view.free_times, alloc.assignment, view.capacity.tolist())
            if not verify(self.genesis.arbiter_public_key, msg, alloc.arbitration["sig"]):
                raise InvalidBlock("arbitration: not the arbiter's signature over this state, tasks and allocation")
        t0 = time.perf_counter()
        _, reference = self._reference(inst, view)
        self._spent("reference", t0)
        if not self._good_enough(effects.claimed_latency, reference):
            raise InvalidBlock(f"quality: latency {effects.claimed_latency:.6g} is worse than the reference's "
                               f"{reference:.6g} by more than the tolerance {self.params.tolerance:g}")
        return CheckedBlock(tasks, alloc, effects, reference, view, last_signed, modules, receipts, work_by_client,
                            empty.censored)

    # ---------------------------------------------------------------- censorship: mempool reports
    def reports_due(self, height: int) -> bool:
        """Whether block `height` must start with the vote extensions of height - 1 (docs/consensus.md)."""
        h0 = self.params.vote_extensions_height
        return h0 > 0 and height > h0

    def _block_ids(self, req) -> set[str]:
        """The task ids of the block a vote is for (ProcessProposal's result, else its transactions parsed)."""
        checked = self.checked.get(req.hash)
        if isinstance(checked, CheckedBlock):
            return {t.id for t in checked.tasks}
        ids: set[str] = set()
        for j, tx in enumerate(req.txs):
            try:
                parsed = self._parse_tx(j, tx, verify_sigs=False)
            except InvalidBlock:
                continue
            if isinstance(parsed, wire.TaskBatch):
                ids.update(parsed.ids)
        return ids

    def mempool_report(self, height: int, exclude: set[str], cutoff: float) -> wire.MempoolReport | None:
        """This validator's signed report on the block of `height`: the clients with a batch in this mempool since
        `cutoff` or earlier, still valid and not in the block (oldest first, at most max_report_clients), each
        with that batch's work."""
        if self.signer is None:
            return None
        p = self.params
        oldest: dict[str, tuple[float, wire.TaskBatch]] = {}
        for parsed in list(self.verified.values()):  # a snapshot: CheckTx adds to it on another thread
            if not isinstance(parsed, wire.TaskBatch):
                continue
            seen = [self.pending.get(i) for i in parsed.ids]
            if any(x is None for x in seen) or any(i in exclude for i in parsed.ids):
                continue  # committed, stale, or in this block
            first = min(x[0] for x in seen)
            if first <= cutoff and (parsed.client not in oldest or first < oldest[parsed.client][0]):
                oldest[parsed.client] = (first, parsed)
        picked = sorted(oldest.items(), key=lambda kv: kv[1][0])[:p.max_report_clients]
        waiting = []
        if picked:
            st = self.state
            view = rules.queue_view(self.genesis, st, self.next_available())
            for client, (_, b) in picked:
                work = sum(rules.task_work(view, self._tasks_of_batch(b, st.last_time)))
                waiting.append([client, round(work, 6), len(b.ids), len(b.tx())])
        waiting.sort()
        me = self.signer.address
        return wire.MempoolReport(self.genesis.chain_id, height, me, waiting).signed(self.signer)

    def extend_vote(self, req: pb.ExtendVoteRequest) -> Any:
        """ExtendVote: this validator's mempool report, signed (empty before vote extensions are enabled)."""
        with self.lock:
            if not self.reports_due(req.height + 1):  # the next block carries what we report now
                return pb.ExtendVoteResponse()
            # The proposer began its proposal timeout_commit after it committed the previous height (when we did,
            # within clock and gossip skew): batches here censor_age before that moment were in its mempool too.
            # Just restarted (no commit seen): nothing is reported, so no proposer is blamed for our empty mempool.
            p = self.params
            cutoff = -math.inf if self.last_commit_time is None \
                else self.last_commit_time + p.timeout_commit - p.censor_age
            report = self.mempool_report(req.height, self._block_ids(req), cutoff)
            return pb.ExtendVoteResponse(vote_extension=canonical(report.to_dict()) if report else b"")

    def _parse_report(self, raw: bytes, height: int, validator: str) -> wire.MempoolReport:
        if len(raw) > MAX_REPORT_BYTES:
            raise InputError(f"mempool report: {len(raw)} bytes > {MAX_REPORT_BYTES}")
        r = wire.MempoolReport.from_dict(wire.decode_tx(raw, MAX_REPORT_BYTES), self.params.max_report_clients)
        return self._check_report(r, height, validator)

    def _check_report(self, r: wire.MempoolReport, height: int, validator: str) -> wire.MempoolReport:
        """A parsed report is `validator`'s, for `height` of this chain, and signed by it (InputError if not)."""
        i = self.genesis.index_of(r.validator)
        if r.chain_id != self.genesis.chain_id or r.height != height or r.validator != validator or i is None:
            raise InputError(f"mempool report: not {validator[:8]}'s report for height {height} of this chain")
        if not r.signature_ok(self.genesis.validators[i].public_key):
            raise InputError("mempool report: bad signature")
        return r

    def verify_vote_extension(self, req: pb.VerifyVoteExtensionRequest) -> Any:
        """VerifyVoteExtension: a precommit counts only with its validator's signed, well-formed report."""
        try:
            self._parse_report(req.vote_extension, req.height, req.validator_address.hex())
            return pb.VerifyVoteExtensionResponse(status=pb.VERIFY_VOTE_EXTENSION_STATUS_ACCEPT)
        except (InputError, ValueError) as exc:
            log.warning("vote extension of %s at height %d refused: %s", req.validator_address.hex()[:8],
                        req.height, exc)
            return pb.VerifyVoteExtensionResponse(status=pb.VERIFY_VOTE_EXTENSION_STATUS_REJECT)

    def reports_tx(self, height: int, commit: pb.ExtendedCommitInfo | None) -> bytes:
        """The reports transaction of block `height`: the signed extension of every vote in its last commit (our
        own re-signed if ours is missing: an ExtendVote that failed must not make our proposal invalid)."""
        reports = []
        for v in (commit.votes if commit is not None else []):
            if v.block_id_flag != 2:
                continue
            addr = v.validator.address.hex()
            try:
                reports.append(self._parse_report(v.vote_extension, height - 1, addr))
            except (InputError, ValueError):
                if self.signer is not None and addr == self.signer.address:
                    reports.append(wire.MempoolReport(self.genesis.chain_id, height - 1, addr, []).signed(self.signer))
        return wire.Reports(height - 1, reports).tx()

    def _check_reports(self, height: int, tx: bytes, votes) -> dict[str, tuple[float, int, int]]:
        """The clients reported waiting by more than 1/3 of the last commit's power, each with the least work,
        tasks and bytes reported for it. The reports must be exactly those of the last commit's signers."""
        try:
            d = wire.decode_tx(tx, self.params.max_tx_bytes)
            rep = wire.Reports.from_dict(d, self.params.max_report_clients, len(self.genesis.validators))
            if rep.height != height - 1:
                raise InputError(f"reports: for height {rep.height}, expected {height - 1}")
            signers = sorted(a for a, signed, *_ in votes if signed)
            got = [r.validator for r in rep.reports]
            if sorted(got) != signers or len(set(got)) != len(got):
                raise InputError(f"reports: {len(got)} reports for the {len(signers)} signers of the last commit")
            for r in rep.reports:
                self._check_report(r, height - 1, r.validator)
        except InputError as exc:
            raise InvalidBlock(str(exc)) from None
        power = {a: pw for a, _, pw, *_ in votes}
        total = sum(power.values())
        weight: dict[str, int] = {}
        least: dict[str, tuple[float, int, int]] = {}
        for r in rep.reports:
            for client, work, n, size in r.waiting:
                weight[client] = weight.get(client, 0) + power.get(r.validator, 0)
                w0, n0, s0 = least.get(client, (math.inf, n, size))
                least[client] = (min(w0, float(work)), min(n0, n), min(s0, size))
        return {c: least[c] for c in sorted(weight) if 3 * weight[c] > total}

    def _censored(self, height: int, waiting: dict[str, tuple[float, int, int]]) -> tuple[int, list[str]] | None:
        """(proposer, clients) when block `height` left out clients reported waiting before its proposal, each
        admissible by the state it was proposed on and with a batch that fitted, while the providers took new
        tasks."""
        if not waiting or height < 1:
            return None
        p = self.params
        rec, txs = self.store.block(height), self.store.txs(height)
        if rec is None or txs is None:
            return None
        pi = self.genesis.index_of(rec["proposer"])
        if pi is None:
            return None
        tasks, size = rec["tasks"], sum(map(len, txs))
        before = self.store.state(height - 1) if height > 1 else rules.initial_state(self.genesis)
        if before is None:
            return None
        if rules.backlog(before, rec["available"]) > p.max_backlog:
            return None  # no new tasks for anyone
        served = {t["client"] for t in tasks}
        budget = p.max_proposal_bytes - ALLOCATION_ROOM  # what PrepareProposal fills
        left_out = [c for c, (work, n, nbytes) in waiting.items()
                    if c not in served and rules.admitted(p, before, c, work) is None
                    and len(tasks) + n <= p.max_block_tasks and size + nbytes <= budget]
        return (pi, left_out) if left_out else None

    # ---------------------------------------------------------------- proposals
    def prepare_proposal(self, req: pb.PrepareProposalRequest) -> Any:
        try:
            return self._prepare_proposal(req)
        except Exception:  # an empty proposal (with its reports) is always valid: the height still commits
            log.exception("PrepareProposal failed at height %d; proposing an empty block", req.height)
            return self.empty_proposal(req)

    def empty_proposal(self, req: pb.PrepareProposalRequest) -> Any:
        """The proposal with no tasks: only the last commit's reports where they are due."""
        with self.lock:
            due = self.reports_due(req.height)
            return pb.PrepareProposalResponse(txs=[self.reports_tx(req.height, req.local_last_commit)] if due else [])

    def _prepare_proposal(self, req) -> Any:
        t0 = time.perf_counter()
        with self.lock:
            state = self.state
            clock = chain_clock(self.genesis, req.time)
            votes = _votes(req.local_last_commit)
            view, _ = self._view(req.height, votes)
            # the last commit's reports first, then modules and receipts, before the tasks that may use them
            head: list[bytes] = [self.reports_tx(req.height, req.local_last_commit)] if self.reports_due(req.height) else []
            by_client: dict[str, list[tuple[bytes, list[BlockTask]]]] = {}
            modules_seen: set[str] = set()
            receipts_seen: set[str] = set()
            size = sum(len(t) for t in head)
            p = self.params
            # room for the allocation transaction; never above max_proposal_bytes (CometBFT's gRPC limit)
            budget = min(req.max_tx_bytes, p.max_proposal_bytes) - ALLOCATION_ROOM
            admit = self.backlog(view.available) <= p.max_backlog
            seen: set[str] = set()
            for tx in req.txs:
                if size + len(tx) > budget:
                    continue
                try:
                    parsed = self._parse_tx(0, tx, verify_sigs=True)
                    if self._stale(parsed):
                        continue
                    if isinstance(parsed, tuple):
                        if parsed[0].hash in modules_seen or len(modules_seen) >= p.max_block_modules:
                            continue
                        modules_seen.add(parsed[0].hash)
                        head.append(tx)
                        size += len(tx)
                        continue
                    if isinstance(parsed, wire.ReceiptBatch):
                        ids = {r.task for r in parsed.receipts}
                        if ids & receipts_seen:
                            continue
                        receipts_seen |= ids
                        head.append(tx)
                        size += len(tx)
                        continue
                    if not admit:
                        continue
                    batch_tasks = self._tasks_of([tx], clock, verify_sigs=True)
                except InvalidBlock:
                    continue  # a transaction gone stale since CheckTx (its tasks committed meanwhile)
                if any(t.id in seen for t in batch_tasks):
                    continue
                seen.update(t.id for t in batch_tasks)
                by_client.setdefault(parsed.client, []).append((tx, batch_tasks))
            # Fair share: batches are taken round-robin by client (mempool order within a client), each client
            # up to its per-block quota, so one client's flood cannot push another's tasks out of blocks.
            chosen: list[bytes] = []
            tasks: list[BlockTask] = []
            taken: dict[str, int] = {}
            work: dict[str, float] = {}
            queues = [(c, q) for c, q in by_client.items() if rules.admitted(p, state, c, 0.0) is None]
            while queues and len(tasks) < p.max_block_tasks:
                rest = []
                for client, q in queues:
                    tx, bt = q.pop(0)
                    w = work.get(client, 0.0) + rules.client_work(view, bt).get(client, 0.0)
                    fits = (len(tasks) + len(bt) <= p.max_block_tasks and size + len(tx) <= budget
                            and taken.get(client, 0) + len(bt) <= p.max_client_block_tasks
                            and w <= p.max_client_block_seconds)
                    if fits:
                        chosen.append(tx)
                        tasks.extend(bt)
                        taken[client] = taken.get(client, 0) + len(bt)
                        work[client] = w
                        size += len(tx)
                    if q and (fits or taken.get(client, 0) < p.max_client_block_tasks):
                        rest.append((client, q))
                queues = rest
            if not tasks:
                return pb.PrepareProposalResponse(txs=head)
            alloc = self._allocate(state, req.height, tasks, view)
            if self.metrics is not None:
                self.metrics.allocation_seconds(time.perf_counter() - t0)
            return pb.PrepareProposalResponse(txs=self._proposal_txs(head, chosen, alloc))

    def _proposal_txs(self, head: list[bytes], chosen: list[bytes], alloc: wire.Allocation) -> list[bytes]:
        """A proposal's transactions: modules and receipts, the task batches, the allocation last."""
        return [*head, *chosen, alloc.tx()]

    def _allocate(self, state: ChainState, height: int, tasks: list[BlockTask], view: rules.QueueView) -> wire.Allocation:
        """The student's allocation improved by exact local search; the arbiter's (the teacher) when the student
        lost to the reference; the reference otherwise: an honest proposer's block always passes ProcessProposal."""
        inst = rules.block_instance(self.genesis, tasks, height, view.capacity)
        ref_assignment, reference = self._reference(inst, view)
        name, arbitration = self.allocator_name, None
        assignment = ref_assignment
        if self.allocate is not None:
            try:
                t0 = time.perf_counter()
                assignment = [int(x) for x in self.allocate(inst, view.free_times)]
                if any(not view.available[x] for x in assignment):
                    raise InputError("the allocator chose an unavailable provider")
                assignment = rules.improve(self.genesis, inst, view, assignment)
                self._spent("allocation", t0)
            except Exception:  # a model failure must not stop the proposer: the reference is always valid
                log.exception("allocator failed at height %d; proposing the reference", height)
                assignment, name = ref_assignment, "reference"
        total = float(simulate_state(inst, assignment, view.free_times)[0])
        if total > reference and self.arbiter is not None:  # the student lost to the reference: ask the teacher
            arb = self._ask_arbiter(height, state, tasks, view)
            if arb is not None:
                arb_total = float(simulate_state(inst, arb["assignment"], view.free_times)[0])
                if arb_total < total:
                    assignment, name, total = arb["assignment"], f"arbiter:{arb['method']}", arb_total
                    arbitration = {"sig": arb["sig"], "method": arb["method"]}
                    if self.metrics is not None:
                        self.metrics.arbitration()
        if not self._good_enough(total, reference) or any(not view.available[x] for x in assignment):
            log.info("height %d: %s allocation %.6g is outside the tolerance of the reference %.6g; proposing it",
                     height, name, total, reference)
            assignment, name, arbitration = ref_assignment, "reference", None
        effects = rules.block_effects(self.genesis, state, tasks, assignment, view, inst)
        return wire.Allocation(assignment, effects.claimed_latency, effects.shapley.values, effects.shapley.stderr,
                               name, arbitration)

    def _ask_arbiter(self, height: int, state: ChainState, tasks: list[BlockTask], view: rules.QueueView) -> dict | None:
        """The arbiter's answer, checked before use (shape, range, signature); None when it has none."""
        k = len(self.genesis.validators)
        task_dicts = [t.to_dict() for t in tasks]
        capacity = view.capacity.tolist()
        try:
            # Waited for outside the lock (CheckTx, queries and the API go on meanwhile); the state cannot
            # change under us: CometBFT finalizes nothing on this node until PrepareProposal returns.
            self.lock.release()
            try:
                arb = self.arbiter({"height": height, "state": state.hash, "free_times": view.free_times,
                                    "capacity": capacity, "tasks": task_dicts})
            finally:
                self.lock.acquire()
            if arb is None:
                return None
            a, sig, method = arb.get("assignment"), arb.get("sig"), arb.get("method")
            if not isinstance(a, list) or len(a) != len(tasks) \
                    or any(isinstance(x, bool) or not isinstance(x, int) or not 0 <= x < k for x in a):
                raise InputError(f"assignment: expected {len(tasks)} provider indices in 0..{k - 1}")
            method = method if isinstance(method, str) else "unknown"
            msg = arbitration_bytes(self.genesis.chain_id, height, state.hash, task_dicts, view.free_times, a, capacity)
            if not isinstance(sig, str) or not verify(self.genesis.arbiter_public_key, msg, sig):
                raise InputError("sig: not the arbiter's signature over this request")
            return {"assignment": a, "sig": sig, "method": method[:wire.MAX_LABEL]}
        except Exception as exc:  # a lying, broken or unreachable arbiter: fall back, never stop proposing
            log.warning("arbiter answer for height %d refused: %s", height, exc)
            return None

    def process_proposal(self, req: pb.ProcessProposalRequest) -> Any:
        with self.lock:
            try:
                checked = self.check_block(req.height, chain_clock(self.genesis, req.time), req.txs,
                                           _votes(req.proposed_last_commit))
                self.checked[req.hash] = checked
                return pb.ProcessProposalResponse(status=ACCEPT)
            except InvalidBlock as exc:
                reason = str(exc)[:300]
                self.checked[req.hash] = reason
                slug = reason.split(":")[0].split()[0] if reason else "invalid"
                self.rejections[slug] = self.rejections.get(slug, 0) + 1
                if self.metrics is not None:
                    self.metrics.proposal_rejected(slug)
                log.warning("rejected the proposal of %s at height %d: %s", req.proposer_address.hex()[:8],
                            req.height, reason)
                return pb.ProcessProposalResponse(status=REJECT)

    # ---------------------------------------------------------------- execution
    def finalize_block(self, req: pb.FinalizeBlockRequest) -> Any:
        """The block's effects, as named steps over a StagedBlock: queues (the allocation), work (new tasks,
        receipts, audits, measured capacity), liveness (overdue and absent providers' work reassigned),
        contribution and rewards, evidence, voting powers."""
        with self.lock:
            state = self.state
            clock = chain_clock(self.genesis, req.time)
            votes = _votes(req.decided_last_commit)
            checked = self.checked.get(req.hash)
            if not isinstance(checked, CheckedBlock):
                try:  # replay, block sync, or a block decided without our prevote
                    checked = self.check_block(req.height, clock, req.txs, votes)
                except InvalidBlock as exc:
                    # Only with more than 1/3 Byzantine power: the block is recorded, its tasks ignored.
                    log.error("decided block %d breaks a rule (%s): its tasks are not executed", req.height, exc)
                    view, last_signed = self._view(req.height, votes)
                    checked = CheckedBlock([], None, rules.block_effects(self.genesis, state, [], [], view), 0.0,
                                           view, last_signed)
            self.checked.clear()
            p = self.params
            tasks, effects = checked.tasks, checked.effects
            scores, balances, penalties = list(state.scores), list(state.balances), list(state.penalties)
            after = ChainState(req.height, req.hash.hex(), clock, list(effects.free_after), scores, balances, penalties,
                               state.tasks_committed + len(tasks), list(checked.last_signed),
                               list(state.cooldown_until), list(state.capacity_factor), list(state.receipts),
                               list(state.overdue), list(state.audits_passed), list(state.audits_failed),
                               list(state.last_receipt_time), state.work_digest, dict(state.client_busy),
                               list(state.censorships))
            # admission ledger: when each client's admitted work is done, at the network's capacity
            busy = {c: t for c, t in state.client_busy.items() if t > clock}
            for c, w in checked.client_work.items():
                busy[c] = max(busy.get(c, clock), clock) + w
            after.client_busy = dict(sorted(busy.items()))
            # work: new tasks, receipts, audits, capacity, then liveness (reassignments)
            from edgepoc.chain.abci.ledger import apply_work

            proposer = req.proposer_address.hex()
            pi = self.genesis.index_of(proposer)
            if checked.censored is not None:  # the previous block's proposer left out reported clients
                censor = checked.censored[0]
                after.censorships[censor] += 1
                after.balances[censor] = max(0, after.balances[censor] - rules.to_micro(p.censor_fine))
            latencies: list[float] = [max(0.0, c - t.arrival) for c, t in zip(effects.completion, tasks)]
            outcome = apply_work(self, after, checked, req.hash.hex(), clock)
            # contribution and rewards: Shapley values of this block's game (unavailable providers ~0)
            # ledger in integer micro-units: the game's floats (bit-identical on every node) are rounded once
            if tasks:
                phi = [rules.to_micro(f) for f in effects.shapley.values]
                keep = rules.decay_factor(p, float(sum(effects.shapley.values)))  # decay per second saved
                after.scores = [s * keep // rules.MICRO + f for s, f in zip(after.scores, phi)]
                positive = [max(f, 0) for f in phi]
                if sum(positive) > 0:
                    reward = rules.to_micro(p.block_reward)
                    after.balances = [b + reward * f // sum(positive) for b, f in zip(after.balances, positive)]
            for i in outcome.penalised:  # a wrong result found by an audit counts as evidence
                after.scores[i] = rules.scaled(after.scores[i], 1.0 - p.evidence_penalty)
                after.penalties[i] += 1
            for i in outcome.overdue_providers:  # tasks taken away: half the score
                after.scores[i] //= 2
            evidence = []
            for m in req.misbehavior:
                i = self.genesis.index_of(m.validator.address.hex())
                if i is None:
                    continue
                after.scores[i] = rules.scaled(after.scores[i], 1.0 - p.evidence_penalty)
                after.penalties[i] += 1
                evidence.append({"validator": m.validator.address.hex(), "name": self.genesis.validators[i].name,
                                 "kind": pb.MisbehaviorType.Name(m.type), "height": m.height,
                                 "power": m.validator.power,
                                 "committed_height": req.height})
            if tasks and pi is not None and checked.reference_latency > 0 \
                    and effects.claimed_latency < checked.reference_latency:
                saved = (checked.reference_latency - effects.claimed_latency) / checked.reference_latency
                after.balances[pi] += rules.to_micro(p.proposal_reward * saved)  # proposing well is a contribution too
            withheld = self._withheld(req.height, len(tasks), proposer)
            if withheld is not None:
                after.scores[withheld] = rules.scaled(after.scores[withheld], 1.0 - p.proposer_penalty)
            old_p, new_p = voting_powers(p, state.scores), voting_powers(p, after.scores)
            updates = [pb.ValidatorUpdate(power=new_p[i], pub_key_type="ed25519",
                                          pub_key_bytes=bytes.fromhex(v.public_key))
                       for i, v in enumerate(self.genesis.validators) if new_p[i] != old_p[i]]
            names = [v.name for v in self.genesis.validators]
            alloc = checked.allocation
            record = {
                "height": req.height, "hash": req.hash.hex(), "time": clock,
                "time_ns": req.time.seconds * 10**9 + req.time.nanos, "proposer": proposer,
                "proposer_name": names[pi] if pi is not None else None,
                "tasks": [t.to_dict() for t in tasks],
                "allocation": None if alloc is None else {
                    "assignment": alloc.assignment, "providers": [names[x] for x in alloc.assignment],
                    "latencies": latencies, "claimed_latency": alloc.claimed_latency, "shapley": alloc.shapley,
                    "stderr": alloc.stderr, "allocator": alloc.allocator, "reference_latency": checked.reference_latency},
                "arbitration": alloc.arbitration if alloc is not None else None,
                "evidence": evidence,
                "last_commit": {"round": req.decided_last_commit.round,
                                "votes": [{"address": v.validator.address.hex(), "power": v.validator.power,
                                           "signed": v.block_id_flag == 2}  # BLOCK_ID_FLAG_COMMIT
                                          for v in req.decided_last_commit.votes]},
                "available": checked.view.available,
                "withheld": None if withheld is None else names[withheld],
                "censored": None if checked.censored is None else {
                    "height": req.height - 1, "proposer": names[checked.censored[0]], "clients": checked.censored[1]},
                "work": outcome.summary,
                "app_hash": after.hash, "powers": new_p,
            }
            rows = [(t.id, req.height, i, int(alloc.assignment[i]), latencies[i], t.arrival)
                    for i, t in enumerate(tasks)]
            modules = [(m.hash, req.height, json.dumps({k: v.to_dict() for k, v in info.functions.items()}), m.wasm)
                       for m, info in checked.modules]
            self.staged = StagedBlock(after, record, rows, evidence, list(req.txs), outcome.rows, modules)
            results = [pb.ExecTxResult(code=0) for _ in req.txs]
            return pb.FinalizeBlockResponse(tx_results=results, validator_updates=updates,
                                            app_hash=bytes.fromhex(after.hash))

    def _withheld(self, height: int, n_tasks: int, proposer: str) -> int | None:
        """The proposer of the previous block, if that block was empty between two busy blocks by others (it
        had work in its mempool, as every node had, and proposed none of it): from chain data only."""
        busy = self.params.busy_block_tasks
        if n_tasks < busy or height < 3:
            return None
        prev, before = self.store.brief(height - 1), self.store.brief(height - 2)
        if prev is None or before is None or prev[0] != 0 or before[0] < busy or prev[1] in (proposer, before[1]):
            return None
        return self.genesis.index_of(prev[1])

    def commit(self, req: pb.CommitRequest | None) -> Any:
        with self.lock:
            staged = self.staged
            if staged is None:
                return pb.CommitResponse()
            after, record, rows = staged.state, staged.record, staged.rows
            now = time.time()
            since = None if self.last_commit_time is None else now - self.last_commit_time
            record["committed_at"] = now
            try:
                self.store.save_block(after, record, rows, staged.evidence, staged.txs, staged.work, staged.modules)
            except Exception as exc:
                # The store cannot take the block (disk full, a damaged file): going on would leave memory
                # ahead of disk. Stop; at restart CometBFT replays the block from its own store.
                log.critical("Commit: the store refused height %d (%s); stopping the node", after.height, exc)
                raise StoreFailure(str(exc)) from exc
            self.state, self.staged = after, None
            self.last_commit_time = now
            self._pending_drop(r[0] for r in rows)
            for m in staged.modules:
                self.pending_modules.pop(m[0], None)
            if after.height % 100 == 0:  # tasks CometBFT dropped from its mempool (full, TTL) are forgotten
                old = time.time() - PENDING_TTL
                self._pending_drop([i for i, (t, _) in self.pending.items() if t < old])
                self.pending_modules = {h: t for h, t in self.pending_modules.items() if t >= old}
            if self.metrics is not None:
                try:
                    self._report(record, after, len(rows), since)
                except Exception:  # metrics never stop a commit
                    log.exception("metrics: could not record height %d", after.height)
            if rows:
                log.info("committed height %d: %d tasks, latency %.4g, proposer %s", after.height, len(rows),
                         record["allocation"]["claimed_latency"], record["proposer_name"])
            return pb.CommitResponse(retain_height=0)

    def _report(self, record: dict, after: ChainState, n_tasks: int, since: float | None) -> None:
        vals = self.genesis.validators
        self.metrics.on_block(record, {v.address: v.name for v in vals})
        # rounds: CometBFT tells the round of the previous height's commit (decided_last_commit)
        self.metrics.block_committed(after.height, n_tasks, record["last_commit"]["round"] + 1, since)
        self.metrics.contributions({v.name: s / rules.MICRO for v, s in zip(vals, after.scores)},
                                   {v.name: p for v, p in zip(vals, record["powers"])})


def _votes(commit) -> list[tuple[str, bool, int]]:
    """(validator address hex, signed, power) of a CommitInfo / ExtendedCommitInfo (BLOCK_ID_FLAG_COMMIT = 2)."""
    if commit is None:
        return []
    return [(v.validator.address.hex(), v.block_id_flag == 2, int(v.validator.power)) for v in commit.votes]


def byzantine_modes() -> list[str]:
    return [m for m in os.environ.get("EDGEPOC_BYZANTINE", "").split(",") if m]


def make_application(genesis: Genesis, store: AppStore, allocate: Callable | None = None,
                     allocator_name: str = "greedy", me: str | None = None, byzantine: list[str] | None = None,
                     metrics: Any = None) -> PocApplication:
    """The application; a Byzantine test build (edgepoc.chain.abci.byzantine) when `byzantine` names modes."""
    if byzantine:
        from edgepoc.chain.abci.byzantine import ByzantineApplication

        return ByzantineApplication(genesis, store, allocate, allocator_name, me, metrics, modes=byzantine)
    return PocApplication(genesis, store, allocate, allocator_name, me, metrics)
