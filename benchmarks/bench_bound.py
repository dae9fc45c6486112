"""The proven gap of GA-5s per family: how far the GA is, at most, from the optimum at 1,000 tasks (issue 18 item 7).

Per instance, in this one process on one core (numba single-threaded):

* `GA`: the GA at its CPU-time budget (default 5 s), the allocation whose gap is proven;
* `lagrangian`: the Lagrangian bound of `edgepoc.solvers.lagrange` (prices on the "one provider per task"
  constraints, exact FIFO pricing DP per provider, subgradient ascent from the GA allocation's marginal
  costs) with an iteration and a CPU-time cap;
* the baselines measured in the same run: the block bound (`bounds.block_bound`, what CP-SAT's bound rests
  on at 1,000 tasks) and the trivial bound (each task alone on its best provider); with `--cpsat S`, CP-SAT's
  own bound at S seconds too.

Proven gap = GA delay / bound - 1 (an upper limit on the GA's true distance from the optimum; the bound
is valid whatever the iterations, so the gap is never understated). Reported per family: mean [95 % t-
interval] and worst, plus the CPU seconds of the bound.

    python benchmarks/bench_bound.py            # 5 instances per family, GA 5 s, 400 iterations -> results/bound.md|json
    python benchmarks/bench_bound.py --quick    # 2 instances, 300 tasks, GA 1 s, 100 iterations -> runs/
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

from edgepoc.experiments.stats import mean_interval  # noqa: E402
from edgepoc.game.generators import generate  # noqa: E402
from edgepoc.game.kernel import greedy_assignment  # noqa: E402
from edgepoc.solvers.bounds import block_bound, trivial_bound  # noqa: E402
from edgepoc.solvers.lagrange import lagrangian_bound, warm_up  # noqa: E402
from edgepoc.solvers.registry import SolveOptions, solve  # noqa: E402

# family -> (preset, generator params, held-out instance seed): the seeds of bench_model.py
FAMILIES: dict[str, tuple[str, dict, int]] = {
    "paper": ("paper", {}, 5000),
    "varied": ("varied", {}, 5000),
    "alibaba": ("alibaba", {}, 5000),
}
BOUNDS = ("lagrangian", "block", "trivial")


def gap_stats(values: list[float]) -> dict:
    iv = mean_interval(values)
    return {"mean": iv.mean, "low": iv.low, "high": iv.high, "n": iv.n,
            "worst": float(max(values)) if values else float("nan")}


def fmt(s: dict) -> str:
    if not s["n"]:
        return "—"
    band = "" if not np.isfinite(s["low"]) else f" [{100 * s['low']:.2f}, {100 * s['high']:.2f}]"
    return f"{100 * s['mean']:.2f} %{band} / {100 * s['worst']:.2f} %"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 instances per family, 300 tasks, GA 1 s, 100 iterations")
    ap.add_argument("--count", type=int, default=None, help="instances per family (default 5; quick 2)")
    ap.add_argument("--n-tasks", type=int, default=None, help="tasks per instance, every family (default 1000)")
    ap.add_argument("--ga-seconds", type=float, default=None, help="GA CPU-time budget (default 5; quick 1)")
    ap.add_argument("--iterations", type=int, default=None, help="subgradient iterations (default 400; quick 100)")
    ap.add_argument("--bound-seconds", type=float, default=120.0, help="CPU-time cap of one Lagrangian bound")
    ap.add_argument("--cpsat", type=float, default=0.0, help="also CP-SAT's bound at this many seconds (0: off)")
    ap.add_argument("--families", default=",".join(FAMILIES), help="comma-separated subset of the families")
    ap.add_argument("--out", type=Path, default=None, help="Markdown file (+ .json beside it)")
    args = ap.parse_args()
    count = args.count or (2 if args.quick else 5)
    n_tasks = args.n_tasks or (300 if args.quick else 1000)
    ga_seconds = args.ga_seconds or (1.0 if args.quick else 5.0)
    iterations = args.iterations or (100 if args.quick else 400)
    out = args.out or (ROOT / "runs" / "bench-bound-quick.md" if args.quick
                       else Path(__file__).parent / "results" / "bound.md")
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        sys.exit(f"error: --families: unknown {', '.join(unknown)}; known: {', '.join(FAMILIES)}")
    numba.set_num_threads(1)
    load_at_start = os.getloadavg()[0]
    t_start = time.perf_counter()
    warm_up()
    columns = BOUNDS + (("cpsat",) if args.cpsat > 0 else ())

    rows_by_family: dict[str, list[dict]] = {}
    for fam in families:
        preset, params, seed = FAMILIES[fam]
        rows = []
        for i, inst in enumerate(generate(preset, seed=seed, count=count, n_tasks=n_tasks, **params)):
            t0 = time.thread_time()
            ga = solve(inst, "ga", SolveOptions(seed=i, seconds=ga_seconds, params={"clock": "cpu"}))
            row = {"instance": inst.name, "n_tasks": inst.n_tasks, "providers": inst.n_providers,
                   "ga": {"delay": ga.total_latency, "cpu_s": time.thread_time() - t0,
                          "generations": ga.extra.get("generations")},
                   "greedy": {"delay": greedy_assignment(inst)[1]}}
            t0 = time.thread_time()
            lag = lagrangian_bound(inst, upper=ga.total_latency, assignment=ga.assignment, iterations=iterations,
                                   seconds=args.bound_seconds, clock="cpu")
            row["lagrangian"] = {"bound": lag["bound"], "cpu_s": time.thread_time() - t0,
                                 "iterations": lag["iterations"], "exact_pricing": lag["exact_pricing"]}
            t0 = time.thread_time()
            row["block"] = {"bound": block_bound(inst)[0], "cpu_s": time.thread_time() - t0}
            row["trivial"] = {"bound": trivial_bound(inst), "cpu_s": 0.0}
            if args.cpsat > 0:
                t0 = time.thread_time()
                cp = solve(inst, "cpsat", SolveOptions(seed=i, seconds=args.cpsat, params={"workers": 1}))
                row["cpsat"] = {"bound": cp.extra["lower_bound"], "cpu_s": time.thread_time() - t0}
            for col in columns:
                row[col]["ga_gap"] = ga.total_latency / row[col]["bound"] - 1.0
                row[col]["greedy_gap"] = row["greedy"]["delay"] / row[col]["bound"] - 1.0
            rows.append(row)
            print(f"{fam} {inst.name}: GA {ga.total_latency:.2f}, proven gap " + ", ".join(
                f"{c} {100 * row[c]['ga_gap']:.2f} %" for c in columns)
                + f" ({lag['iterations']} it, {row['lagrangian']['cpu_s']:.0f} s)", flush=True)
        rows_by_family[fam] = rows
    stats = {fam: {col: {"ga_gap": gap_stats([r[col]["ga_gap"] for r in rows]),
                         "greedy_gap": gap_stats([r[col]["greedy_gap"] for r in rows]),
                         "median_cpu_s": float(np.median([r[col]["cpu_s"] for r in rows]))}
                   for col in columns}
             for fam, rows in rows_by_family.items()}

    lines = [
        f"# Proven gap of GA {ga_seconds:g} s (CPU) per family: GA delay / lower bound - 1",
        "",
        f"{count} instances per family, {n_tasks} tasks, held-out seeds "
        f"({', '.join(f'{f}: {FAMILIES[f][2]}' for f in families)}); Lagrangian bound: {iterations} subgradient "
        f"iterations at most, {args.bound_seconds:g} s CPU cap. One core, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, 1-min load average {load_at_start:.1f} at start. "
        f"Run took {time.perf_counter() - t_start:.0f} s.",
        "",
        "Each cell: mean proven gap [95% interval] / worst instance. Lower is better; the true gap of the GA "
        "is at most this.",
        "",
        "| family | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for fam, st in stats.items():
        lines.append(f"| {fam} | " + " | ".join(fmt(st[c]["ga_gap"]) for c in columns) + " |")
    lines += ["", "Proven gap of greedy (same bounds):", "", "| family | " + " | ".join(columns) + " |",
              "|---|" + "---:|" * len(columns)]
    for fam, st in stats.items():
        lines.append(f"| {fam} | " + " | ".join(fmt(st[c]["greedy_gap"]) for c in columns) + " |")
    lines += ["", "Median CPU seconds of each bound:", "", "| family | " + " | ".join(columns) + " |",
              "|---|" + "---:|" * len(columns)]
    for fam, st in stats.items():
        lines.append(f"| {fam} | " + " | ".join(f"{st[c]['median_cpu_s']:.1f}" for c in columns) + " |")
    if "paper" in stats:
        g = stats["paper"]["lagrangian"]["ga_gap"]["mean"]
        lines += ["", f"Goal (issue 18): proven gap <= 5 % on paper: mean {100 * g:.2f} % — "
                      + ("met." if g <= 0.05 else f"missed by {100 * (g - 0.05):.2f} points.")]
    text = "\n".join(lines) + "\n"
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    config = {"quick": args.quick, "count": count, "n_tasks": n_tasks, "ga_seconds": ga_seconds,
              "iterations": iterations, "bound_seconds": args.bound_seconds, "cpsat_seconds": args.cpsat,
              "families": {f: FAMILIES[f] for f in families}, "platform": platform.platform(),
              "cpus": os.cpu_count(), "load_average_at_start": load_at_start,
              "command": " ".join([Path(sys.executable).name, *sys.argv])}
    out.with_suffix(".json").write_text(json.dumps({"config": config, "stats": stats, "rows": rows_by_family},
                                                   indent=1, default=float))


if __name__ == "__main__":
    main()
