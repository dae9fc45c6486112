"""Checkpoints: same outputs after a round trip; corrupt or mismatched files are one-line errors."""

from __future__ import annotations

import pytest
import torch

from edgepoc.errors import EdgepocError
from edgepoc.game.generators import generate
from edgepoc.models.checkpoint import build_model, load_model, save_checkpoint
from edgepoc.models.features import to_graph
from edgepoc.models.solve import model_probabilities
from edgepoc.models.paper.student import student_config

from tests.models.conftest import SMALL_TEACHER


@pytest.mark.parametrize("kind", ["teacher", "student"])
def test_round_trip_same_outputs(tmp_path, kind):
    torch.manual_seed(1)
    cfg = SMALL_TEACHER if kind == "teacher" else student_config(SMALL_TEACHER.features)
    model = build_model(cfg).eval()
    path = save_checkpoint(tmp_path / "m.pt", model, {"note": "x"})
    loaded, doc = load_model(path, expect_kind=kind)
    g = to_graph(generate("paper", 2, 1, n_tasks=33)[0], cfg.features)
    with torch.no_grad():
        assert torch.equal(model(g), loaded(g))
    assert doc["meta"]["note"] == "x"


def test_corrupt_files_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(EdgepocError, match="not a readable checkpoint"):
        load_model(bad)
    good = save_checkpoint(tmp_path / "good.pt", build_model(SMALL_TEACHER))
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(good.read_bytes()[:500])
    with pytest.raises(EdgepocError, match="not a readable checkpoint"):
        load_model(trunc)
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(EdgepocError, match="is not an edgepoc-model/1"):
        load_model(tmp_path / "other.pt")
    with pytest.raises(EdgepocError, match="does not exist"):
        load_model(tmp_path / "missing.pt")
    with pytest.raises(EdgepocError, match="is a folder, expected a checkpoint file"):
        load_model(tmp_path)


def test_mismatched_weights_are_clear_error(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", build_model(SMALL_TEACHER))
    doc = torch.load(path, weights_only=True)
    doc["config"]["hidden"] = 64  # weights no longer fit the config
    torch.save(doc, path)
    with pytest.raises(EdgepocError, match="do not match its config"):
        load_model(path)


def test_wrong_kind_and_wrong_provider_count(tmp_path):
    path = save_checkpoint(tmp_path / "t.pt", build_model(SMALL_TEACHER))
    with pytest.raises(EdgepocError, match="holds a teacher, expected a student"):
        load_model(path, expect_kind="student")
    model, _ = load_model(path)
    four = generate("paper", 0, 1, n_tasks=10, providers=4)[0]
    with pytest.raises(EdgepocError, match="checkpoint is for 3 providers, instance .* has 4") as err:
        model_probabilities(model, four)
    assert "\n" not in str(err.value)
