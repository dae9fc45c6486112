"""The general model per family against GA 5 s and greedy, on held-out instances (issue 11 targets).

Families: `paper`, `varied`, `alibaba` windows, and `paper` with K in {2, 3, 5, 8, 12} providers (and, when asked
for, `alibaba-K=6`: trace windows on 6 providers). Each
family's instances come from a held-out seed (5000 + ..., never used to train or select the bundled
models: those train on seed 1000 and select on seed 2000, docs/models.md). Everything runs in this one
process on ONE core (torch and numba single-threaded), so every ratio compares methods measured in the
same run on the same machine state. Per instance and method: total delay (re-simulated by the kernel)
and the CPU time of the call (`time.thread_time`; the GA's budget counts the same clock).

Columns (the controls beside the model):

* greedy (earliest completion) and `rollout` (the pilot method, H = 20): the classical one-pass controls;
* `priced rollout` (priced-greedy pilots, H = 100) and `mixed rollout` (on heavy tails half of each priced pilot's
  cost on a fixed plan, H = 75; on light ones the priced pilot at H = 50: the bundled model's own pilot with no
  model), the controls the model's pilots come from;
* `onepass`: the teacher's one-pass decode on the live queues, no local search;
* `search`: the teacher's search decoder at its default work budget (the "50 ms-equivalent" sweeps);
* `no-model`: the same search decoder on uniform scores (registry method `search`), same budget;
* the student's one-pass and search decodes (its target: within 3 % of the teacher after decoding).

Ratios are total delay / the GA's total delay on the same instance: mean, worst and a 95 % t-interval
over the family's instances. The target checks of issue 11 are printed under the table.

    python benchmarks/bench_model.py            # full: 10 instances per family, GA 5 s -> results/model.md|json
    python benchmarks/bench_model.py --quick    # 3 instances per family, GA 1 s, 300 tasks -> runs/
    python benchmarks/bench_model.py --tuning --out F.md              # the tuning set (seed 4000), for choosing
    python benchmarks/bench_model.py --seed-offset 2000 --out F.md    # another fresh set (seed 3000), for
                                                                      # how much a figure moves between sets
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numba
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgepoc.experiments.stats import mean_interval  # noqa: E402
from edgepoc.game.generators import generate  # noqa: E402
from edgepoc.game.kernel import simulate  # noqa: E402
from edgepoc.solvers.registry import SolveOptions, solve  # noqa: E402

# family -> (preset, generator params, held-out instance seed)
FAMILIES: dict[str, tuple[str, dict, int]] = {
    "paper": ("paper", {}, 5000),
    "varied": ("varied", {}, 5000),
    "alibaba": ("alibaba", {}, 5000),
    **{f"K={k}": ("paper", {"providers": k}, 5100 + k) for k in (2, 3, 5, 8, 12)},
    # trace windows on 6 providers (the "unseen 6-provider trace window"); not in the default run, which
    # keeps the families the bundle was chosen on: `--families alibaba-K=6`
    "alibaba-K=6": ("alibaba", {"providers": 6}, 5206),
}
DEFAULT_FAMILIES = ("paper", "varied", "alibaba", "K=2", "K=3", "K=5", "K=8", "K=12")
TUNING_OFFSET = 1000  # --tuning: seeds 4000 / 41xx, used to choose between candidates, never to report them
# seeds of the general model's training mix (1000) and validation mix (2000), and the tuning set (4000 / 41xx):
# --seed-offset refuses a set that would reuse them
USED_SEEDS = frozenset({1000, 2000, 4000, *(4100 + k for k in (2, 3, 5, 8, 12))})
# column -> (registry method, params); the GA column is the reference and runs separately
COLUMNS: dict[str, tuple[str, dict]] = {
    "greedy": ("greedy", {}),
    "rollout": ("rollout", {}),
    "priced rollout": ("rollout", {"base": "priced"}),
    "mixed rollout": ("rollout", {"base": "mixed"}),  # the bundled model's own pilot (H 50-75), no model
    "onepass": ("teacher", {"decode": "onepass"}),
    "search": ("teacher", {"decode": "search"}),
    "no-model": ("search", {}),
    "student onepass": ("student", {"decode": "onepass"}),
    "student search": ("student", {"decode": "search"}),
}
# with --candidate DIR: the same decoders with DIR/teacher.pt and DIR/student.pt, in the same run
CANDIDATE_COLUMNS: dict[str, tuple[str, dict, str]] = {
    "new onepass": ("teacher", {"decode": "onepass"}, "teacher.pt"),
    "new search": ("teacher", {"decode": "search"}, "teacher.pt"),
    "new student onepass": ("student", {"decode": "onepass"}, "student.pt"),
    "new student search": ("student", {"decode": "search"}, "student.pt"),
}
MODEL_OF: dict[str, str] = {}  # column -> checkpoint path (filled from --candidate)
# the no-model control again, its work budget scaled per instance to the CPU time the teacher's search took
# there (sweeps = 30 x search CPU / control CPU, measured in the same run): the control at equal CPU
EQUAL_CPU = "no-model, search's CPU"
BASE_SWEEPS = 30
# issue 11/18 targets on the family means (ratio to GA 5 s)
ONEPASS_TARGET = {"paper": 1.05, "varied": 1.05, "alibaba": 1.15, "alibaba-K=6": 1.15}
SEARCH_TARGET = 1.02
STUDENT_TARGET_PCT = 2.0  # issue 18: the student within 2 % of the teacher (one-pass and search)


def run_column(inst, method: str, params: dict, seed: int, model: str | None = None) -> dict:
    """One method on one instance: delay (kernel re-simulation) and CPU seconds of this thread."""
    t0, w0 = time.thread_time(), time.perf_counter()
    try:
        res = solve(inst, method, SolveOptions(seed=seed, model=model, params=dict(params)))
    except Exception as exc:  # a column that fails is reported, the others still run
        return {"error": f"{type(exc).__name__}: {exc}"}
    cpu, wall = time.thread_time() - t0, time.perf_counter() - w0
    assert res.total_latency == simulate(inst, res.assignment)
    return {"delay": res.total_latency, "cpu_s": cpu, "wall_s": wall}


def run_ga(inst, seconds: float, seed: int) -> dict:
    t0 = time.thread_time()
    res = solve(inst, "ga", SolveOptions(seed=seed, seconds=seconds, params={"clock": "cpu"}))
    return {"delay": res.total_latency, "cpu_s": time.thread_time() - t0,
            "generations": res.extra.get("generations")}


def table_columns() -> list[str]:
    return [*COLUMNS, EQUAL_CPU]


def equal_cpu_control(inst, row: dict, seed: int) -> dict:
    """The no-model control with its sweeps scaled to the teacher search's CPU time on this instance."""
    if "cpu_s" not in row["search"] or "cpu_s" not in row["no-model"]:
        return {"error": "search or no-model failed"}
    sweeps = max(BASE_SWEEPS, round(BASE_SWEEPS * row["search"]["cpu_s"] / max(row["no-model"]["cpu_s"], 1e-9)))
    return {**run_column(inst, "search", {"sweeps": sweeps}, seed), "sweeps": sweeps}


