"""Per-epoch evaluation shared by training and distillation: loss, delay, gap, accuracy, D."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn
from torch_geometric.data import Batch, Data

from edgepoc.game.dataset import LabelledInstance
from edgepoc.game.instance import Instance
from edgepoc.game.kernel import simulate_population
from edgepoc.game.validate import ASSIGNMENT_DTYPE
from edgepoc.models.data import label_latency
from edgepoc.models.decoding import DEFAULT_LAMBDAS
from edgepoc.models.paper.decode import guided_candidates
from edgepoc.models.features import FeatureConfig, to_graph
from edgepoc.models.metrics import accuracy, diversity


@dataclass
class Prepared:
    """A labelled set turned into graphs once, with what evaluation needs beside them."""

    graphs: list[Data]
    instances: list[Instance]
    labels: list[np.ndarray]
    label_delays: np.ndarray

    def __len__(self) -> int:
        return len(self.graphs)


def prepare(items: list[LabelledInstance], features: FeatureConfig) -> Prepared:
    graphs = [to_graph(it.instance, features, np.asarray(it.assignment)) for it in items]
    return Prepared(graphs, [it.instance for it in items], [np.asarray(it.assignment, dtype=np.int64) for it in items],
                    np.array([label_latency(it) for it in items], dtype=np.float64))


def batches(graphs: list[Data], size: int, order: np.ndarray | None = None) -> Iterator[Batch]:
    idx = np.arange(len(graphs)) if order is None else order
    for s in range(0, len(idx), size):
        yield Batch.from_data_list([graphs[i] for i in idx[s:s + size]])


@torch.no_grad()
def predict(model: nn.Module, graphs: list[Data], batch_size: int = 16) -> list[np.ndarray]:
    """`P` per graph (numpy, (n_g, K))."""
    model.eval()
    out = []
    for b in batches(graphs, batch_size):
        p = model(b)
        out += [p[b.ptr[g]:b.ptr[g + 1]].numpy() for g in range(b.num_graphs)]
    return out


def loss_fn(name: str) -> Callable[[nn.Module, Batch], torch.Tensor]:
    """Paper Eq. 4 (MSE of sigmoid outputs against one-hot labels), or cross-entropy on the logits."""
    if name == "mse":
        return lambda model, b: torch.nn.functional.mse_loss(torch.sigmoid(model.logits(b)), b.y)
    if name == "ce":
        return lambda model, b: torch.nn.functional.cross_entropy(model.logits(b), b.label)
    raise ValueError(name)


def argmax_delays(data: Prepared, probs: list[np.ndarray]) -> np.ndarray:
    """Total delay of each instance's argmax allocation."""
    return np.array([simulate_population(inst, p.argmax(axis=1)[None].astype(ASSIGNMENT_DTYPE), checked=False)[0]
                     for inst, p in zip(data.instances, probs)])


def guided_delays(data: Prepared, probs: list[np.ndarray]) -> np.ndarray:
    """Best total delay over the guided decoder's candidates, WITHOUT the greedy one, per instance:
    a cheap, deterministic measure of how much the model's P helps decoding."""
    lambdas = tuple(v for v in DEFAULT_LAMBDAS if v < 1e8)
    return np.array([simulate_population(inst, guided_candidates(inst, p, lambdas), checked=False).min()
                     for inst, p in zip(data.instances, probs)])


def evaluate(model: nn.Module, data: Prepared, loss: str = "mse", batch_size: int = 16) -> dict[str, float]:
    """Mean over instances: loss, argmax total delay, guided-decoded delay (best of the model's
    lambda candidates, greedy excluded), label delay, gap % (argmax), accuracy, D."""
    fn = loss_fn(loss)
    losses, weights = [], []
    with torch.no_grad():
        model.eval()
        for b in batches(data.graphs, batch_size):
            losses.append(float(fn(model, b)))
            weights.append(b.num_nodes)
    probs = predict(model, data.graphs, batch_size)
    delays = argmax_delays(data, probs)
    guided = guided_delays(data, probs)
    return {
        "loss": float(np.average(losses, weights=weights)),
        "delay": float(delays.mean()),
        "guided_delay": float(guided.mean()),
        "label_delay": float(data.label_delays.mean()),
        "gap_pct": float(100.0 * np.mean(delays / data.label_delays - 1.0)),
        "accuracy": float(np.mean([accuracy(p.argmax(axis=1), y) for p, y in zip(probs, data.labels)])),
        "diversity": float(np.mean([diversity(p) for p in probs])),
    }
