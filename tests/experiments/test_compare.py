"""`edgepoc compare` end to end on two tiny instances, every method, as a user runs it."""

from __future__ import annotations

import csv
import json

import numpy as np

from edgepoc.game.files import write_instance
from edgepoc.game.generators import generate
from edgepoc.experiments.compare import ALL_METHODS, compare
from tests.conftest import run_cli


def test_compare_every_method_on_two_tiny_instances(tmp_path):
    paths = []
    for i, inst in enumerate(generate("paper", 7, 2, n_tasks=25)):
        paths.append(tmp_path / f"i{i}.json")
        write_instance(paths[-1], inst)
    out = tmp_path / "cmp"
    r = run_cli("compare", *map(str, paths), "--seconds", "0.3", "--out", str(out), timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads((out / "summary.json").read_text())
    rows = {m["method"]: m for m in doc["methods"]}
    assert list(rows) == ALL_METHODS
    for method, row in rows.items():
        assert row["status"] == "ok", (method, row["status"])
        assert row["instances"] == 2 and row["mean_gap_pct"] >= -1e-9
    assert min(row["mean_gap_pct"] for row in rows.values()) < 1e-9  # someone found the best known
    assert rows["greedy"]["mean_total_latency"] <= rows["random"]["mean_total_latency"]
    assert doc["claim"]["statement"].startswith("The paper's claim ")
    assert "5.84%" in doc["claim"]["statement"]
    with (out / "results.csv").open() as f:
        per_instance = list(csv.DictReader(f))
    assert len(per_instance) == 2 * len(ALL_METHODS)
    for name in ("summary.csv", "summary.md", "config.json"):
        assert (out / name).stat().st_size > 0
    assert (out / "fig18_comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| method |" in (out / "summary.md").read_text()


def test_compare_reports_a_failing_method_and_runs_the_rest(tmp_path):
    """A 4-provider instance: the 3-provider bundled models fail with their reason, the others still run."""
    inst = generate("paper", 3, 1, n_tasks=20, providers=4)[0]
    result = compare([inst], ["greedy", "round-robin", "dqn"])
    rows = {row["method"]: row for row in result.summary()}
    assert rows["greedy"]["status"] == "ok" and rows["round-robin"]["status"] == "ok"
    assert rows["dqn"]["status"].startswith("failed") and "providers" in rows["dqn"]["status"]
    best = min(r.total_latency for r in result.runs)
    assert np.isclose(best, result.best_known[inst.name])
    x = [r for r in result.runs if r.method == "greedy"]
    assert x and x[0].total_latency >= best


def test_compare_bad_input_is_one_line(tmp_path):
    r = run_cli("compare", "--preset", "paper", "--count", "1", "--n-tasks", "10", "--methods", "greedy,nope",
                "--out", str(tmp_path / "c"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "nope" in r.stderr
    r = run_cli("compare", "--out", str(tmp_path / "c"))
    assert r.returncode == 2 and r.stderr.startswith("error:")
