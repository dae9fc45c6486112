"""`python -m edgepoc.precompile` (run by `make install`) leaves nothing for the first real use to compile."""

from __future__ import annotations

import json
import subprocess
import sys

from edgepoc.precompile import main

# After the precompile, in the same fresh process: what users and nodes run first. Every Numba function of the
# package is listed with its compiled signatures before and after; a signature added by the real calls is code
# the precompile did not cover (Numba compiles per argument type, so a real instance's types must match).
REAL_USE = r"""
import json, sys
import numpy as np
from numba.core.registry import CPUDispatcher
from edgepoc.precompile import precompile

precompile("models")
precompile("solvers")

def signatures():
    out = {}
    for name, module in list(sys.modules.items()):
        if name.startswith("edgepoc"):
            for attr, obj in vars(module).items():
                if isinstance(obj, CPUDispatcher):
                    out[f"{name}.{attr}"] = len(obj.signatures)
    return out

before = signatures()
from edgepoc.chain import contribution
from edgepoc.chain.allocator import make_allocator, probe_instance
from edgepoc.game.generators import generate
from edgepoc.game.instance import Instance
from edgepoc.solvers.registry import SolveOptions, solve

for preset, k in (("paper", 3), ("varied", 12), ("alibaba", 4)):
    inst = generate(preset, seed=7, count=1, n_tasks=300, providers=k)[0]
    free = np.linspace(0.0, 2.0, k)
    for method in ("greedy", "rollout", "search", "ga", "bound", "student", "teacher"):
        solve(inst, method, SolveOptions(seed=1, free_times=free, params={"generations": 2} if method == "ga" else {"iterations": 3, "ga_seconds": 0.2} if method == "bound" else {}))
    block = Instance.create(inst.capacity, inst.provider_delay, np.full(50, 3.0), inst.demand[:50], name="block")
    allocate, _ = make_allocator("student", probe=probe_instance(inst.capacity, inst.provider_delay), decode="onepass")
    x = allocate(block, list(free))
    from edgepoc.solvers.batch import batch_allocate
    batch_allocate(block, free, 3, np.asarray(x))
    contribution.shapley(block, free, 10.0)
after = signatures()
print(json.dumps({name: (before.get(name, 0), n) for name, n in after.items() if n > before.get(name, 0)}))
"""


def test_the_first_real_calls_compile_nothing_the_precompile_left_out():
    done = subprocess.run([sys.executable, "-c", REAL_USE], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    compiled_late = json.loads(done.stdout.strip().splitlines()[-1])
    assert compiled_late == {}, f"compiled after the precompile (signatures before, after): {compiled_late}"


def test_an_unknown_group_is_one_line_and_exit_1(capsys):
    assert main(["bogus"]) == 1
    assert capsys.readouterr().err.strip() == ("precompile bogus: ValueError: group: expected one of models, "
                                               "solvers, got 'bogus'")