def family_stats(rows: list[dict], column: str) -> dict:
    """Ratio to GA over the family's instances: mean, worst, 95 % interval; median CPU ms per 1000 tasks."""
    ok = [r for r in rows if "delay" in r[column]]
    ratios = [r[column]["delay"] / r["ga"]["delay"] for r in ok if r["ga"]["delay"] > 0]
    iv = mean_interval(ratios)
    ms_per_1000 = [1e3 * r[column]["cpu_s"] / r["n_tasks"] * 1000 for r in ok]
    errors = sorted({r[column]["error"] for r in rows if "error" in r[column]})
    return {"instances": len(ok), "mean": iv.mean, "low": iv.low, "high": iv.high,
            "worst": float(max(ratios)) if ratios else float("nan"),
            "ms_per_1000_tasks": float(np.median(ms_per_1000)) if ms_per_1000 else float("nan"),
            "errors": errors}


def gain_interval(rows: list[dict], a: str, b: str):
    """Per-instance improvement of column `a` over column `b`, in % of `b` (paired)."""
    pairs = [(r[a]["delay"], r[b]["delay"]) for r in rows if "delay" in r[a] and "delay" in r[b]]
    return mean_interval([(y - x) / y * 100 for x, y in pairs if y > 0])


def fmt_ratio(s: dict) -> str:
    if not s["instances"]:
        return "failed"
    ci = f" [{s['low']:.3f}, {s['high']:.3f}]" if np.isfinite(s["low"]) else ""
    return f"{s['mean']:.3f}{ci} / {s['worst']:.3f}"


