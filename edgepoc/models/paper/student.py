"""The distilled student (paper §4.4, SPEC §5): same dual-encoder/single-decoder shape, far smaller.

Its forward pass follows the paper step by step: an empty graph of `num_nodes` task nodes goes
through `encoder_gnn` (so each task is encoded from its own features only: no message passing,
which is what makes it cheap on an edge node), the providers go through `encoder_rnn`, the RNN
output is expanded to every task, concatenated with the task encodings and fed to `decoder`.
The task features are the teacher's (including the queue-state columns when the teacher has
them), so the student keeps what the teacher knew about congestion, without the graph.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torch_geometric.data import Batch, Data

from edgepoc.models.paper.allocation import ModelConfig, make_decoder
from edgepoc.models.gnn import GNNModel
from edgepoc.models.paper.rnn import RNNModel

if TYPE_CHECKING:
    from edgepoc.models.features import FeatureConfig


def student_config(features: FeatureConfig, hidden: int = 16, rnn_hidden: int = 8, decoder_hidden: int = 16,
                   conv: str = "graph", rnn_cell: str = "gru") -> ModelConfig:
    """A student's shape; the size is a setting (`hidden`, `rnn_hidden`, `decoder_hidden`)."""
    return ModelConfig(kind="student", features=features, hidden=hidden, gnn_layers=1, conv=conv,
                       rnn_hidden=rnn_hidden, rnn_cell=rnn_cell, decoder_hidden=decoder_hidden)


class StudentModel(nn.Module):
    """`forward(batch) -> P` (total tasks, K) in [0, 1], like the teacher."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        f = config.features
        self.encoder_gnn = GNNModel(f.node_dim, config.hidden, config.hidden, config.gnn_layers, config.conv)
        self.encoder_rnn = RNNModel(f.provider_dim, config.rnn_hidden, config.rnn_hidden, config.rnn_cell)
        self.decoder = make_decoder(config.hidden + config.rnn_hidden, config.decoder_hidden, f.n_providers)
        self.register_buffer("_no_edges", torch.empty((2, 0), dtype=torch.long), persistent=False)

    def logits(self, data: Data | Batch) -> torch.Tensor:
        encoded_gnn = self.encoder_gnn(data.x, self._no_edges)  # the empty graph of num_nodes tasks
        rnn_output = self.encoder_rnn(data.providers)
        batch = getattr(data, "batch", None)
        expanded = rnn_output[batch] if batch is not None else rnn_output.expand(encoded_gnn.shape[0], -1)
        return self.decoder(torch.cat([encoded_gnn, expanded], dim=1))

    def forward(self, data: Data | Batch) -> torch.Tensor:
        return torch.sigmoid(self.logits(data))
