"""Instance -> model inputs: a PyG graph of tasks and the providers' resource vectors (SPEC §4).

Node features (one row per task, all made unit-free by dividing times by the instance's mean
processing time so instances of any load and size look alike):

* demand `d_i` (R), per-provider processing time `p_ik` (K), per-provider delay `delta_ik` (K),
  inter-arrival gap (1) and arrival position in the round (1);
* optionally (`queue_features`, off unless asked for): the queue each provider would have when
  task `i` arrives if the earlier tasks were dispatched by earliest completion time, as waiting
  time (K) and as completion-time regret against the best provider (K), from the shared kernel
  (`greedy_assignment` + `simulate_state`). The bundled teacher uses them: on the `paper` preset
  its guided delay (no search) is slightly better with them; after the `search` decoder the
  difference is within noise (docs/models.md, ablations).

Edges link tasks whose queues interact: each task to its `edge_window` predecessors and
successors in arrival order (both directions). `edge_window=0` gives the empty graph.

The provider sequence (the RNN's input) holds, per provider: capacity (R), delay and service rate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import torch
from torch_geometric.data import Data

from edgepoc.errors import InputError
from edgepoc.game.instance import Instance
from edgepoc.game.kernel import greedy_assignment, simulate_state


@dataclass(frozen=True)
class FeatureConfig:
    """How an instance becomes a graph; stored in every checkpoint so inference matches training."""

    n_providers: int = 3
    n_resources: int = 2
    edge_window: int = 2
    queue_features: bool = False

    @property
    def node_dim(self) -> int:
        k, r = self.n_providers, self.n_resources
        return r + 2 * k + 2 + (2 * k if self.queue_features else 0)

    @property
    def provider_dim(self) -> int:
        return self.n_resources + 2

    def to_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=64)
def window_edges(n: int, window: int) -> torch.Tensor:
    """Edge index (2, E) linking each task to its `window` neighbours on both sides."""
    if window <= 0 or n < 2:
        return torch.empty((2, 0), dtype=torch.long)
    src, dst = [], []
    base = np.arange(n)
    for off in range(1, window + 1):
        a = base[:-off] if off < n else base[:0]
        src += [a, a + off]
        dst += [a + off, a]
    return torch.from_numpy(np.stack([np.concatenate(src), np.concatenate(dst)])).long()


def _greedy_queue_state(inst: Instance, free_times: np.ndarray | None) -> np.ndarray:
    """Provider free times seen by each task under earliest-completion dispatch, shape (n, K)."""
    free0 = np.zeros(inst.n_providers) if free_times is None else np.asarray(free_times, dtype=np.float64)
    x, _ = greedy_assignment(inst, free0)
    _, completion, _ = simulate_state(inst, x, free0)
    n, k = inst.n_tasks, inst.n_providers
    idx = np.arange(n)
    free_before = np.empty((n, k))
    for j in range(k):
        last = np.maximum.accumulate(np.where(x == j, idx, -1))
        prev = np.concatenate([[-1], last[:-1]])
        free_before[:, j] = np.where(prev >= 0, completion[np.maximum(prev, 0)], free0[j])
    return free_before


def check_instance(inst: Instance, cfg: FeatureConfig) -> None:
    """A model is built for a fixed provider and resource count: say so clearly when they differ."""
    if inst.n_providers != cfg.n_providers:
        raise InputError(
            f"model: checkpoint is for {cfg.n_providers} providers, instance {inst.name!r} has {inst.n_providers}")
    if inst.n_resources != cfg.n_resources:
        raise InputError(
            f"model: checkpoint is for {cfg.n_resources} resource types, instance {inst.name!r} has {inst.n_resources}")


def node_features(inst: Instance, cfg: FeatureConfig, free_times: np.ndarray | None = None) -> np.ndarray:
    """Normalised task attributes, shape (n, cfg.node_dim), float32."""
    check_instance(inst, cfg)
    n = inst.n_tasks
    scale = float(inst.processing.mean()) or 1.0
    gap = np.diff(inst.arrival, prepend=inst.arrival[0]) / scale
    span = float(inst.arrival[-1] - inst.arrival[0]) if n > 1 else 0.0
    position = (inst.arrival - inst.arrival[0]) / span if span > 0 else np.zeros(n)
    cols = [inst.demand, inst.processing / scale, inst.delays / scale, gap[:, None], position[:, None]]
    if cfg.queue_features:
        free_before = _greedy_queue_state(inst, free_times)
        start = np.maximum(inst.ready, free_before)
        wait = (start - inst.ready) / scale
        finish = start + inst.processing
        regret = (finish - finish.min(axis=1, keepdims=True)) / scale
        cols += [np.log1p(wait), np.log1p(regret)]
    return np.ascontiguousarray(np.concatenate(cols, axis=1), dtype=np.float32)


def paper_provider_features(inst: Instance, cfg: FeatureConfig) -> np.ndarray:
    """The providers' resource vectors as a sequence, shape (K, cfg.provider_dim), float32."""
    check_instance(inst, cfg)
    scale = float(inst.processing.mean()) or 1.0
    rate = scale / inst.processing.mean(axis=0)  # relative service rate
    cap = inst.capacity / inst.capacity.mean()
    return np.concatenate([cap, inst.provider_delay[:, None] / scale, rate[:, None]], axis=1).astype(np.float32)


def to_graph(inst: Instance, cfg: FeatureConfig, label: np.ndarray | None = None,
             free_times: np.ndarray | None = None) -> Data:
    """One instance as a PyG `Data`; `label` (n,) adds the one-hot target `y` and `label`."""
    data = Data(
        x=torch.from_numpy(node_features(inst, cfg, free_times)),
        edge_index=window_edges(inst.n_tasks, cfg.edge_window),
        providers=torch.from_numpy(paper_provider_features(inst, cfg)).unsqueeze(0),
        num_nodes=inst.n_tasks,
    )
    if label is not None:
        lab = torch.as_tensor(np.asarray(label), dtype=torch.long)
        if lab.shape != (inst.n_tasks,):
            raise InputError(f"label: expected {inst.n_tasks} provider indices, got shape {tuple(lab.shape)}")
        data.label = lab
        data.y = torch.nn.functional.one_hot(lab, cfg.n_providers).float()
    return data
