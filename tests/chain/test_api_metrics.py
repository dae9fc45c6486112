"""ChainMetrics: what /metrics exposes, and that outside label values cannot grow it without bound."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from edgepoc.chain.api.metrics import MAX_LABEL_VALUES, ChainMetrics


def samples(m: ChainMetrics) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(m.exposition().decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_events_become_prometheus_samples():
    m = ChainMetrics()
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
    assert s[("edgepoc_voting_power_total", ())] == 750 and s[("edgepoc_voting_power_reachable", ())] == 550
