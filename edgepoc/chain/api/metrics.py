"""`ChainMetrics`: the chain's Prometheus metrics, on a registry of its own (plus the process collector).

The engine calls the event methods; `/metrics` renders `exposition()`. Label values that come from
outside (reject reasons, provider names) are bounded in number, so a misbehaving peer cannot grow
the registry without limit. CometBFT's own metrics (consensus, p2p, mempool) are separate: its
config.toml `[instrumentation] prometheus = true` serves them on its own port (26660 by default).
"""

from __future__ import annotations

import re

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector,
                               disable_created_metrics, generate_latest)

MAX_LABEL_VALUES = 64
CONTENT_TYPE = CONTENT_TYPE_LATEST


def _slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")
    return s[:40] or "unknown"


class ChainMetrics:
    """Counters, gauges and histograms of one node; every method is cheap and thread-safe."""

    def __init__(self, namespace: str = "edgepoc") -> None:
        disable_created_metrics()  # no *_created series: they double the output and nobody graphs them
        self.registry = CollectorRegistry(auto_describe=True)
        r, ns = self.registry, namespace
        ProcessCollector(registry=r)
        self.height = Gauge("height", "Last committed height.", namespace=ns, registry=r)
        self.blocks = Counter("blocks_committed", "Blocks committed since this process started.", namespace=ns,
                              registry=r)
        self.tasks = Counter("tasks_committed", "Tasks committed since this process started.", namespace=ns, registry=r)
        self.rounds = Histogram("rounds_per_height", "Consensus rounds a height took (1: decided in its first round).",
                                namespace=ns, registry=r, buckets=(1, 2, 3, 4, 6, 10, 20))
        self.interval = Histogram("block_interval_seconds", "Seconds between consecutive commits.", namespace=ns,
                                  registry=r, buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60))
        self.block_tasks = Histogram("block_tasks", "Tasks per committed block.", namespace=ns, registry=r,
                                     buckets=(0, 1, 10, 50, 100, 250, 500, 1000, 2000, 5000))
        self.rejected = Counter("proposals_rejected", "Proposals this node rejected, by reason.", ["reason"],
                                namespace=ns, registry=r)
        self.arbitrations = Counter("arbitrations", "Blocks whose allocation came from the arbiter.", namespace=ns,
                                    registry=r)
        self.allocation = Histogram("allocation_seconds", "Seconds this node's allocator took for one block.",
                                    namespace=ns, registry=r,
                                    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5))
        self.mempool_size = Gauge("mempool_tasks", "Tasks waiting in this node's mempool.", namespace=ns, registry=r)
        self.score = Gauge("contribution_score", "Decayed contribution (Shapley) score per provider.", ["provider"],
                           namespace=ns, registry=r)
        self.power = Gauge("voting_power", "Voting power per provider.", ["provider"], namespace=ns, registry=r)
        self.power_up = Gauge("voting_power_reachable", "Voting power of the validators this node reaches (itself "
                              "included); a commit needs more than 2/3 of edgepoc_voting_power_total.", namespace=ns,
                              registry=r)
        self.power_total = Gauge("voting_power_total", "Total voting power.", namespace=ns, registry=r)
        self.commit_age = Gauge("last_commit_age_seconds", "Seconds since this node last committed a block.",
                                namespace=ns, registry=r)
        self._reasons: set[str] = set()
        self._providers: set[str] = set()

    def _bounded(self, seen: set[str], value: str) -> str:
        if value in seen or len(seen) < MAX_LABEL_VALUES:
            seen.add(value)
            return value
        return "other"

    # ---- events the engine reports
    def block_committed(self, height: int, n_tasks: int, rounds: int | None, seconds_since_prev: float | None) -> None:
        self.height.set(height)
        self.blocks.inc()
        self.tasks.inc(max(0, n_tasks))
        self.block_tasks.observe(max(0, n_tasks))
        if rounds is not None and rounds >= 1:
            self.rounds.observe(rounds)
        if seconds_since_prev is not None and seconds_since_prev >= 0:
            self.interval.observe(seconds_since_prev)

    def proposal_rejected(self, reason: str) -> None:
        self.rejected.labels(reason=self._bounded(self._reasons, _slug(reason))).inc()

    def arbitration(self) -> None:
        self.arbitrations.inc()

    def allocation_seconds(self, s: float) -> None:
        if s >= 0:
            self.allocation.observe(s)

    def mempool(self, n: int) -> None:
        self.mempool_size.set(max(0, n))

    def contributions(self, scores: dict[str, float], powers: dict[str, int]) -> None:
        for name, s in scores.items():
            self.score.labels(provider=self._bounded(self._providers, str(name)[:64])).set(float(s))
        for name, p in powers.items():
            self.power.labels(provider=self._bounded(self._providers, str(name)[:64])).set(float(p))

    def observe_status(self, status: dict) -> None:
        """Refresh the gauges a scrape should see as of now from a `NodeView.status()` dict."""
        if isinstance(status.get("height"), int):
            self.height.set(status["height"])
        if isinstance(status.get("mempool"), int):
            self.mempool(status["mempool"])
        age = status.get("last_commit_age")
        if isinstance(age, (int, float)):
            self.commit_age.set(age)
        vals = status.get("validators") or []
        if vals:
            self.power_total.set(sum(int(v.get("power") or 0) for v in vals))
            self.power_up.set(sum(int(v.get("power") or 0) for v in vals if v.get("reachable") is not False))

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric above and the process collector's."""
        return generate_latest(self.registry)
