"""`ResourceAllocationModel` (paper §3, Fig. 2): GNN and RNN encoders, one decoder.

Every task's GNN embedding is concatenated with the providers' RNN state (broadcast to the
tasks of its own instance through the PyG batch vector, so instances of different sizes mix in
one mini-batch without padding); the decoder maps that to `P_i = sigmoid(...)` over the K
providers. The action of task i is `argmax_k P_ik`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch_geometric.data import Batch, Data

from edgepoc.models.features import FeatureConfig
from edgepoc.models.gnn import GNNModel
from edgepoc.models.paper.rnn import RNNModel


@dataclass
class ModelConfig:
    """Shape of a teacher (or, with `kind="student"`, of a student); stored in its checkpoint."""

    kind: str = "teacher"
    features: FeatureConfig = field(default_factory=FeatureConfig)
    hidden: int = 96
    gnn_layers: int = 3
    conv: str = "graph"
    rnn_hidden: int = 32
    rnn_cell: str = "gru"
    decoder_hidden: int = 96  # 0: the paper's single linear layer

    def to_dict(self) -> dict:
        d = asdict(self)
        d["features"] = self.features.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        d = dict(d)
        d["features"] = FeatureConfig(**d.get("features", {}))
        return cls(**d)


def make_decoder(in_dim: int, hidden: int, k: int) -> nn.Module:
    """Linear (+ optional hidden layer) to K logits; the sigmoid is applied by the model."""
    if hidden <= 0:
        return nn.Linear(in_dim, k)
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, k))


class ResourceAllocationModel(nn.Module):
    """The teacher: `forward(batch) -> P` of shape (total tasks, K), values in [0, 1]."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        f = config.features
        self.gnn = GNNModel(f.node_dim, config.hidden, config.hidden, config.gnn_layers, config.conv)
        self.rnn = RNNModel(f.provider_dim, config.rnn_hidden, config.rnn_hidden, config.rnn_cell)
        self.decoder = make_decoder(config.hidden + config.rnn_hidden, config.decoder_hidden, f.n_providers)

    def logits(self, data: Data | Batch) -> torch.Tensor:
        nodes = self.gnn(data.x, data.edge_index)
        market = self.rnn(data.providers)
        batch = getattr(data, "batch", None)
        expanded = market[batch] if batch is not None else market.expand(nodes.shape[0], -1)
        return self.decoder(torch.cat([nodes, expanded], dim=1))

    def forward(self, data: Data | Batch) -> torch.Tensor:
        return torch.sigmoid(self.logits(data))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
