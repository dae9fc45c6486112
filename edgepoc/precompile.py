"""Compile every Numba function of the package into its cache, once, at install (`python -m edgepoc.precompile`).

Numba compiles a function the first time a process calls it and keeps the machine code in `__pycache__`. On a
fresh install nothing is there yet: the first `solve --method student` spent 24 s compiling the decoder before
its 1.5 s, the first GA 13 s, and every node of a first `network up` compiled the same code at once, side by
side on the same cores. Run here, the compiling happens once, before anyone waits for it; the results are the
same either way (a cold cache never changes an allocation: tests/solvers/test_budgets.py).

Everything runs on tiny instances with the array types of real calls: each method of the CLI that uses Numba,
both of the general models' decoders, and the chain's own rules (the reference allocation and the Shapley
contributions a node computes for every block).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np


GROUPS = ("models", "solvers")  # about 25 s and 20 s of compiling on a fresh install: run side by side


def precompile(group: str) -> dict[str, float]:
    """Compile (or load) one group's compiled paths; returns the seconds each part took."""
    from edgepoc.chain import contribution
    from edgepoc.game.generators import generate
    from edgepoc.game.instance import Instance
    from edgepoc.game.kernel import simulate, simulate_state
    from edgepoc.models.solve import warm_up as models_warm_up
    from edgepoc.solvers.batch import batch_allocate
    from edgepoc.solvers.bounds import block_bound
    from edgepoc.solvers.lagrange import warm_up as bound_warm_up
    from edgepoc.solvers.localsearch import descend
    from edgepoc.solvers.registry import SolveOptions, solve

    if group not in GROUPS:
        raise ValueError(f"group: expected one of {', '.join(GROUPS)}, got {group!r}")
    inst = generate("paper", seed=0, count=1, n_tasks=30)[0]
    free = np.zeros(inst.n_providers)
    seconds: dict[str, float] = {}

    def timed(name: str, run) -> None:
        t0 = time.perf_counter()
        run()
        seconds[name] = round(time.perf_counter() - t0, 2)

    # a second width: at 12 providers a small instance's descents group the tasks by queue (localsearch.grouped_pays,
    # a path of its own), and `shapley` samples coalitions (past its exact_max of 10)
    wide = generate("paper", seed=0, count=1, n_tasks=30, providers=12)[0]

    def solve_with(method: str, params: dict) -> None:
        timed(method + "".join(f" {k}={v}" for k, v in params.items()),
              lambda: [solve(i, method, SolveOptions(params=params, seed=0)) for i in (inst, wide)])

    if group == "models":  # both general models' decoders, as `solve` and a node's allocator run them
        timed("models", models_warm_up)
        for method in ("student", "teacher"):
            solve_with(method, {"decode": "onepass"})
            solve_with(method, {})
        return seconds
    timed("kernel", lambda: simulate(inst, np.zeros(inst.n_tasks, dtype=np.int64), free))
    timed("ga and bound", bound_warm_up)
    timed("block bound (cpsat, bound)", lambda: block_bound(inst, free, block=8))
    x0 = np.zeros(inst.n_tasks, dtype=np.int64)
    timed("descent from a kick", lambda: descend(inst, x0, free, max_evals=100, changed_from=x0))
    for method, params in (("greedy", {}), ("rollout", {}), ("rollout", {"base": "priced"}),
                           ("rollout", {"base": "mixed"}), ("search", {}), ("ga", {"generations": 2})):
        solve_with(method, params)
    # a block: its tasks share the block's time (consensus.reference_allocation, improve, block_effects)
    block = Instance.create(inst.capacity, inst.provider_delay, np.zeros(inst.n_tasks), inst.demand, name="block")
    timed("chain", lambda: (simulate_state(block, batch_allocate(block, free, 2), free),
                            batch_allocate(block, free, 2, np.zeros(block.n_tasks, dtype=np.int64)),
                            contribution.shapley(block, free, 10.0)))
    # past `shapley`'s exact_max (10) providers it samples coalitions, calling the compiled value from Python
    timed("chain, sampled Shapley", lambda: contribution.shapley(wide, np.zeros(wide.n_providers), 10.0))
    return seconds


def _group(group: str) -> dict[str, float] | None:
    try:
        return precompile(group)
    except Exception as exc:  # noqa: BLE001 (one line, whatever broke)
        print(f"precompile {group}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> int:
    """`python -m edgepoc.precompile`: both groups, the models' in a second process; `... GROUP`: one group,
    its seconds as JSON on stdout. A failure is reported and the exit is 1: `make install` goes on without it
    (each process then compiles on first use, as before)."""
    args = sys.argv[1:] if argv is None else argv
    if args:
        seconds = _group(args[0])
        if seconds is not None:
            print(json.dumps(seconds))
        return 0 if seconds is not None else 1
    t0 = time.perf_counter()
    other = subprocess.Popen([sys.executable, "-m", "edgepoc.precompile", GROUPS[0]], stdout=subprocess.DEVNULL)
    ok = _group(GROUPS[1]) is not None
    other.wait()
    if not ok or other.returncode:
        print("precompile: incomplete (above); Numba compiles the rest on first use", file=sys.stderr)
        return 1
    print(f"precompiled the Numba code in {time.perf_counter() - t0:.0f} s (two processes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
