"""`RNNModel` (paper §3): a recurrent layer over a sequence, then a fully connected layer."""

from __future__ import annotations

import torch
from torch import nn

from edgepoc.errors import InputError

CELLS = {"gru": nn.GRU, "lstm": nn.LSTM, "rnn": nn.RNN}


class RNNModel(nn.Module):
    """Sequence (B, L, in_dim) -> final hidden state through a linear layer, (B, out_dim).

    Here the sequence is the providers' resource vectors in provider order, so the state
    summarises the whole market the tasks are being offered to.
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, cell: str = "gru"):
        super().__init__()
        if cell not in CELLS:
            raise InputError(f"rnn_cell: expected one of {sorted(CELLS)}, got {cell!r}")
        self.rnn = CELLS[cell](in_dim, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, out_dim)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        _, h = self.rnn(seq)
        if isinstance(h, tuple):  # LSTM returns (h, c)
            h = h[0]
        return torch.relu(self.fc(h[-1]))
