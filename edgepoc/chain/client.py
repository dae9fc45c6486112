"""The client side: sign task requests, submit them to a node, wait until they are committed."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from edgepoc.chain.crypto import SigningKey
from edgepoc.chain.httpapi import HttpClient
from edgepoc.chain.types import TaskRequest
from edgepoc.errors import EdgepocError
from edgepoc.game.instance import Instance


def tasks_from_instance(inst: Instance, key: SigningKey, chain_id: str, clock_offset: float, nonce0: int) -> list[TaskRequest]:
    """The instance's tasks as signed requests, arriving `clock_offset` seconds into the chain's clock."""
    out = []
    for i in range(inst.n_tasks):
        delays = inst.task_delays[i].tolist() if inst.task_delays is not None else None
        t = TaskRequest(chain_id, key.public_hex, nonce0 + i, float(clock_offset + inst.arrival[i]),
                        inst.demand[i].tolist(), delays)
        out.append(t.signed(key))
    return out


def random_tasks(count: int, resources: int, key: SigningKey, chain_id: str, clock: float, nonce0: int,
                 seed: int = 0) -> list[TaskRequest]:
    """`count` tasks with seeded demands (uniform 0.02..0.3 per resource), all arriving at `clock`."""
    rng = np.random.default_rng(seed)
    demand = rng.uniform(0.02, 0.3, size=(count, resources)).round(6)
    return [TaskRequest(chain_id, key.public_hex, nonce0 + i, float(clock), demand[i].tolist()).signed(key)
            for i in range(count)]


def submit(client: HttpClient, tasks: list[TaskRequest], batch: int = 500) -> tuple[list[str], list[dict]]:
    ids: list[str] = []
    rejected: list[dict] = []
    for i in range(0, len(tasks), batch):
        doc = client.post("/tasks", {"tasks": [t.to_dict() for t in tasks[i:i + batch]]})
        ids.extend(doc["ids"])
        for r in doc["rejected"]:
            rejected.append({**r, "index": r.get("index", 0) + i})
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
