"""`edgepoc compare` end to end on two tiny instances, every method, as a user runs it."""

from __future__ import annotations

import csv
import json

import numpy as np

from edgepoc.game.files import write_instance
from edgepoc.game.generators import generate
from edgepoc.experiments.compare import compare, default_methods
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
    assert list(rows) == default_methods()
    assert {"rollout", "greedy", "ga", "teacher", "student"} <= set(rows)
    for method, row in rows.items():
        assert row["status"] == "ok", (method, row["status"])
        assert row["instances"] == 2 and row["mean_gap_pct"] >= -1e-9
    assert min(row["mean_gap_pct"] for row in rows.values()) < 1e-9  # someone found the best known
    assert rows["greedy"]["mean_total_latency"] <= rows["random"]["mean_total_latency"]
    assert doc["claim"]["statement"].startswith("The paper's claim ")
    assert "5.84%" in doc["claim"]["statement"]
    with (out / "results.csv").open() as f:
        per_instance = list(csv.DictReader(f))
    assert len(per_instance) == 2 * len(rows)
    for name in ("summary.csv", "summary.md", "config.json"):
        assert (out / name).stat().st_size > 0
    assert (out / "fig18_comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| method |" in (out / "summary.md").read_text()
    # stdout is a pipe here: the table is printed in full, never cut to 80 columns or ellipsised
    assert "…" not in r.stdout and "ratio to best [95% CI]" in r.stdout
    lines = {line.split()[0]: line for line in r.stdout.splitlines() if line.split() and line.split()[0] in rows}
    assert set(lines) == set(rows)
    for method, row in rows.items():
        # 2 instances: the ratio without an interval, saying why
        assert f"{row['ratio_to_best']:.3f} (n < 5: no interval)" in lines[method], lines[method]
        assert row["ratio_ci_low"] is None and row["delay_ci_low"] is None
    assert "n < 5: no interval" in doc["claim"]["statement"] and "[" not in doc["claim"]["statement"]


def test_compare_per_instance_status_a_method_solves_what_it_can(tmp_path):
    """A 20-task and an 8-task instance: brute force, which refuses more than 2,000,000 allocations, fails on the
    first with its reason and still gets its row for the second; the others run on both."""
    insts = [generate("paper", 3, 1, n_tasks=20)[0], generate("paper", 4, 1, n_tasks=8)[0]]
    result = compare(insts, ["greedy", "round-robin", "brute-force"], progress=False)
    rows = {row["method"]: row for row in result.summary()}
    assert rows["greedy"]["status"] == "ok" and rows["greedy"]["instances"] == 2
    status = rows["brute-force"]["status"]
    assert status.startswith("failed on 1 of 2 instance(s)") and "allocations is too many" in status, status
    assert rows["brute-force"]["instances"] == 1
    solved = [r for r in result.runs if r.method == "brute-force" and r.ok]
    assert [r.instance for r in solved] == [insts[1].name] and solved[0].total_latency > 0
    for inst in insts:
        best = min(r.total_latency for r in result.runs if r.instance == inst.name and r.ok)
        assert np.isclose(best, result.best_known[inst.name])


def test_compare_takes_the_folder_generate_writes(tmp_path):
    """`generate --count N --out DIR` writes a folder; `compare DIR` runs every instance in it, in name order,
    and an empty folder is one line."""
    gen = tmp_path / "gen"
    r = run_cli("generate", "--preset", "paper", "--count", "3", "--n-tasks", "20", "--out", str(gen))
    assert r.returncode == 0, r.stderr
    out = tmp_path / "c"
    r = run_cli("compare", str(gen), "--methods", "greedy,round-robin", "--out", str(out), timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads((out / "config.json").read_text())
    assert doc["instances"] == [json.loads(p.read_text())["name"] for p in sorted(gen.glob("*.json"))]
    assert len(doc["instances"]) == 3
    (tmp_path / "empty").mkdir()
    r = run_cli("compare", str(tmp_path / "empty"), "--methods", "greedy", "--out", str(out))
    assert r.returncode == 2 and r.stderr.startswith("error: instances: no *.json instance files in")
    assert r.stderr.count("\n") == 1


def test_compare_bad_input_is_one_line(tmp_path):
    r = run_cli("compare", "--preset", "paper", "--count", "1", "--n-tasks", "10", "--methods", "greedy,nope",
                "--out", str(tmp_path / "c"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "nope" in r.stderr
    r = run_cli("compare", "--out", str(tmp_path / "c"))
    assert r.returncode == 2 and r.stderr.startswith("error:")
    r = run_cli("compare", "--preset", "paper", "--count", "1", "--n-tasks", "10", "--methods", "greedy,dqn",
                "--method-seconds", "dqn=1", "--out", str(tmp_path / "c"))
    assert r.returncode == 2 and r.stderr.startswith("error: --method-seconds: dqn take(s) no time budget")


NO_TORCH_COMPARE = """
import json, sys
from edgepoc.cli.main import app
try:
    app(["compare", *sys.argv[2:], "--methods", "greedy,ga,search,student", "--seconds", "0.2", "--out", sys.argv[1]],
        standalone_mode=False)
    from edgepoc.models.plots import plot_run  # noqa: F401  (edgepoc plot: figures from the logs, no model)
finally:
    print(json.dumps([m for m in ("torch", "torch_geometric", "stable_baselines3") if m in sys.modules]),
          file=sys.stderr)
"""


def test_compare_without_a_torch_model_and_plot_do_not_import_torch(tmp_path):
    """Importing PyTorch costs 2-5 s per command: `compare` paid it for its progress bar (kept beside the RL
    baselines), `plot` for reading the training logs."""
    import subprocess
    import sys

    paths = []
    for i, inst in enumerate(generate("paper", 8, 2, n_tasks=25)):
        paths.append(tmp_path / f"i{i}.json")
        write_instance(paths[-1], inst)
    done = subprocess.run([sys.executable, "-c", NO_TORCH_COMPARE, str(tmp_path / "cmp"), *map(str, paths)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stderr.strip().splitlines()[-1]) == []
    rows = {m["method"]: m for m in json.loads((tmp_path / "cmp" / "summary.json").read_text())["methods"]}
    assert set(rows) == {"greedy", "ga", "search", "student"} and all(r["status"] == "ok" for r in rows.values())
