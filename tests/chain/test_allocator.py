"""A node's allocator must fit the chain's shape: the bundled 3-provider student on a 4-node chain is
noticed once at start (fallback to greedy), not on every proposal; a chain whose size has a bundled
student (3 and 4 providers) uses it."""

from __future__ import annotations

import numpy as np
import pytest

from edgepoc.chain.allocator import make_allocator, probe_instance
from edgepoc.errors import EdgepocError
from edgepoc.game.generators import generate
from edgepoc.models.checkpoint import bundled_path, bundled_provider_counts


def _probe(k: int):
    return probe_instance(np.ones((k, 2)), np.zeros(k))


@pytest.mark.skipif(not bundled_path("student").is_file(), reason="no bundled student")
def test_auto_uses_the_student_only_where_it_fits():
    inst = generate("paper", 5, 1, n_tasks=40)[0]
    allocate, name = make_allocator("auto", probe=_probe(3))
    assert name == "student"
    assert allocate(inst, [0.0, 0.0, 0.0]).shape == (40,)
    for k in bundled_provider_counts("student"):
        assert make_allocator("auto", probe=_probe(k))[1] == "student"
    allocate, name = make_allocator("auto", probe=_probe(7))
    assert name == "greedy"
    seven = generate("paper", 5, 1, n_tasks=40, providers=7)[0]
    assert allocate(seven, [0.0] * 7).max() <= 6
    with pytest.raises(EdgepocError, match="cannot allocate this chain's blocks"):
        make_allocator("student", probe=_probe(7))
