"""One provider's node: consensus driver, mempool, peer transport, block sync and the client API.

The node owns I/O and time; the rules live in `consensus` and the rounds in `state_machine`. Byzantine
behaviours for the fault tests are switched on with `--byzantine grab-all,equivocate` (or the
EDGEPOC_BYZANTINE variable): `grab-all` proposes blocks that give every task to this node,
`equivocate` signs a second, conflicting prevote in every round.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgepoc.chain import consensus as rules
from edgepoc.chain.allocator import make_allocator, probe_instance
from edgepoc.chain.consensus import ChainState, InvalidBlock
from edgepoc.chain.crypto import SigningKey, sha256_hex
from edgepoc.chain.genesis import Genesis
from edgepoc.chain.api.homemade import HomemadeNodeView, report_commit
from edgepoc.chain.api.metrics import ChainMetrics
from edgepoc.chain.api.serve import bind, serve_api_async
from edgepoc.chain.httpapi import HttpClient
from edgepoc.chain.state_machine import HeightMachine, Step
from edgepoc.chain.store import BlockStore
from edgepoc.chain.transport import PeerLink, encode_frame, read_frames
from edgepoc.chain.types import (INVALID_PROPOSAL, PRECOMMIT, PREVOTE, Block, Commit, Evidence, Proposal,
                                 TaskRequest, Vote)
from edgepoc.errors import EdgepocError, InputError
from edgepoc.game.kernel import simulate, simulate_state

log = logging.getLogger("edgepoc.node")
BYZANTINE_MODES = ("grab-all", "equivocate")
MAX_SYNC_BLOCKS = 20
MAX_ROUND_AHEAD = 50  # votes/proposals further ahead than this are dropped (memory bound)


@dataclass
class NodeConfig:
    """`config.json` in a node's home: where it listens and whom it talks to."""

    name: str
    host: str
    peer_port: int
    api_port: int
    peers: list[dict]  # {"address", "host", "port"}
    arbiter_url: str | None = None
    byzantine: list[str] = field(default_factory=list)
    model: str | None = None  # this node's student checkpoint (None: the bundled one, if any)

    @classmethod
    def load(cls, home: Path) -> "NodeConfig":
        try:
            d = json.loads((Path(home) / "config.json").read_text())
            return cls(**d)
        except FileNotFoundError:
            raise EdgepocError(f"node: {home}/config.json does not exist (run `edgepoc network init`)") from None
        except (TypeError, json.JSONDecodeError) as exc:
            raise InputError(f"config.json: malformed ({exc})") from None


