"""deploy/monitoring/: the scrape configuration, the alert rules (with their unit tests) and the Grafana
dashboard, checked with Debian's promtool (skipped, with a message, where it is not installed).
That every metric they query exists in a real scrape is checked against a live network in
tests/chain/test_api_live.py."""

from __future__ import annotations

import json
import subprocess

import yaml

from tests.deploy.monitoring import (ALERTS, DASHBOARD, MONITORING, alert_exprs, dashboard_exprs, exposed_names,
                                     metric_names, promtool, queried_names)


def run(*args: str) -> str:
    r = subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=60, cwd=MONITORING)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    return out


def test_scrape_config_and_alert_rules_are_valid():
    out = run("check", "config", "prometheus.yml")
    assert "SUCCESS: 1 rule files found" in out  # alerts.yml, checked with it
    out = run("check", "rules", "alerts.yml")
    names = {r["alert"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]}
    assert f"SUCCESS: {len(names)} rules found" in out
    # the four the issue asks for, and each has a severity and a summary
    assert {"EdgepocNoQuorum", "EdgepocProviderDown", "EdgepocMempoolFull", "EdgepocFinalitySlow"} <= names
    for g in yaml.safe_load(ALERTS.read_text())["groups"]:
        for r in g["rules"]:
            assert r["labels"]["severity"] in {"critical", "warning"} and r["annotations"]["summary"], r["alert"]


def test_alerts_fire_when_they_should_and_only_then():
    out = run("test", "rules", "alerts_test.yml")
    assert "SUCCESS" in out
    tested = set()
    for t in yaml.safe_load((MONITORING / "alerts_test.yml").read_text())["tests"]:
        tested |= {a["alertname"] for a in t["alert_rule_test"] if a.get("exp_alerts")}
    every = {r["alert"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]}
    assert tested >= every - {"EdgepocManyRounds"}, every - tested  # each alert seen firing in a test


def test_dashboard_parses_and_every_query_is_valid_promql(tmp_path):
    d = json.loads(DASHBOARD.read_text())
    assert d["title"] and d["uid"] and d["schemaVersion"] >= 36
    titles = " ".join(p.get("title", "") for p in d["panels"]).lower()
    for what in ("block time", "throughput", "latency", "up", "missed", "voting power", "score", "rewards", "mempool"):
        assert what in titles, what
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    exprs = dashboard_exprs(d)
    assert len(exprs) >= 20
    # promtool parses each query as a recording rule: a typo in any of them fails here, not in Grafana
    rules = tmp_path / "dashboard_rules.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)]}]}))
    out = subprocess.run([promtool(), "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_metric_names_are_read_out_of_promql():
    assert metric_names('histogram_quantile(0.95, sum by (instance, le) (rate(edgepoc_block_interval_seconds_bucket'
                        '{job="x", le=~"a b"}[5m]))) > 5') == {"edgepoc_block_interval_seconds_bucket"}
    assert metric_names("max(edgepoc_height) - on () group_right max by (provider) (edgepoc_provider_last_signed_height)"
                        ) == {"edgepoc_height", "edgepoc_provider_last_signed_height"}
    assert metric_names("a_b or c_d unless e offset 5m and bool 2 / 3 > 1e3") == {"a_b", "c_d", "e"}
    names = queried_names()
    assert {"edgepoc_task_latency_seconds_bucket", "edgepoc_provider_up", "edgepoc_provider_missed_blocks_total",
            "edgepoc_provider_rewards_total", "edgepoc_total_voting_power", "cometbft_mempool_size"} <= names
    assert not any(n.startswith("$") or n in {"le", "provider", "instance"} for n in names)
    assert set(alert_exprs()) and all(metric_names(e) for e in alert_exprs())


def test_declared_families_count_as_exposed():
    from edgepoc.chain.api.metrics import ChainMetrics

    text = ChainMetrics(build={"version": "x", "cometbft": "y", "python": "z", "torch": "absent"}).exposition().decode()
    names = exposed_names(text)
    assert {"edgepoc_proposals_rejected_total", "edgepoc_task_latency_seconds_bucket", "edgepoc_height"} <= names
    assert "edgepoc_provider_up" in names  # declared before the first block, no sample yet
