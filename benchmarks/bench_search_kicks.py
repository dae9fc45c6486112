"""Window kicks against point kicks in the iterated search, for the no-model control and the teacher's search.

The search's kicks re-decode a random window of `kick_window` consecutive tasks by sampled greedy (default 10);
`kick_window=0` gives the point kicks of before (0.2 % of the tasks moved). This runs both, at the same work
budget (30 sweeps), on the TUNING instances the window kicks were chosen on (seed 4000 / 41xx, the ones
`bench_model.py --tuning` uses; the held-out comparison is `compare_model_runs.py` on two `bench_model.py`
runs), with GA at 5 s of CPU as the reference, all in this one process on one core. Per family: mean delay /
GA for each column, the paired gain of window over point kicks (% of the point kicks' delay, 95 % t-interval,
instances x search seeds as pairs) and median CPU ms per 1000 tasks.

    python benchmarks/bench_search_kicks.py                    # 16 instances x 2 seeds per family -> results/search-kicks.md|json
    python benchmarks/bench_search_kicks.py --count 3 --seeds 1 --ga-seconds 1 --out runs/search-kicks-quick.md
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

from benchmarks.bench_model import FAMILIES, TUNING_OFFSET, bundle_commit  # noqa: E402
from edgepoc.experiments.stats import mean_interval  # noqa: E402
from edgepoc.game.generators import generate  # noqa: E402
from edgepoc.solvers.registry import SolveOptions, solve  # noqa: E402

# column -> (registry method, params): each decoder with point kicks and with window kicks (the default)
COLUMNS: dict[str, tuple[str, dict]] = {
    "control, point": ("search", {"kick_window": 0}),
    "control, window": ("search", {}),
    "teacher search, point": ("teacher", {"kick_window": 0}),
    "teacher search, window": ("teacher", {}),
}
PAIRS = (("control, window", "control, point"), ("teacher search, window", "teacher search, point"))


def run(inst, method: str, params: dict, seed: int) -> dict:
    t0 = time.thread_time()
    res = solve(inst, method, SolveOptions(seed=seed, params=dict(params)))
    return {"delay": res.total_latency, "cpu_s": time.thread_time() - t0}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=16, help="tuning instances per family")
    ap.add_argument("--seeds", type=int, default=2, help="search seeds per instance")
    ap.add_argument("--ga-seconds", type=float, default=5.0)
    ap.add_argument("--families", default="paper,varied,alibaba,K=2,K=3")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "search-kicks.md")
    args = ap.parse_args(argv)
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or args.count < 1 or args.seeds < 1 or args.ga_seconds <= 0:
        sys.exit(f"error: families from {', '.join(FAMILIES)}, --count >= 1, --seeds >= 1, --ga-seconds > 0"
                 + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
    numba.set_num_threads(1)
    warm = generate("paper", seed=4999, count=1, n_tasks=60)[0]  # compile and load everything first
    for method, params in COLUMNS.values():
        run(warm, method, params, 0)
    t_start = time.perf_counter()
    rows: dict[str, list[dict]] = {}
    for fam in families:
        preset, params, seed = FAMILIES[fam]
        size = {} if preset == "varied" else {"n_tasks": 1000}
        rows[fam] = []
        for i, inst in enumerate(generate(preset, seed=seed - TUNING_OFFSET, count=args.count, **params, **size)):
            ga = solve(inst, "ga", SolveOptions(seed=0, seconds=args.ga_seconds, params={"clock": "cpu"})).total_latency
            for s in range(args.seeds):
                row = {"instance": inst.name, "n_tasks": inst.n_tasks, "search_seed": s, "ga": ga}
                row.update({col: run(inst, method, p, s) for col, (method, p) in COLUMNS.items()})
                rows[fam].append(row)
            print(f"{fam} {inst.name}: " + ", ".join(f"{c} {np.mean([r[c]['delay'] for r in rows[fam][-args.seeds:]]) / ga:.4f}"
                                                    for c in COLUMNS), flush=True)
    lines = [f"# Window kicks against point kicks: tuning instances ({args.count} per family x {args.seeds} search seeds)",
             "",
             f"Tuning seeds ({', '.join(f'{f}: {FAMILIES[f][2] - TUNING_OFFSET}' for f in families)}; for choosing, "
             f"not for reporting: the held-out pairing is `compare_model_runs.py`). One core, GA {args.ga_seconds:g} s of "
             f"CPU as the reference, 30 sweeps for every search. {platform.machine()}, {os.cpu_count()} CPUs, "
             f"1-min load average {os.getloadavg()[0]:.1f} at the end. Bundled models: `{bundle_commit()}`. "
             f"Run took {time.perf_counter() - t_start:.0f} s.",
             "",
             "Mean delay / GA (median CPU ms per 1000 tasks); paired gain of window over point kicks, % of the point "
             "kicks' delay, 95 % t-interval over instances x seeds (positive: window kicks better).",
             "",
             "| family | " + " | ".join(COLUMNS) + " | control: window vs point | teacher: window vs point |",
             "|---|" + "---:|" * (len(COLUMNS) + 2)]
    summary: dict[str, dict] = {}
    for fam, rs in rows.items():
        cells, summary[fam] = [], {}
        for col in COLUMNS:
            ratio = float(np.mean([r[col]["delay"] / r["ga"] for r in rs]))
            ms = float(np.median([1e6 * r[col]["cpu_s"] / r["n_tasks"] for r in rs]))
            cells.append(f"{ratio:.4f} ({ms:.0f} ms)")
            summary[fam][col] = {"ratio_to_ga": ratio, "ms_per_1000_tasks": ms}
        for a, b in PAIRS:
            iv = mean_interval([(r[b]["delay"] - r[a]["delay"]) / r[b]["delay"] * 100 for r in rs if r[b]["delay"] > 0])
            cells.append(iv.fmt("+.2f", "%"))
            summary[fam][f"{a} vs {b}"] = {"mean_pct": iv.mean, "low": iv.low, "high": iv.high}
        lines.append(f"| {fam} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    config = {"count": args.count, "seeds": args.seeds, "ga_seconds": args.ga_seconds, "families": families,
              "columns": {c: {"method": m, "params": p} for c, (m, p) in COLUMNS.items()}, "bundle": bundle_commit()}
    result = {"config": config, "summary": summary, "rows": rows}
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
