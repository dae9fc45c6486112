"""The PoC chain as a CometBFT ABCI++ application: one object, one method per ABCI call.

CometBFT orders and finalises blocks (Tendermint BFT, its own p2p, mempool, block sync and evidence);
this application decides what a block means. Each method is a short deterministic function of the
committed state, calling the pure rules of `consensus` and `contribution`:

- CheckTx: a client-signed task batch (`wire.TaskBatch`): bounds from genesis, signature, replay guard.
- PrepareProposal: the proposer's allocator allocates the block's tasks on the chain's queue state and
  appends the allocation (assignment, claimed latency, Shapley values) as the block's last transaction.
- ProcessProposal: re-simulates bit for bit with the kernel and checks every rule, the quality one
  against greedy, a reference every honest node computes identically; accept or reject, deterministically.
- FinalizeBlock: stages the next state (queues, scores, rewards, evidence penalties), returns its app
  hash and the voting powers that follow contribution; Commit persists it (one SQLite transaction).

Test builds misbehave with EDGEPOC_BYZANTINE=grab-all,wrong-latency,duplicate (proposals only).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from edgepoc.chain import consensus as rules
from edgepoc.chain.abci import wire
from edgepoc.chain.abci.proto import pb
from edgepoc.chain.abci.store import AppStore
from edgepoc.chain.consensus import ChainState, InvalidBlock
from edgepoc.chain.crypto import canonical, verify
from edgepoc.chain.genesis import ConsensusParams, Genesis
from edgepoc.errors import EdgepocError, InputError
from edgepoc.game.kernel import simulate_state

log = logging.getLogger("edgepoc.app")
BYZANTINE_MODES = ("grab-all", "wrong-latency", "duplicate")
OK, BAD_TX, REPLAY, BAD_SIG, PROPOSER_ONLY = 0, 1, 2, 3, 4
ALLOCATION_ROOM = 64 << 10  # bytes kept free in a proposal for the allocation transaction
VERIFIED_CACHE = 20_000  # parsed, signature-checked batches kept for PrepareProposal/ProcessProposal
ACCEPT = pb.PROCESS_PROPOSAL_STATUS_ACCEPT
REJECT = pb.PROCESS_PROPOSAL_STATUS_REJECT


class StoreFailure(EdgepocError):
    """The store refused a committed block; the node must stop (CometBFT replays it at restart)."""


@dataclass
class BlockTask:
    """One task as the chain sees it: the client's nonce and demand, the arrival the chain stamped."""

    id: str
    client: str
    nonce: int
    demand: list[float]
    arrival: float
    delays: None = None  # per-provider delays come from genesis, never from a client

    def to_dict(self) -> dict:
        return {"id": self.id, "client": self.client, "nonce": self.nonce, "demand": self.demand,
                "arrival": self.arrival}


@dataclass
class CheckedBlock:
    """What a valid block's transactions mean, computed once (ProcessProposal) and reused (FinalizeBlock)."""

    tasks: list[BlockTask]
    allocation: wire.Allocation | None
    effects: rules.BlockEffects
    reference_latency: float


def chain_clock(genesis: Genesis, ts) -> float:
    """A protobuf Timestamp (the block time CometBFT agreed on) in seconds since genesis."""
    return ts.seconds + ts.nanos / 1e9 - genesis.genesis_time


def voting_powers(params: ConsensusParams, scores: list[float]) -> list[int]:
    """Contribution -> CometBFT voting power: `power_total` split by score, floored, capped below 1/3.

    The floor keeps every provider a validator (a zero-contribution provider still votes); with >= 4
    validators no one may hold a third of the power, so no single provider can halt the chain by going
    silent. The price: a provider's voting weight follows its contribution only within these bounds.
    """
    n = len(scores)
    pos = [max(s, 0.0) for s in scores]
    tot = sum(pos)
    shares = [p / tot for p in pos] if tot > 0 else [1.0 / n] * n
    powers = [max(params.power_floor, int(params.power_total * s)) for s in shares]
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


