"""The arbiter on CometBFT: the resource management centre's teacher, for blocks a student allocates badly.

A proposer whose student's allocation falls outside the tolerance asks the arbiter. The request is
signed with the proposer's validator key and the arbiter answers only validators named in genesis.
It signs (chain, height, state hash, task ids, free times, assignment): everything the allocation
depends on, so a validator checks the signature against its own state, and still checks quality.
HTTP/JSON: `POST /arbitrate` {validator, body, sig} -> {assignment, sig, method}.
"""

from __future__ import annotations

import base64
import json
import logging
import math
from pathlib import Path

import numpy as np
from typing import Callable

from fastapi import Request
from fastapi.responses import JSONResponse

from edgepoc.chain.crypto import SigningKey, canonical, verify
from edgepoc.chain.genesis import Genesis
from edgepoc.errors import EdgepocError, InputError

log = logging.getLogger("edgepoc.arbiter")


def validator_key(home: Path) -> SigningKey:
    """This node's CometBFT validator key (priv_validator_key.json), to sign arbitration requests."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    doc = json.loads((Path(home) / "cometbft" / "config" / "priv_validator_key.json").read_text())
    raw = base64.b64decode(doc["priv_key"]["value"])[:32]
    return SigningKey._wrap(Ed25519PrivateKey.from_private_bytes(raw))


def request_bytes(chain_id: str, body: dict) -> bytes:
    return canonical({"type": "arbitration-request", "chain_id": chain_id, "body": body})


def arbiter_client(home: Path, url: str, genesis: Genesis, timeout: float = 5.0) -> Callable[[dict], dict | None]:
    """A function the proposer calls with {height, state, free_times, tasks}; None when unreachable."""
    from edgepoc.chain.httpapi import HttpClient

    key = validator_key(home)

    def ask(body: dict) -> dict | None:
        client = HttpClient(url, timeout=timeout)
        try:
            return client.post("/arbitrate", {"validator": key.address, "body": body,
                                              "sig": key.sign(request_bytes(genesis.chain_id, body))})
        except EdgepocError as exc:
            log.warning("arbiter: %s", exc)
            return None
        finally:
            client.close()
    return ask


class Arbiter:
    def __init__(self, home: Path, method: str = "auto", model: str | None = None):
        from edgepoc.chain.allocator import make_allocator, probe_instance

        self.home = Path(home)
        self.genesis = Genesis.load(self.home / "genesis.json")
        self.key = SigningKey.load(self.home / "arbiter_key.json")
        if self.key.public_hex != self.genesis.arbiter_public_key:
            raise InputError("arbiter_key.json: not the arbiter key named in genesis")
        probe = probe_instance(self.genesis.capacity, self.genesis.delays)
        if method == "auto":
            self.allocate, self.method = teacher_or_ga(model, probe)
        else:
            self.allocate, self.method = make_allocator(method, model=model, seconds=0.5, probe=probe)
        self.requests = 0

    def arbitrate(self, doc: dict) -> dict:
        from edgepoc.chain import consensus as rules
        from edgepoc.chain.abci.app import BlockTask, arbitration_bytes

        if not isinstance(doc, dict) or not isinstance(doc.get("body"), dict):
            raise InputError("body: expected {validator, body, sig}")
        i = self.genesis.index_of(str(doc.get("validator", "")))
        if i is None:
            raise InputError("validator: not a validator of this chain")
        body = doc["body"]
        if not verify(self.genesis.validators[i].public_key, request_bytes(self.genesis.chain_id, body),
                      str(doc.get("sig", ""))):
            raise InputError("sig: the request is not signed by that validator")
        height, state, free, raw = body.get("height"), body.get("state"), body.get("free_times"), body.get("tasks")
        k, p = len(self.genesis.validators), self.genesis.params
        if not isinstance(height, int) or not isinstance(state, str) or not isinstance(raw, list) \
                or not isinstance(free, list) or len(free) != k or len(raw) > p.max_block_tasks:
            raise InputError("body: need height, state, free_times (one per validator), tasks")
        if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in free):
            raise InputError("free_times: finite numbers needed")
        tasks = []
        for j, t in enumerate(raw):
            try:
                d = [float(x) for x in t["demand"]]
                task = BlockTask(str(t["id"]), str(t["client"]), int(t["nonce"]), d, float(t["arrival"]))
            except (KeyError, TypeError, ValueError):
                raise InputError(f"tasks[{j}]: malformed") from None
            if len(d) != self.genesis.n_resources or not all(0 < x <= p.max_demand for x in d) \
                    or not math.isfinite(task.arrival):
                raise InputError(f"tasks[{j}]: demand out of bounds")
            tasks.append(task)
        capacity = body.get("capacity")
        cap = None
        if capacity is not None:
            cap = np.asarray(capacity, dtype=np.float64) if isinstance(capacity, list) else None
            if cap is None or cap.shape != self.genesis.capacity.shape or not np.all(np.isfinite(cap)) \
                    or not np.all(cap > 0) or not np.all(cap <= self.genesis.capacity):
                raise InputError("capacity: one row per validator, positive, at most genesis' capacities")
        assignment = [int(x) for x in self.allocate(rules.block_instance(self.genesis, tasks, height, cap), free)] \
            if tasks else []
        sig = self.key.sign(arbitration_bytes(self.genesis.chain_id, height, state, [t.to_dict() for t in tasks],
                                              [float(x) for x in free], assignment, capacity))
        self.requests += 1
        log.info("arbitrated height %d for %s: %d tasks with %s", height, self.genesis.validators[i].name,
                 len(tasks), self.method)
        return {"assignment": assignment, "sig": sig, "method": self.method}


def teacher_or_ga(model: str | None, probe):
    """The teacher when it exists and fits the chain, else the GA meta strategy, else greedy."""
    from edgepoc.chain.allocator import _bundled, make_allocator

    for method in ("teacher", "ga"):
        if method == "teacher" and model is None and not _bundled("teacher"):
            log.info("arbiter: no teacher model installed")
            continue
        try:  # probed with the chain's own shape: a teacher for another provider count cannot arbitrate it
            return make_allocator(method, model=model if method == "teacher" else None, seconds=0.5, probe=probe)
        except EdgepocError as exc:
            log.warning("arbiter: %s unavailable (%s)", method, exc)
    return make_allocator("greedy")


def run_arbiter(home: Path, method: str = "auto") -> None:
    """Serve `POST /arbitrate` and `GET /status` until SIGTERM."""
    import uvicorn
    from fastapi import FastAPI
    from starlette.concurrency import run_in_threadpool

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = json.loads((Path(home) / "config.json").read_text())
    arbiter = Arbiter(home, method, cfg.get("model"))
    api = FastAPI(title="edgepoc arbiter")

    @api.post("/arbitrate")
    async def arbitrate(request: Request) -> JSONResponse:
        try:
            doc = json.loads(await request.body())
        except ValueError:
            return JSONResponse({"error": "body is not JSON"}, status_code=400)
        try:
            return JSONResponse(await run_in_threadpool(arbiter.arbitrate, doc))
        except InputError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    @api.get("/status")
    def status() -> dict:
        return {"role": "arbiter", "method": arbiter.method, "requests": arbiter.requests,
                "address": arbiter.key.address}

    log.info("arbiter listening on %s:%d (%s)", cfg["host"], cfg["port"], arbiter.method)
    uvicorn.run(api, host=cfg["host"], port=int(cfg["port"]), log_level="warning")
