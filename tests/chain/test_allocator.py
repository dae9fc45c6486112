"""A node's allocator: the bundled (general) student allocates every chain size from 2 to 16 providers,
deterministically (every node must compute the same allocation), never on a wall-clock budget."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edgepoc.chain.allocator import make_allocator, probe_instance
from edgepoc.errors import EdgepocError
from edgepoc.game.generators import paper
from edgepoc.game.kernel import greedy_assignment, simulate


def _probe(k: int, r: int = 2):
    return probe_instance(np.ones((k, r)), np.zeros(k))


@pytest.mark.parametrize("decode", ["guided", "onepass"])
def test_every_chain_size_allocates_with_the_bundled_student(decode):
    for k in range(2, 17):
        allocate, name = make_allocator("auto", probe=_probe(k), decode=decode)
        assert name == "student", k
        inst = paper(7000 + k, 0, n_tasks=60, providers=k)
        free = list(np.linspace(0.0, 0.5, k))
        x = allocate(inst, free)
        assert x.shape == (60,) and 0 <= x.min() and x.max() < k
        assert np.array_equal(x, allocate(inst, free)), "same block, same allocation on every node"
        # a separately built allocator (another node) agrees bit for bit
        other, _ = make_allocator("student", probe=_probe(k), decode=decode)
        assert np.array_equal(x, other(inst, free))


def test_the_students_blocks_beat_greedy():
    total, greedy = 0.0, 0.0
    for k in (2, 5, 9, 16):
        allocate, _ = make_allocator("auto", probe=_probe(k), decode="guided")
        inst = paper(7100 + k, 0, n_tasks=300, providers=k)
        total += simulate(inst, allocate(inst, [0.0] * k))
        greedy += greedy_assignment(inst)[1]
    assert total < greedy


def test_the_arbiter_default_is_the_work_budgeted_search_without_sampled_starts():
    from edgepoc.chain.abci.arbiter import ARBITER_MODEL_PARAMS
    from edgepoc.solvers.registry import SolveOptions, solve

    allocate, name = make_allocator("teacher", seconds=0.5, probe=_probe(4), model_params=ARBITER_MODEL_PARAMS)
    inst = paper(7200, 0, n_tasks=200, providers=4)
    a, b = allocate(inst, [0.0] * 4), allocate(inst, [0.0] * 4)
    assert name == "teacher" and np.array_equal(a, b)
    assert np.array_equal(a, solve(inst, "teacher", SolveOptions(seed=0, params={"samples": 0})).assignment)


def test_an_unusable_checkpoint_is_an_error_at_start(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_text("garbage")
    with pytest.raises(EdgepocError, match="cannot allocate this chain's blocks"):
        make_allocator("student", model=str(bad), probe=_probe(3))
    allocate, name = make_allocator("auto", model=str(bad), probe=_probe(3))
    assert name == "greedy"


NODE_START = """
import json, sys
from pathlib import Path
from edgepoc.chain.abci.node import AppConfig, build_app
home = Path(sys.argv[1])
app, _ = build_app(home, AppConfig.load(home))
print(json.dumps({"allocator": app.allocator_name,
                  "heavy": [m for m in ("torch", "torch_geometric") if m in sys.modules]}))
"""


def test_a_node_starts_without_importing_torch(tmp_path):
    """The node's start (genesis, probe of the chain's shape with the bundled student, the app) runs the
    student's NumPy forward pass; PyTorch is never imported (issue 18, item 5)."""
    from edgepoc.chain.abci import network
    from edgepoc.chain.abci.node import cometbft_binary

    try:
        cometbft_binary()
    except EdgepocError as exc:
        pytest.skip(str(exc))
    network.init_network(tmp_path / "net", 1, 0, seed=1)
    done = subprocess.run([sys.executable, "-c", NODE_START, str(tmp_path / "net" / "node0")], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out == {"allocator": "student", "heavy": []}
