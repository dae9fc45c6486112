"""run.json across a run finished in parts: earlier stages' timings survive a later `--stages` run."""

from __future__ import annotations

import json

from edgepoc.experiments.pipeline import PipelineConfig
from edgepoc.experiments.runinfo import RunRecord


def test_later_stages_keep_earlier_timings_and_other_settings_start_fresh(tmp_path):
    rec = RunRecord(tmp_path, PipelineConfig(out=str(tmp_path), stages=["label", "train"]))
    for name in ("label", "train"):
        with rec.stage(name):
            pass
    rec = RunRecord(tmp_path, PipelineConfig(out=str(tmp_path), stages=["train", "report"]))
    with rec.stage("report"):
        pass
    doc = json.loads((tmp_path / "run.json").read_text())
    assert doc["config"]["stages"] == ["label", "train", "report"]
    assert set(doc["timings_seconds"]) == {"label", "report"}  # train is re-run: its old time is dropped
    with rec.stage("train"):
        pass
    assert set(json.loads((tmp_path / "run.json").read_text())["timings_seconds"]) == {"label", "train", "report"}
    RunRecord(tmp_path, PipelineConfig(out=str(tmp_path), seed=1, stages=["report"]))
    doc = json.loads((tmp_path / "run.json").read_text())
    assert doc["config"]["stages"] == ["report"] and doc["timings_seconds"] == {}


def test_a_copied_run_folder_continues_its_record(tmp_path):
    """The folder's path is not a setting: a copy finished with `--stages report` keeps the stages that ran
    (the report then knows that compare ran there, or not)."""
    first = tmp_path / "a"
    rec = RunRecord(first, PipelineConfig(out=str(first), stages=["label", "compare"]))
    with rec.stage("compare"):
        pass
    copy = tmp_path / "b"
    copy.mkdir()
    (copy / "run.json").write_text((first / "run.json").read_text())
    RunRecord(copy, PipelineConfig(out=str(copy), stages=["report"]))
    doc = json.loads((copy / "run.json").read_text())
    assert doc["config"]["stages"] == ["label", "compare", "report"] and doc["config"]["out"] == str(copy)
    assert set(doc["timings_seconds"]) == {"compare"}
