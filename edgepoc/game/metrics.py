"""What users read about an allocation: delays, latency percentiles, utilisation and fairness."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from edgepoc.game.instance import Instance
from edgepoc.game.kernel import simulate_state

if TYPE_CHECKING:
    from numpy.typing import ArrayLike


def jain_index(values: np.ndarray) -> float:
    """Jain's fairness index `(sum u)^2 / (K * sum u^2)`: 1 when equal, 1/K when one takes all."""
    v = np.asarray(values, dtype=np.float64)
    denom = v.size * float(np.square(v).sum())
    return float(v.sum() ** 2 / denom) if denom > 0 else 1.0


def evaluate(instance: Instance, assignment: ArrayLike, free_times: ArrayLike | None = None) -> dict:
    """Metrics of one allocation, all derived from one kernel run."""
    total, completion, _ = simulate_state(instance, assignment, free_times)
    x = np.asarray(assignment, dtype=np.int64)
    k = instance.n_providers
    n = instance.n_tasks
    latency = np.maximum(0.0, completion - instance.arrival)
    busy = np.bincount(x, weights=instance.processing[np.arange(n), x], minlength=k) if n else np.zeros(k)
    counts = np.bincount(x, minlength=k) if n else np.zeros(k, dtype=np.int64)
    makespan = float(completion.max() - instance.arrival.min()) if n else 0.0
    utilisation = busy / makespan if makespan > 0 else np.zeros(k)
    return {
        "instance": instance.name,
        "n_tasks": n,
        "n_providers": k,
        "total_latency": total,
        "mean_latency": float(latency.mean()) if n else 0.0,
        "p95_latency": float(np.percentile(latency, 95)) if n else 0.0,
        "max_latency": float(latency.max()) if n else 0.0,
        "makespan": makespan,
        "utilisation": [float(u) for u in utilisation],
        "jain_fairness": jain_index(utilisation),
        "task_share": [float(c / n) if n else 0.0 for c in counts],
        "tasks_per_provider": [int(c) for c in counts],
    }
