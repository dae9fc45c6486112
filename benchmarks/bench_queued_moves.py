"""The models' descent: pricing a task's moves on its queues alone against the walk over every task.

For one task and one other provider, `_move_delta` walks every later task until both queues are back on their
stored trajectory, reading one (n, K) row per task; `_move_delta_queued` walks only the two queues' tasks (the
grouping of `_group_by_queue`) and gives the same price and stop, bit for bit. This prices every move of every
task of one allocation both ways, in the same run, and checks the answers are equal; `paper` instances of
`--tasks` tasks at each provider count, greedy with 5 % of the tasks moved at random. The descent switches to the
queued pricing from `localsearch.QUEUED_FROM` providers. The last column is the whole no-model search
(`solve --method search`, its default work budget) as the code now stands.

    python benchmarks/bench_queued_moves.py        # about a minute -> results/queued-moves.md|json
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
from edgepoc.game.validate import ASSIGNMENT_DTYPE
from edgepoc.solvers.localsearch import QUEUED_FROM, _best_move, _group_by_queue, _history
from edgepoc.solvers.registry import SolveOptions, solve
from benchmain import bench_main

RESULTS = Path(__file__).parent / "results"


@dataclass
class BenchConfig:
    tasks: int = 1000
    providers: str = "3,5,8,12,32,128,1024"
    repeats: int = 3
    seed: int = 0


@nb.njit(cache=True)
def _price_all(arrival, ready, proc, x, completion, free_before, qstart, qorder, fpos, queued, out):
    for i in range(arrival.shape[0]):
        b, low, far = _best_move(arrival, ready, proc, x, completion, free_before, i, -1e-12, qstart, qorder, fpos,
                                 queued)
        out[i, 0], out[i, 1], out[i, 2] = b, low, far


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def run(cfg: BenchConfig) -> dict:
    nb.set_num_threads(1)
    rows = []
    for k in [int(v) for v in cfg.providers.split(",")]:
        inst = generate("paper", seed=cfg.seed, count=1, n_tasks=cfg.tasks, providers=k)[0]
        n = inst.n_tasks
        rng = np.random.default_rng([cfg.seed, k])
        x = greedy_assignment(inst)[0].astype(ASSIGNMENT_DTYPE)
        moved = rng.random(n) < 0.05
        x[moved] = rng.integers(0, k, int(moved.sum()))
        completion, free_before = np.empty(n), np.empty((n + 1, k))
        _history(inst.arrival, inst.ready, inst.processing, x, np.zeros(k), completion, free_before, 0)
        qstart, qorder, fpos = np.empty(k + 1, np.int64), np.empty(n, np.int64), np.empty(n, np.int64)
        _group_by_queue(x, qstart, qorder, fpos)
        walk_out, queued_out = np.empty((n, 3)), np.empty((n, 3))
        args = (inst.arrival, inst.ready, inst.processing, x, completion, free_before)
        grouping = (qstart, qorder, fpos)
        walk = _median_time(lambda: _price_all(*args, *grouping, False, walk_out), cfg.repeats)  # 1st run compiles
        queued = _median_time(lambda: _price_all(*args, *grouping, True, queued_out), cfg.repeats)
        solve(inst, "search", SolveOptions(params={"sweeps": 1}))  # compiled before the clock
        t0 = time.perf_counter()
        solve(inst, "search", SolveOptions(seed=cfg.seed))
        search_s = time.perf_counter() - t0
        rows.append({"providers": k, "tasks": n, "walk_s": walk, "queued_s": queued, "speedup": walk / queued,
                     "identical": bool(np.array_equal(walk_out, queued_out)), "search_s": search_s})
        print(f"K={k:5d}  walk {walk * 1e3:9.2f} ms  queued {queued * 1e3:8.2f} ms  walk/queued {walk / queued:6.2f}  "
              f"{'identical' if rows[-1]['identical'] else 'DIFFERENT'}  search {search_s:.2f} s", flush=True)
    return {"config": asdict(cfg), "queued_from": QUEUED_FROM,
            "machine": {"python": platform.python_version(), "cpu": platform.processor()}, "rows": rows}


def report(doc: dict, rows_file: str = "queued-moves.json") -> str:
    lines = ["# The models' descent: moves priced on their queues alone vs the walk over every task", "",
             f"`python benchmarks/bench_queued_moves.py` (config and rows in {rows_file}); every move of every task of "
             f"one {doc['config']['tasks']}-task allocation, median of {doc['config']['repeats']} runs, one thread. "
             f"The descent uses the queued pricing from {doc['queued_from']} providers.", "",
             "| providers | walk (ms) | queued (ms) | walk / queued | same prices and stops | no-model search now (s) |",
             "|---:|---:|---:|---:|---|---:|"]
    for r in doc["rows"]:
        lines.append(f"| {r['providers']} | {r['walk_s'] * 1e3:.2f} | {r['queued_s'] * 1e3:.2f} | {r['speedup']:.2f} | "
                     f"{'yes' if r['identical'] else 'NO'} | {r['search_s']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    bench_main(__doc__.splitlines()[0], BenchConfig, run, report, RESULTS / "queued-moves.md")


if __name__ == "__main__":
    main()
