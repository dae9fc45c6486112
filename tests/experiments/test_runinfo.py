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
