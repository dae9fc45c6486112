"""`NodeView` over the home-made engine's `Node` (edgepoc/chain/node.py); goes when that engine goes.

The node lives on one asyncio loop and its store connection is not shared across threads, so every
call is run on the node's loop (`_on_loop`) and waited for from the API's worker thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import time
from typing import Any, Callable, TypeVar

from edgepoc.errors import EdgepocError

T = TypeVar("T")
CALL_TIMEOUT = 10.0


class HomemadeNodeView:
    def __init__(self, node: Any, loop: asyncio.AbstractEventLoop):
        self.node, self.loop = node, loop
        self.names = [v.name for v in node.genesis.validators]

    def _on_loop(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            return fn(*args)

        async def call() -> T:
            return fn(*args)
        try:
            return asyncio.run_coroutine_threadsafe(call(), self.loop).result(CALL_TIMEOUT)
        except concurrent.futures.TimeoutError:
            raise EdgepocError(f"node busy: no answer within {CALL_TIMEOUT:.0f} s") from None

    # ---- NodeView
    def status(self) -> dict:
        return self._on_loop(self._status)

    def _status(self) -> dict:
        n = self.node
        st = n.status()
        if st.get("round") is None or st["round"] < 0:  # between heights, or waiting for tasks to propose
            st["round"] = None
            st["step"] = "committing" if n.machine is None else "idle"
        connected = {p["address"]: p["connected"] for p in st.get("peers", [])}
        st["validators"] = [{"name": v.name, "address": v.address, "power": v.power,
                             "reachable": True if v.address == n.key.address else connected.get(v.address, False)}
                            for v in n.genesis.validators]
        st["total_power"] = n.genesis.total_power
        st["engine"] = "homemade"
        st["pid"] = os.getpid()
        st["explorer"] = "/explorer/"
        return st

    def block(self, height: int | None) -> dict | None:
        return self._on_loop(self._block, height)

    def _block(self, height: int | None) -> dict | None:
        store = self.node.store
        h = self.node.state.height if height is None else height
        raw = store.block_raw(h)
        if raw is None:
            return None
        block, commit = raw
        rows = store.db.execute("SELECT id, provider, latency FROM tasks WHERE height=? ORDER BY position",
                                (h,)).fetchall()
        for t, row in zip(block["tasks"], rows):
            t["id"] = row[0]
        block["allocation"] = {"assignment": block["assignment"],
                               "providers": [self.names[p] for p in block["assignment"]],
                               "latencies": [r[2] for r in rows], "claimed_latency": block["claimed_latency"],
                               "shapley": block["contributions"]}
        block["proposer_name"] = self._name_of(block["proposer"])
        return {"height": h, "hash": store.block_hash(h), "block": block, "commit": commit}

    def _name_of(self, address: str) -> str:
        i = self.node.genesis.index_of(address)
        return self.names[i] if i is not None else address[:12]

    def blocks(self, before: int | None, limit: int, with_tasks: bool = False) -> list[dict]:
        return self._on_loop(self._blocks, before, limit, with_tasks)

    def _blocks(self, before: int | None, limit: int, with_tasks: bool) -> list[dict]:
        rows = self.node.store.db.execute(
            "SELECT height, hash, json_extract(body,'$.time'), json_extract(body,'$.proposer'),"
            " json_array_length(body,'$.tasks'), json_extract(body,'$.claimed_latency'),"
            " json_extract(body,'$.arbitration') IS NOT NULL, json_extract(body,'$.round')"
            " FROM blocks WHERE height < ?" + (" AND json_array_length(body,'$.tasks') > 0" if with_tasks else "")
            + " ORDER BY height DESC LIMIT ?", (before or 2**62, limit)).fetchall()
        return [{"height": r[0], "hash": r[1], "time": r[2], "proposer": self._name_of(r[3]), "n_tasks": r[4],
                 "total_latency": r[5], "arbitrated": bool(r[6]), "rounds": r[7] + 1} for r in rows]

    def task(self, task_id: str) -> dict:
        return self._on_loop(self._task, task_id)

    def _task(self, task_id: str) -> dict:
        st = self.node._task_status(task_id)
        if st.get("status") == "committed":
            row = self.node.store.db.execute(
                "SELECT json_extract(body, '$.tasks[' || ? || '].arrival'), json_extract(body, '$.time')"
                " FROM blocks WHERE height=?", (st["position"], st["height"])).fetchone()
            if row:
                st["arrival"] = row[0]
                st["block_time"] = row[1]
        return st

    def submit(self, items: list[dict]) -> dict:
        return self._on_loop(self._submit, items)

    def _submit(self, items: list[dict]) -> dict:
        ids, rejected = self.node._admit(items, gossip=True)
        return {"accepted": len(ids), "ids": ids, "rejected": rejected}

    def contributions(self) -> dict:
        return self._on_loop(self._contributions)

    def _contributions(self) -> dict:
        doc = self.node.contribution_table()
        for row, v in zip(doc["validators"], self.node.genesis.validators):
            row["power"] = v.power
        return doc

    def history(self, limit: int) -> list[dict]:
        return self._on_loop(self._history, limit)

    def _history(self, limit: int) -> list[dict]:
        g = self.node.genesis
        rows = self.node.store.db.execute(
            "SELECT b.height, json_extract(b.body,'$.time'), json_extract(b.body,'$.proposer'), s.body"
            " FROM blocks b JOIN states s ON s.height = b.height WHERE json_array_length(b.body,'$.tasks') > 0"
            " ORDER BY b.height DESC LIMIT ?", (limit,)).fetchall()
        out = []
        for height, t, proposer, body in reversed(rows):
            s = json.loads(body)
            clock = t - g.genesis_time
            out.append({"height": height, "time": t, "proposer": self._name_of(proposer),
                        "scores": dict(zip(self.names, s["scores"])),
                        "powers": {v.name: v.power for v in g.validators},
                        "rewards": dict(zip(self.names, s["balances"])),
                        "penalties": dict(zip(self.names, s["penalties"])),
                        "backlog": {n: max(0.0, f - clock) for n, f in zip(self.names, s["free_times"])}})
        return out

    def evidence(self) -> list[dict]:
        return self._on_loop(self.node.store.all_evidence)

    def arbitrations(self, limit: int) -> list[dict]:
        return self._on_loop(self._arbitrations, limit)

    def _arbitrations(self, limit: int) -> list[dict]:
        rows = self.node.store.db.execute(
            "SELECT height, json_extract(body,'$.time'), json_extract(body,'$.proposer'),"
            " json_extract(body,'$.arbitration.method'), json_array_length(body,'$.tasks'),"
            " json_extract(body,'$.round') FROM blocks WHERE json_extract(body,'$.arbitration') IS NOT NULL"
            " ORDER BY height DESC LIMIT ?", (limit,)).fetchall()
        return [{"height": r[0], "time": r[1], "proposer": self._name_of(r[2]), "method": r[3], "n_tasks": r[4],
                 "round": r[5]} for r in rows]


def report_commit(metrics: Any, node: Any, block: Any, prev_commit_time: float | None) -> None:
    """Feed one committed block of the home-made engine to `ChainMetrics`."""
    now = time.time()
    metrics.block_committed(block.height, len(block.tasks), block.round + 1,
                            None if prev_commit_time is None else now - prev_commit_time)
    if block.arbitration is not None:
        metrics.arbitration()
    metrics.mempool(len(node.mempool))
    names = [v.name for v in node.genesis.validators]
    metrics.contributions(dict(zip(names, node.state.scores)), {v.name: v.power for v in node.genesis.validators})