def targets(stats: dict, rows_by_family: dict) -> list[str]:
    """The issue's targets, each as `met` / `missed (by how much)` with the measured numbers."""
    out = []
    for fam, st in stats.items():
        one, se, nm = st["onepass"], st["search"], st["no-model"]
        if not (one["instances"] and se["instances"]):
            out.append(f"- {fam}: the model did not run ({'; '.join(one['errors'] + se['errors'])})")
            continue
        checks = []
        if fam in ONEPASS_TARGET:
            t = ONEPASS_TARGET[fam]
            why = ""
            if one["mean"] > t:
                pilot = st["mixed rollout"]
                why = (f", by {100 * (one['mean'] - t):.1f} points; why: the one-pass decides each task once and corrects "
                       f"its look-ahead pilot (mixed rollout alone {pilot['mean']:.3f}x here) rather than planning past "
                       "the pilot's horizon, where the GA's plan differs (docs/models.md, \"the pilots' own limit\")")
            checks.append(f"one-pass <= {t:.2f}x GA: {'met' if one['mean'] <= t else 'missed'} ({one['mean']:.3f}x{why})")
        for control in ("rollout", "priced rollout", "mixed rollout"):
            ro = st[control]
            g = gain_interval(rows_by_family[fam], "onepass", control)
            checks.append(f"one-pass better than {control}: {'met' if one['mean'] < ro['mean'] else 'missed'} "
                          f"({one['mean']:.3f}x vs {ro['mean']:.3f}x; paired gain {g.fmt('+.2f', '%')})")
        checks.append(f"search <= {SEARCH_TARGET:.2f}x GA: {'met' if se['mean'] <= SEARCH_TARGET else 'missed'} "
                      f"({se['mean']:.3f}x)")
        ctrl_gap, gap = nm["mean"] - 1.0, se["mean"] - 1.0
        if ctrl_gap > 0:
            closed = (ctrl_gap - gap) / ctrl_gap
            g = gain_interval(rows_by_family[fam], "search", "no-model")
            why = ""
            if closed < 1 / 3:
                rows = [r for r in rows_by_family[fam] if "delay" in r["search"] and "delay" in r["no-model"]]
                behind = [r for r in rows if r["search"]["delay"] > r["no-model"]["delay"]]
                why = (f"; why: the model search ends behind the control on {len(behind)} of {len(rows)} instances"
                       f" ({', '.join(r['instance'] for r in behind)}): there the local search"
                       " from greedy ends better than from the model's starts")
            checks.append(f"search closes >= 1/3 of the no-model gap: {'met' if closed >= 1 / 3 else 'missed'} "
                          f"({100 * closed:.0f}% of {100 * ctrl_gap:.2f}%; paired gain over the control "
                          f"{g.fmt('+.2f', '%')}{why})")
        else:
            checks.append(f"search vs no-model: the control is already at or below GA ({nm['mean']:.3f}x); "
                          f"search {se['mean']:.3f}x")
        if st[EQUAL_CPU]["instances"]:
            g = gain_interval(rows_by_family[fam], "search", EQUAL_CPU)
            verdict = ("better" if g.low > 0 else "worse" if g.high < 0
                       else "not significantly different" if np.isfinite(g.low) else "no interval")
            checks.append(f"search vs no-model at the search's CPU: {verdict} "
                          f"({se['mean']:.3f}x vs {st[EQUAL_CPU]['mean']:.3f}x; paired gain {g.fmt('+.2f', '%')})")
        checks.append(f"one-pass <= 20 ms / 1000 tasks: {'met' if one['ms_per_1000_tasks'] <= 20 else 'missed'} "
                      f"({one['ms_per_1000_tasks']:.1f} ms)")
        for dec, teacher_col in (("onepass", "onepass"), ("search", "search")):
            if st[f"student {dec}"]["instances"]:
                d = 100 * (st[f"student {dec}"]["mean"] / st[teacher_col]["mean"] - 1)
                checks.append(f"student {dec} within {STUDENT_TARGET_PCT:g}% of teacher: "
                              f"{'met' if d <= STUDENT_TARGET_PCT else 'missed'} ({d:+.2f}%)")
        if "new onepass" in st and st["new onepass"]["instances"]:
            for col in ("onepass", "search", "student onepass", "student search"):
                if f"new {col}" not in st:
                    continue
                g = gain_interval(rows_by_family[fam], f"new {col}", col)
                checks.append(f"candidate {col} vs bundled: paired gain {g.fmt('+.2f', '%')}")
        out.append(f"- **{fam}**: " + "; ".join(checks))
    return out


