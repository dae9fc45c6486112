"""Labelled data sets: many instances, each with a label allocation from a solver (SPEC §3).

The on-disk format (columnar shards + a manifest) is implemented here; see `read_dataset`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgepoc.game.instance import Instance


@dataclass
class LabelledInstance:
    """An instance and its label: the allocation a solver found, its total delay and how."""

    instance: Instance
    assignment: np.ndarray | None = None  # (n,) int64, the label x*
    total_latency: float | None = None  # f(x*)
    meta: dict[str, Any] = field(default_factory=dict)  # method, settings, seed, seconds
