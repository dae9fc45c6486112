"""The client side on CometBFT: sign task batches, submit them to a node, wait until they are committed."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from edgepoc.chain.abci.wire import TaskBatch
from edgepoc.chain.crypto import SigningKey
from edgepoc.chain.httpapi import HttpClient
from edgepoc.errors import EdgepocError
from edgepoc.game.instance import Instance


def random_batches(count: int, resources: int, key: SigningKey, chain_id: str, nonce0: int, seed: int = 0,
                   batch: int = 100) -> list[TaskBatch]:
    """`count` tasks with seeded demands (uniform 0.02..0.3 per resource), signed `batch` at a time."""
    rng = np.random.default_rng(seed)
    demand = rng.uniform(0.02, 0.3, size=(count, resources)).round(6)
    return [TaskBatch(chain_id, key.public_hex, [(nonce0 + i, demand[i].tolist()) for i in range(s, min(s + batch, count))]
                      ).signed(key) for s in range(0, count, batch)]


def instance_batches(inst: Instance, key: SigningKey, chain_id: str, nonce0: int, batch: int = 100) -> list[TaskBatch]:
    """An instance's tasks (their demands; the chain stamps arrivals and uses genesis delays), signed."""
    return [TaskBatch(chain_id, key.public_hex, [(nonce0 + i, inst.demand[i].tolist())
                                                 for i in range(s, min(s + batch, inst.n_tasks))]).signed(key)
            for s in range(0, inst.n_tasks, batch)]


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


def wait_committed(client: HttpClient, ids: list[str], timeout: float = 60.0, poll: float = 0.1) -> WaitResult:
    """Poll until every id is committed or `timeout` passes (bounded in time and in requests)."""
    t0 = time.monotonic()
    todo = list(ids)
    res = WaitResult()
    while todo and time.monotonic() - t0 < timeout:
        still = []
        for i in range(0, len(todo), 5000):
            chunk = todo[i:i + 5000]
            try:
                doc = client.post("/tasks/status", {"ids": chunk})
            except EdgepocError:
                still.extend(chunk)
                continue
            for tid in chunk:
                st = doc["tasks"].get(tid, {})
                if st.get("status") == "committed":
                    res.committed[tid] = st
                else:
                    still.append(tid)
        todo = still
        if todo:
            time.sleep(poll)
    res.missing = todo
    res.seconds = time.monotonic() - t0
    return res
