"""The search's descents with and without the tasks grouped by queue: where the grouping pays for its upkeep.

Grouped, a descent prices a move walking only the two queues' tasks (`_move_delta_queued`, with the lower bound
from `BOUNDED_FROM` providers), which is faster at many providers (`bench_queued_moves.py`); but it must keep the
grouping after every change it takes (`_group_move`, which shifts the tasks between the two queues' places:
O(n)), and a search's window kicks change tasks all the time. This runs what a no-model search spends its time
on, both ways in the same run: the first descent from greedy, then `--kicks` window kicks of 10 tasks with
their repairing descents (near swaps as in the search), from the same seed, and checks that both ways end on
the same allocation. `paper` instances at each provider count and size. The search's choice
(`localsearch.grouped_pays`) is printed with the rows.

    python benchmarks/bench_search_grouping.py      # about ten minutes -> results/search-grouping.md|json
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numba as nb
import numpy as np

from edgepoc.game.generators import generate
from edgepoc.game.kernel import greedy_assignment
from edgepoc.models.decoding import WINDOW_TEMPERATURE, DecodeOptions
from edgepoc.solvers.localsearch import (GROUPED_TASKS_PER_K2, QUEUED_FROM, WindowKicks, descend, grouped_pays,
                                         unknown_reach)
from benchmain import bench_main

RESULTS = Path(__file__).parent / "results"
SWAP_WINDOW = DecodeOptions.swap_window  # the search's near swaps, as it runs them


@dataclass
class BenchConfig:
    providers: str = "5,8,12,24,64"
    tasks: str = "1000,5000,20000"
    kicks: int = 300
    repeats: int = 3
    seed: int = 0


def _descend_and_kick(inst, kicks: int, seed: int, queued: bool) -> tuple[float, np.ndarray, float]:
    """(seconds, the allocation, its delay): the first descent from greedy, then `kicks` window kicks."""
    n = inst.n_tasks
    x0 = greedy_assignment(inst)[0]
    t0 = time.perf_counter()
    reach = unknown_reach(n)
    x, f, _ = descend(inst, x0, max_evals=30 * n, swap_window=SWAP_WINDOW, reach=reach, queued=queued)
    windows = WindowKicks(inst, x, None, reach, queued=queued)
    rng = np.random.default_rng(seed)
    unit = float(inst.processing.mean())
    for _ in range(kicks):
        got, _ = windows.kick(int(rng.integers(0, n)), 10, WINDOW_TEMPERATURE, rng, unit, f, max_evals=30 * n,
                              swap_window=SWAP_WINDOW)
        f = min(f, got)
    return time.perf_counter() - t0, windows.best_x.copy(), f


def run(cfg: BenchConfig) -> dict:
    nb.set_num_threads(1)
    small = generate("paper", seed=cfg.seed, count=1, n_tasks=40, providers=12)[0]
    for queued in (False, True):  # compile (or load) both ways outside the clocks
        _descend_and_kick(small, 3, cfg.seed, queued)
    rows = []
    for k in [int(v) for v in cfg.providers.split(",")]:
        for n in [int(v) for v in cfg.tasks.split(",")]:
            inst = generate("paper", seed=cfg.seed, count=1, n_tasks=n, providers=k)[0]
            times: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(cfg.repeats):  # interleaved, so a busy spell of a shared host falls on both
                for queued in (False, True):
                    seconds, x, f = _descend_and_kick(inst, cfg.kicks, cfg.seed, queued)
                    times[queued].append(seconds)
                    if queued:
                        grouped_x, grouped_f = x, f
                    else:
                        walk_x, walk_f = x, f
            walk_s, grouped_s = float(np.median(times[False])), float(np.median(times[True]))
            same = bool(np.array_equal(walk_x, grouped_x) and walk_f == grouped_f)
            rows.append({"providers": k, "tasks": n, "walk_s": walk_s, "grouped_s": grouped_s,
                         "grouped_over_walk": grouped_s / walk_s, "same": same, "default": "grouped"
                         if grouped_pays(n, k) else "walk"})
            print(f"K={k:4d} n={n:6d}  walk {walk_s:7.3f} s  grouped {grouped_s:7.3f} s  grouped/walk "
                  f"{grouped_s / walk_s:5.2f}  {'same' if same else 'DIFFERENT'}  default: {rows[-1]['default']}",
                  flush=True)
    return {"config": asdict(cfg), "queued_from": QUEUED_FROM, "grouped_tasks_per_k2": GROUPED_TASKS_PER_K2,
            "machine": {"python": platform.python_version(), "cpu": platform.processor()}, "rows": rows}


def report(doc: dict, rows_file: str = "search-grouping.json") -> str:
    cfg = doc["config"]
    lines = ["# The search's descents with and without the tasks grouped by queue", "",
             f"`python benchmarks/bench_search_grouping.py` (config and rows in {rows_file}): the first descent from "
             f"greedy and {cfg['kicks']} window kicks, each way, same seed, median of {cfg['repeats']} interleaved "
             "runs, one thread, `paper` instances. A ratio below 1 means the grouping is faster. The search groups "
             f"from {doc['queued_from']} providers and up to {doc.get('grouped_tasks_per_k2', '-')} K^2 tasks "
             "(`localsearch.grouped_pays`).", "",
             "| providers | tasks | walk (s) | grouped (s) | grouped / walk | same allocation | default |",
             "|---:|---:|---:|---:|---:|---|---|"]
    for r in doc["rows"]:
        lines.append(f"| {r['providers']} | {r['tasks']} | {r['walk_s']:.3f} | {r['grouped_s']:.3f} | "
                     f"{r['grouped_over_walk']:.2f} | {'yes' if r['same'] else 'NO'} | {r['default']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    bench_main(__doc__.splitlines()[0], BenchConfig, run, report, RESULTS / "search-grouping.md")


if __name__ == "__main__":
    main()
