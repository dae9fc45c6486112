"""`edgepoc demo --quick` end to end, as CI runs it: every stage for real, then the report."""

from __future__ import annotations

import html as html_lib
import json
import shutil
import time

import pytest

from edgepoc.errors import EdgepocError
from edgepoc.experiments.report_build import build_report
from tests.conftest import run_cli

SECTIONS = ["The paper's claims beside this run", "Data", "Teacher model", "Distillation",
            "Algorithm comparison", "PoC chain", "Run record"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    t0 = time.perf_counter()
    r = run_cli("demo", "--quick", "--out", str(out), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, time.perf_counter() - t0, r


def test_quick_demo_runs_every_stage_and_reports(quick_run):
    out, seconds, r = quick_run
    assert seconds < 300, f"quick demo took {seconds:.0f} s"
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    for title in SECTIONS:
        assert f"## {title}" in md and html_lib.escape(title) in html
    for claim in ("5.84%", "19.37%", "accuracy rises", "diversity D rises", "overfitting near epoch 200"):
        assert claim in md
    assert html.count("data:image/png;base64,") >= 17  # figures 4-18 and the chain's, inline
    assert "report:" in r.stdout


def test_run_record_has_config_versions_timings(quick_run):
    out, _, _ = quick_run
    info = json.loads((out / "run.json").read_text())
    assert info["config"]["seed"] == 0 and info["config"]["n_tasks"] == 60
    assert info["versions"]["torch"] and info["versions"]["numpy"]
    assert set(info["timings_seconds"]) >= {"label", "train", "distill", "figures", "compare", "chain", "report"}
    verify = json.loads((out / "logs" / "chain-verify.out").read_text())
    assert verify["ok"] and verify["tasks"] == 300


def test_report_fails_loudly_when_a_figure_is_missing(quick_run, tmp_path):
    out, _, _ = quick_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "figures" / "fig13_test_accuracy.png").unlink()
    with pytest.raises(EdgepocError, match="fig13_test_accuracy.png"):
        build_report(copy)


def test_same_seed_same_labels(tmp_path):
    digests = []
    for name in ("a", "b"):
        r = run_cli("demo", "--quick", "--stages", "label", "--out", str(tmp_path / name))
        assert r.returncode == 0, r.stderr[-2000:]
        info = run_cli("dataset", "info", str(tmp_path / name / "data" / "train"))
        assert info.returncode == 0, info.stderr
        digests.append(json.loads(info.stdout)["digest"])
    assert digests[0] == digests[1]


def test_report_stage_without_the_chain_stage(quick_run, tmp_path):
    """`--stages compare,report` in a folder whose chain stage never ran: a report that says so."""
    out, _, _ = quick_run
    copy = tmp_path / "nochain"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("testnet", "contributions.out", "chain*"))
    r = run_cli("demo", "--quick", "--out", str(copy), "--stages", "report")
    assert r.returncode == 0, r.stderr[-2000:]
    md = (copy / "report.md").read_text()
    assert "## PoC chain" in md and "The chain stage did not run" in md
    assert "## Algorithm comparison" in md and "95% interval" in md


def test_compare_stage_is_held_out(quick_run):
    out, _, _ = quick_run
    cmd = (out / "logs" / "compare.cmd").read_text()
    assert "--instance-seed 5000" in cmd  # seed 0 + 5000: never a training (0) or validation (1) seed
    summary = json.loads((out / "compare" / "summary.json").read_text())
    assert all(name.startswith("paper-s5000-") for name in summary["best_known"])
    assert {"rollout", "greedy"} <= {m["method"] for m in summary["methods"]}
