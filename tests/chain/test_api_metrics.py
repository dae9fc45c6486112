"""ChainMetrics: what /metrics exposes, that outside label values cannot grow it without bound, that
promtool finds nothing to warn about; the block log behind the explorer's signer columns and charts."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edgepoc.chain.api.activity import BlockLog, providers_summary
from edgepoc.chain.api.metrics import MAX_LABEL_VALUES, ChainMetrics

BUILD = {"version": "0.1.0", "cometbft": "1.0.1", "python": "3.11.7", "torch": "absent"}
ADDR = {f"{i:02x}" * 20: f"node{i}" for i in range(4)}  # address -> name, as the app passes genesis'


def samples(m: ChainMetrics) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(m.exposition().decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_events_become_prometheus_samples():
    m = ChainMetrics(build=BUILD)
    m.block_committed(5, 120, 1, None)
    m.block_committed(6, 0, 3, 0.8)
    m.proposal_rejected("latency-mismatch: claimed 3 vs 2")
    m.proposal_rejected("Latency mismatch")
    m.arbitration()
    m.allocation_seconds(0.02)
    m.mempool(17)
    m.contributions({"node0": 1.5, "node1": 0.25}, {"node0": 300, "node1": 200})
    s = samples(m)
    assert s[("edgepoc_height", ())] == 6
    assert s[("edgepoc_blocks_committed_total", ())] == 2
    assert s[("edgepoc_tasks_committed_total", ())] == 120
    assert s[("edgepoc_rounds_per_height_count", ())] == 2 and s[("edgepoc_rounds_per_height_sum", ())] == 4
    assert s[("edgepoc_block_interval_seconds_count", ())] == 1
    assert s[("edgepoc_proposals_rejected_total", (("reason", "latency-mismatch-claimed-3-vs-2"),))] == 1
    assert s[("edgepoc_proposals_rejected_total", (("reason", "latency-mismatch"),))] == 1
    assert s[("edgepoc_arbitrations_total", ())] == 1
    assert s[("edgepoc_allocation_seconds_count", ())] == 1
    assert s[("edgepoc_mempool_tasks", ())] == 17
    assert s[("edgepoc_contribution_score", (("provider", "node0"),))] == 1.5
    assert s[("edgepoc_voting_power", (("provider", "node1"),))] == 200
    assert any(name.startswith("process_") for name, _ in s)  # the process collector rides along


def test_label_values_from_outside_are_bounded():
    m = ChainMetrics()
    for i in range(MAX_LABEL_VALUES + 50):
        m.proposal_rejected(f"reason {i}")
    reasons = {dict(labels)["reason"] for (name, labels) in samples(m) if name == "edgepoc_proposals_rejected_total"}
    assert len(reasons) == MAX_LABEL_VALUES + 1 and "other" in reasons


def test_a_scrape_sees_the_status_of_now():
    m = ChainMetrics()
    m.observe_status({"height": 12, "mempool": 40, "last_commit_age": 0.5,
                      "validators": [{"power": 300, "reachable": True}, {"power": 200, "reachable": False},
                                     {"power": 250}]})
    s = samples(m)
    assert s[("edgepoc_height", ())] == 12 and s[("edgepoc_mempool_tasks", ())] == 40
    assert s[("edgepoc_last_commit_age_seconds", ())] == 0.5
    assert s[("edgepoc_total_voting_power", ())] == 750 and s[("edgepoc_voting_power_reachable", ())] == 550
    assert not any(name == "edgepoc_voting_power_total" for name, _ in s)  # a gauge with a counter's suffix


def record(height: int, absent: tuple[int, ...] = (), proposer: int = 0, latencies: tuple[float, ...] = (),
           providers: tuple[int, ...] = ()) -> dict:
    """A block record as the application's Commit passes it to `on_block`."""
    addrs = list(ADDR)
    votes = [] if height == 1 else [{"address": a, "power": 250, "signed": i not in absent} for i, a in enumerate(addrs)]
    return {"height": height, "hash": f"{height:064x}", "time": 10.0 + height, "time_ns": (1_700_000_000 + height) * 10**9,
            "proposer": addrs[proposer], "proposer_name": ADDR[addrs[proposer]],
            "tasks": [{"id": f"t{height}-{j}"} for j in range(len(latencies))],
            "allocation": {"assignment": list(providers), "providers": [f"node{p}" for p in providers],
                           "latencies": list(latencies), "claimed_latency": sum(latencies)} if latencies else None,
            "evidence": [], "last_commit": {"round": 0, "votes": votes}, "powers": [250] * 4, "app_hash": "00"}


