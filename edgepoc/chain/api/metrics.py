"""`ChainMetrics`: the chain's Prometheus metrics, on a registry of its own (plus the process collector).

The engine calls the event methods (`block_committed`, `on_block`, ...); `/metrics` renders
`exposition()`. Label values that come from outside (reject reasons, provider names) are bounded in
number, so a misbehaving peer cannot grow the registry without limit. CometBFT's own metrics
(consensus, p2p, mempool) are separate: `network init` turns them on in each node's config.toml
(`[instrumentation] prometheus = true`) on a port of its own (see docs/operations.md).
"""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterable

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector,
                               disable_created_metrics, generate_latest)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from edgepoc.chain.api.activity import BlockLog

MAX_LABEL_VALUES = 64
CONTENT_TYPE = CONTENT_TYPE_LATEST
# Task latency on the chain's clock (completion minus arrival): delays of 10-100 ms, service times of
# tenths of a second to seconds, queueing up to minutes under overload.
TASK_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250)


def _slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")
    return s[:40] or "unknown"


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def build_info() -> dict[str, str]:
    """What this node runs: edgepoc, CometBFT (the binary `edgepoc node` starts), Python and PyTorch
    ("absent" when not installed). Read once; torch is looked up in the installed metadata, not imported."""
    from edgepoc import __version__

    cometbft = "absent"
    here = Path(sys.executable).parent / "cometbft"  # where `make install` puts it (as node.cometbft_binary)
    binary = str(here) if here.exists() else shutil.which("cometbft")
    if binary:
        try:
            out = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=10)
            cometbft = out.stdout.strip().splitlines()[0][:64] if out.returncode == 0 and out.stdout.strip() else "unknown"
        except (OSError, subprocess.SubprocessError):
            cometbft = "unknown"
    return {"version": _version("edgepoc") or __version__, "cometbft": cometbft,
            "python": platform.python_version(), "torch": _version("torch") or "absent"}


class _LedgerCollector(Collector):
    """Rewards and penalties per provider since genesis, as the committed state holds them: counters whose
    value is restored (not reset) when the node restarts, so they are rendered from the latest ledger."""

    def __init__(self, namespace: str) -> None:
        self.ns = namespace
        self.lock = threading.Lock()
        self.balances: dict[str, float] = {}
        self.penalties: dict[str, float] = {}

    def update(self, balances: dict[str, float], penalties: dict[str, float]) -> None:
        with self.lock:
            self.balances.update(balances)
            self.penalties.update(penalties)

    def describe(self) -> Iterable[CounterMetricFamily]:
        return []  # names only known once a ledger arrives; nothing to check against at registration

    def collect(self) -> Iterable[CounterMetricFamily]:
        with self.lock:
            balances, penalties = dict(self.balances), dict(self.penalties)
        r = CounterMetricFamily(f"{self.ns}_provider_rewards", "Block rewards earned since genesis per provider "
                                "(its balance in the committed state).", labels=["provider"])
        for name, v in sorted(balances.items()):
            r.add_metric([name], v)
        p = CounterMetricFamily(f"{self.ns}_provider_penalties", "Evidence penalties since genesis per provider "
                                "(committed misbehaviour evidence, from the committed state).", labels=["provider"])
        for name, v in sorted(penalties.items()):
            p.add_metric([name], v)
        return [r, p]