def bundle_commit() -> str:
    try:
        return subprocess.run(["git", "log", "-1", "--format=%h %cs %s", "--", "edgepoc/models/bundled"],
                              cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 instances per family, GA 1 s, 300 tasks (development)")
    ap.add_argument("--count", type=int, default=None, help="instances per family (default 10; quick 3)")
    ap.add_argument("--ga-seconds", type=float, default=None, help="GA CPU-time budget (default 5; quick 1)")
    ap.add_argument("--n-tasks", type=int, default=None, help="tasks per instance (default 1000; quick 300; "
                                                              "varied draws its own size)")
    ap.add_argument("--families", default=",".join(DEFAULT_FAMILIES), help="comma-separated subset of the families")
    ap.add_argument("--out", type=Path, default=None,
                    help="Markdown file (+ .json beside it); default results/model.md, or with --quick, --tuning or "
                         "--seed-offset a file under runs/")
    ap.add_argument("--tuning", action="store_true",
                    help="the tuning instances (seeds 1000 lower: 4000, 41xx) instead of the held-out ones, for choosing "
                         "between candidates; a choice is then confirmed on the held-out instances")
    ap.add_argument("--seed-offset", type=int, default=None,
                    help="instances of seeds this much lower than the held-out ones (--tuning is 1000): another set, "
                         "never used to train or choose, to see how a figure moves between instance sets; seeds the "
                         "training mix or the tuning set use are refused")
    ap.add_argument("--candidate", type=Path, default=None,
                    help="folder with a candidate teacher.pt (and student.pt): its decoders run as extra 'new ...' "
                         "columns beside the bundled ones, with the paired gain over the bundled model")
    args = ap.parse_args()
    if args.candidate:
        for col, (method, p, name) in CANDIDATE_COLUMNS.items():
            if (args.candidate / name).is_file():
                COLUMNS[col] = (method, p)
                MODEL_OF[col] = str(args.candidate / name)
    count = args.count or (3 if args.quick else 10)
    ga_seconds = args.ga_seconds or (1.0 if args.quick else 5.0)
    n_tasks = args.n_tasks or (300 if args.quick else 1000)
    # only the full held-out run writes the published results by default
    out = args.out or (ROOT / "runs" / "bench-model-quick.md" if args.quick
                       else ROOT / "runs" / "bench-model-tuning.md" if args.tuning
                       else ROOT / "runs" / f"bench-model-offset-{args.seed_offset}.md" if args.seed_offset
                       else Path(__file__).parent / "results" / "model.md")
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        sys.exit(f"error: --families: unknown {', '.join(unknown)}; known: {', '.join(FAMILIES)}")
    if args.tuning and args.seed_offset is not None:
        sys.exit("error: --tuning and --seed-offset: give one of them")
    seed_offset = TUNING_OFFSET if args.tuning else (args.seed_offset or 0)
    if not args.tuning and seed_offset:
        taken = {f: FAMILIES[f][2] - seed_offset for f in families
                 if FAMILIES[f][2] - seed_offset in USED_SEEDS or FAMILIES[f][2] - seed_offset < 0}
        if taken:
            sys.exit(f"error: --seed-offset {seed_offset}: seeds {taken} are negative or used to train or choose "
                     f"({sorted(USED_SEEDS)}); pick another offset")
    kind = ("TUNING" if args.tuning else "held-out" if not seed_offset
            else f"fresh (seed offset {seed_offset}: never used to train or choose, not the held-out set)")
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    load_at_start = os.getloadavg()[0]
    t_start = time.perf_counter()

    warm = generate("paper", seed=4999, count=1, n_tasks=60)[0]  # compile and load every column first
    for col, (method, params) in COLUMNS.items():
        run_column(warm, method, params, 0, MODEL_OF.get(col))
    run_ga(warm, 0.05, 0)

    rows_by_family: dict[str, list[dict]] = {}
    for fam in families:
        preset, params, seed = FAMILIES[fam]
        seed -= seed_offset
        size = {} if preset == "varied" else {"n_tasks": n_tasks}
        rows = []
        for i, inst in enumerate(generate(preset, seed=seed, count=count, **params, **size)):
            row = {"instance": inst.name, "n_tasks": inst.n_tasks, "providers": inst.n_providers,
                   "ga": run_ga(inst, ga_seconds, i)}
            for col, (method, p) in COLUMNS.items():
                row[col] = run_column(inst, method, p, i, MODEL_OF.get(col))
            row[EQUAL_CPU] = equal_cpu_control(inst, row, i)
            rows.append(row)
            print(f"{fam} {inst.name}: " + ", ".join(
                f"{c} {row[c]['delay'] / row['ga']['delay']:.3f}" if "delay" in row[c] else f"{c} failed"
                for c in table_columns()), flush=True)
        rows_by_family[fam] = rows
    stats = {fam: {col: family_stats(rows, col) for col in table_columns()} for fam, rows in rows_by_family.items()}

    model_line = bundle_commit()
    lines = [
        f"# The general model per family vs GA {ga_seconds:g} s (CPU) and greedy: "
        f"{'TUNING instances (for choosing, not for reporting)' if args.tuning else kind + ' instances'}",
        "",
        f"{count} instances per family ({n_tasks} tasks; `varied` draws 50-1000), "
        f"{kind} seeds "
        f"({', '.join(f'{f}: {FAMILIES[f][2] - seed_offset}' for f in families)}). "
        "One core (torch + numba 1 thread), "
        f"{platform.machine()}, {os.cpu_count()} CPUs, 1-min load average {load_at_start:.1f} at start; budgets "
        f"and times are CPU time of the solving thread. Bundled models: `{model_line}`. "
        f"Run took {time.perf_counter() - t_start:.0f} s.",
        "",
        "Each cell: mean ratio to the GA's total delay on the same instance [95% interval] / worst instance. "
        "Below 1: better than the GA. `onepass`/`search`: the teacher's decoders; `no-model`: the same search "
        "on uniform scores (same work budget); `no-model, search's CPU`: the control again with its sweeps scaled "
        "per instance to the CPU time the teacher's search took (30 x search CPU / control CPU).",
        "",
        "| family | " + " | ".join(table_columns()) + " |",
        "|---|" + "---:|" * len(table_columns()),
    ]
    for fam, st in stats.items():
        lines.append(f"| {fam} | " + " | ".join(fmt_ratio(st[c]) for c in table_columns()) + " |")
    lines += ["", "CPU milliseconds per 1000 tasks (median over the family's instances; GA: its budget):", "",
              "| family | " + " | ".join(table_columns()) + " |", "|---|" + "---:|" * len(table_columns())]
    for fam, st in stats.items():
        lines.append(f"| {fam} | " + " | ".join(f"{st[c]['ms_per_1000_tasks']:.1f}" for c in table_columns()) + " |")
    errors = [f"- {fam} {c}: {e}" for fam, st in stats.items() for c in table_columns() for e in st[c]["errors"]]
    if errors:
        lines += ["", "Failures:", "", *errors]
    lines += ["", "Targets of issues 11 and 18 (on the family means):", "", *targets(stats, rows_by_family), "",
              "Why the misses (measured, not assumed): docs/models.md, \"Where item 4 stands\"."]
    text = "\n".join(lines) + "\n"
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    config = {"quick": args.quick, "tuning": args.tuning, "count": count, "ga_seconds": ga_seconds, "n_tasks": n_tasks,
              "families": {f: FAMILIES[f] for f in families}, "columns": COLUMNS, "bundle": model_line,
              "candidate": {c: MODEL_OF[c] for c in MODEL_OF},
              "platform": platform.platform(), "cpus": os.cpu_count(), "load_average_at_start": load_at_start,
              "command": " ".join([Path(sys.executable).name, *sys.argv])}
    out.with_suffix(".json").write_text(json.dumps({"config": config, "stats": stats, "rows": rows_by_family},
                                                   indent=1, default=float))


if __name__ == "__main__":
    main()
