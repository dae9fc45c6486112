"""Issue 19's researcher items, each as a user meets it: help texts that match behaviour, `train-general
--data`, `plot` of a general run, `reproduce --quick`."""

from __future__ import annotations

from typer.testing import CliRunner

from edgepoc.cli.main import app


def _help(*command: str) -> str:
    r = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    return " ".join(r.output.split())


def test_network_init_seed_help_says_what_it_seeds():
    """`--seed` sets the providers' capacities and delays (make_validators); the keys are fresh."""
    text = _help("network", "init")
    assert "Seed for the providers' capacities and delays" in text
    assert "Seed for keys" not in text and "keys are always fresh" in text


def _tiny_dataset(path, count: int = 5):
    """`count` labelled instances of mixed K (3 and 4 providers), 20 tasks each, greedy labels."""
    from edgepoc.game.dataset import write_dataset
    from edgepoc.game.generators import generate
    from edgepoc.models.data import label_instances

    insts = generate("varied", seed=21, count=count, n_tasks=20)
    insts += generate("paper", seed=22, count=1, n_tasks=20, providers=4)
    write_dataset(path, label_instances(insts, "greedy", show_progress=False), meta={"source": "test"})
    return insts


def test_train_general_on_own_data_then_plot_it(tmp_path):
    """`train-general --data` trains on one's own labelled instances (no generated mix, no GA labels), and
    `plot` draws what the general run logged (it refused a general run before)."""
    import json

    from edgepoc.models.checkpoint import is_general, load_model
    from tests.conftest import run_cli

    ds, run = tmp_path / "ds", tmp_path / "run"
    _tiny_dataset(ds)
    r = run_cli("train-general", "--data", str(ds), "--out", str(run), "--imitation-epochs", "2",
                "--es-generations", "2", "--es-pairs", "1", "--hidden", "16", timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads(r.stdout)
    assert summary["data"] == {"data": str(ds), "test_fraction": 0.2, "split_seed": 1000}
    assert summary["config"]["count"] == 5 and summary["config"]["val_count"] == 1  # 6 instances, 1 held out
    assert json.loads((run / "config.json").read_text())["data"]["data"] == str(ds)
    assert not (run / "labels.npz").exists()  # the data set's labels, not GA labels of a generated mix
    model, _ = load_model(run / "teacher.pt", "teacher")
    assert is_general(model)
    log = json.loads((run / "log.json").read_text())
    assert [e["step"] for e in log if e["phase"] == "imitation"] == [1, 2]

    r = CliRunner().invoke(app, ["plot", str(run)])
    assert r.exit_code == 0, r.output
    figures = json.loads(r.stdout)["figures"]
    assert [p.rsplit("/", 1)[1] for p in figures] == ["general_teacher_imitation.png", "general_teacher_es.png"]
    for p in figures:
        assert open(p, "rb").read(8) == b"\x89PNG\r\n\x1a\n"

    r = CliRunner().invoke(app, ["train-general", "--test-data", str(ds), "--out", str(tmp_path / "x")])
    assert r.exit_code != 0 and "--test-data: needs --data" in str(r.exception)


def test_plot_a_general_student_run_and_an_empty_log(tmp_path):
    """A general distillation run (student.pt + log.json) plots too; an empty log is refused, not drawn."""
    import json

    import pytest

    from edgepoc.errors import EdgepocError
    from edgepoc.models.plots import plot_run

    (tmp_path / "student.pt").write_bytes(b"")
    log = [{"phase": "imitation", "step": i, "val_ratio_to_rollout": 1 - i / 100} for i in (1, 2, 3)]
    log += [{"phase": "es", "step": g, "val_ratio_to_rollout": 0.95, "train_batch_ratio": 0.96} for g in (5, 10)]
    (tmp_path / "log.json").write_text(json.dumps(log))
    made = plot_run(tmp_path)
    assert [p.name for p in made] == ["general_student_imitation.png", "general_student_es.png"]
    (tmp_path / "log.json").write_text("[]")
    with pytest.raises(EdgepocError, match="log.json.*empty"):
        plot_run(tmp_path)


def test_reproduce_quick_is_the_smoke_run(monkeypatch):
    """`reproduce --quick` runs every stage at the smoke size (`demo --quick`'s), marked as a smoke run;
    tests/experiments/test_demo.py runs it end to end."""
    import edgepoc.cli.pipeline as cli_pipeline
    from edgepoc.experiments.pipeline import STAGES

    seen = []
    monkeypatch.setattr(cli_pipeline, "run_pipeline", lambda cfg: seen.append(cfg))
    runner = CliRunner()
    for args in (["reproduce", "--quick"], ["demo", "--quick"], ["reproduce"]):
        r = runner.invoke(app, [*args, "--out", "x"])
        assert r.exit_code == 0, r.output
    quick, demo, paper = seen
    assert quick == demo and quick.smoke and quick.stages == STAGES and quick.n_tasks == 60
    assert not paper.smoke and paper.n_tasks == 1000
    assert "smoke run" in _help("reproduce") and "under 5 minutes" in _help("reproduce")
