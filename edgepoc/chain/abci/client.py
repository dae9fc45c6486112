"""The client side on CometBFT: sign task batches, submit them to a node, wait until they are committed."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np

from edgepoc.chain.abci.wire import TaskBatch, Work
from edgepoc.chain.crypto import SigningKey, canonical
from edgepoc.chain.httpapi import HttpClient
from edgepoc.errors import EdgepocError, Unreachable
from edgepoc.game.instance import Instance

if TYPE_CHECKING:
    from edgepoc.client import EdgepocClient


GENERATED_DEMAND = (0.002, 0.03)  # per resource: ~16 ms on a capacity-1 provider, so 4 providers serve ~250/s


def random_batches(count: int, resources: int, key: SigningKey, chain_id: str, nonce0: int, seed: int = 0,
                   batch: int = 100) -> list[TaskBatch]:
    """`count` tasks with seeded demands (uniform in GENERATED_DEMAND per resource), signed `batch` at a time.

    Light enough that a generated stream of a few hundred tasks/s stays within what the simulated providers
    serve: heavier streams are slowed by admission control ("busy, retry after")."""
    rng = np.random.default_rng(seed)
    demand = rng.uniform(*GENERATED_DEMAND, size=(count, resources)).round(6)
    return [TaskBatch(chain_id, key.public_hex, [(nonce0 + i, demand[i].tolist()) for i in range(s, min(s + batch, count))]
                      ).signed(key) for s in range(0, count, batch)]


def instance_batches(inst: Instance, key: SigningKey, chain_id: str, nonce0: int, batch: int = 100) -> list[TaskBatch]:
    """An instance's tasks (their demands; the chain stamps arrivals and uses genesis delays), signed in
    batches of `batch`, to be sent at once."""
    return replay_batches(inst, key, chain_id, nonce0, math.inf, batch)[0]


_SPLIT = re.compile(r"split it: its first (\d+) tasks fit in one batch")
_ALONE = re.compile(r"^tx\.tasks\[(\d+)\]: this task alone is")
SPLIT_MARGIN = 0.8  # parts are this share of what fitted when the chain looked: its queues move on


def split_oversized(batches: list, rejected: list[dict], key: SigningKey) -> tuple[list[tuple[dict, list[str]]],
                                                                                 set[str]]:
    """The batches the chain refused as more work than one block takes from a client, re-signed in parts that
    fit (the chain said how many of the first tasks fit), or without the one task no batch can carry (the
    chain named it; it stays rejected), and the ids of the tasks resent. The tasks keep their
    nonces: a refused batch left nothing on chain, so its ids are free. `batches`: signed `TaskBatch`es, or
    `(wire dict, ids)` pairs as a receipt plans them (a resumed run); the parts are `(wire dict, ids)` pairs,
    what `EdgepocClient.submit` and `Receipt.plan` take. Only batches `key` signed are split."""
    fits: dict[str, int] = {}
    alone: dict[str, int] = {}  # a task no batch can carry: the rest of its batch is resent without it
    for r in rejected:
        m = _SPLIT.search(str(r.get("reason", "")))
        if m and r.get("id"):
            fits[r["id"]] = int(m.group(1))
        m = _ALONE.search(str(r.get("reason", "")))
        if m and r.get("id"):
            alone[r["id"]] = int(m.group(1))
    parts: list[tuple[dict, list[str]]] = []
    redo: set[str] = set()
    for b in batches:
        if isinstance(b, TaskBatch):
            wire, ids = b.to_dict(), b.ids
        elif isinstance(b, tuple) and len(b) == 2 and isinstance(b[0], dict):
            wire, ids = b
        else:
            continue
        tasks = wire.get("tasks")
        if wire.get("client") != key.public_hex or not isinstance(tasks, list) or not 2 <= len(tasks) == len(ids):
            continue
        body = {k: v for k, v in wire.items() if k != "sig"}  # the wire form is the signed body and its signature

        def resigned(rows: range | list[int]) -> tuple[dict, list[str]]:
            """The batch's tasks at `rows` (their ids with them), signed again as one batch."""
            part = {**body, "tasks": [tasks[r] for r in rows]}
            return {**part, "sig": key.sign(canonical(part))}, [ids[r] for r in rows]

        drop = next((alone[t] for t in ids if t in alone), None)
        if drop is not None and 0 <= drop < len(tasks):
            parts.append(resigned([r for r in range(len(tasks)) if r != drop]))
            redo.update(parts[-1][1])  # the dropped task stays rejected, with the chain's reason
            continue
        n = next((fits[t] for t in ids if t in fits), None)
        if n is None:
            continue
        size = max(1, min(len(tasks) - 1, int(n * SPLIT_MARGIN)))
        parts.extend(resigned(range(j, min(j + size, len(tasks)))) for j in range(0, len(tasks), size))
        redo.update(ids)
    return parts, redo


def replay_batches(inst: Instance, key: SigningKey, chain_id: str, nonce0: int, window: float = 0.1,
                   batch: int = 500) -> tuple[list[TaskBatch], list[float]]:
    """An instance's tasks signed in batches of consecutive tasks that arrive within `window` seconds of the
    batch's first (at most `batch` tasks), and each batch's send time in seconds after the first task's
    arrival: sent at those times, the tasks reach the chain with the instance's arrival pattern."""
    batches: list[TaskBatch] = []
    offsets: list[float] = []
    s = 0
    while s < inst.n_tasks:
        e = s + 1
        while e < inst.n_tasks and e - s < batch and inst.arrival[e] - inst.arrival[s] < window:
            e += 1
        batches.append(TaskBatch(chain_id, key.public_hex,
                                 [(nonce0 + i, inst.demand[i].tolist()) for i in range(s, e)]).signed(key))
        offsets.append(float(inst.arrival[s] - inst.arrival[0]))
        s = e
    return batches, offsets


