"""The arbiter on CometBFT: the resource management centre's teacher, for blocks a student allocates badly.

A proposer whose student's allocation falls outside the tolerance asks the arbiter, asynchronously and
with a deadline inside the propose timeout (never holding the application lock). The request is
signed with the proposer's validator key and carries the height, the committed state's hash and a
nonce; the arbiter answers only validators named in genesis, only once per nonce, only for the next
height of a state a node of the network confirms (it reads `/status` of the nodes in network.json),
and reads at most MAX_BODY bytes before authenticating. It signs (chain, height, state hash, each
task's id, demand and arrival, free times, capacities, assignment): everything the allocation
depends on, so a validator checks the signature against its own state, and still checks quality.
HTTP/JSON: `POST /arbitrate` {validator, body, sig} -> {assignment, sig, method}.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
from typing import TYPE_CHECKING, Callable

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from edgepoc.chain.crypto import SigningKey, canonical, verify
from edgepoc.chain.genesis import Genesis
from edgepoc.errors import EdgepocError, InputError

if TYPE_CHECKING:
    from edgepoc.chain.allocator import Allocator
    from edgepoc.game.instance import Instance

log = logging.getLogger("edgepoc.arbiter")
MAX_BODY = 8 << 20  # bytes read from one request, before anything is parsed or authenticated
NONCES = 100_000  # remembered (validator, nonce) pairs: an exact replay is refused
STATUS_TIMEOUT = 1.0  # seconds a node has to report its state to the arbiter's check
# the teacher's search without sampled starts: they double its cost at 16 providers (0.49 -> 0.92 s on a
# 2,000-task block), and the proposer waits for the arbiter only `arbiter_deadline` (0.6 s)
ARBITER_MODEL_PARAMS = {"samples": 0}


def validator_key(home: Path) -> SigningKey:
    """This node's CometBFT validator key (priv_validator_key.json), to sign arbitration requests."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    doc = json.loads((Path(home) / "cometbft" / "config" / "priv_validator_key.json").read_text())
    raw = base64.b64decode(doc["priv_key"]["value"])[:32]
    return SigningKey._wrap(Ed25519PrivateKey.from_private_bytes(raw))


def request_bytes(chain_id: str, body: dict) -> bytes:
    return canonical({"type": "arbitration-request", "chain_id": chain_id, "body": body})


