"""A tiny teacher trained once per test session (greedy labels: fast and deterministic)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgepoc.models.paper.allocation import ModelConfig
from edgepoc.models.data import generated_labelled
from edgepoc.models.features import FeatureConfig
from edgepoc.models.paper.train import TrainConfig, train_model


def small_sets(n_tasks: int = 60, count: int = 6, test_count: int = 2, seed: int = 3):
    train = generated_labelled("paper", seed, count, labeler="greedy", n_tasks=n_tasks)
    test = generated_labelled("paper", seed + 1, test_count, labeler="greedy", n_tasks=n_tasks)
    return train, test


SMALL_TEACHER = ModelConfig("teacher", FeatureConfig(3, 2, 2, True), hidden=32, gnn_layers=2, rnn_hidden=16,
                            decoder_hidden=32)


@pytest.fixture(scope="session")
def labelled_sets():
    return small_sets()


@pytest.fixture(scope="session")
def teacher_run(tmp_path_factory, labelled_sets) -> Path:
    run = tmp_path_factory.mktemp("teacher-run")
    train, test = labelled_sets
    cfg = TrainConfig(model=SMALL_TEACHER, epochs=25, batch_size=2, patience=100, threads=1, select_on="loss")
    train_model(train, test, cfg, run, show_progress=False)
    return run