def arbitration_bytes(chain_id: str, height: int, state_hash: str, task_ids: list[str], free_times: list[float],
                      assignment: list[int]) -> bytes:
    """What the arbiter signs: everything the allocation depends on, and the allocation."""
    return canonical({"type": "arbitration", "chain_id": chain_id, "height": height, "state": state_hash,
                      "tasks": task_ids, "free_times": free_times, "assignment": assignment})


class PocApplication:
    """The ABCI++ application of one provider; thread-safe (CometBFT calls it on several connections)."""

    def __init__(self, genesis: Genesis, store: AppStore, allocate: Callable | None = None, allocator_name: str = "greedy",
                 me: str | None = None, byzantine: list[str] | None = None, metrics: Any = None,
                 arbiter: Callable[[dict], dict | None] | None = None):
        self.genesis = genesis
        self.params = genesis.params
        self.store = store
        self.allocate = allocate
        self.allocator_name = allocator_name
        self.me = me  # this node's validator address (hex), for the Byzantine test build
        self.byzantine = set(byzantine or [])
        bad = self.byzantine - set(BYZANTINE_MODES)
        if bad:
            raise InputError(f"byzantine: unknown modes {sorted(bad)}; known: {', '.join(BYZANTINE_MODES)}")
        self.metrics = metrics
        self.arbiter = arbiter
        self.lock = threading.RLock()
        self.state: ChainState = store.state() or rules.initial_state(genesis)
        self.staged: tuple[ChainState, dict, list[tuple], list[dict], list[bytes]] | None = None
        self.checked: dict[bytes, CheckedBlock | str] = {}  # block hash -> result of ProcessProposal
        self.verified: dict[bytes, wire.TaskBatch] = {}  # tx hash -> batch parsed and signature-checked by CheckTx
        self.pending: dict[str, float] = {}  # task id -> when CheckTx accepted it here
        self.last_commit_time: float | None = None
        self.rejections: dict[str, int] = {}
        self.profile: dict[str, float] = {}  # seconds spent per ABCI call and per rule (the benchmark reads it)

    def _spent(self, what: str, t0: float) -> None:
        self.profile[what] = self.profile.get(what, 0.0) + time.perf_counter() - t0

    # ---------------------------------------------------------------- info and genesis
    def info(self, req) -> Any:
        with self.lock:
            h = self.state.height
            return pb.InfoResponse(data="edgepoc", version="1", app_version=1, last_block_height=h,
                                   last_block_app_hash=bytes.fromhex(self.state.hash) if h else b"")

    def init_chain(self, req) -> Any:
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
                powers = voting_powers(self.params, [self.params.initial_score] * len(g.validators))
                want = [(bytes.fromhex(v.public_key), powers[i]) for i, v in enumerate(g.validators)]
                got = [(v.pub_key_bytes, v.power) for v in req.validators]
                if got and sorted(got) != sorted(want):
                    problem = "the validator set (keys and powers) differs from genesis"
        if problem:
            raise EdgepocError(f"InitChain: {problem}")
        return pb.InitChainResponse(app_hash=bytes.fromhex(rules.initial_state(g).hash))

    def query(self, req) -> Any:
        path = req.path.strip("/")
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

    def check_tx(self, req) -> Any:
        try:
            return self._check_tx(req)
        except Exception as exc:  # never on the honest path: reject the transaction, keep the node
            log.exception("CheckTx failed on a %d-byte transaction", len(req.tx))
            return pb.CheckTxResponse(code=BAD_TX, log=f"internal: {type(exc).__name__}")

    def _check_tx(self, req) -> Any:
        key = hashlib.sha256(req.tx).digest()
        if req.type == pb.CHECK_TX_TYPE_RECHECK and key in self.verified:
            ids = self.verified[key].ids
            if self.store.committed_ids(ids):
                self.verified.pop(key, None)
                return pb.CheckTxResponse(code=REPLAY, log="replay: a task of this batch is already committed")
            return pb.CheckTxResponse(code=OK)
        try:
            d = wire.decode_tx(req.tx, self.params.max_tx_bytes)
            if d.get("type") == wire.ALLOCATION:
                return pb.CheckTxResponse(code=PROPOSER_ONLY, log="allocation transactions are added by proposers only")
            b = self.parse_batch(d)
        except InputError as exc:
            return pb.CheckTxResponse(code=BAD_TX, log=str(exc))
        done = self.store.committed_ids(b.ids)
        if done:
            return pb.CheckTxResponse(code=REPLAY, log=f"replay: task {sorted(done)[0]} is already committed")
        if not b.signature_ok():
            return pb.CheckTxResponse(code=BAD_SIG, log="sig: bad client signature")
        while len(self.verified) >= VERIFIED_CACHE:  # oldest first (dicts keep insertion order)
            self.verified.pop(next(iter(self.verified)))
        self.verified[key] = b
        now = time.time()
        for i in b.ids:
            self.pending.setdefault(i, now)
        return pb.CheckTxResponse(code=OK, gas_wanted=len(b.ids))

    # ---------------------------------------------------------------- the block's meaning
    def _tasks_of(self, txs, clock: float, *, verify_sigs: bool) -> list[BlockTask]:
        tasks: list[BlockTask] = []
        seen: set[str] = set()
        for j, tx in enumerate(txs):
            b = self.verified.get(hashlib.sha256(tx).digest())  # parsed and signature-checked by CheckTx
            if b is None:
                try:
                    b = self.parse_batch(wire.decode_tx(tx, self.params.max_tx_bytes))
                except InputError as exc:
                    raise InvalidBlock(f"txs[{j}]: {exc}") from None
                if verify_sigs:
                    t0 = time.perf_counter()
                    ok = b.signature_ok()
                    self._spent("signatures", t0)
                    if not ok:
                        raise InvalidBlock(f"txs[{j}]: bad client signature")
            for tid, (nonce, demand) in zip(b.ids, b.tasks):
                if tid in seen:
                    raise InvalidBlock(f"txs[{j}]: task {tid} appears twice in the block")
                seen.add(tid)
                tasks.append(BlockTask(tid, b.client, nonce, demand, clock))
        done = self.store.committed_ids(list(seen))
        if done:
            raise InvalidBlock(f"task {sorted(done)[0]} was already committed (replay)")
        if len(tasks) > self.params.max_block_tasks:
            raise InvalidBlock(f"{len(tasks)} tasks > max_block_tasks {self.params.max_block_tasks}")
        return tasks

    def _reference(self, state: ChainState, tasks: list[BlockTask]) -> tuple[list[int], float]:
        """Greedy (earliest completion): the allocation every honest node computes identically."""
        return rules.greedy_reference(self.genesis, state, tasks)

    def _good_enough(self, claimed: float, reference: float) -> bool:
        p = self.params
        return rules.within_tolerance(claimed, reference, p.tolerance, p.tolerance_abs)

    def check_block(self, height: int, clock: float, txs) -> CheckedBlock:
        """Every rule a proposed block must satisfy on the committed state; raises InvalidBlock.

        Any other exception is a bug or an input no rule foresaw: it is logged with its cause and the
        block is invalid, so one crafted block can neither crash the node nor split honest nodes (they run
        the same code on the same bytes)."""
        try:
            return self._check_block(height, clock, txs)
        except InvalidBlock:
            raise
        except Exception as exc:
            log.exception("checking the block at height %d raised", height)
            raise InvalidBlock(f"internal: {type(exc).__name__} while checking the block") from None

    def _check_block(self, height: int, clock: float, txs) -> CheckedBlock:
        state = self.state
        if height != state.height + 1:
            raise InvalidBlock(f"height {height}: the application is at {state.height}")
        txs = list(txs)
        if not txs:
            return CheckedBlock([], None, rules.block_effects(self.genesis, state, [], []), 0.0)
        size = sum(len(t) for t in txs)
        if size > self.params.max_proposal_bytes:
            raise InvalidBlock(f"size: {size} bytes of transactions > max_proposal_bytes {self.params.max_proposal_bytes}")
        try:
            alloc = wire.Allocation.from_dict(wire.decode_tx(txs[-1], self.params.max_tx_bytes))
        except InputError as exc:
            raise InvalidBlock(f"the last transaction must be the allocation ({exc})") from None
        tasks = self._tasks_of(txs[:-1], clock, verify_sigs=True)
        k = len(self.genesis.validators)
        if len(alloc.assignment) != len(tasks):
            raise InvalidBlock(f"assignment: {len(alloc.assignment)} providers for {len(tasks)} tasks")
        if any(not 0 <= x < k for x in alloc.assignment):
            raise InvalidBlock("assignment: provider index out of range")
        t0 = time.perf_counter()
        effects = rules.block_effects(self.genesis, state, tasks, alloc.assignment)
        self._spent("re-simulation+shapley", t0)
        if effects.claimed_latency != alloc.claimed_latency:
            raise InvalidBlock(f"latency-mismatch: claimed {alloc.claimed_latency!r}, the kernel gives "
                               f"{effects.claimed_latency!r}")
        if effects.shapley.values != alloc.shapley or effects.shapley.stderr != alloc.stderr:
            raise InvalidBlock("shapley: the contributions do not match the Shapley values")
        if alloc.arbitration is not None:
            msg = arbitration_bytes(self.genesis.chain_id, height, state.hash, [t.id for t in tasks],
                                    state.free_times, alloc.assignment)
            if not verify(self.genesis.arbiter_public_key, msg, alloc.arbitration["sig"]):
                raise InvalidBlock("arbitration: not the arbiter's signature over this state, tasks and allocation")
        t0 = time.perf_counter()
        _, reference = self._reference(state, tasks)
        self._spent("greedy reference", t0)
        if not self._good_enough(effects.claimed_latency, reference):
            raise InvalidBlock(f"quality: latency {effects.claimed_latency:.6g} is worse than greedy's "
                               f"{reference:.6g} by more than the tolerance {self.params.tolerance:g}")
        return CheckedBlock(tasks, alloc, effects, reference)

    # ---------------------------------------------------------------- proposals
    def prepare_proposal(self, req) -> Any:
        try:
            return self._prepare_proposal(req)
        except Exception:  # an empty proposal is always valid: the height still commits
            log.exception("PrepareProposal failed at height %d; proposing an empty block", req.height)
            return pb.PrepareProposalResponse(txs=[])

    def _prepare_proposal(self, req) -> Any:
        t0 = time.perf_counter()
        with self.lock:
            state = self.state
            clock = chain_clock(self.genesis, req.time)
            chosen: list[bytes] = []
            tasks: list[BlockTask] = []
            seen: set[str] = set()
            size = skipped = 0
            # room for the allocation transaction; never above max_proposal_bytes (CometBFT's gRPC limit)
            budget = min(req.max_tx_bytes, self.params.max_proposal_bytes) - ALLOCATION_ROOM
            for tx in req.txs:
                try:
                    batch_tasks = self._tasks_of([tx], clock, verify_sigs=True)
                except InvalidBlock:
                    continue  # a transaction gone stale since CheckTx (its tasks committed meanwhile)
                if any(t.id in seen for t in batch_tasks):
                    continue
                if len(tasks) + len(batch_tasks) > self.params.max_block_tasks or size + len(tx) > budget:
                    skipped += 1  # a smaller transaction further on may still fit, but look only so far
                    if skipped > 64 or len(tasks) >= self.params.max_block_tasks:
                        break
                    continue
                chosen.append(tx)
                tasks.extend(batch_tasks)
                seen.update(t.id for t in batch_tasks)
                size += len(tx)
            if not tasks:
                return pb.PrepareProposalResponse(txs=[])
            alloc = self._allocate(state, req.height, tasks)
            if "duplicate" in self.byzantine:
                chosen.append(chosen[0])
            if "wrong-latency" in self.byzantine:
                alloc.claimed_latency *= 0.5
            if self.metrics is not None:
                self.metrics.allocation_seconds(time.perf_counter() - t0)
            return pb.PrepareProposalResponse(txs=[*chosen, alloc.tx()])

    def _allocate(self, state: ChainState, height: int, tasks: list[BlockTask]) -> wire.Allocation:
        """The student's allocation; the arbiter's (the teacher) when the student's falls outside the
        tolerance; greedy when neither does: an honest proposer's block always passes ProcessProposal."""
        ref_assignment, reference = self._reference(state, tasks)
        inst = rules.block_instance(self.genesis, tasks, height)
        name, arbitration = self.allocator_name, None
        if "grab-all" in self.byzantine and self.me is not None:
            assignment = [self.genesis.index_of(self.me)] * len(tasks)
        else:
            assignment = ref_assignment
            if self.allocate is not None:
                try:
                    t0 = time.perf_counter()
                    assignment = [int(x) for x in self.allocate(inst, state.free_times)]
                    self._spent("allocation", t0)
                except Exception:  # a model failure must not stop the proposer: greedy is always valid
                    log.exception("allocator failed at height %d; proposing greedy", height)
                    assignment, name = ref_assignment, "greedy"
            total = float(simulate_state(inst, assignment, state.free_times)[0])
            if not self._good_enough(total, reference) and self.arbiter is not None:
                arb = self._ask_arbiter(height, state, tasks)
                if arb is not None:
                    assignment, name = arb["assignment"], f"arbiter:{arb['method']}"
                    arbitration = {"sig": arb["sig"], "method": arb["method"]}
                    total = float(simulate_state(inst, assignment, state.free_times)[0])
                    if self.metrics is not None:
                        self.metrics.arbitration()
            if not self._good_enough(total, reference):
                log.info("height %d: %s allocation %.6g is outside the tolerance of greedy %.6g; proposing greedy",
                         height, name, total, reference)
                assignment, name, arbitration = ref_assignment, "greedy", None
        effects = rules.block_effects(self.genesis, state, tasks, assignment)
        return wire.Allocation(assignment, effects.claimed_latency, effects.shapley.values, effects.shapley.stderr,
                               name, arbitration)

    def _ask_arbiter(self, height: int, state: ChainState, tasks: list[BlockTask]) -> dict | None:
        """The arbiter's answer, checked before use (shape, range, signature); None when it has none."""
        k = len(self.genesis.validators)
        try:
            arb = self.arbiter({"height": height, "state": state.hash, "free_times": state.free_times,
                                "tasks": [t.to_dict() for t in tasks]})
            if arb is None:
                return None
            a, sig, method = arb.get("assignment"), arb.get("sig"), arb.get("method")
            if not isinstance(a, list) or len(a) != len(tasks) \
                    or any(isinstance(x, bool) or not isinstance(x, int) or not 0 <= x < k for x in a):
                raise InputError(f"assignment: expected {len(tasks)} provider indices in 0..{k - 1}")
            method = method if isinstance(method, str) else "unknown"
            msg = arbitration_bytes(self.genesis.chain_id, height, state.hash, [t.id for t in tasks], state.free_times, a)
            if not isinstance(sig, str) or not verify(self.genesis.arbiter_public_key, msg, sig):
                raise InputError("sig: not the arbiter's signature over this request")
            return {"assignment": a, "sig": sig, "method": method[:wire.MAX_LABEL]}
        except Exception as exc:  # a lying, broken or unreachable arbiter: fall back, never stop proposing
            log.warning("arbiter answer for height %d refused: %s", height, exc)
            return None

    def process_proposal(self, req) -> Any:
        with self.lock:
            try:
                checked = self.check_block(req.height, chain_clock(self.genesis, req.time), req.txs)
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
    def finalize_block(self, req) -> Any:
        with self.lock:
            state = self.state
            clock = chain_clock(self.genesis, req.time)
            checked = self.checked.get(req.hash)
            if not isinstance(checked, CheckedBlock):
                try:  # replay, block sync, or a block decided without our prevote
                    checked = self.check_block(req.height, clock, req.txs)
                except InvalidBlock as exc:
                    # Only with more than 1/3 Byzantine power: the block is recorded, its tasks ignored.
                    log.error("decided block %d breaks a rule (%s): its tasks are not executed", req.height, exc)
                    checked = CheckedBlock([], None, rules.block_effects(self.genesis, state, [], []), 0.0)
            self.checked.clear()
            p = self.params
            tasks, effects = checked.tasks, checked.effects
            scores, balances, penalties = list(state.scores), list(state.balances), list(state.penalties)
            if tasks:
                phi = effects.shapley.values
                scores = [p.decay * s + f for s, f in zip(scores, phi)]
                positive = [max(f, 0.0) for f in phi]
                if sum(positive) > 0:
                    balances = [b + p.block_reward * f / sum(positive) for b, f in zip(balances, positive)]
            evidence = []
            for m in req.misbehavior:
                i = self.genesis.index_of(m.validator.address.hex())
                if i is None:
                    continue
                scores[i] *= 1.0 - p.evidence_penalty
                penalties[i] += 1
                evidence.append({"validator": m.validator.address.hex(), "name": self.genesis.validators[i].name,
                                 "kind": pb.MisbehaviorType.Name(m.type), "height": m.height,
                                 "power": m.validator.power,
                                 "committed_height": req.height})
            after = ChainState(req.height, req.hash.hex(), clock, effects.free_after, scores,
                               balances, penalties, state.tasks_committed + len(tasks))
            old_p, new_p = voting_powers(p, state.scores), voting_powers(p, scores)
            updates = [pb.ValidatorUpdate(power=new_p[i], pub_key_type="ed25519",
                                          pub_key_bytes=bytes.fromhex(v.public_key))
                       for i, v in enumerate(self.genesis.validators) if new_p[i] != old_p[i]]
            latencies: list[float] = []
            if tasks:
                inst = rules.block_instance(self.genesis, tasks, req.height)
                _, completion, _ = simulate_state(inst, checked.allocation.assignment, state.free_times)
                latencies = [max(0.0, float(c) - t.arrival) for c, t in zip(completion.tolist(), tasks)]
            names = [v.name for v in self.genesis.validators]
            proposer = req.proposer_address.hex()
            pi = self.genesis.index_of(proposer)
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
                "app_hash": after.hash, "powers": new_p,
            }
            rows = [(t.id, req.height, i, int(alloc.assignment[i]), latencies[i], t.arrival)
                    for i, t in enumerate(tasks)]
            self.staged = (after, record, rows, evidence, list(req.txs))
            results = [pb.ExecTxResult(code=0) for _ in req.txs]
            return pb.FinalizeBlockResponse(tx_results=results, validator_updates=updates,
                                            app_hash=bytes.fromhex(after.hash))

    def commit(self, req) -> Any:
        with self.lock:
            if self.staged is None:
                return pb.CommitResponse()
            after, record, rows, evidence, txs = self.staged
            now = time.time()
            since = None if self.last_commit_time is None else now - self.last_commit_time
            record["committed_at"] = now
            try:
                self.store.save_block(after, record, rows, evidence, txs)
            except Exception as exc:
                # The store cannot take the block (disk full, a damaged file): going on would leave memory
                # ahead of disk. Stop; at restart CometBFT replays the block from its own store.
                log.critical("Commit: the store refused height %d (%s); stopping the node", after.height, exc)
                raise StoreFailure(str(exc)) from exc
            self.state, self.staged = after, None
            self.last_commit_time = now
            for r in rows:
                self.pending.pop(r[0], None)
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
        self.metrics.contributions({v.name: s for v, s in zip(vals, after.scores)},
                                   {v.name: p for v, p in zip(vals, record["powers"])})


def byzantine_modes() -> list[str]:
    return [m for m in os.environ.get("EDGEPOC_BYZANTINE", "").split(",") if m]