def arbiter_client(home: Path, url: str, genesis: Genesis, timeout: float | None = None) -> Callable[[dict], dict | None]:
    """A function the proposer calls with {height, state, free_times, capacity, tasks}; None when unreachable
    or not answered within `timeout` (default: `arbiter_deadline` of genesis, well inside the propose
    timeout). The HTTP call runs on its own thread: a hung arbiter costs the proposer the deadline, once."""
    import secrets

    from edgepoc.chain.httpapi import HttpClient

    key = validator_key(home)
    deadline = genesis.params.arbiter_deadline if timeout is None else timeout
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="arbiter")
    busy: list[concurrent.futures.Future] = []

    def call(body: dict) -> dict | None:
        client = HttpClient(url, timeout=max(deadline, 1.0) * 4)
        try:
            return client.post("/arbitrate", {"validator": key.address, "body": body,
                                              "sig": key.sign(request_bytes(genesis.chain_id, body))})
        finally:
            client.close()

    def ask(body: dict) -> dict | None:
        if busy and not busy[0].done():  # the last request still hangs: do not pile up threads
            log.warning("arbiter: the previous request is still unanswered; not asking")
            return None
        busy.clear()
        fut = pool.submit(call, {**body, "nonce": secrets.token_hex(16)})
        busy.append(fut)
        try:
            return fut.result(timeout=deadline)
        except concurrent.futures.TimeoutError:
            log.warning("arbiter: no answer within %.2f s; proposing without it", deadline)
        except EdgepocError as exc:
            log.warning("arbiter: %s", exc)
        return None
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
            self.allocate, self.method = make_allocator(method, model=model, seconds=0.5, probe=probe,
                                                        model_params=ARBITER_MODEL_PARAMS)
        self.requests = 0
        self.nonces: dict[tuple[str, str], None] = {}
        self.node_urls = _node_urls(self.home)
        self._confirmed: dict[int, str] = {}  # height -> app hash a node reported
        # the state check asks the nodes at once (up to 16 at a time)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=min(16, max(1, len(self.node_urls))),
                                                           thread_name_prefix="state-check")

    def _state_known(self, height: int, state: str) -> bool:
        """True when a node of the network reports `state` as its app hash at `height - 1` (the committed state
        the proposer allocates on). Without node URLs (a bare arbiter folder) the check cannot run: refuse.

        The nodes are asked at once and the first that confirms settles it: asked one after another, a node slow
        to answer (the proposer itself, busy building its block) cost its whole timeout first, and the proposer
        gave up on the arbiter (seen: a 1.5 s state check for a 0.2 s allocation)."""
        if self._confirmed.get(height - 1) == state:
            return True
        if not self.node_urls:
            return False
        futures = [self._pool.submit(self._status_of, url) for url in self.node_urls]
        try:
            for fut in concurrent.futures.as_completed(futures, timeout=STATUS_TIMEOUT + 0.5):
                st = fut.result()
                if st is None:
                    continue
                node_height, app_hash = st
                self._confirmed[node_height] = app_hash
                if len(self._confirmed) > 64:
                    self._confirmed.pop(min(self._confirmed))
                # the app hash does not move with empty blocks: a node a block or two ahead confirms it too
                if abs(node_height - (height - 1)) <= 2 and app_hash == state:
                    return True
        except concurrent.futures.TimeoutError:
            pass
        finally:
            for fut in futures:
                fut.cancel()
        return False

    @staticmethod
    def _status_of(url: str) -> tuple[int, str] | None:
        """`(height, app hash)` a node reports, or None if it does not answer in time or answers nonsense."""
        from edgepoc.chain.httpapi import HttpClient

        c = HttpClient(url, timeout=STATUS_TIMEOUT)
        try:
            st = c.get("/status")
            if isinstance(st, dict) and isinstance(st.get("height"), int) and isinstance(st.get("app_hash"), str):
                return st["height"], st["app_hash"]
            return None
        except EdgepocError:
            return None
        finally:
            c.close()

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
        nonce = body.get("nonce")
        if not isinstance(nonce, str) or not 16 <= len(nonce) <= 64:
            raise InputError("body.nonce: expected a random string of 16..64 characters")
        if (doc["validator"], nonce) in self.nonces:
            raise InputError("nonce: this request was already answered (replay)")
        self.nonces[(doc["validator"], nonce)] = None
        while len(self.nonces) > NONCES:
            self.nonces.pop(next(iter(self.nonces)))
        height, state, free, raw = body.get("height"), body.get("state"), body.get("free_times"), body.get("tasks")
        k, p = len(self.genesis.validators), self.genesis.params
        if not isinstance(height, int) or not isinstance(state, str) or not isinstance(raw, list) \
                or not isinstance(free, list) or len(free) != k or len(raw) > p.max_block_tasks:
            raise InputError("body: need height, state, free_times (one per validator), tasks")
        if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in free):
            raise InputError("free_times: finite numbers needed")
        t_start = time.perf_counter()
        if not self._state_known(height, state):
            raise InputError(f"state: no node of this network reports {state[:12]} at height {height - 1}; "
                             "the arbiter signs only allocations for the next height of a committed state")
        state_check_s = time.perf_counter() - t_start
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
        t_allocate = time.perf_counter()
        assignment = [int(x) for x in self.allocate(rules.block_instance(self.genesis, tasks, height, cap), free)] \
            if tasks else []
        allocation_s = time.perf_counter() - t_allocate
        sig = self.key.sign(arbitration_bytes(self.genesis.chain_id, height, state, [t.to_dict() for t in tasks],
                                              [float(x) for x in free], assignment, capacity))
        self.requests += 1
        log.info("arbitrated height %d for %s: %d tasks with %s in %.0f ms (state check %.0f ms, allocation %.0f ms)",
                 height, self.genesis.validators[i].name, len(tasks), self.method,
                 (time.perf_counter() - t_start) * 1e3, state_check_s * 1e3, allocation_s * 1e3)
        return {"assignment": assignment, "sig": sig, "method": self.method}


