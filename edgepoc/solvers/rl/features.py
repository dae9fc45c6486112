"""What a dispatcher sees when task `i` arrives: the task and every provider's queue, relative to `a_i`.

All times are divided by the instance's typical processing time (its mean `p_ik`), so one policy
serves instances of any time scale. The column `finish` is the task's latency if it were sent to
that provider now — the quantity greedy (earliest completion) minimises — so a learner can find
the greedy rule and then try to improve on it with the look-ahead columns.
"""

from __future__ import annotations

import numpy as np

from edgepoc.game.instance import Instance
from edgepoc.models.general.decode import time_scale  # noqa: F401  (the one typical-time rule; re-exported)

PROVIDER_COLUMNS = ("backlog", "processing", "delay", "finish", "finish_minus_best")
TASK_COLUMNS = ("next_gap", "mean_demand")
FEATURE_CLIP = 50.0


def dispatch_provider_features(instance: Instance, i: int, free: np.ndarray, scale: float) -> np.ndarray:
    """(K, 5) float32: backlog past the arrival, processing time, network delay, finish latency, and
    finish latency minus the best provider's, for task `i` given the providers' free times `free`."""
    a = instance.arrival[i]
    ready = instance.ready[i]
    proc = instance.processing[i]
    finish = np.maximum(ready, free) + proc - a
    cols = np.empty((instance.n_providers, len(PROVIDER_COLUMNS)), dtype=np.float64)
    cols[:, 0] = np.maximum(free - a, 0.0)
    cols[:, 1] = proc
    cols[:, 2] = ready - a
    cols[:, 3] = finish
    cols[:, 4] = finish - finish.min()
    return np.clip(cols / scale, 0.0, FEATURE_CLIP).astype(np.float32)


def dispatch_task_features(instance: Instance, i: int, scale: float) -> np.ndarray:
    """(2,) float32: time to the next arrival (look-ahead) and the task's mean demand."""
    gap = instance.arrival[i + 1] - instance.arrival[i] if i + 1 < instance.n_tasks else 0.0
    return np.clip(np.array([gap / scale, instance.demand[i].mean()], dtype=np.float64),
                   0.0, FEATURE_CLIP).astype(np.float32)


def observation_size(n_providers: int) -> int:
    return n_providers * len(PROVIDER_COLUMNS) + len(TASK_COLUMNS)


def dispatch_observation(instance: Instance, i: int, free: np.ndarray, scale: float) -> np.ndarray:
    """The flat observation of the single-agent dispatcher."""
    return np.concatenate([dispatch_provider_features(instance, i, free, scale).ravel(), dispatch_task_features(instance, i, scale)])
