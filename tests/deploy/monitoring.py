"""What deploy/monitoring/ queries: the PromQL of the Grafana dashboard and of the alert rules, and the
metric names in them (for the checks in test_monitoring.py and against a live scrape in
tests/chain/test_api_live.py)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

MONITORING = Path(__file__).parents[2] / "deploy" / "monitoring"
DASHBOARD = MONITORING / "grafana-dashboard.json"
ALERTS = MONITORING / "alerts.yml"
# Grafana's variables, as Prometheus would see them once Grafana substituted them
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h", "${instance}": ".*",
                "$instance": ".*"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
            "offset", "inf", "nan"}
# CometBFT exports these only after the first event they count (a full mempool turning a transaction away)
EVENT_ONLY = {"cometbft_mempool_rejected_txs"}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed: apt-get install prometheus (Debian; `make promtool` does it as root)")
    return path


def dashboard_exprs(dashboard: dict | None = None) -> list[str]:
    """Every query of every panel (rows' nested panels too) and of the templating variables, as Prometheus gets it."""
    d = dashboard if dashboard is not None else json.loads(DASHBOARD.read_text())
    out: list[str] = []

    def panels(ps):
        for p in ps:
            yield p
            yield from panels(p.get("panels") or [])

    for p in panels(d.get("panels") or []):
        out.extend(t["expr"] for t in p.get("targets") or [] if t.get("expr"))
    for v in (d.get("templating") or {}).get("list") or []:
        q = v.get("query")
        m = re.match(r"label_values\((\w+)", (q or {}).get("query", "") if isinstance(q, dict) else str(q or ""))
        if v.get("type") == "query" and m:
            out.append(m.group(1))
    return [substitute(e) for e in out]


def substitute(expr: str) -> str:
    for k in sorted(GRAFANA_VARS, key=len, reverse=True):
        expr = expr.replace(k, GRAFANA_VARS[k])
    return expr


def alert_exprs() -> list[str]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [r["expr"] for g in doc["groups"] for r in g["rules"]]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions, keywords, label
    names (in {...}, by/without/on/ignoring/group_x lists) or inside strings and durations."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    e = re.sub(r"\{[^}]*\}", "", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)  # ranges
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", e):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


def queried_names() -> set[str]:
    """Every metric name the dashboard and the alert rules use (`up` is Prometheus' own)."""
    return set().union(*(metric_names(e) for e in dashboard_exprs() + alert_exprs())) - {"up"}


def exposed_names(text: str) -> set[str]:
    """The metric names a Prometheus text exposition offers: its samples' names, and the names its `# TYPE`
    lines declare (a labelled family without a sample yet, as edgepoc_proposals_rejected_total before the
    first rejection, is declared with no sample), histograms and summaries with their series' suffixes."""
    from prometheus_client.parser import text_string_to_metric_families

    names = {s.name for fam in text_string_to_metric_families(text) for s in fam.samples}
    for m in re.finditer(r"^# TYPE (\S+) (\S+)$", text, re.M):
        name, kind = m.groups()
        names.add(name)
        if kind in {"histogram", "summary"}:
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names
