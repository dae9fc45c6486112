"""`GNNModel` (paper §3): graph convolutions over the task graph, then a fully connected layer."""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import GCNConv, GraphConv

from edgepoc.errors import InputError

CONVS = {"graph": GraphConv, "gcn": GCNConv}


class GNNModel(nn.Module):
    """Node features `x` + edges `g` -> node embeddings.

    `conv="graph"` (PyG `GraphConv`: separate self weight, unnormalised neighbour sum, so how
    crowded a task's neighbourhood is survives) or `conv="gcn"` (`GCNConv`, degree-normalised).
    Both are kept so the choice can be measured; see docs/models.md.
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, layers: int = 2, conv: str = "graph"):
        super().__init__()
        if conv not in CONVS:
            raise InputError(f"conv: expected one of {sorted(CONVS)}, got {conv!r}")
        if layers < 1:
            raise InputError(f"gnn_layers: must be >= 1, got {layers}")
        dims = [in_dim] + [hidden] * layers
        self.convs = nn.ModuleList(CONVS[conv](dims[i], dims[i + 1]) for i in range(layers))
        self.fc = nn.Linear(hidden, out_dim)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        h = x
        for conv in self.convs:
            h = torch.relu(conv(h, edge_index))
        return torch.relu(self.fc(h))
