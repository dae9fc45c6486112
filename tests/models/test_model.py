"""Shapes and batching, loss decrease, diversity, features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from edgepoc.errors import EdgepocError
from edgepoc.game.generators import generate
from edgepoc.models.paper.allocation import ResourceAllocationModel
from edgepoc.models.checkpoint import build_model
from edgepoc.models.paper.evaluation import prepare
from edgepoc.models.features import FeatureConfig, node_features, to_graph, window_edges
from edgepoc.models.metrics import diversity, diversity_bruteforce
from edgepoc.models.paper.student import student_config
from edgepoc.models.paper.logs import read_log
from edgepoc.models.paper.train import TrainConfig, train_model

from tests.models.conftest import SMALL_TEACHER, small_sets


@pytest.mark.parametrize("kind", ["teacher", "student"])
def test_mixed_size_batch_equals_single_graphs(kind):
    torch.manual_seed(0)
    cfg = SMALL_TEACHER if kind == "teacher" else student_config(SMALL_TEACHER.features)
    model = build_model(cfg).eval()
    sizes = [7, 40, 1, 23]
    insts = [generate("paper", 9, 1, start_index=i, n_tasks=n)[0] for i, n in enumerate(sizes)]
    graphs = [to_graph(inst, cfg.features) for inst in insts]
    batch = Batch.from_data_list(graphs)
    with torch.no_grad():
        p = model(batch)
        assert p.shape == (sum(sizes), 3)
        assert bool(((p >= 0) & (p <= 1)).all())
        for g, graph in enumerate(graphs):  # no message or state leaks across instances in a batch
            alone = model(graph)
            assert torch.allclose(p[batch.ptr[g]:batch.ptr[g + 1]], alone, atol=1e-5)


def test_graphconv_and_gcn_both_build():
    for conv in ("graph", "gcn"):
        cfg = SMALL_TEACHER.__class__(**{**SMALL_TEACHER.__dict__, "conv": conv})
        model = ResourceAllocationModel(cfg)
        g = to_graph(generate("paper", 0, 1, n_tasks=12)[0], cfg.features)
        assert model(g).shape == (12, 3)


def test_window_edges_rule():
    e = window_edges(5, 2).numpy()
    pairs = set(map(tuple, e.T))
    assert (0, 1) in pairs and (1, 0) in pairs and (0, 2) in pairs and (0, 3) not in pairs
    assert e.shape[1] == 2 * (4 + 3)
    assert window_edges(5, 0).shape == (2, 0)


def test_features_are_finite_and_sized():
    inst = generate("paper", 1, 1, n_tasks=50)[0]
    for queue in (True, False):
        cfg = FeatureConfig(3, 2, 2, queue)
        x = node_features(inst, cfg)
        assert x.shape == (50, cfg.node_dim) and np.isfinite(x).all()


def test_wrong_provider_count_is_clear_error():
    inst = generate("paper", 1, 1, n_tasks=20, providers=4)[0]
    with pytest.raises(EdgepocError, match="checkpoint is for 3 providers"):
        to_graph(inst, FeatureConfig(3, 2))


def test_loss_decreases_quickly(tmp_path):
    train, test = small_sets(n_tasks=40, count=4, test_count=1, seed=11)
    cfg = TrainConfig(model=SMALL_TEACHER, epochs=30, batch_size=1, patience=100, threads=1)
    summary = train_model(train, test, cfg, tmp_path, show_progress=False)
    rows = read_log(tmp_path)
    assert len(rows) == 30 and summary["seconds"] < 30
    assert rows[-1]["train_loss"] < 0.6 * rows[0]["train_loss"]
    assert rows[-1]["train_accuracy"] > rows[0]["train_accuracy"]


def test_resume_continues_the_log(tmp_path):
    train, test = small_sets(n_tasks=30, count=2, test_count=1, seed=5)
    cfg = TrainConfig(model=SMALL_TEACHER, epochs=3, batch_size=1, patience=100, threads=1)
    train_model(train, test, cfg, tmp_path, show_progress=False)
    cfg.epochs = 5
    train_model(train, test, cfg, tmp_path, resume=True, show_progress=False)
    assert [r["epoch"] for r in read_log(tmp_path)] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("n", [2, 3, 57, 300])
def test_diversity_matches_bruteforce(n):
    p = np.random.default_rng(n).random((n, 3))
    assert diversity(p) == pytest.approx(diversity_bruteforce(p), rel=1e-12)
    assert diversity(p, chunk=7) == pytest.approx(diversity_bruteforce(p), rel=1e-12)


def test_diversity_degenerate():
    assert diversity(np.ones((10, 3)) * 0.3) == 0.0
    assert diversity(np.ones((1, 3))) == 0.0
    # two opposite one-hot vectors: distance sqrt(2)
    assert diversity(np.array([[1.0, 0, 0], [0, 1.0, 0]])) == pytest.approx(np.sqrt(2))


def test_evaluation_label_delay_is_resimulated(labelled_sets):
    train, _ = labelled_sets
    prep = prepare(train, SMALL_TEACHER.features)
    assert prep.label_delays == pytest.approx([it.total_latency for it in train])
