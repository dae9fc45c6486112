"""The descents at many providers: moves priced on their queues alone, and moves ruled out by a lower bound.

For one task and one other provider, `_move_delta` walks every later task until both queues are back on their
stored trajectory, reading one (n, K) row per task; `_move_delta_queued` walks only the two queues' tasks (the
grouping of `_group_by_queue`) and gives the same price and stop, bit for bit. A move's price is at least the
task's own change plus what its old queue gains without it; a move whose bound is above the best price so far is
passed over unpriced ("bound"), with the same answers.

This prices every move of every task of one allocation three ways (walk, queued, queued with the bound), in the
same run, and checks the answers are equal; then runs the GA's full-sweep descent (`_local_search`) from that
allocation with and without the bound and checks it ends on the same allocation. `paper` instances of `--tasks`
tasks at each provider count, greedy with 5 % of the tasks moved at random. The models' descent prices queued
where `localsearch.grouped_pays` (from `QUEUED_FROM` providers, on up to 80 K^2 tasks: the grouping's upkeep grows
with n, `bench_search_grouping.py`) and then bounds from `BOUNDED_FROM`; the GA's descent bounds at every K.
The last column is the whole no-model search (`solve --method search`, its default work budget) as the code
now stands.

    python benchmarks/bench_queued_moves.py        # about two minutes -> results/queued-moves.md|json
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
from edgepoc.solvers.localsearch import BOUNDED_FROM, QUEUED_FROM, _best_move, _group_by_queue, _history, _local_search
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
def _price_all(arrival, ready, proc, x, completion, free_before, qstart, qorder, fpos, queued, bounded, out):
    for i in range(arrival.shape[0]):
        b, low, far = _best_move(arrival, ready, proc, x, completion, free_before, i, -1e-12, qstart, qorder, fpos,
                                 queued, bounded)
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
        walk_out, queued_out, bounded_out = np.empty((n, 3)), np.empty((n, 3)), np.empty((n, 3))
        args = (inst.arrival, inst.ready, inst.processing, x, completion, free_before)
        grouping = (qstart, qorder, fpos)
        walk = _median_time(lambda: _price_all(*args, *grouping, False, False, walk_out), cfg.repeats)  # compiles
        queued = _median_time(lambda: _price_all(*args, *grouping, True, False, queued_out), cfg.repeats)
        bounded = _median_time(lambda: _price_all(*args, *grouping, True, True, bounded_out), cfg.repeats)
        ga_x = {}

        def ga_descent(bound: bool) -> None:
            y = x.copy()
            _local_search(inst.arrival, inst.ready, inst.processing, y, np.zeros(k), 50, 0, 8, np.inf, bound)
            ga_x[bound] = y

        ga_plain = _median_time(lambda: ga_descent(False), cfg.repeats)
        ga_bound = _median_time(lambda: ga_descent(True), cfg.repeats)
        solve(inst, "search", SolveOptions(params={"sweeps": 1}))  # compiled before the clock
        t0 = time.perf_counter()
        solve(inst, "search", SolveOptions(seed=cfg.seed))
        search_s = time.perf_counter() - t0
        rows.append({"providers": k, "tasks": n, "walk_s": walk, "queued_s": queued, "speedup": walk / queued,
                     "bounded_s": bounded, "bound_speedup": queued / bounded,
                     "identical": bool(np.array_equal(walk_out, queued_out) and np.array_equal(walk_out, bounded_out)),
                     "ga_descent_s": ga_plain, "ga_descent_bounded_s": ga_bound, "ga_bound_speedup": ga_plain / ga_bound,
                     "ga_identical": bool(np.array_equal(ga_x[False], ga_x[True])), "search_s": search_s})
        print(f"K={k:5d}  walk {walk * 1e3:9.2f} ms  queued {queued * 1e3:8.2f} ms  bound {bounded * 1e3:8.2f} ms  "
              f"walk/queued {walk / queued:6.2f}  queued/bound {queued / bounded:6.2f}  "
              f"{'identical' if rows[-1]['identical'] else 'DIFFERENT'}  GA descent {ga_plain:.3f} / {ga_bound:.3f} s "
              f"({'same' if rows[-1]['ga_identical'] else 'DIFFERENT'})  search {search_s:.2f} s", flush=True)
    return {"config": asdict(cfg), "queued_from": QUEUED_FROM, "bounded_from": BOUNDED_FROM,
            "machine": {"python": platform.python_version(), "cpu": platform.processor()}, "rows": rows}


def report(doc: dict, rows_file: str = "queued-moves.json") -> str:
    lines = ["# The descents at many providers: moves priced on their queues alone, and ruled out by a bound", "",
             f"`python benchmarks/bench_queued_moves.py` (config and rows in {rows_file}); every move of every task of "
             f"one {doc['config']['tasks']}-task allocation, median of {doc['config']['repeats']} runs, one thread. "
             f"The models' descent prices queued from {doc['queued_from']} providers and bounds from "
             f"{doc.get('bounded_from', '-')}; the GA's descent (a full-sweep descent with near swaps, from the same "
             "allocation) bounds at every K.", "",
             "| providers | walk (ms) | queued (ms) | queued + bound (ms) | walk / queued | queued / bound | same prices "
             "and stops | GA descent (s) | with bound (s) | ratio | same allocation | no-model search now (s) |",
             "|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|---:|"]
    for r in doc["rows"]:
        bounded = r.get("bounded_s")
        lines.append(f"| {r['providers']} | {r['walk_s'] * 1e3:.2f} | {r['queued_s'] * 1e3:.2f} | "
                     + (f"{bounded * 1e3:.2f}" if bounded is not None else "-") + f" | {r['speedup']:.2f} | "
                     + (f"{r['bound_speedup']:.2f}" if bounded is not None else "-")
                     + f" | {'yes' if r['identical'] else 'NO'} | "
                     + (f"{r['ga_descent_s']:.3f} | {r['ga_descent_bounded_s']:.3f} | {r['ga_bound_speedup']:.2f} | "
                        f"{'yes' if r['ga_identical'] else 'NO'}" if "ga_descent_s" in r else "- | - | - | -")
                     + f" | {r['search_s']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    bench_main(__doc__.splitlines()[0], BenchConfig, run, report, RESULTS / "queued-moves.md")


if __name__ == "__main__":
    main()
