"""`BlockLog`: a short in-memory summary of the newest blocks, for the explorer's signer columns and its
block-time and throughput charts, without reading block bodies (task lists) per request.

The application reports each committed block (`ChainMetrics.on_block`); what this process has not seen
(blocks from before it started, or an engine without the hook) is read once from the `NodeView` and kept.
A block's record carries the commit of the height before it (CometBFT's `last_commit`), so the
signatures of height h are known once block h + 1 is committed.
"""

from __future__ import annotations

import threading
from typing import Any

MAX_BLOCKS = 1000


def _unix(rec: dict) -> float | None:
    if isinstance(rec.get("time_ns"), int):
        return rec["time_ns"] / 1e9
    t = rec.get("time")
    return float(t) if isinstance(t, (int, float)) else None


def summarize(rec: dict, names_by_address: dict[str, str]) -> dict[str, Any] | None:
    """The few fields of a block record the log keeps; None for a record without a height."""
    h = rec.get("height")
    if not isinstance(h, int) or isinstance(h, bool):
        return None
    names = {str(a).lower(): n for a, n in (names_by_address or {}).items()}
    lc = rec.get("last_commit") or {}
    signed, absent, power, total = [], [], 0, 0
    for v in lc.get("votes") or []:
        if not isinstance(v, dict):
            continue
        a = str(v.get("address") or "").lower()
        name = str(names.get(a) or a[:12])
        p = v.get("power") if isinstance(v.get("power"), int) else 0
        total += p
        if v.get("signed"):
            signed.append(name)
            power += p
        else:
            absent.append(name)
    alloc = rec.get("allocation") or {}
    lat = [x for x in alloc.get("latencies") or [] if isinstance(x, (int, float))]
    return {"height": h, "time": _unix(rec), "n_tasks": len(rec.get("tasks") or []),
            "proposer": rec.get("proposer_name") or names.get(str(rec.get("proposer") or "").lower())
            or str(rec.get("proposer") or "")[:12] or None,
            "mean_latency": sum(lat) / len(lat) if lat else None,
            # the commit this block carries: of the height before it
            "last_commit": {"height": h - 1, "round": lc.get("round"), "signed": signed, "absent": absent,
                            "signed_power": power, "total_power": total} if h > 1 and (signed or absent) else None}


class BlockLog:
    """Summaries of the newest `MAX_BLOCKS` blocks by height; thread-safe."""

    def __init__(self, size: int = MAX_BLOCKS) -> None:
        self.size = size
        self.rows: dict[int, dict] = {}
        self.lock = threading.Lock()

    def add(self, record: dict, names_by_address: dict[str, str]) -> None:
        row = summarize(record, names_by_address)
        if row is None:
            return
        with self.lock:
            self.rows[row["height"]] = row
            if len(self.rows) > self.size:
                for h in sorted(self.rows)[:len(self.rows) - self.size]:
                    del self.rows[h]

    def window(self, view: Any, limit: int) -> list[dict]:
        """The newest `limit` blocks (at most `size`), newest first; what this log lacks is read from `view`."""
        limit = max(1, min(limit, self.size))
        latest = view.blocks(None, 1)
        if not latest:
            return []
        top = int(latest[0]["height"])
        lo = max(1, top - limit + 1)
        with self.lock:
            missing = [h for h in range(top, lo - 1, -1) if h not in self.rows]
        if missing:
            names = {str(v.get("address", "")).lower(): v.get("name")
                     for v in (view.contributions().get("validators") or []) if isinstance(v, dict)}
            for h in missing:
                doc = view.block(h)
                if doc is not None:
                    self.add(doc.get("block") or {}, names)
        with self.lock:
            return [self.rows[h] for h in range(top, lo - 1, -1) if h in self.rows]


def providers_summary(rows: list[dict], names: list[str]) -> dict[str, dict]:
    """Per provider over `rows` (newest first): commits signed and missed, last height signed, and whether
    it signed the newest commit known."""
    out = {n: {"signed": 0, "missed": 0, "last_signed": None, "signed_last": None} for n in names}
    for r in rows:
        lc = r.get("last_commit")
        if not lc:
            continue
        for n in lc["signed"]:
            d = out.setdefault(n, {"signed": 0, "missed": 0, "last_signed": None, "signed_last": None})
            d["signed"] += 1
            if d["last_signed"] is None:
                d["last_signed"] = lc["height"]
            if d["signed_last"] is None:
                d["signed_last"] = True
        for n in lc["absent"]:
            d = out.setdefault(n, {"signed": 0, "missed": 0, "last_signed": None, "signed_last": None})
            d["missed"] += 1
            if d["signed_last"] is None:
                d["signed_last"] = False
    return out
