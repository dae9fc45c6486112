"""The general allocation model: one network for every market (2-16 providers, 1-4 resources, any size).

The paper's shape, made size-free and queue-aware:

* `GNNModel` (the paper's task encoder, PyG `GraphConv`) over the tasks, linked to their arrival-order
  neighbours, from task features that do not depend on K or R (`task_features`);
* `ProviderSetEncoder` (a set encoder in place of the paper's RNN: a market has no provider order)
  over per-provider features (`provider_features`);
* `GeneralAllocationModel` (the `ResourceAllocationModel` of this variant) combines them with per-pair
  features (`pair_features`: p_ik, delta_ik, relative speed) into a static pair embedding `E` (n, K, H)
  and owns the small dynamic head that scores each (task, provider) pair step by step on the live
  queues (`edgepoc.models.onepass`, where the head is run compiled in float64).

The same class with `gnn_layers=0` and small widths is the student (each task encoded from its own
features only, like the paper's student). The paper's fixed-K variant (`ResourceAllocationModel`)
stays for the reproduction of Fig. 4-17.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from edgepoc.game.instance import Instance
from edgepoc.models.features import window_edges
from edgepoc.models.gnn import GNNModel
from edgepoc.models.onepass import DEFAULT_HORIZON, N_DYN, PILOT_INDEX, Head, time_scale

TASK_DIM = 11
PROVIDER_DIM = 6
PAIR_DIM = 5


@dataclass
class GeneralConfig:
    """Shape of a general teacher or student; stored in its checkpoint (`variant: general`)."""

    kind: str = "teacher"
    hidden: int = 64  # task encoder width
    gnn_layers: int = 3  # 0: no message passing (the student)
    edge_window: int = 3
    provider_hidden: int = 32
    pair_hidden: int = 64
    head_hidden: int = 16
    horizon: int = DEFAULT_HORIZON
    variant: str = "general"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GeneralConfig":
        return cls(**d)


def student_general_config(hidden: int = 12, provider_hidden: int = 8, pair_hidden: int = 16,
                           head_hidden: int = 8) -> GeneralConfig:
    return GeneralConfig(kind="student", hidden=hidden, gnn_layers=0, edge_window=0, provider_hidden=provider_hidden,
                         pair_hidden=pair_hidden, head_hidden=head_hidden)


def task_features(inst: Instance) -> np.ndarray:
    """(n, TASK_DIM) float32, unit-free (times / mean processing time), no K or R in the shape."""
    n = inst.n_tasks
    scale = time_scale(inst)
    p = inst.processing / scale
    d = inst.delays / scale
    a = inst.arrival / scale
    prev_gap = np.diff(a, prepend=a[0]) if n else a
    next_gap = np.append(np.diff(a), 0.0) if n else a
    ahead = np.minimum(np.arange(n) + 10, n - 1) if n else np.arange(0)
    span10 = (a[ahead] - a) / np.maximum(ahead - np.arange(n), 1) if n else a
    cols = [np.log1p(p.min(1)), np.log1p(p.mean(1)), np.log1p(p.max(1)), d.min(1), d.mean(1),
            np.log1p(prev_gap), np.log1p(next_gap), np.log1p(span10),
            np.log1p(inst.demand.mean(1)), np.log1p(inst.demand.max(1)), np.arange(n) / max(n - 1, 1)]
    return np.ascontiguousarray(np.stack(cols, axis=1), dtype=np.float32)


def provider_features(inst: Instance) -> np.ndarray:
    """(K, PROVIDER_DIM) float32: relative speed, share of the market's rate, delay, capacity shape, 1/K."""
    scale = time_scale(inst)
    k = inst.n_providers
    rate = scale / np.maximum(inst.processing.mean(0), 1e-12)
    cap = inst.capacity / inst.capacity.mean()
    cols = [np.log(rate), rate / rate.sum(), inst.provider_delay / scale, np.log(cap.mean(1)),
            np.log(cap.max(1) / cap.min(1)), np.full(k, 1.0 / k)]
    return np.ascontiguousarray(np.stack(cols, axis=1), dtype=np.float32)


def pair_features(inst: Instance) -> np.ndarray:
    """(n, K, PAIR_DIM) float32: p_ik and delta_ik, each absolute and relative to the task's best provider."""
    scale = time_scale(inst)
    p = inst.processing / scale
    d = inst.delays / scale
    rank = p.argsort(1).argsort(1) / max(inst.n_providers - 1, 1)
    cols = [np.log1p(p), np.log(p / np.maximum(p.min(1, keepdims=True), 1e-12)), d, d - d.min(1, keepdims=True), rank]
    return np.ascontiguousarray(np.stack(cols, axis=2), dtype=np.float32)


class ProviderSetEncoder(nn.Module):
    """DeepSets over providers: each provider's embedding sees itself and the market's mean."""

    def __init__(self, in_dim: int, hidden: int):
        super().__init__()
        self.phi = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU())
        self.rho = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU())

    def forward(self, providers: torch.Tensor) -> torch.Tensor:
        h = self.phi(providers)
        market = h.mean(0, keepdim=True).expand_as(h)
        return self.rho(torch.cat([h, market], dim=1))


