"""`NodeView`: what an engine gives the API, the explorer and the metrics (the whole contract).

Every method is synchronous, cheap and thread-safe: the API calls them from uvicorn's worker threads.
They read the committed store (never wait on consensus). `submit` is the only writer; it raises
`edgepoc.errors.InputError` for a malformed request (-> HTTP 400 with the message). Return plain
JSON-able dicts and lists (no NaN or infinity).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class NodeView(Protocol):
    def status(self) -> dict:
        """name, chain_id, address, height, last_block_time, last_commit_age (s or None), mempool,
        tasks_committed, round (int or None), step (str or None), validators [{name, address, power,
        reachable?}], total_power, allocator, engine, pid, uptime, explorer ("/explorer/")."""
        ...

    def block(self, height: int | None) -> dict | None:
        """{"height", "hash", "block": {...}, "commit": {...} or None}; None height = latest; None if absent.
        The block dict has time, proposer, tasks (id, client, arrival, demand), the allocation
        (assignment, provider names, latencies, claimed total latency, shapley), arbitration (or null) and
        last_commit {round, votes: [{address, power, signed}]}: who signed the height before (the
        explorer's signer columns, via /activity, read it when the metrics' block log lacks the height)."""
        ...

    def blocks(self, before: int | None, limit: int, with_tasks: bool = False) -> list[dict]:
        """Newest first, heights < `before` (None: from the latest), only blocks with tasks if `with_tasks`:
        height, hash, time, proposer (name), n_tasks, total_latency, arbitrated (bool), rounds (int or None)."""
        ...

    def task(self, task_id: str) -> dict:
        """{"id", "status": committed|pending|rejected|unknown, "height", "provider", "provider_name",
        "latency", "arrival", "committed_at", "reason"?}"""
        ...

    def submit(self, items: list[dict]) -> dict:
        """{"accepted": int, "ids": [...], "rejected": [{"id"?, "index"?, "error" or "reason"}]}."""
        ...

    def contributions(self) -> dict:
        """{"height", "validators": [{name, address, score, balance, penalties, qualified, proposer_share, power}]}"""
        ...

    def history(self, limit: int) -> list[dict]:
        """Oldest first, one row per committed block with tasks (the last `limit`): height, time, proposer,
        scores{name:x}, powers{name:n}, rewards{name: cumulative balance}, penalties{name:n},
        backlog{name: seconds of queued work after the block}."""
        ...

    def evidence(self) -> list[dict]:
        ...

    def arbitrations(self, limit: int, before: int | None = None) -> list[dict]:
        """Newest first (heights below `before`): height, time, proposer, method, n_tasks."""
        ...
