"""The arbiter: the resource management centre's process, where the teacher model lives.

When a height keeps failing (the nodes' students disagree about what is good enough), the proposer of
round >= `arbitration_rounds` asks the arbiter for an allocation of its tasks. The arbiter signs
(chain id, height, previous hash, task ids, assignment) with its genesis key; validators accept a
block carrying that signature without the tolerance check (every other rule still applies).
HTTP/JSON: `POST /arbitrate` {height, prev_hash, free_times, tasks} -> {assignment, sig, method}.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from edgepoc.chain.allocator import make_allocator, probe_instance
from edgepoc.chain.consensus import arbitration_bytes, block_instance, task_order_key
from edgepoc.chain.crypto import SigningKey
from edgepoc.chain.genesis import Genesis
from edgepoc.chain.httpapi import HttpServer, Response
from edgepoc.chain.types import TaskRequest
from edgepoc.errors import InputError

log = logging.getLogger("edgepoc.arbiter")


class Arbiter:
    def __init__(self, home: Path, method: str = "auto", model: str | None = None):
        self.home = Path(home)
        self.genesis = Genesis.load(self.home / "genesis.json")
        self.key = SigningKey.load(self.home / "arbiter_key.json")
        if self.key.public_hex != self.genesis.arbiter_public_key:
            raise InputError("arbiter_key.json: not the arbiter key named in genesis")
        self.probe = probe_instance(self.genesis.capacity, self.genesis.delays)
        if method == "auto":  # the teacher when it exists and fits the chain, else the GA meta strategy
            self.allocate, self.method = _teacher_or_ga(model, self.probe)
        else:
            self.allocate, self.method = make_allocator(method, model=model, seconds=0.5, probe=self.probe)
        self.requests = 0

    def arbitrate(self, doc: dict) -> dict:
        if not isinstance(doc, dict):
            raise InputError("body: expected an object")
        tasks = [TaskRequest.from_dict(t, f"tasks[{i}]") for i, t in enumerate(doc.get("tasks", []))]
        height, prev_hash = doc.get("height"), doc.get("prev_hash")
        free = doc.get("free_times")
        if not isinstance(height, int) or not isinstance(prev_hash, str) or not isinstance(free, list):
            raise InputError("body: need height, prev_hash, free_times")
        if len(free) != len(self.genesis.validators):
            raise InputError("free_times: one per validator")
        if [task_order_key(t) for t in tasks] != sorted(task_order_key(t) for t in tasks):
            raise InputError("tasks: not in (arrival, id) order")
        for i, t in enumerate(tasks):
            if t.chain_id != self.genesis.chain_id or not t.signature_ok():
                raise InputError(f"tasks[{i}]: wrong chain or bad signature")
        assignment = [int(x) for x in self.allocate(block_instance(self.genesis, tasks), free)] if tasks else []
        sig = self.key.sign(arbitration_bytes(self.genesis.chain_id, height, prev_hash, [t.id for t in tasks], assignment))
        self.requests += 1
        log.info("arbitrated height %d: %d tasks with %s", height, len(tasks), self.method)
        return {"assignment": assignment, "sig": sig, "method": self.method}

    async def handle(self, method: str, path: str, body: object) -> Response:
        if method == "POST" and path == "/arbitrate":
            return Response(200, await asyncio.get_running_loop().run_in_executor(None, self.arbitrate, body))
        if method == "GET" and path == "/status":
            return Response(200, {"role": "arbiter", "method": self.method, "requests": self.requests,
                                  "address": self.key.address})
        return Response(404, {"error": f"no route {method} {path}"})


def _teacher_or_ga(model: str | None, probe):
    from edgepoc.errors import EdgepocError

    from edgepoc.chain.allocator import _bundled

    for method in ("teacher", "ga"):
        if method == "teacher" and model is None and not _bundled("teacher"):
            log.info("arbiter: no teacher model installed")
            continue
        try:  # probed with the chain's own shape: a teacher for another provider count cannot arbitrate it
            return make_allocator(method, model=model if method == "teacher" else None, seconds=0.5, probe=probe)
        except EdgepocError as exc:
            log.warning("arbiter: %s unavailable (%s)", method, exc)
    return make_allocator("greedy")


async def run_arbiter(home: Path, host: str, port: int, method: str = "auto", model: str | None = None) -> None:
    arbiter = Arbiter(home, method, model)
    server = HttpServer(arbiter.handle, max_body=arbiter.genesis.params.max_message_bytes)
    await server.start(host, port)
    log.info("arbiter listening on %s:%d (%s)", host, port, arbiter.method)
    await asyncio.Event().wait()