class TaskEncoder(nn.Module):
    """The paper's GNN over tasks; with no layers a per-task MLP (the student: no message passing)."""

    def __init__(self, in_dim: int, hidden: int, layers: int):
        super().__init__()
        self.layers = layers
        if layers > 0:
            self.gnn = GNNModel(in_dim, hidden, hidden, layers, "graph")
        else:
            self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        return self.gnn(x, edge_index) if self.layers > 0 else self.mlp(x)


class GeneralAllocationModel(nn.Module):
    """`embed(instance) -> E (n, K, head_hidden)` and the dynamic head (`scores` in torch, `head()` for Numba)."""

    def __init__(self, config: GeneralConfig):
        super().__init__()
        self.config = config
        c = config
        self.tasks = TaskEncoder(TASK_DIM, c.hidden, c.gnn_layers)
        self.providers = ProviderSetEncoder(PROVIDER_DIM, c.provider_hidden)
        self.pair_task = nn.Linear(c.hidden, c.pair_hidden)
        self.pair_provider = nn.Linear(c.provider_hidden, c.pair_hidden, bias=False)
        self.pair_static = nn.Linear(PAIR_DIM, c.pair_hidden, bias=False)
        self.pair_out = nn.Linear(c.pair_hidden, c.head_hidden)
        # dynamic head; starts as the rollout method (score = -pilot regret, corrections zero)
        self.head_a = nn.Parameter(torch.zeros(c.head_hidden, N_DYN))
        self.head_b = nn.Parameter(torch.zeros(c.head_hidden))
        self.head_w = nn.Parameter(torch.zeros(c.head_hidden))
        prior = torch.zeros(N_DYN)
        prior[PILOT_INDEX] = -1.0
        self.head_c = nn.Parameter(prior)
        self.head_gain = nn.Parameter(torch.ones(()))

    def inputs(self, inst: Instance) -> dict[str, torch.Tensor]:
        return {"tasks": torch.from_numpy(task_features(inst)),
                "edges": window_edges(inst.n_tasks, self.config.edge_window),
                "providers": torch.from_numpy(provider_features(inst)),
                "pairs": torch.from_numpy(pair_features(inst))}

    def embed_inputs(self, tasks, edges, providers, pairs) -> torch.Tensor:
        h = self.tasks(tasks, edges)  # (n, hidden)
        g = self.providers(providers)  # (K, provider_hidden)
        z = self.pair_static(pairs)  # (n, K, pair_hidden); in place from here: the (n, K) tensors dominate the cost
        z += self.pair_task(h)[:, None, :]
        z += self.pair_provider(g)[None, :, :]
        return self.pair_out(z.relu_())  # (n, K, head_hidden)

    def embed(self, inst: Instance) -> torch.Tensor:
        return self.embed_inputs(**self.inputs(inst))

    def scores(self, emb: torch.Tensor, dyn: torch.Tensor) -> torch.Tensor:
        """The head in torch (training): emb (n, K, H), dyn (n, K, N_DYN) -> (n, K)."""
        z = torch.tanh(self.head_gain * emb + dyn @ self.head_a.T + self.head_b)
        return z @ self.head_w + dyn @ self.head_c

    def head(self) -> Head:
        """The head's weights as float64 arrays for the compiled decoder."""
        f = lambda t: t.detach().double().numpy().copy()  # noqa: E731
        return Head(f(self.head_a), f(self.head_b), f(self.head_w), f(self.head_c),
                    float(self.head_gain.detach()), self.config.horizon)

    def set_head(self, head: Head) -> None:
        with torch.no_grad():
            for p, v in ((self.head_a, head.a), (self.head_b, head.b), (self.head_w, head.w), (self.head_c, head.c)):
                p.copy_(torch.as_tensor(v, dtype=p.dtype))
            self.head_gain.fill_(head.gain)


_DOUBLE: dict[int, tuple[GeneralAllocationModel, GeneralAllocationModel]] = {}


def embedding(model: GeneralAllocationModel, inst: Instance, exact: bool = True) -> np.ndarray:
    """E (n, K, H) for the decoder. `exact`: computed in float64 (a float64 copy of the model, made once
    per loaded model, so the weights must not change afterwards) so that the nodes' decodes agree;
    training passes `exact=False` (float32, the weights as they are now)."""
    if not exact:
        with torch.no_grad():
            return model.embed(inst).double().numpy()
    entry = _DOUBLE.get(id(model))
    if entry is None or entry[0] is not model:
        import copy

        entry = (model, copy.deepcopy(model).double().eval())
        _DOUBLE.clear()  # at most one at a time: the cached model of a solve, or the one being trained
        _DOUBLE[id(model)] = entry
    d = entry[1]
    inputs = {k: (v.double() if v.is_floating_point() else v) for k, v in d.inputs(inst).items()}
    with torch.inference_mode():
        return d.embed_inputs(**inputs).numpy()