class Node:
    def __init__(self, home: Path, byzantine: list[str] | None = None):
        self.home = Path(home)
        self.config = NodeConfig.load(self.home)
        self.genesis = Genesis.load(self.home / "genesis.json")
        self.key = SigningKey.load(self.home / "node_key.json")
        self.me = self.genesis.index_of(self.key.address)
        if self.me is None:
            raise EdgepocError("node_key.json: this key is not a validator in genesis")
        env = os.environ.get("EDGEPOC_BYZANTINE", "")
        self.byzantine = set(byzantine or self.config.byzantine or [m for m in env.split(",") if m])
        bad = self.byzantine - set(BYZANTINE_MODES)
        if bad:
            raise InputError(f"--byzantine: unknown modes {sorted(bad)}; known: {', '.join(BYZANTINE_MODES)}")
        self.params = self.genesis.params
        self.store = BlockStore(self.home / "data" / "chain.sqlite")
        self.state: ChainState = self.store.state() or rules.initial_state(self.genesis)
        self.last_commit: Commit | None = self.store.commit(self.state.height) if self.state.height else None
        self.allocate, self.allocator_name = make_allocator(
            self.params.allocator, model=self.config.model, seconds=self.params.allocator_seconds,
            probe=probe_instance(self.genesis.capacity, self.genesis.delays), decode=self.params.allocator_decode)
        self.mempool: dict[str, TaskRequest] = {}
        for t in self.store.pending():
            if t.chain_id == self.genesis.chain_id and t.signature_ok():
                self.mempool[t.id] = t
        self.gossip_buffer: list[dict] = []  # pending tasks reach peers when they connect (`_greet`)
        self.links: dict[str, PeerLink] = {}
        self.peer_heights: dict[str, int] = {}
        self.machine: HeightMachine | None = None
        self.future: list[tuple[str, Any]] = []  # messages for the next height, replayed when it starts
        self.proposals_seen: dict[tuple[int, int], Proposal] = {}
        self.valid_cache: dict[str, tuple[rules.BlockEffects, ChainState] | None] = {}
        self.accept_cache: dict[str, bool] = {}
        self.wake = asyncio.Event()
        self.sync_requested_at = 0.0
        self.started = time.time()
        self.last_commit_time = None
        self.commit_times: dict[int, float] = {}  # height -> wall time this node stored it (for latency figures)
        self.drops = 0
        self.metrics = ChainMetrics()

    # ================================================================ lifecycle
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            server = await asyncio.start_server(self._accept_peer, self.config.host, self.config.peer_port, limit=1 << 16)
            api_sock = bind(self.config.host, self.config.api_port)
        except (OSError, EdgepocError) as exc:
            raise EdgepocError(f"node {self.config.name}: cannot listen on {self.config.host} "
                               f"ports {self.config.peer_port}/{self.config.api_port} ({getattr(exc, 'strerror', exc)})") from None
        loop.create_task(serve_api_async(HomemadeNodeView(self, loop), self.metrics, api_sock))
        for p in self.config.peers:
            link = PeerLink(p["address"], p["host"], int(p["port"]))
            link.on_connect = lambda a=p["address"]: self._greet(a)
            self.links[p["address"]] = link
            link.start()
        log.info("node %s (%s) at height %d; peers :%d, api :%d; allocator %s%s", self.config.name,
                 self.key.address[:8], self.state.height, self.config.peer_port, self.config.api_port,
                 self.allocator_name, f"; BYZANTINE {sorted(self.byzantine)}" if self.byzantine else "")
        loop.create_task(self._gossip_loop())
        loop.create_task(self._status_loop())
        await self._new_height(initial=True)
        async with server:
            await asyncio.Event().wait()

    async def _accept_peer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = "%s:%s" % writer.get_extra_info("peername")[:2]
        try:
            await read_frames(reader, self.genesis, self.params.max_message_bytes, self._on_message, peer)
        finally:
            writer.close()

    def _broadcast(self, msg_type: str, body: Any) -> None:
        frame = encode_frame(self.key, self.genesis.chain_id, msg_type, body)
        for link in self.links.values():
            link.send(frame)

    def _send(self, address: str, msg_type: str, body: Any) -> None:
        link = self.links.get(address)
        if link is not None:
            link.send(encode_frame(self.key, self.genesis.chain_id, msg_type, body))

    def _greet(self, address: str) -> None:
        """On (re)connect: our height, our pending tasks, and our votes and proposal of the current
        height (frames to an unreachable peer are dropped, so it may have missed them)."""
        self._send(address, "status", {"height": self.state.height, "last_hash": self.state.last_hash})
        pending = [t.to_dict() for t in self.mempool.values()]
        for i in range(0, len(pending), 2000):
            self._send(address, "tasks", {"tasks": pending[i:i + 2000]})
        m = self.machine
        if m is None:
            return
        for prop in list(m.proposals.values()):
            if prop.proposer == self.key.address:
                self._send(address, "proposal", prop.to_dict())
        for v in self.store.signed_votes(m.height):
            self._send(address, "vote", v.to_dict())

    async def _gossip_loop(self) -> None:
        while True:
            await asyncio.sleep(0.02)
            if self.gossip_buffer:
                batch, self.gossip_buffer = self.gossip_buffer, []
                for i in range(0, len(batch), 2000):
                    self._broadcast("tasks", {"tasks": batch[i:i + 2000]})

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            self._broadcast("status", {"height": self.state.height, "last_hash": self.state.last_hash})
            self._maybe_sync()

    # ================================================================ heights
    async def _new_height(self, initial: bool = False) -> None:
        if not initial:
            await asyncio.sleep(self.params.timeout_commit)
        height = self.state.height + 1
        if self.machine is not None and self.machine.height == height:
            return  # a catch-up already started this height
        timeouts = {"propose": self.params.timeout_propose, "prevote": self.params.timeout_prevote,
                    "precommit": self.params.timeout_precommit, "delta": self.params.timeout_delta}
        machine = HeightMachine(self.genesis, self.state, self.me, self, timeouts)
        lock = self.store.lock(height)
        if lock is not None:  # restarted after precommitting: keep the lock (safety across a crash)
            machine.locked_round, machine.locked_block = lock
            machine.valid_round, machine.valid_block = lock
        self.machine = machine
        self.valid_cache.clear()
        self.accept_cache.clear()
        self.proposals_seen = {k: v for k, v in self.proposals_seen.items() if k[0] >= height}
        future, self.future = self.future, []
        for msg_type, body in future:
            self._dispatch(msg_type, body)
        deadline = time.monotonic() + self.params.empty_block_interval
        while (self.machine is machine and machine.round < 0 and not self.mempool and not machine.proposals
               and time.monotonic() < deadline):
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
        if self.machine is machine and machine.round < 0:
            machine.start_round(0)

    # ================================================================ the Driver of the state machine
    def propose(self, height: int, round_: int, valid_block: Block | None, valid_round: int) -> None:
        asyncio.get_running_loop().create_task(self._propose(height, round_, valid_block, valid_round))

    async def _propose(self, height: int, round_: int, valid_block: Block | None, valid_round: int) -> None:
        try:
            if valid_block is not None:
                block, pol = valid_block, valid_round
            else:
                block, pol = await self._build_block(round_), -1
            m = self.machine
            if m is None or m.height != height or m.round != round_:
                return
            prop = Proposal(self.genesis.chain_id, height, round_, pol, block, self.key.address)
            prop.sig = self.key.sign(prop.sign_bytes())
            self._broadcast("proposal", prop.to_dict())
            self.proposals_seen[(height, round_)] = prop
            log.info("proposed height %d round %d: %d tasks, latency %.4g%s", height, round_, len(block.tasks),
                     block.claimed_latency, " (arbitrated)" if block.arbitration else "")
            m.on_proposal(prop)
        except Exception:
            log.exception("proposal for height %d round %d failed", height, round_)

    async def _build_block(self, round_: int) -> Block:
        state = self.state
        tasks = sorted((t for t in self.mempool.values()), key=rules.task_order_key)[: self.params.max_block_tasks]
        evidence = []
        for ev in self.store.pending_evidence()[:10]:
            try:
                self._check_evidence(ev)
                evidence.append(ev)
            except InvalidBlock:
                continue
        arbitration = None
        assignment: list[int] = []
        if tasks:
            inst = rules.block_instance(self.genesis, tasks, state.height + 1)
            if round_ >= self.params.arbitration_rounds and self.config.arbiter_url:
                arb = await self._ask_arbiter(state, tasks)
                if arb is not None:
                    assignment, arbitration = arb["assignment"], {"sig": arb["sig"], "method": arb.get("method")}
            if arbitration is None:
                if "grab-all" in self.byzantine:
                    assignment = [self.me] * len(tasks)
                else:
                    assignment = [int(x) for x in self.allocate(inst, state.free_times)]
        return rules.build_block(self.genesis, state, round_=round_, time=time.time(), proposer=self.key.address,
                                 tasks=tasks, assignment=assignment, evidence=evidence, last_commit=self.last_commit,
                                 arbitration=arbitration)

    async def _ask_arbiter(self, state: ChainState, tasks: list[TaskRequest]) -> dict | None:
        body = {"height": state.height + 1, "prev_hash": state.last_hash, "free_times": state.free_times,
                "tasks": [t.to_dict() for t in tasks]}

        def call():
            client = HttpClient(self.config.arbiter_url, timeout=5.0)
            try:
                return client.post("/arbitrate", body)
            finally:
                client.close()
        try:
            return await asyncio.get_running_loop().run_in_executor(None, call)
        except EdgepocError as exc:
            log.warning("arbiter unreachable (%s); proposing with own allocator", exc)
            return None

    def vote(self, vote_type: str, height: int, round_: int, block_hash: str | None) -> None:
        lock = None
        m = self.machine
        if vote_type == PRECOMMIT and block_hash is not None and m is not None:
            prop = m.proposals.get(round_)
            lock = prop.block if prop is not None and prop.block.hash == block_hash else None
        v = Vote(self.genesis.chain_id, height, round_, vote_type, block_hash, self.key.address)
        v = self.store.sign_vote_once(v, self.key.sign, lock)
        self._broadcast("vote", v.to_dict())
        if "equivocate" in self.byzantine and vote_type == PREVOTE:
            other = None if block_hash else sha256_hex(f"equivocate:{height}:{round_}".encode())
            bad = Vote(self.genesis.chain_id, height, round_, vote_type, other, self.key.address)
            bad.sig = self.key.sign(bad.sign_bytes())  # deliberately bypasses the double-sign guard
            self._broadcast("vote", bad.to_dict())
            log.info("BYZANTINE: equivocated at height %d round %d", height, round_)
        if m is not None and m.height == height:
            asyncio.get_running_loop().call_soon(self._deliver_own_vote, v)

    def _deliver_own_vote(self, v: Vote) -> None:
        m = self.machine
        if m is not None and m.height == v.height:
            m.on_vote(v)

    def schedule(self, step: Step, height: int, round_: int, delay: float) -> None:
        def fire():
            m = self.machine
            if m is not None and m.height == height:
                m.on_timeout(step, height, round_)
        asyncio.get_running_loop().call_later(delay, fire)

    def valid(self, block: Block) -> bool:
        return self._check(block) is not None

    def _check(self, block: Block) -> tuple[rules.BlockEffects, ChainState] | None:
        h = block.hash
        if h not in self.valid_cache:
            try:
                self.valid_cache[h] = rules.check_block(self.genesis, self.state, block, task_is_new=self._task_is_new,
                                                        task_signature_ok=self._task_signature_ok,
                                                        evidence_ok=self._check_evidence)
            except InvalidBlock as exc:
                log.warning("rejected block %s at height %d round %d from %s: %s", h[:12], block.height, block.round,
                            block.proposer[:8], exc)
                self.metrics.proposal_rejected(str(exc).split(":")[0])
                self.valid_cache[h] = None
        return self.valid_cache[h]

    def acceptable(self, block: Block, round_: int) -> bool:
        """Prevote rule: valid, and (arbitrated, or within tolerance of this node's own allocation)."""
        h = block.hash
        if h in self.accept_cache:
            return self.accept_cache[h]
        ok = self.valid(block)
        if ok and block.tasks and block.arbitration is None:
            inst = rules.block_instance(self.genesis, block.tasks, block.height)
            own = simulate(inst, self.allocate(inst, self.state.free_times), self.state.free_times)
            ok = rules.within_tolerance(block.claimed_latency, own, self.params.tolerance, self.params.tolerance_abs)
            if not ok:
                log.warning("prevote nil at height %d round %d: claimed latency %.6g vs own %.6g (tolerance %g)",
                            block.height, round_, block.claimed_latency, own, self.params.tolerance)
                self._report_invalid_proposal(block)
                self.metrics.proposal_rejected("latency-over-tolerance")
        self.accept_cache[h] = ok
        return ok

    def _report_invalid_proposal(self, block: Block) -> None:
        reason = rules.proposal_offence(self.genesis, self.state, block)
        prop = self.proposals_seen.get((block.height, block.round))
        if reason is None or prop is None or prop.block.hash != block.hash or prop.pol_round != -1:
            return
        ev = Evidence(INVALID_PROPOSAL, prop.proposer, prop.height, prop.round, prop.to_dict())
        if not self.store.evidence_committed(ev.id):
            log.warning("evidence: invalid proposal by %s at height %d round %d: %s", prop.proposer[:8], prop.height,
                        prop.round, reason)
            self.store.add_evidence(ev)
            self._broadcast("evidence", ev.to_dict())

    def equivocation(self, a: Vote, b: Vote) -> None:
        ev = rules.equivocation(self.genesis, a, b)
        if ev is not None and not self.store.evidence_committed(ev.id):
            log.warning("evidence: %s equivocated at height %d round %d (%s)", a.validator[:8], a.height, a.round, a.type)
            self.store.add_evidence(ev)
            self._broadcast("evidence", ev.to_dict())

    def missing_block(self, height: int, round_: int, block_hash: str) -> None:
        self._broadcast("get_proposal", {"height": height, "round": round_})

    def decide(self, block: Block, commit: Commit) -> None:
        checked = self._check(block)
        if checked is None:  # cannot happen: the machine asked `valid` first
            return
        self._apply(block, commit, checked[1])
        asyncio.get_running_loop().create_task(self._new_height())

    def _apply(self, block: Block, commit: Commit, after: ChainState) -> None:
        latencies: list[float] = []
        if block.tasks:
            inst = rules.block_instance(self.genesis, block.tasks, block.height)
            _, completion, _ = simulate_state(inst, block.assignment, self.state.free_times)
            latencies = [max(0.0, c - a) for c, a in zip(completion.tolist(), inst.arrival.tolist())]
        self.store.save_block(block, commit, after, latencies)
        self.state = after
        self.last_commit = commit
        prev_commit_time, self.last_commit_time = self.last_commit_time, time.time()
        self.commit_times[block.height] = self.last_commit_time
        if len(self.commit_times) > 10000:
            self.commit_times.pop(min(self.commit_times))
        for t in block.tasks:
            self.mempool.pop(t.id, None)
        self.machine = None
        report_commit(self.metrics, self, block, prev_commit_time)
        log.info("committed height %d round %d: %d tasks, latency %.4g, proposer %s, %d evidence", block.height,
                 block.round, len(block.tasks), block.claimed_latency, block.proposer[:8], len(block.evidence))

    # ================================================================ checks used by the rules
    def _task_is_new(self, task_id: str) -> bool:
        return not self.store.is_committed(task_id)

    def _task_signature_ok(self, t: TaskRequest) -> bool:
        known = self.mempool.get(t.id)
        return known == t or t.signature_ok()

    def _state_before(self, height: int) -> ChainState | None:
        if height == self.state.height + 1:
            return self.state
        if height == 1:
            return rules.initial_state(self.genesis)
        return self.store.state(height - 1)

    def _check_evidence(self, ev: Evidence) -> None:
        if self.store.evidence_committed(ev.id):
            raise InvalidBlock("evidence: already committed")
        rules.check_evidence(self.genesis, ev, self._state_before)

    # ================================================================ peer messages
    def _on_message(self, msg_type: str, sender: str, body: Any) -> None:
        if msg_type in ("proposal", "vote"):
            self._dispatch(msg_type, body)
        elif msg_type == "tasks":
            tasks = body.get("tasks") if isinstance(body, dict) else None
            if not isinstance(tasks, list):
                raise InputError("tasks: expected a list")
            self._admit(tasks, gossip=False)
        elif msg_type == "evidence":
            ev = Evidence.from_dict(body)
            if not self.store.evidence_committed(ev.id):
                try:
                    rules.check_evidence(self.genesis, ev, self._state_before)
                    self.store.add_evidence(ev)
                except InvalidBlock as exc:
                    log.warning("dropped evidence from %s: %s", sender[:8], exc)
        elif msg_type == "status":
            h = body.get("height") if isinstance(body, dict) else None
            if isinstance(h, int):
                self.peer_heights[sender] = h
                self._maybe_sync()
        elif msg_type == "get_blocks":
            self._serve_blocks(sender, body)
        elif msg_type == "blocks":
            self._apply_synced(body)
        elif msg_type == "get_proposal":
            if isinstance(body, dict):
                prop = self.proposals_seen.get((body.get("height"), body.get("round")))
                if prop is not None:
                    self._send(sender, "proposal", prop.to_dict())
        else:
            log.warning("dropped message of unknown type %r from %s", msg_type[:40], sender[:8])

    def _dispatch(self, msg_type: str, body: Any) -> None:
        """Parse (a malformed message raises, and is dropped with a log line), then route by height."""
        msg = Proposal.from_dict(body) if msg_type == "proposal" else Vote.from_dict(body)
        m = self.machine
        current = self.state.height + 1
        if msg.height == current + 1 or (msg.height == current and m is None):
            if len(self.future) < 5000:
                self.future.append((msg_type, body))
            return
        if msg.height != current or m is None:
            return
        if msg.round > max(m.round, 0) + MAX_ROUND_AHEAD:
            log.warning("dropped %s for round %d: too far ahead of round %d", msg_type, msg.round, m.round)
            return
        if isinstance(msg, Proposal):
            if not rules.proposal_ok(self.genesis, msg):
                log.warning("dropped proposal for height %d round %d: bad signature or fields", msg.height, msg.round)
                return
            self.proposals_seen.setdefault((msg.height, msg.round), msg)
            m.on_proposal(msg)
            self.wake.set()
        else:
            if not rules.vote_ok(self.genesis, msg):
                log.warning("dropped vote from %s: bad signature or chain id", msg.validator[:8])
                return
            m.on_vote(msg)

    def _admit(self, docs: list, gossip: bool) -> tuple[list[str], list[dict]]:
        """Check and add client tasks to the mempool; returns (accepted ids, rejections)."""
        accepted: list[TaskRequest] = []
        rejected: list[dict] = []
        parsed: list[tuple[int, TaskRequest]] = []
        for i, d in enumerate(docs):
            try:
                t = TaskRequest.from_dict(d, f"tasks[{i}]")
            except InputError as exc:
                rejected.append({"index": i, "error": str(exc)})
                continue
            parsed.append((i, t))
        committed = self.store.committed_ids([t.id for _, t in parsed])
        r = self.genesis.n_resources
        k = len(self.genesis.validators)
        for i, t in parsed:
            if t.id in committed:
                rejected.append({"index": i, "id": t.id, "error": "replay: this (client, nonce) is already committed"})
            elif t.id in self.mempool:
                if self.mempool[t.id] != t:
                    rejected.append({"index": i, "id": t.id, "error": "replay: this (client, nonce) is already pending"})
                elif gossip:
                    accepted.append(t)  # idempotent resubmission
            elif t.chain_id != self.genesis.chain_id:
                rejected.append({"index": i, "id": t.id, "error": f"chain_id: not {self.genesis.chain_id}"})
            elif len(t.demand) != r or (t.delays is not None and len(t.delays) != k):
                rejected.append({"index": i, "id": t.id, "error": f"demand/delays: need {r} resources and {k} delays"})
            elif not t.signature_ok():
                rejected.append({"index": i, "id": t.id, "error": "sig: bad client signature"})
            else:
                self.mempool[t.id] = t
                accepted.append(t)
        if gossip and accepted:
            self.store.add_pending(accepted)  # durable before we answer: an accepted task is never lost
            self.gossip_buffer.extend(t.to_dict() for t in accepted)
        if accepted:
            self.wake.set()
        if rejected and not gossip:
            log.warning("dropped %d gossiped tasks: %s", len(rejected), rejected[0]["error"])
        return [t.id for t in accepted], rejected

    # ================================================================ block sync (catch-up)
    def _maybe_sync(self) -> None:
        if not self.peer_heights:
            return
        best, height = max(self.peer_heights.items(), key=lambda kv: kv[1])
        if height > self.state.height and time.monotonic() - self.sync_requested_at > 0.5:
            self.sync_requested_at = time.monotonic()
            self._send(best, "get_blocks", {"from": self.state.height + 1})

    def _serve_blocks(self, sender: str, body: Any) -> None:
        start = body.get("from") if isinstance(body, dict) else None
        if not isinstance(start, int) or start < 1:
            raise InputError("get_blocks: bad from")
        items, size = [], 0
        for h in range(start, min(self.state.height, start + MAX_SYNC_BLOCKS - 1) + 1):
            raw = self.store.block_raw(h)
            if raw is None:
                break
            items.append({"block": raw[0], "commit": raw[1]})
            size += len(json.dumps(raw[0]))
            if size > self.params.max_message_bytes // 2:
                break
        if items:
            self._send(sender, "blocks", {"items": items})

    def _apply_synced(self, body: Any) -> None:
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise InputError("blocks: expected items")
        applied = 0
        for item in items:
            block = Block.from_dict(item.get("block") if isinstance(item, dict) else None)
            commit = Commit.from_dict(item.get("commit"))
            if block.height <= self.state.height:
                continue
            if block.height != self.state.height + 1:
                break
            rules.check_commit(self.genesis, commit, block.height, block.hash)
            self.valid_cache.pop(block.hash, None)
            checked = self._check(block)
            if checked is None:
                raise InvalidBlock(f"synced block {block.height} is invalid")
            self._apply(block, commit, checked[1])
            applied += 1
        if applied:
            log.info("caught up to height %d", self.state.height)
            self.sync_requested_at = 0.0
            self._maybe_sync()
            asyncio.get_running_loop().create_task(self._new_height(initial=True))

    # ================================================================ client API
    def _task_status(self, task_id: str) -> dict:
        st = self.store.task(task_id)
        if st is None:
            return {"id": task_id, "status": "pending" if task_id in self.mempool else "unknown"}
        if "provider" in st:
            st["provider_name"] = self.genesis.validators[st["provider"]].name
            if st["height"] in self.commit_times:
                st["committed_at"] = self.commit_times[st["height"]]
        return st

    def contribution_table(self) -> dict:
        q = rules.qualified(self.genesis, self.state)
        w = rules.proposer_weights(self.genesis, self.state)
        tw = sum(w) or 1
        rows = [{"name": v.name, "address": v.address, "score": self.state.scores[i], "balance": self.state.balances[i],
                 "penalties": self.state.penalties[i], "qualified": q[i], "proposer_share": w[i] / tw}
                for i, v in enumerate(self.genesis.validators)]
        return {"height": self.state.height, "validators": rows}

    def status(self) -> dict:
        m = self.machine
        return {"name": self.config.name, "address": self.key.address, "chain_id": self.genesis.chain_id,
                "genesis_time": self.genesis.genesis_time, "resources": self.genesis.n_resources,
                "height": self.state.height, "last_hash": self.state.last_hash, "last_block_time": self.state.last_time,
                "last_commit_age": None if self.last_commit_time is None else time.time() - self.last_commit_time,
                "round": m.round if m else None, "step": m.step.name.lower() if m else "committing",
                "mempool": len(self.mempool), "tasks_committed": self.state.tasks_committed,
                "peers": [{"address": a, "connected": l.connected, "height": self.peer_heights.get(a)}
                          for a, l in self.links.items()],
                "allocator": self.allocator_name, "byzantine": sorted(self.byzantine), "pid": os.getpid(),
                "uptime": time.time() - self.started}


def run_node(home: Path, byzantine: list[str] | None = None) -> None:
    """Run one node until killed (the `edgepoc node` command)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    async def main():
        node = Node(home, byzantine)
        await node.run()
    asyncio.run(main())