def _node_urls(home: Path) -> list[str]:
    """The API URLs of the network's nodes (network.json beside the arbiter's folder); none if it has none."""
    from edgepoc.chain.abci.network import load_network

    try:
        return [n["api"] for n in load_network(Path(home).parent)["nodes"]]
    except EdgepocError:
        return []


def teacher_or_ga(model: str | None, probe: Instance) -> tuple[Allocator, str]:
    """The teacher when it exists and fits the chain, else the GA meta strategy, else greedy."""
    from edgepoc.chain.allocator import _bundled, make_allocator

    for method in ("teacher", "ga"):
        if method == "teacher" and model is None and not _bundled("teacher"):
            log.info("arbiter: no teacher model installed")
            continue
        try:  # probed with the chain's own shape: a teacher for another provider count cannot arbitrate it
            return make_allocator(method, model=model if method == "teacher" else None, seconds=0.5, probe=probe,
                                  model_params=ARBITER_MODEL_PARAMS)
        except EdgepocError as exc:
            log.warning("arbiter: %s unavailable (%s)", method, exc)
    return make_allocator("greedy")


def arbiter_config(home: Path) -> dict:
    """The arbiter's `config.json` (written by `network init`): `host`, `port` and an optional `model`; one line
    naming what is wrong with a damaged one."""
    from edgepoc.game.files import load_json

    path = Path(home) / "config.json"
    if not path.exists():
        from edgepoc.chain.abci.node import missing_file

        raise EdgepocError(f"arbiter: {missing_file(Path(home), path)}")
    try:
        cfg = load_json(path)
    except InputError as exc:
        raise EdgepocError(f"arbiter: {exc}") from None
    port = cfg.get("port") if isinstance(cfg, dict) else None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("host"), str) or isinstance(port, bool) or \
            not isinstance(port, int) or not 0 < port < 65536 or not isinstance(cfg.get("model"), (str, type(None))):
        raise EdgepocError(f"arbiter: {path}: malformed (needs \"host\", a \"port\" in 1-65535 and an optional "
                           "\"model\" path; it is written by `edgepoc network init`)")
    return cfg


def run_arbiter(home: Path, method: str = "auto") -> None:
    """Serve `POST /arbitrate` and `GET /status` until SIGTERM."""
    import uvicorn
    from fastapi import FastAPI
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import ClientDisconnect

    from edgepoc.chain.api.serve import guarded_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = arbiter_config(home)
    arbiter = Arbiter(home, method, cfg.get("model"))
    api = FastAPI(title="edgepoc arbiter")

    @api.post("/arbitrate")
    async def arbitrate(request: Request) -> Response:
        if int(request.headers.get("content-length") or 0) > MAX_BODY:
            return JSONResponse({"error": f"body larger than {MAX_BODY} bytes"}, status_code=413)
        data = bytearray()
        try:
            async for chunk in request.stream():  # bounded before parsing, whatever the headers say
                data += chunk
                if len(data) > MAX_BODY:
                    return JSONResponse({"error": f"body larger than {MAX_BODY} bytes"}, status_code=413)
        except ClientDisconnect:  # hung up (or cut at the request deadline) mid-body: nobody to answer, no traceback
            return Response(status_code=400)
        try:
            doc = json.loads(bytes(data))
        except (ValueError, RecursionError):
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
    # the nodes' guard against held-open connections: a slow client must not keep validators from their arbiter
    uvicorn.Server(guarded_config(api, cfg["host"], int(cfg["port"]))).run()