def submit(client: HttpClient, batches: list[TaskBatch], per_request: int = 50) -> tuple[list[str], list[dict]]:
    """POST /tasks; returns (accepted task ids, rejections with their reasons)."""
    ids: list[str] = []
    rejected: list[dict] = []
    for i in range(0, len(batches), per_request):
        doc = client.post("/tasks", {"tasks": [b.to_dict() for b in batches[i:i + per_request]]})
        ids.extend(doc["ids"])
        rejected.extend(doc["rejected"])
    return ids, rejected


@dataclass
class WaitResult:
    committed: dict[str, dict] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    seconds: float = 0.0


def poll_status(fetch: Callable[[list[str]], dict[str, dict]], ids: list[str], done: Callable[[dict], bool],
                timeout: float, poll: float, chunk: int = 5000,
                found: dict[str, dict] | None = None) -> tuple[dict[str, dict], list[str]]:
    """Ask `fetch` (ids -> status per id) for the ids not yet `done` until all are or `timeout` passes:
    (id -> its final status, ids still not done). Bounded in time and in request size. `found`, if given, is
    filled as the ids finish: a caller whose wait is interrupted keeps what finished."""
    t0 = time.monotonic()
    todo, found = list(ids), ({} if found is None else found)
    while todo and time.monotonic() - t0 < timeout:
        still = []
        for i in range(0, len(todo), chunk):
            part = todo[i:i + chunk]
            try:
                docs = fetch(part)
            except EdgepocError:
                still.extend(part)
                continue
            for tid in part:
                st = docs.get(tid) or {}
                if done(st):
                    found[tid] = st
                else:
                    still.append(tid)
        todo = still
        if todo:
            time.sleep(poll)
    return found, todo


def wait_committed(client: HttpClient, ids: list[str], timeout: float = 60.0, poll: float = 0.1) -> WaitResult:
    """Poll until every id is committed or `timeout` passes (bounded in time and in requests)."""
    t0 = time.monotonic()
    res = WaitResult()
    res.committed, res.missing = poll_status(lambda part: client.post("/tasks/status", {"ids": part})["tasks"], ids,
                                             lambda st: st.get("status") == "committed", timeout, poll)
    res.seconds = time.monotonic() - t0
    return res


def work_batches(count: int, key: SigningKey, chain_id: str, nonce0: int, work: Work, batch: int = 100) -> list[TaskBatch]:
    """`count` tasks that all run the same WebAssembly call, signed `batch` at a time."""
    out = []
    for s in range(0, count, batch):
        n = min(batch, count - s)
        out.append(TaskBatch(chain_id, key.public_hex, [(nonce0 + s + i, []) for i in range(n)], work=[work] * n).signed(key))
    return out


@dataclass
class ResultCheck:
    verified: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # task id -> why
    # task id -> why: the provider did not serve its copy (down, or its results pruned), so only the receipt on
    # chain vouches for the result: it is kept, its hash checked against the receipt, but not counted as verified
    unverified: dict[str, str] = field(default_factory=dict)


def wait_executed(client: EdgepocClient, ids: list[str], timeout: float, poll: float = 0.25,
                  found: dict[str, dict] | None = None) -> tuple[dict[str, dict], list[str]]:
    """Poll until every task has an accepted receipt (status `executed`) or `timeout` passes (`found`: as in
    `poll_status`)."""
    return poll_status(client.tasks, ids, lambda st: st.get("status") == "executed", timeout, poll, chunk=2000,
                       found=found)


def fetch_results(executed: dict[str, dict], provider_urls: dict[str, str], any_client: EdgepocClient,
                  timeout: float = 5.0) -> ResultCheck:
    """Each executed task's result from the provider that ran it (its node API), checked against the receipt on
    chain: the result hash must be the receipt's, and the value the one the receipt carries. A provider that does
    not answer leaves the task `unverified` when the receipt's own result matches its hash (the provider signed
    it; its copy just cannot be compared now), and `failed` when not. A provider that does not answer within
    `timeout` is not asked again in this check: a paused node costs one timeout, not one per task it ran."""
    from edgepoc.execution import result_hash

    check = ResultCheck()
    clients: dict[str, HttpClient] = {}
    down: dict[str, str] = {}  # provider URL -> why: asked once in this check, not again for its other tasks
    try:
        for tid, st in executed.items():
            url = provider_urls.get(st.get("provider_name", ""))
            try:
                if url in down:
                    raise EdgepocError(down[url])
                if url is not None:
                    c = clients.setdefault(url, HttpClient(url, timeout=timeout))
                    try:
                        got = c.get(f"/results/{tid}")
                    except Unreachable as exc:
                        down[url] = str(exc)
                        raise
                else:
                    got = any_client.get(f"/results/{tid}")
            except EdgepocError as exc:
                why = f"result not served by {st.get('provider_name')}: {str(exc)[:120]}"
                if result_hash(st.get("exec_status"), st.get("result")) == st.get("result_hash"):
                    check.unverified[tid] = why
                else:
                    check.failed[tid] = f"{why}; and the receipt's result does not match its hash"
                continue
            if not isinstance(got, dict):
                check.failed[tid] = f"{st.get('provider_name')} served something other than a result (a JSON object)"
                continue
            digest = result_hash(got.get("status"), got.get("result"))
            if digest != st.get("result_hash") or got.get("result_hash") != digest or got.get("result") != st.get("result"):
                check.failed[tid] = "the served result does not match the receipt on chain"
            else:
                check.verified.append(tid)
    finally:
        for c in clients.values():
            c.close()
    return check
