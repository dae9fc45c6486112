"""The general allocation model: one network for every market (any number of providers and tasks, 1-4 resources;
trained on 2-12 providers, and past that the decoder shortlists: `decode.SHORTLIST`).

The paper's shape, made size-free and queue-aware:

* `GNNModel` (the paper's task encoder, PyG `GraphConv`) over the tasks, linked to their arrival-order
  neighbours, from task features that do not depend on K or R (`task_features`);
* `ProviderSetEncoder` (a set encoder in place of the paper's RNN: a market has no provider order)
  over per-provider features (`provider_features`);
* `GeneralAllocationModel` (the `ResourceAllocationModel` of this variant) combines them with per-pair
  features (`pair_features`: p_ik, delta_ik, relative speed) into a static pair embedding `E` (n, K, H)
  and owns the small dynamic head that scores each (task, provider) pair step by step on the live
  queues (`edgepoc.models.general.decode`, where the head is run compiled in float64).

The same class with `gnn_layers=0` and small widths is the student (each task encoded from its own
features only, like the paper's student). The config, the features and the exact float64 forward pass
that decoding uses live in `edgepoc.models.general.portable` (NumPy only: what an edge node runs without torch);
this module is the trainable torch form. The paper's fixed-K variant (`ResourceAllocationModel`)
stays for the reproduction of Fig. 4-17.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgepoc.game.instance import Instance
from edgepoc.models.features import window_edges
from edgepoc.models.gnn import GNNModel
from edgepoc.models.general.decode import N_DYN, PILOT_INDEX, Head
from edgepoc.models.general.portable import (PAIR_DIM, PROVIDER_DIM, TASK_DIM, GeneralConfig, as_portable,  # noqa: F401
                                     pair_features, provider_features, student_general_config, task_features)


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
        if c.gate:  # the linear term's weights per pair: c + V E_ik (starts at zero: the plain prior)
            self.head_v = nn.Parameter(torch.zeros(N_DYN, c.head_hidden))

    def inputs(self, inst: Instance) -> dict[str, torch.Tensor]:
        r = self.config.time_scale
        return {"tasks": torch.from_numpy(task_features(inst, r)),
                "edges": window_edges(inst.n_tasks, self.config.edge_window),
                "providers": torch.from_numpy(provider_features(inst, r)),
                "pairs": torch.from_numpy(pair_features(inst, r))}

    def embed_inputs(self, tasks: torch.Tensor, edges: torch.Tensor, providers: torch.Tensor,
                     pairs: torch.Tensor) -> torch.Tensor:
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
        t = dyn if self.config.dyn_input == "linear" else torch.sign(dyn) * torch.log1p(dyn.abs())
        z = torch.tanh(self.head_gain * emb + t @ self.head_a.T + self.head_b)
        if self.config.gate:
            return z @ self.head_w + (dyn * (self.head_c + emb @ self.head_v.T)).sum(-1)
        return z @ self.head_w + dyn @ self.head_c

    def head(self) -> Head:
        """The head's weights as float64 arrays for the compiled decoder."""
        f = lambda t: t.detach().double().numpy().copy()  # noqa: E731
        return Head(f(self.head_a), f(self.head_b), f(self.head_w), f(self.head_c),
                    float(self.head_gain.detach()), self.config.horizon, self.config.time_scale,
                    self.config.dyn_input, self.config.pilot, f(self.head_v) if self.config.gate else None)

    def set_head(self, head: Head) -> None:
        with torch.no_grad():
            for p, v in ((self.head_a, head.a), (self.head_b, head.b), (self.head_w, head.w), (self.head_c, head.c)):
                p.copy_(torch.as_tensor(v, dtype=p.dtype))
            self.head_gain.fill_(head.gain)
            if self.config.gate:
                self.head_v.copy_(torch.as_tensor(head.gate(), dtype=self.head_v.dtype))


def embedding(model: GeneralAllocationModel, inst: Instance, exact: bool = True) -> np.ndarray:
    """E (n, K, H) for the decoder. `exact`: the float64 forward pass of `edgepoc.models.general.portable` (the one
    every node runs, torch or not) on the model's weights as they are now; training passes `exact=False`
    (torch, float32, differentiable code path)."""
    if exact:
        return as_portable(model).embed(inst)
    with torch.no_grad():
        return model.embed(inst).double().numpy()
