"""General student vs general teacher on held-out instances of every family (issue 11 student targets).

Families: `paper` (K = 3 and 8), `varied`, `alibaba` windows (K = 5), and `paper` at K = 2, 12, 16; held-out
seed 5000 (training used the mix of seed 1000, selection seed 2000). On one core (torch + numba 1 thread):
parameter counts; one-pass decode (no search) delay and CPU time per 1000 tasks (features + embedding + decode); the
search decode at its default work budget; greedy and rollout (H = 20) in the same run as baselines.
Targets: student parameters <= 10 % of the teacher's, decoded student within 3 % of the decoded teacher.

    python benchmarks/bench_distill.py [--count 10] [--teacher CKPT] [--student CKPT] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numba
import numpy as np
import torch

from edgepoc.game.generators import alibaba, paper, varied
from edgepoc.game.kernel import greedy_assignment, simulate
from edgepoc.models.paper.allocation import count_parameters
from edgepoc.models.checkpoint import bundled_path, load_model
from edgepoc.solvers.registry import SolveOptions, solve
from edgepoc.solvers.rollout import rollout_assignment

SEED = 5000
FAMILIES = {
    "paper K=3": lambda i: paper(SEED, i, providers=3),
    "paper K=8": lambda i: paper(SEED + 1, i, providers=8),
    "varied": lambda i: varied(SEED, i),
    "alibaba K=5": lambda i: alibaba(SEED, i, providers=5),
    "paper K=2": lambda i: paper(SEED + 2, i, providers=2),
    "paper K=12": lambda i: paper(SEED + 3, i, providers=12),
    "paper K=16": lambda i: paper(SEED + 4, i, providers=16),
}


def run(kind: str, path: Path, inst, decode: str) -> tuple[float, float]:
    """(delay, thread CPU seconds): CPU time, as the machine is shared and wall time depends on its load."""
    t0 = time.thread_time()
    res = solve(inst, kind, SolveOptions(model=str(path), params={"decode": decode}))
    return res.total_latency, time.thread_time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=10)
    ap.add_argument("--teacher", type=Path, default=None)
    ap.add_argument("--student", type=Path, default=None)
    ap.add_argument("--quick", action="store_true", help="3 instances per family, no search column")
    ap.add_argument("--ga-seconds", type=float, default=0.0,
                    help="also run the GA with this CPU-time budget (one core) as a reference column")
    ap.add_argument("--families", default=",".join(FAMILIES), help="comma-separated subset of the families")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "distill.md")
    args = ap.parse_args()
    count = 3 if args.quick else args.count
    load_at_start = os.getloadavg()[0]
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    tpath, spath = args.teacher or bundled_path("teacher"), args.student or bundled_path("student")
    teacher, _ = load_model(tpath, expect_kind="teacher")
    student, _ = load_model(spath, expect_kind="student")
    warm = paper(SEED, 99, n_tasks=50)
    for kind, p in (("teacher", tpath), ("student", spath)):
        run(kind, p, warm, "search")
    families = {f: FAMILIES[f] for f in args.families.split(",")}
    rows = []
    for fam, make in families.items():
        for i in range(count):
            inst = make(i)
            row = {"family": fam, "name": inst.name, "n": inst.n_tasks, "k": inst.n_providers,
                   "greedy": greedy_assignment(inst)[1], "rollout": simulate(inst, rollout_assignment(inst))}
            if not args.quick:  # the no-model control: the same search from greedy, uniform kicks, same budget
                row["control_search"] = solve(inst, "search", SolveOptions(seed=0)).total_latency
            if args.ga_seconds > 0:
                row["ga"] = solve(inst, "ga", SolveOptions(seed=i, seconds=args.ga_seconds,
                                                         params={"clock": "cpu"})).total_latency
            for kind, p in (("teacher", tpath), ("student", spath)):
                row[f"{kind}_onepass"], sec = run(kind, p, inst, "onepass")
                row[f"{kind}_ms_per_1000"] = 1000.0 * sec * 1000.0 / inst.n_tasks
                if not args.quick:
                    row[f"{kind}_search"], _ = run(kind, p, inst, "search")
            rows.append(row)
            print(fam, inst.name, {k: round(v, 3) for k, v in row.items() if isinstance(v, float)}, flush=True)
    nt, ns = count_parameters(teacher), count_parameters(student)
    cols = ["onepass"] + ([] if args.quick else ["search"])
    lines = [
        f"# General student vs teacher: {count} held-out instances per family (seed {SEED}+)",
        "",
        f"One core (torch + numba 1 thread), {platform.machine()}, {os.cpu_count()} CPUs, 1-min load average "
        f"{load_at_start:.1f} at start. Ratios are means over instances of (method delay / baseline delay) "
        "in this run; `onepass` = the one-pass decode (no search), `search` = its default work budget; "
        "ms/1000 = thread CPU time of the one-pass solve (features, embedding, decode) per 1000 tasks, median.",
        "",
        f"Parameters: teacher {nt:,}, student {ns:,} ({100.0 * ns / nt:.1f} %); checkpoints "
        f"{tpath.stat().st_size / 1024:.0f} / {spath.stat().st_size / 1024:.0f} KiB.",
        "",
        "| family | K | teacher/greedy | teacher/rollout | student/rollout | student/teacher one-pass "
        + ("| student/teacher search | teacher search/no-model search " if not args.quick else "")
        + "| teacher ms/1000 | student ms/1000 |",
        "|---|---:|---:|---:|---:|---:|" + ("---:|---:|" if not args.quick else "") + "---:|---:|",
    ]
    summary = {}
    for fam in families:
        r = [x for x in rows if x["family"] == fam]
        m = lambda a, b: float(np.mean([x[a] / x[b] for x in r]))  # noqa: E731
        s = {"teacher/greedy": m("teacher_onepass", "greedy"), "teacher/rollout": m("teacher_onepass", "rollout"),
             "student/rollout": m("student_onepass", "rollout"),
             "student/teacher onepass": m("student_onepass", "teacher_onepass"),
             "teacher_ms": float(np.median([x["teacher_ms_per_1000"] for x in r])),
             "student_ms": float(np.median([x["student_ms_per_1000"] for x in r]))}
        if not args.quick:
            s["student/teacher search"] = m("student_search", "teacher_search")
            s["teacher search/control"] = m("teacher_search", "control_search")
            s["student search/control"] = m("student_search", "control_search")
        if args.ga_seconds > 0:
            for c in ["onepass"] + ([] if args.quick else ["search"]):
                s[f"teacher {c}/ga"] = m(f"teacher_{c}", "ga")
                s[f"student {c}/ga"] = m(f"student_{c}", "ga")
            s["rollout/ga"] = m("rollout", "ga")
            if not args.quick:
                s["control search/ga"] = m("control_search", "ga")
        summary[fam] = s
        lines.append(f"| {fam} | {r[0]['k'] if 'varied' not in fam else '2-6'} | {s['teacher/greedy']:.3f} | "
                     f"{s['teacher/rollout']:.3f} | {s['student/rollout']:.3f} | {s['student/teacher onepass']:.3f} | "
                     + ("" if args.quick else f"{s['student/teacher search']:.3f} | {s['teacher search/control']:.3f} | ")
                     + f"{s['teacher_ms']:.1f} | {s['student_ms']:.1f} |")
    gaps = {c: 100.0 * (float(np.mean([x[f"student_{c}"] / x[f"teacher_{c}"] for x in rows])) - 1.0) for c in cols}
    worst = {c: max(100.0 * (summary[f][f"student/teacher {c}"] - 1.0) for f in families) for c in cols}
    if args.ga_seconds > 0:
        lines += ["", f"Against the GA at {args.ga_seconds:g} s CPU (one core, same run):", "",
                  "| family | rollout/GA | " + " | ".join(f"teacher {c}/GA | student {c}/GA" for c in cols)
                  + (" | no-model search/GA" if not args.quick else "") + " |",
                  "|---|---:|" + "---:|---:|" * len(cols) + ("---:|" if not args.quick else "")]
        for fam in families:
            s = summary[fam]
            lines.append(f"| {fam} | {s['rollout/ga']:.3f} | " + " | ".join(
                f"{s[f'teacher {c}/ga']:.3f} | {s[f'student {c}/ga']:.3f}" for c in cols)
                + ("" if args.quick else f" | {s['control search/ga']:.3f}") + " |")
    lines += ["", f"**Targets:** student parameters <= 10 % of the teacher's: "
              f"{'met' if ns <= 0.1 * nt else 'missed'} ({100.0 * ns / nt:.1f} %); decoded student within 3 % of "
              "the decoded teacher: " + "; ".join(
                  f"{c}: {'met' if worst[c] <= 3 else 'missed'} (all instances {gaps[c]:+.2f} %, worst family "
                  f"{worst[c]:+.2f} %)" for c in cols) + "."]
    text = "\n".join(lines) + "\n"
    print(text)
    out = args.out if not args.quick else args.out.with_name(args.out.stem + "-quick.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    config.update({"teacher_path": str(tpath), "student_path": str(spath), "platform": platform.platform(),
                   "cpus": os.cpu_count(), "load_average_at_start": load_at_start})
    out.with_suffix(".json").write_text(json.dumps(
        {"config": config, "teacher_params": nt, "student_params": ns, "summary": summary, "gap_pct": gaps,
         "rows": rows}, indent=1, default=float))


if __name__ == "__main__":
    main()