def test_on_block_gives_per_provider_liveness_latency_and_proposals():
    m = ChainMetrics(build=BUILD)
    m.on_block(record(1), ADDR)
    s = samples(m)  # every provider's series exist from the first block, at 0
    assert all(s[("edgepoc_provider_missed_blocks_total", (("provider", f"node{i}"),))] == 0 for i in range(4))
    m.on_block(record(2, absent=(2,), proposer=1, latencies=(0.3, 1.5, 40.0), providers=(0, 1, 1)), ADDR)
    m.on_block(record(3, absent=(2, 3), proposer=2), ADDR)
    m.on_block(record(4, absent=(2,), proposer=1), {a.upper(): n for a, n in ADDR.items()})  # any case
    s = samples(m)
    up = {i: s[("edgepoc_provider_up", (("provider", f"node{i}"),))] for i in range(4)}
    missed = {i: s[("edgepoc_provider_missed_blocks_total", (("provider", f"node{i}"),))] for i in range(4)}
    assert up == {0: 1, 1: 1, 2: 0, 3: 1} and missed == {0: 0, 1: 0, 2: 3, 3: 1}
    assert s[("edgepoc_provider_last_signed_height", (("provider", "node3"),))] == 3  # block 4 carries 3's commit
    assert s[("edgepoc_provider_last_signed_height", (("provider", "node0"),))] == 3
    assert ("edgepoc_provider_last_signed_height", (("provider", "node2"),)) not in s  # never seen signing
    assert s[("edgepoc_provider_proposed_blocks_total", (("provider", "node1"),))] == 2
    assert s[("edgepoc_provider_tasks_total", (("provider", "node1"),))] == 2
    assert s[("edgepoc_task_latency_seconds_count", ())] == 3 and s[("edgepoc_task_latency_seconds_sum", ())] == 41.8
    assert s[("edgepoc_task_latency_seconds_bucket", (("le", "0.5"),))] == 1
    assert s[("edgepoc_task_latency_seconds_bucket", (("le", "50.0"),))] == 3
    m.on_block({"height": "x", "last_commit": {"votes": [None, {"address": 5}]}, "allocation": {"latencies": [-1]}}, {})


def test_rewards_penalties_and_build_info():
    m = ChainMetrics(build=BUILD)
    m.observe_contributions({"height": 9, "validators": [
        {"name": "node0", "score": 1.5, "power": 300, "balance": 4.25, "penalties": 0},
        {"name": "node1", "score": 0.5, "power": 100, "balance": 0.75, "penalties": 2}]})
    s = samples(m)
    assert s[("edgepoc_provider_rewards_total", (("provider", "node0"),))] == 4.25
    assert s[("edgepoc_provider_penalties_total", (("provider", "node1"),))] == 2
    assert s[("edgepoc_contribution_score", (("provider", "node0"),))] == 1.5
    assert s[("edgepoc_voting_power", (("provider", "node1"),))] == 100
    m.ledger({"node1": 1.0}, {"node1": 3})  # the application's hook, same series
    s = samples(m)
    assert s[("edgepoc_provider_rewards_total", (("provider", "node1"),))] == 1.0
    assert s[("edgepoc_provider_penalties_total", (("provider", "node1"),))] == 3
    assert s[("edgepoc_build_info", tuple(sorted(BUILD.items())))] == 1
    real = samples(ChainMetrics())  # this machine's builds
    (labels,) = [dict(lb) for name, lb in real if name == "edgepoc_build_info"]
    assert set(labels) == {"version", "cometbft", "python", "torch"} and all(labels.values())


def promtool_check(text: bytes) -> str:
    """promtool's lint of an exposition: '' when it has nothing to say."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install prometheus, or `make promtool`)")
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=30)
    return (r.stdout + r.stderr).decode().strip() + ("" if r.returncode == 0 else f" (exit {r.returncode})")


def test_promtool_finds_nothing_to_warn_about():
    m = ChainMetrics(build=BUILD)
    m.block_committed(2, 3, 1, 0.4)
    m.on_block(record(2, absent=(1,), latencies=(0.2, 0.9, 3.0), providers=(0, 1, 2)), ADDR)
    m.proposal_rejected("quality")
    m.observe_status({"height": 2, "mempool": 1, "last_commit_age": 0.1, "validators": [{"power": 5}]})
    m.observe_contributions({"validators": [{"name": "node0", "score": 1, "power": 5, "balance": 1, "penalties": 0}]})
    assert promtool_check(m.exposition()) == ""


class FakeView:
    """The two NodeView reads the block log falls back on, counting how often it needs them."""

    def __init__(self, top: int):
        self.top, self.reads = top, 0

    def blocks(self, before, limit, with_tasks=False):
        return [{"height": self.top}]

    def block(self, h):
        self.reads += 1
        rec = record(h, absent=(3,) if h % 2 else ())
        return {"height": h, "hash": rec["hash"], "block": {**rec, "time": 1_700_000_000.0 + h}, "commit": None}

    def contributions(self):
        return {"validators": [{"name": n, "address": a} for a, n in ADDR.items()]}


def test_block_log_serves_signers_and_reads_what_it_missed_once():
    log, view = BlockLog(size=50), FakeView(top=30)
    for h in range(26, 31):  # what this process saw committed
        log.add(record(h, absent=(3,) if h % 2 else (), latencies=(1.0, 3.0), providers=(0, 1)), ADDR)
    rows = log.window(view, 10)
    assert [r["height"] for r in rows] == list(range(30, 20, -1)) and view.reads == 5  # 21..25 read once
    assert log.window(view, 10) == rows and view.reads == 5
    top = rows[0]
    assert top["time"] == 1_700_000_030 and top["n_tasks"] == 2 and top["mean_latency"] == 2.0
    assert top["proposer"] == "node0"
    assert top["last_commit"] == {"height": 29, "round": 0, "signed": ["node0", "node1", "node2", "node3"],
                                  "absent": [], "signed_power": 1000, "total_power": 1000}
    assert rows[1]["last_commit"]["absent"] == ["node3"] and rows[1]["last_commit"]["signed_power"] == 750
    summary = providers_summary(rows, list(ADDR.values()))
    assert summary["node3"] == {"signed": 5, "missed": 5, "last_signed": 29, "signed_last": True}
    assert summary["node0"]["missed"] == 0
    assert log.window(FakeView(top=30), 100)[-1]["height"] == 1 and len(log.rows) == 30
    assert len(BlockLog(size=50).window(FakeView(top=500), 1000)) == 50  # never more than it keeps
    assert providers_summary(log.window(view, 1), ["node0"])["node0"]["signed_last"] is True
