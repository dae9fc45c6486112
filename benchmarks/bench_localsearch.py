"""The GA's descent: pricing moves on the queue index against walking each move until the queues resync.

Both descents start from the same perturbed greedy allocation (5 % of tasks moved at random) and take the
same moves (the index's candidate is confirmed by the walk), so they should end on the same allocation; the
benchmark checks that and reports the wall time of each and their ratio, per workload:

- `paper`: 1000 tasks, 3 providers, load 0.9 (queues idle often: a move's walk is short);
- `varied`: the generator's mixed sizes and loads;
- `burst`: every task arrives at 0 (no queue ever idles: a walk is the rest of the instance);
- `overload`: arrivals at 3x the providers' capacity.

The walk baseline is compiled here from the module's own pieces (`_best_move`, `_best_swap`, `_history`),
as `_local_search` was before the index. One thread; times are medians of `--repeats` runs after a warm-up.

    python benchmarks/bench_localsearch.py              # about 2 minutes
    python benchmarks/bench_localsearch.py --tasks 1000 --repeats 1   # a smoke run
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numba as nb
import numpy as np

from edgepoc.game.generators import generate
from edgepoc.game.instance import Instance
from edgepoc.game.kernel import greedy_assignment, simulate
from edgepoc.solvers.localsearch import _best_move, _best_swap, _history, local_search
from benchmain import bench_main

RESULTS = Path(__file__).parent / "results"


@dataclass
class BenchConfig:
    tasks: int = 3000  # for the burst and overload workloads (paper is 1000, varied its own)
    instances: int = 3
    swap_window: int = 8  # the GA's default
    perturb: float = 0.05
    repeats: int = 3
    seed: int = 0


@nb.njit(cache=True)
def _walk_descent(arrival, ready, proc, x, free0, swap_window):
    """The descent as before the index: each candidate priced by walking until the queues resync."""
    n = arrival.shape[0]
    completion = np.empty(n)
    free_before = np.empty((n + 1, free0.shape[0]))
    total = _history(arrival, ready, proc, x, free0, completion, free_before, 0)
    no_grouping = np.empty(0, dtype=np.int64)  # the walk's pricing reads no grouping
    improved = True
    while improved:
        improved = False
        for i in range(n):
            b, _, _ = _best_move(arrival, ready, proc, x, completion, free_before, i, -1e-9 * (1.0 + total) / (n + 1.0),
                                 no_grouping, no_grouping, no_grouping, False)
            if b >= 0:
                x[i] = b
                total = _history(arrival, ready, proc, x, free0, completion, free_before, i)
                improved = True
            if i + 1 < n:
                j, _, _ = _best_swap(arrival, ready, proc, x, completion, free_before, i, swap_window,
                                     -1e-9 * (1.0 + total) / (n + 1.0))
                if j >= 0:
                    x[i], x[j] = x[j], x[i]
                    total = _history(arrival, ready, proc, x, free0, completion, free_before, i)
                    improved = True
    return total


def workloads(cfg: BenchConfig) -> dict[str, list[Instance]]:
    burst = [Instance.create(i.capacity, i.provider_delay, np.zeros(i.n_tasks), i.demand, name=f"{i.name}-burst")
             for i in generate("paper", seed=cfg.seed, count=cfg.instances, n_tasks=cfg.tasks)]
    return {
        "paper": generate("paper", seed=cfg.seed, count=cfg.instances),
        "varied": generate("varied", seed=cfg.seed, count=cfg.instances),
        "burst": burst,
        "overload": generate("paper", seed=cfg.seed, count=cfg.instances, n_tasks=cfg.tasks, load=3.0),
    }


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def run(cfg: BenchConfig) -> dict:
    nb.set_num_threads(1)
    rows = []
    for name, insts in workloads(cfg).items():
        for n_inst, inst in enumerate(insts):
            rng = np.random.default_rng([cfg.seed, n_inst])
            free0 = np.zeros(inst.n_providers)
            x0 = greedy_assignment(inst, free0)[0].astype(np.int8)
            moved = rng.random(inst.n_tasks) < cfg.perturb
            x0[moved] = rng.integers(0, inst.n_providers, int(moved.sum()))
            if not rows:  # compile both before any clock starts
                local_search(inst, x0, swap_window=cfg.swap_window)
                _walk_descent(inst.arrival, inst.ready, inst.processing, x0.copy(), free0, cfg.swap_window)

            def walk():
                x = x0.copy()
                _walk_descent(inst.arrival, inst.ready, inst.processing, x, free0, cfg.swap_window)
                return x

            t_index, (x_index, total, _) = timed(lambda: local_search(inst, x0, swap_window=cfg.swap_window),
                                                 cfg.repeats)
            t_walk, x_walk = timed(walk, cfg.repeats)
            rows.append({"workload": name, "instance": inst.name, "tasks": inst.n_tasks,
                         "providers": inst.n_providers, "index_s": t_index, "walk_s": t_walk,
                         "speedup": t_walk / t_index, "same_allocation": bool(np.array_equal(x_index, x_walk)),
                         "delay": float(simulate(inst, x_index)), "walk_delay": float(simulate(inst, x_walk))})
            print(f"{name:9s} {inst.name:24s} n={inst.n_tasks:5d} K={inst.n_providers:2d}  index {t_index:7.3f} s  "
                  f"walk {t_walk:7.3f} s  walk/index {t_walk / t_index:6.2f}  "
                  f"{'same allocation' if rows[-1]['same_allocation'] else 'DIFFERENT allocation'}", flush=True)
    return {"config": asdict(cfg), "machine": {"python": platform.python_version(), "cpu": platform.processor()},
            "rows": rows}


def report(doc: dict, rows_file: str = "localsearch.json") -> str:
    lines = ["# The GA's descent: queue-index pricing vs the resync walk",
             "", f"`python benchmarks/bench_localsearch.py` (its config and every row in {rows_file} beside this file)", "",
             "| workload | instances | tasks | index (s, median) | walk (s, median) | walk / index (min-max) | same allocation |",
             "|---|---:|---:|---:|---:|---:|---|"]
    by: dict[str, list[dict]] = {}
    for r in doc["rows"]:
        by.setdefault(r["workload"], []).append(r)
    for name, rs in by.items():
        sp = [r["speedup"] for r in rs]
        lines.append(f"| {name} | {len(rs)} | {int(np.median([r['tasks'] for r in rs]))} | "
                     f"{np.median([r['index_s'] for r in rs]):.3f} | {np.median([r['walk_s'] for r in rs]):.3f} | "
                     f"{np.median(sp):.2f} ({min(sp):.2f}-{max(sp):.2f}) | "
                     f"{sum(r['same_allocation'] for r in rs)} of {len(rs)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    bench_main(__doc__.splitlines()[0], BenchConfig, run, report, RESULTS / "localsearch.md")


if __name__ == "__main__":
    main()
