"""Distillation lowers the loss; the student is small, bounded, and stands alone."""

from __future__ import annotations

import shutil

import pytest
import torch

from edgepoc.errors import EdgepocError
from edgepoc.game.generators import generate
from edgepoc.models.checkpoint import load_model
from edgepoc.models.paper.distill import DistillConfig, distill, distillation_loss
from edgepoc.models.paper.logs import read_distill_log
from edgepoc.models.solve import model_probabilities
from edgepoc.solvers.registry import SolveOptions, solve


@pytest.fixture(scope="module")
def student_run(tmp_path_factory, teacher_run, labelled_sets):
    run = tmp_path_factory.mktemp("student-run")
    train, test = labelled_sets
    summary = distill(teacher_run / "best.pt", train, test,
                      DistillConfig(epochs=25, batch_size=2, patience=100, threads=1), run, show_progress=False)
    return run, summary


def test_distillation_lowers_loss(student_run):
    run, summary = student_run
    rows = read_distill_log(run)
    assert rows[-1]["train_loss"] < 0.7 * rows[0]["train_loss"]
    assert rows[-1]["test_agreement"] > rows[0]["test_agreement"]
    assert summary["params"] < 0.25 * summary["teacher_params"]


def test_student_outputs_in_unit_interval(student_run):
    run, _ = student_run
    model, _ = load_model(run / "best.pt", expect_kind="student")
    p = model_probabilities(model, generate("paper", 7, 1, n_tasks=200)[0])
    assert p.shape == (200, 3) and (p >= 0).all() and (p <= 1).all()


def test_student_loads_without_teacher(student_run, tmp_path):
    run, _ = student_run
    alone = tmp_path / "student.pt"
    shutil.copy(run / "best.pt", alone)  # nothing else beside it
    inst = generate("paper", 8, 1, n_tasks=80)[0]
    res = solve(inst, "student", SolveOptions(model=str(alone), params={"decode": "argmax"}))
    assert res.assignment.shape == (80,)


def test_student_with_mismatched_shapes_is_clear_error(student_run, tmp_path):
    run, _ = student_run
    doc = torch.load(run / "best.pt", weights_only=True)
    doc["config"]["features"]["n_providers"] = 4  # decoder would need 4 outputs
    torch.save(doc, tmp_path / "bad.pt")
    with pytest.raises(EdgepocError, match="do not match its config"):
        load_model(tmp_path / "bad.pt")
    model, _ = load_model(run / "best.pt")
    with pytest.raises(EdgepocError, match="checkpoint is for 3 providers"):
        model_probabilities(model, generate("paper", 0, 1, n_tasks=10, providers=2)[0])


def test_teacher_of_wrong_kind_is_rejected(student_run, labelled_sets, tmp_path):
    run, _ = student_run
    train, test = labelled_sets
    with pytest.raises(EdgepocError, match="holds a student, expected a teacher"):
        distill(run / "best.pt", train, test, DistillConfig(epochs=1), tmp_path, show_progress=False)


def test_distillation_loss_mixes_terms():
    s = torch.randn(10, 3)
    y = torch.nn.functional.one_hot(torch.arange(10) % 3, 3).float()
    only_labels = distillation_loss(s, torch.randn(10, 3), y, 0.0, 2.0)
    assert torch.isclose(only_labels, torch.nn.functional.mse_loss(torch.sigmoid(s), y))
    assert float(distillation_loss(s, s, y, 1.0, 2.0)) == pytest.approx(0.0, abs=1e-6)
