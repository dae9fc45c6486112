"""Task-steps per second of the queue kernel: a population of 200 allocations of 1000 tasks.

Compares the compiled population kernel (one core) with a pure-Python loop of the same
semantics measured in the same run, and prints the ratio. Target: >= 200 M task-steps/s.

    python benchmarks/bench_simulator.py [--population 200] [--tasks 1000] [--repeats 50]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numba
import numpy as np

from edgepoc.game.generators import generate
from edgepoc.game.kernel import simulate_population


def python_loop(inst, xs) -> list[float]:
    arrival, ready, proc = inst.arrival.tolist(), inst.ready.tolist(), inst.processing.tolist()
    totals = []
    for x in xs.tolist():
        free = [0.0] * inst.n_providers
        total = 0.0
        for i, k in enumerate(x):
            s = max(ready[i][k], free[k])
            c = s + proc[i][k]
            free[k] = c
            total += max(0.0, c - arrival[i])
        totals.append(total)
    return totals


def best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--population", type=int, default=200)
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "simulator.md")
    args = ap.parse_args()
    numba.set_num_threads(1)  # the target is per core

    inst = generate("paper", seed=0, n_tasks=args.tasks)[0]
    xs = np.random.default_rng(0).integers(0, inst.n_providers, size=(args.population, args.tasks)).astype(np.int8)
    simulate_population(inst, xs[:2])  # compile / load from cache outside the timing
    steps = args.population * args.tasks

    t_kernel = best_of(lambda: simulate_population(inst, xs, checked=False), args.repeats)
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    t_parallel = best_of(lambda: simulate_population(inst, xs, parallel=True, checked=False), args.repeats)
    numba.set_num_threads(1)
    n_py = max(2, args.population // 20)
    t_python = best_of(lambda: python_loop(inst, xs[:n_py]), 3) * args.population / n_py
    assert np.allclose(python_loop(inst, xs[:n_py]), simulate_population(inst, xs[:n_py]), rtol=0, atol=0)

    rows = [
        ("pure-Python loop (baseline)", t_python, steps / t_python),
        ("compiled kernel, 1 core", t_kernel, steps / t_kernel),
        (f"compiled kernel, prange ({numba.config.NUMBA_NUM_THREADS} threads)", t_parallel, steps / t_parallel),
    ]
    lines = [
        f"# Queue kernel: population {args.population} x {args.tasks} tasks ({platform.processor() or platform.machine()})",
        "",
        "| variant | seconds per population | task-steps/s | ratio vs Python |",
        "|---|---:|---:|---:|",
    ]
    for name, t, rate in rows:
        lines.append(f"| {name} | {t:.6f} | {rate / 1e6:,.1f} M | {t_python / t:,.0f}x |")
    verdict = "met" if steps / t_kernel >= 200e6 else "NOT met"
    lines += ["", f"ns per task-step (1 core): {t_kernel / steps * 1e9:.2f}; target >= 200 M task-steps/s: {verdict}"]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    (args.out.with_suffix(".json")).write_text(json.dumps(vars(args) | {"out": str(args.out)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
