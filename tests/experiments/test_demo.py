"""`edgepoc reproduce --quick` end to end, as CI runs it: every stage for real, then the report.

`reproduce --quick` and `demo --quick` are the same smoke run (tests/cli/test_researchers.py checks the
configs are equal); `demo --quick --stages label` runs below."""

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
    r = run_cli("reproduce", "--quick", "--out", str(out), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, time.perf_counter() - t0, r


def test_quick_demo_runs_every_stage_and_reports(quick_run):
    out, seconds, r = quick_run
    assert seconds < 300, f"reproduce --quick took {seconds:.0f} s"
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    for title in SECTIONS:
        assert f"## {title}" in md and html_lib.escape(title) in html
    for claim in ("5.84%", "19.37%", "accuracy rises", "diversity D rises", "overfitting near epoch 200"):
        assert claim in md
    assert html.count("data:image/png;base64,") >= 17  # figures 4-18 and the chain's, inline
    assert "report:" in r.stdout


def test_quick_run_says_it_is_a_smoke_run(quick_run):
    out, _, r = quick_run
    assert "smoke run (--quick)" in r.stderr and "smoke run" in r.stdout
    assert json.loads((out / "run.json").read_text())["config"]["smoke"] is True
    md = (out / "report.md").read_text()
    assert md.startswith("# edgepoc run report (smoke run)") and "its numbers do not test the paper's claims" in md
    # 2 compare instances: no interval is printed from fewer than 5
    assert "n < 5: no interval" in md and "n < 5: no interval" in (out / "compare" / "summary.md").read_text()


def test_run_record_has_config_versions_timings(quick_run):
    out, _, _ = quick_run
    info = json.loads((out / "run.json").read_text())
    assert info["config"]["seed"] == 0 and info["config"]["n_tasks"] == 60
    assert info["versions"]["torch"] and info["versions"]["numpy"]
    assert set(info["timings_seconds"]) >= {"label", "train", "distill", "figures", "compare", "chain", "report"}
    verify = json.loads((out / "logs" / "chain-verify.out").read_text())
    assert verify["ok"] and verify["tasks"] == 300 + 3 * 40  # generated tasks + 40 per shipped workload


def test_report_fails_loudly_when_a_figure_is_missing(quick_run, tmp_path):
    out, _, _ = quick_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "figures" / "fig13_test_accuracy.png").unlink()
    with pytest.raises(EdgepocError, match="fig13_test_accuracy.png"):
        build_report(copy)


def test_same_seed_same_labels(quick_run, tmp_path):
    """A second process labels the same seed (`demo --quick --stages label`, the same config as the module's
    `reproduce --quick`, whose labels are the first): the same data set, byte for byte."""
    r = run_cli("demo", "--quick", "--stages", "label", "--out", str(tmp_path / "b"))
    assert r.returncode == 0, r.stderr[-2000:]
    digests = []
    for run in (quick_run[0], tmp_path / "b"):
        info = run_cli("dataset", "info", str(run / "data" / "train"))
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


def test_report_without_the_compare_stage(quick_run, tmp_path):
    """`reproduce --stages label,train,distill,figures,report` failed at the report ("compare/summary.json is
    missing"): a folder whose compare stage never ran now gets a report that says compare was not run."""
    out, _, _ = quick_run
    copy = tmp_path / "nocompare"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("compare", "compare.*", "testnet", "chain*",
                                                             "contributions.out", "report.*"))
    info = json.loads((copy / "run.json").read_text())
    info["config"]["stages"] = ["label", "train", "distill", "figures"]  # as if compare and chain never ran
    info["timings_seconds"] = {k: v for k, v in info["timings_seconds"].items() if k in info["config"]["stages"]}
    (copy / "run.json").write_text(json.dumps(info))
    r = run_cli("reproduce", "--quick", "--out", str(copy), "--stages", "report")
    assert r.returncode == 0, r.stderr[-2000:]
    md = (copy / "report.md").read_text()
    assert "## Algorithm comparison" in md and "The compare stage was not run" in md
    assert "| deep model better than the best other method by | 5.84% | not measured: compare was not run |" in md
    assert "## Distillation" in md and "fig18" not in md
    assert json.loads((copy / "run.json").read_text())["config"]["stages"] == [
        "label", "train", "distill", "figures", "report"]


def test_compare_stage_is_held_out(quick_run):
    out, _, _ = quick_run
    cmd = (out / "logs" / "compare.cmd").read_text()
    assert "--instance-seed 5000" in cmd  # seed 0 + 5000: never a training (0) or validation (1) seed
    summary = json.loads((out / "compare" / "summary.json").read_text())
    assert all(name.startswith("paper-s5000-") for name in summary["best_known"])
    assert {"rollout", "greedy"} <= {m["method"] for m in summary["methods"]}


def test_the_chain_stage_runs_real_workloads_and_checks_every_result(quick_run):
    out, _, _ = quick_run
    for name in ("primes", "matmul", "hashchain"):
        doc = json.loads((out / "logs" / f"work-{name}.out").read_text().strip().splitlines()[-1])
        assert doc["executed"] == 40 and doc["verified"] == 40 and doc["failed"] == 0, (name, doc)
        results = [json.loads(p.read_text()) for p in (out / "results" / name).glob("*.json")]
        assert len(results) == 40 and all(r["status"] == "ok" and r["measured_latency"] > 0 for r in results)
    primes = {json.loads(p.read_text())["result"] for p in (out / "results" / "primes").glob("*.json")}
    assert primes == {1229}, "primes below 10000, on whichever provider ran it"
    md = (out / "report.md").read_text()
    assert "really ran on the providers" in md and "verified against receipts" in md


def test_a_second_run_keeps_the_first(quick_run, tmp_path):
    """Without --out a run goes to runs/NAME, or NAME-2, -3, ... when an earlier run's chain holds it; an explicit
    --out that holds a run is refused in one line, and nothing in it changes."""
    from edgepoc.cli.pipeline import default_run_folder

    out, _, _ = quick_run
    assert (out / "testnet" / "network.json").exists()
    assert default_run_folder("fresh", root=tmp_path) == tmp_path / "fresh"
    assert default_run_folder(out.name, root=out.parent) == out.parent / f"{out.name}-2"
    (out.parent / f"{out.name}-2" / "testnet").mkdir(parents=True)
    (out.parent / f"{out.name}-2" / "testnet" / "network.json").write_text("{}")
    assert default_run_folder(out.name, root=out.parent) == out.parent / f"{out.name}-3"
    before = (out / "testnet" / "network.json").read_bytes()
    r = run_cli("demo", "--quick", "--out", str(out))
    assert r.returncode != 0 and "already holds a run" in r.stderr and "Traceback" not in r.stderr
    assert (out / "testnet" / "network.json").read_bytes() == before