class ChainMetrics:
    """Counters, gauges and histograms of one node; every method is cheap and thread-safe."""

    def __init__(self, namespace: str = "edgepoc", build: dict[str, str] | None = None) -> None:
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
                              "included); a commit needs more than 2/3 of edgepoc_total_voting_power.", namespace=ns,
                              registry=r)
        self.power_total = Gauge("total_voting_power", "Total voting power of the validator set.", namespace=ns,
                                 registry=r)
        self.commit_age = Gauge("last_commit_age_seconds", "Seconds since this node last committed a block.",
                                namespace=ns, registry=r)
        self.disk_free = Gauge("disk_free_bytes", "Free bytes on the fuller of the disks holding this node's store "
                               "and its cometbft data (a full one stops the node's commits).", namespace=ns, registry=r)
        # ---- per provider, from each committed block (`on_block`)
        self.up = Gauge("provider_up", "1 if the provider signed the last commit this node saw (the previous "
                        "height's, carried in the newest block's last_commit), else 0.", ["provider"], namespace=ns,
                        registry=r)
        self.missed = Counter("provider_missed_blocks", "Commits the provider did not sign (absent or nil vote in a "
                              "committed block's last_commit), since this process started.", ["provider"],
                              namespace=ns, registry=r)
        self.last_signed = Gauge("provider_last_signed_height", "Last height whose commit the provider signed.",
                                 ["provider"], namespace=ns, registry=r)
        self.proposed = Counter("provider_proposed_blocks", "Committed blocks the provider proposed, since this "
                                "process started.", ["provider"], namespace=ns, registry=r)
        self.provider_tasks = Counter("provider_tasks", "Committed tasks allocated to the provider, since this "
                                      "process started.", ["provider"], namespace=ns, registry=r)
        self.task_latency = Histogram("task_latency_seconds", "Latency of each committed task: completion minus "
                                      "arrival on the chain's clock, as the kernel simulates it from the block's "
                                      "allocation (not measured on the providers).", namespace=ns, registry=r,
                                      buckets=TASK_LATENCY_BUCKETS)
        self.ledger_collector = _LedgerCollector(ns)
        r.register(self.ledger_collector)
        info = build if build is not None else build_info()
        self.build = Gauge("build_info", "The builds this node runs (value 1): edgepoc, CometBFT, Python, PyTorch.",
                           ["version", "cometbft", "python", "torch"], namespace=ns, registry=r)
        self.build.labels(**{k: str(info.get(k) or "unknown")[:64] for k in ("version", "cometbft", "python",
                                                                              "torch")}).set(1)
        self._reasons: set[str] = set()
        self._providers: set[str] = set()
        self._zeroed: set[str] = set()
        self._lock = threading.Lock()
        self.log = BlockLog()  # the newest blocks' summaries, for the explorer (/activity)

    def _bounded(self, seen: set[str], value: str) -> str:
        if value in seen or len(seen) < MAX_LABEL_VALUES:
            seen.add(value)
            return value
        return "other"

    def _provider(self, name: str) -> str:
        return self._bounded(self._providers, str(name)[:64])

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

    def on_block(self, record: dict, names_by_address: dict[str, str]) -> None:
        """A committed block record (the application's Commit): who signed the previous height's commit
        (`last_commit.votes`), who proposed it, each task's latency and provider. Never raises on an odd record."""
        names = {str(a).lower(): n for a, n in (names_by_address or {}).items()}
        self.log.add(record, names)

        def name_of(address: str | None) -> str:
            a = str(address or "").lower()
            return self._provider(names.get(a) or a[:12] or "unknown")

        with self._lock:
            for n in set(names.values()) - self._zeroed:  # every provider's series from its first block, at 0
                self._zeroed.add(n)
                p = self._provider(n)
                if p == n:
                    self.missed.labels(provider=p).inc(0)
                    self.proposed.labels(provider=p).inc(0)
                    self.provider_tasks.labels(provider=p).inc(0)
            height = record.get("height")
            votes = (record.get("last_commit") or {}).get("votes") or []
            for v in votes:
                if not isinstance(v, dict):
                    continue
                p = name_of(v.get("address"))
                if v.get("signed"):
                    self.up.labels(provider=p).set(1)
                    if isinstance(height, int) and height > 1:
                        self.last_signed.labels(provider=p).set(height - 1)
                else:
                    self.up.labels(provider=p).set(0)
                    self.missed.labels(provider=p).inc()
            if record.get("proposer") or record.get("proposer_name"):
                self.proposed.labels(provider=self._provider(record.get("proposer_name")
                                                             or name_of(record.get("proposer")))).inc()
            alloc = record.get("allocation") or {}
            for x in alloc.get("latencies") or []:
                if isinstance(x, (int, float)) and x >= 0:
                    self.task_latency.observe(x)
            for p in alloc.get("providers") or []:
                self.provider_tasks.labels(provider=self._provider(p)).inc()

    def ledger(self, balances: dict[str, float], penalties: dict[str, float]) -> None:
        """Rewards (balances) and penalty counts per provider name, as the committed state holds them."""
        self.ledger_collector.update({self._provider(n): float(v) for n, v in balances.items()},
                                     {self._provider(n): float(v) for n, v in penalties.items()})

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
            self.score.labels(provider=self._provider(name)).set(float(s))
        for name, p in powers.items():
            self.power.labels(provider=self._provider(name)).set(float(p))

    def observe_status(self, status: dict) -> None:
        """Refresh the gauges a scrape should see as of now from a `NodeView.status()` dict."""
        if isinstance(status.get("height"), int):
            self.height.set(status["height"])
        if isinstance(status.get("mempool"), int):
            self.mempool(status["mempool"])
        age = status.get("last_commit_age")
        if isinstance(age, (int, float)):
            self.commit_age.set(age)
        free = status.get("disk_free_bytes")
        if isinstance(free, int) and not isinstance(free, bool):
            self.disk_free.set(free)
        vals = status.get("validators") or []
        if vals:
            self.power_total.set(sum(int(v.get("power") or 0) for v in vals))
            self.power_up.set(sum(int(v.get("power") or 0) for v in vals if v.get("reachable") is not False))

    def observe_contributions(self, contributions: dict) -> None:
        """Scores, powers, rewards and penalties per provider from a `NodeView.contributions()` dict (the
        committed state), as of this scrape."""
        rows = [v for v in contributions.get("validators") or [] if isinstance(v, dict) and v.get("name")]
        num = lambda x: isinstance(x, (int, float)) and not isinstance(x, bool)  # noqa: E731
        self.contributions({v["name"]: v["score"] for v in rows if num(v.get("score"))},
                           {v["name"]: v["power"] for v in rows if num(v.get("power"))})
        self.ledger({v["name"]: v["balance"] for v in rows if num(v.get("balance"))},
                    {v["name"]: v["penalties"] for v in rows if num(v.get("penalties"))})

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric above and the process collector's."""
        return generate_latest(self.registry)
