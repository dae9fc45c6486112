"""The iterated search on large instances: window kicks kept in place against the same kicks rebuilt from scratch.

The search (`decoding.search`, the no-model control from greedy, default 30 sweeps) keeps its best allocation's
queue history and kicks it in place (`localsearch.WindowKicks`). The baseline is the loop as it was before:
each kick re-decodes a copy (`redecode_window`) and descends it from a history rebuilt over all n tasks
(`descend(..., changed_from=best)`), and the history of the best is rebuilt after every kept kick. Both run
here, in this one process on one core, on the same `paper` instances; the benchmark checks that they end on the
same allocation with the same delay, bit for bit, and prints seconds and the speed-up (baseline / in place).

    python benchmarks/bench_search_scale.py                      # 1,000 to 100,000 tasks -> results/search-scale.md|json
    python benchmarks/bench_search_scale.py --sizes 1000,10000 --out runs/search-scale-quick.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numba
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgepoc.game.generators import generate  # noqa: E402
from edgepoc.game.kernel import greedy_assignment, simulate  # noqa: E402
from edgepoc.models.decoding import MIN_SWEEP, WINDOW_TEMPERATURE, DecodeOptions, search, uniform_weights  # noqa: E402
from edgepoc.solvers.localsearch import descend, queue_history, redecode_window, unknown_reach  # noqa: E402


def rebuilt_search(inst, start: np.ndarray, opts: DecodeOptions) -> tuple[np.ndarray, int]:
    """`decoding.search` from one start with a work budget, each kick rebuilt from scratch: `(allocation, kicks)`."""
    n = inst.n_tasks
    sweep = max(n, MIN_SWEEP)
    work = opts.budget.sweeps * sweep
    reach = unknown_reach(n)
    best_x, best_f, used = start, float(simulate(inst, start)), 0
    y, f, used = descend(inst, start, max_evals=work, swap_window=opts.swap_window, reach=reach)
    if f < best_f:
        best_x, best_f = y, f
    rng = np.random.default_rng(opts.seed)
    history, unit, kicks = queue_history(inst, best_x), float(inst.processing.mean()), 0
    while work - used > 0:
        kicked = redecode_window(inst, best_x, history, int(rng.integers(0, n)), opts.kick_window, WINDOW_TEMPERATURE,
                                 rng, unit)
        y, f, ev = descend(inst, kicked, max_evals=work - used, swap_window=opts.swap_window, changed_from=best_x,
                           reach=reach)
        used, kicks = used + max(ev, 1), kicks + 1
        if f < best_f:
            best_x, best_f = y, f
            history = queue_history(inst, best_x)
    return best_x, kicks


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,40000,100000", help="task counts, comma-separated")
    ap.add_argument("--seed", type=int, default=3, help="instance seed (paper preset, 3 providers, load 0.9)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "search-scale.md")
    args = ap.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        sys.exit(f"error: --sizes: comma-separated task counts, got {args.sizes!r}")
    if not sizes or min(sizes) < 2:
        sys.exit("error: --sizes: at least one task count, each >= 2")
    numba.set_num_threads(1)
    opts = DecodeOptions()
    warm = generate("paper", seed=args.seed, n_tasks=60)[0]  # compile (or load) both paths outside the clocks
    search(warm, [("greedy", greedy_assignment(warm)[0])], uniform_weights(warm), opts)
    rebuilt_search(warm, greedy_assignment(warm)[0], opts)
    rows = []
    t_start = time.perf_counter()
    for n in sizes:
        inst = generate("paper", seed=args.seed, n_tasks=n)[0]
        g, _ = greedy_assignment(inst)
        t0 = time.thread_time()
        kept = search(inst, [("greedy", g)], uniform_weights(inst), opts)
        t_kept = time.thread_time() - t0
        t0 = time.thread_time()
        rebuilt, kicks = rebuilt_search(inst, g, opts)
        t_rebuilt = time.thread_time() - t0
        same = bool(np.array_equal(kept.assignment, rebuilt) and kept.kicks == kicks)
        rows.append({"n_tasks": n, "kicks": kept.kicks, "in_place_s": t_kept, "rebuilt_s": t_rebuilt,
                     "speedup": t_rebuilt / t_kept, "same_allocation": same, "delay": kept.latency})
        print(f"{n} tasks: {kept.kicks} kicks, in place {t_kept:.2f} s, rebuilt {t_rebuilt:.2f} s, "
              f"x{t_rebuilt / t_kept:.2f}, same allocation: {same}", flush=True)
    lines = ["# The search on large instances: kicks kept in place against kicks rebuilt from scratch", "",
             f"`paper` instances (seed {args.seed}, 3 providers, load 0.9), the no-model search from greedy, its default "
             f"budget (30 sweeps, window kicks of {opts.kick_window}). CPU seconds of this one thread; "
             f"{platform.machine()}, {os.cpu_count()} CPUs, 1-min load average {os.getloadavg()[0]:.1f} at the end; "
             f"run took {time.perf_counter() - t_start:.0f} s. `python benchmarks/bench_search_scale.py`.", "",
             "| tasks | kicks | in place (s) | rebuilt (s) | speed-up | same allocation, bit for bit |",
             "|---:|---:|---:|---:|---:|---|"]
    lines += [f"| {r['n_tasks']:,} | {r['kicks']:,} | {r['in_place_s']:.2f} | {r['rebuilt_s']:.2f} | "
              f"{r['speedup']:.2f}x | {'yes' if r['same_allocation'] else 'NO'} |" for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    result = {"config": {"sizes": sizes, "seed": args.seed, "preset": "paper", "sweeps": opts.budget.sweeps,
                         "kick_window": opts.kick_window}, "rows": rows}
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    if not all(r["same_allocation"] for r in rows):
        sys.exit("error: the in-place search and the rebuilt one ended on different allocations")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
