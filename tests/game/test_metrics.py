from __future__ import annotations

import numpy as np
import pytest

from edgepoc.game.kernel import simulate
from edgepoc.game.metrics import evaluate, jain_index
from tests.conftest import random_instance


def test_jain_index_bounds():
    assert jain_index([1, 1, 1]) == pytest.approx(1.0)
    assert jain_index([1, 0, 0]) == pytest.approx(1 / 3)


def test_metrics_agree_with_kernel():
    inst = random_instance(np.random.default_rng(0), 50, 3)
    x = np.arange(50) % 3
    m = evaluate(inst, x)
    assert m["total_latency"] == simulate(inst, x)
    assert m["mean_latency"] == pytest.approx(m["total_latency"] / 50)
    assert sum(m["tasks_per_provider"]) == 50 and sum(m["task_share"]) == pytest.approx(1.0)
    assert m["p95_latency"] <= m["max_latency"]
    assert all(0 <= u <= 1 + 1e-9 for u in m["utilisation"])
