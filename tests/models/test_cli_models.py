"""`edgepoc train`, `distill`, `plot`, `solve --method teacher|student` as a user runs them."""

from __future__ import annotations

import json

import pytest

from edgepoc.game.files import write_instance
from edgepoc.game.generators import generate
from edgepoc.models.checkpoint import bundled_path

from tests.conftest import run_cli


def test_train_distill_plot_end_to_end(tmp_path):
    run, dist = tmp_path / "run", tmp_path / "dist"
    r = run_cli("train", "--out", str(run), "--count", "3", "--test-count", "1", "--n-tasks", "40",
                "--labeler", "greedy", "--epochs", "4", "--hidden", "16", "--decoder-hidden", "16", "--threads", "1")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["epochs_run"] == 4
    # `seconds` is the whole command (labelling included), `train_seconds` the epochs alone
    assert summary["seconds"] > summary["train_seconds"] > 0
    r = run_cli("distill", "--out", str(dist), "--teacher", str(run / "best.pt"), "--from-run", str(run),
                "--epochs", "3", "--threads", "1")
    assert r.returncode == 0, r.stderr
    r = run_cli("plot", str(run))
    assert r.returncode == 0, r.stderr
    names = {p.split("/")[-1] for p in json.loads(r.stdout)["figures"]}
    assert {"fig04_train_demand.png", "fig05_loss.png", "fig12_test_delay.png", "fig14_test_diversity.png"} <= names
    r = run_cli("plot", str(dist))
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["figures"]) == 3
    inst = tmp_path / "i.json"
    write_instance(inst, generate("paper", 3, 1, n_tasks=50)[0])
    r = run_cli("solve", str(inst), "--method", "student", "--model", str(dist / "best.pt"), "--param", "decode=guided")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["method"] == "student"


def test_plot_without_logs_fails_loudly(tmp_path):
    r = run_cli("plot", str(tmp_path))
    assert r.returncode == 2 and r.stderr.startswith("error: plot:")
    assert "edgepoc train" in r.stderr and "edgepoc distill" in r.stderr  # says what it accepts
    assert not (tmp_path / "figures").exists()  # a refused folder is left as it was


def test_plot_names_a_compare_run(tmp_path):
    (tmp_path / "summary.json").write_text("{}")
    r = run_cli("plot", str(tmp_path))
    assert r.returncode == 2 and "compare run" in r.stderr and "fig18" in r.stderr


def test_corrupt_model_on_cli_is_one_line(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_text("garbage")
    inst = tmp_path / "i.json"
    write_instance(inst, generate("paper", 3, 1, n_tasks=20)[0])
    r = run_cli("solve", str(inst), "--method", "teacher", "--model", str(bad))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not a readable checkpoint" in r.stderr


@pytest.mark.parametrize("method", ["teacher", "student"])
def test_bundled_models_solve_paper_instance(tmp_path, method):
    assert bundled_path(method).is_file(), f"the package must ship a bundled {method}"
    inst = tmp_path / "i.json"
    write_instance(inst, generate("paper", 5099, 1)[0])
    r = run_cli("solve", str(inst), "--method", method)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert len(doc["assignment"]) == 1000 and doc["total_latency"] > 0
    r = run_cli("solve", str(inst), "--method", method, "--param", "decode=onepass")
    assert r.returncode == 0, r.stderr
    # the bundled model is general: 7 providers and 3 resources are served by the same file
    seven = tmp_path / "k7.json"
    write_instance(seven, generate("paper", 5098, 1, n_tasks=30, providers=7, resources=3)[0])
    r = run_cli("solve", str(seven), "--method", method, "--param", "decode=onepass")
    assert r.returncode == 0, r.stderr
    assert max(json.loads(r.stdout)["assignment"]) <= 6
    r = run_cli("solve", str(seven), "--method", method, "--param", "decode=argmax")
    assert r.returncode == 2 and r.stderr.startswith("error: decode") and r.stderr.count("\n") == 1


def test_distill_from_a_run_trained_on_data_folders(tmp_path):
    data = tmp_path / "data"
    r = run_cli("generate", "--preset", "paper", "--count", "4", "--n-tasks", "30", "--label", "greedy",
                "--workers", "1", "--out", str(data))
    assert r.returncode == 0, r.stderr
    run = tmp_path / "run"
    r = run_cli("train", "--out", str(run), "--data", str(data), "--epochs", "1", "--hidden", "8",
                "--decoder-hidden", "8", "--threads", "1")
    assert r.returncode == 0, r.stderr
    r = run_cli("distill", "--out", str(tmp_path / "dist"), "--teacher", str(run / "best.pt"), "--from-run", str(run),
                "--epochs", "1", "--threads", "1")
    assert r.returncode == 0, r.stderr
    r = run_cli("distill", "--out", str(tmp_path / "d2"), "--teacher", str(run / "best.pt"), "--from-run", str(data))
    assert r.returncode == 2 and "--from-run" in r.stderr and r.stderr.count("\n") == 1
