"""Held-out A/B of general teachers (issue 18 item 4): the bundled teacher, candidate teachers, the no-model control.

One GA run per instance (the reference, CPU-time budget), then on the same instance: `rollout`, the no-model
search (registry `search`: the same search loop from greedy with uniform kicks, the same work budget), and for
the bundled teacher and every `--model NAME=PATH` its one-pass and search decodes. Families and their held-out
seeds are `bench_model.FAMILIES` (5000+: never used to train or select; training uses the mix of seed 1000,
selection seed 2000). Everything runs in this one process on one thread.

Reported per family: each column's ratio to GA (mean [95 % t-interval] / worst); the share of the no-model
control's gap to GA that each search closes; paired gains (% of the second column's delay, 95 % interval) of
every candidate over the bundled teacher and of each `--pair A:B`.

    python benchmarks/bench_scale.py --model median=runs/scale-median-full/teacher.pt \
        --out benchmarks/results/model-scale.md
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
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_model as bm  # noqa: E402

from edgepoc.experiments.stats import difference_verdict  # noqa: E402
from edgepoc.game.generators import generate  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", default=[], help="NAME=PATH of a candidate teacher (repeatable)")
    ap.add_argument("--pair", action="append", default=[], help="A:B, paired gain of column A over column B")
    ap.add_argument("--families", default="paper,varied,alibaba")
    ap.add_argument("--count", type=int, default=10)
    ap.add_argument("--n-tasks", type=int, default=1000)
    ap.add_argument("--ga-seconds", type=float, default=5.0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    models = dict(m.split("=", 1) for m in args.model)
    columns: dict[str, tuple[str, dict, str | None]] = {
        "rollout": ("rollout", {}, None),
        "no-model": ("search", {}, None),
        "bundled onepass": ("teacher", {"decode": "onepass"}, None),
        "bundled search": ("teacher", {"decode": "search"}, None),
    }
    for name, path in models.items():
        columns[f"{name} onepass"] = ("teacher", {"decode": "onepass"}, path)
        columns[f"{name} search"] = ("teacher", {"decode": "search"}, path)
    pairs = [(f"{n} {d}", f"bundled {d}") for n in models for d in ("onepass", "search")]
    pairs += [tuple(p.split(":", 1)) for p in args.pair]
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    load0, t0 = os.getloadavg()[0], time.perf_counter()
    warm = generate("paper", seed=4999, count=1, n_tasks=60)[0]
    for method, params, path in columns.values():
        bm.run_column(warm, method, params, 0, path)
    bm.run_ga(warm, 0.05, 0)

    families = [f.strip() for f in args.families.split(",") if f.strip()]
    rows_by_family: dict[str, list[dict]] = {}
    for fam in families:
        preset, params, seed = bm.FAMILIES[fam]
        size = {} if preset == "varied" else {"n_tasks": args.n_tasks}
        rows = []
        for i, inst in enumerate(generate(preset, seed=seed, count=args.count, **params, **size)):
            row = {"instance": inst.name, "n_tasks": inst.n_tasks, "providers": inst.n_providers,
                   "ga": bm.run_ga(inst, args.ga_seconds, i)}
            for col, (method, p, path) in columns.items():
                row[col] = bm.run_column(inst, method, p, i, path)
            rows.append(row)
            print(f"{fam} {inst.name}: " + ", ".join(
                f"{c} {row[c]['delay'] / row['ga']['delay']:.3f}" if "delay" in row[c] else f"{c} failed"
                for c in columns), flush=True)
        rows_by_family[fam] = rows
    stats = {fam: {c: bm.family_stats(rows, c) for c in columns} for fam, rows in rows_by_family.items()}

    lines = [f"# General teachers A/B on held-out instances vs GA {args.ga_seconds:g} s (CPU)", "",
             f"{args.count} instances per family ({args.n_tasks} tasks; `varied` draws its own size), held-out seeds "
             f"({', '.join(f'{f}: {bm.FAMILIES[f][2]}' for f in families)}). One thread, {platform.machine()}, "
             f"{os.cpu_count()} CPUs, 1-min load average {load0:.1f} at start; run took "
             f"{time.perf_counter() - t0:.0f} s. Bundled models: `{bm.bundle_commit()[:80]}`. Candidates: "
             + (", ".join(f"`{n}` = `{p}`" for n, p in models.items()) or "none") + ".", "",
             "Ratio to the GA's total delay on the same instance: mean [95% interval] / worst.", "",
             "| family | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for fam, st in stats.items():
        lines.append(f"| {fam} | " + " | ".join(bm.fmt_ratio(st[c]) for c in columns) + " |")
    lines += ["", "Share of the no-model control's gap to GA closed by each search (issue 18 target: >= 1/3):", ""]
    for fam, st in stats.items():
        gap = st["no-model"]["mean"] - 1.0
        parts = [f"{c}: {100 * (gap - (st[c]['mean'] - 1.0)) / gap:.0f}%" for c in columns
                 if c.endswith("search") and gap > 0]
        lines.append(f"- **{fam}** (control {st['no-model']['mean']:.3f}x): " + "; ".join(parts))
    lines += ["", "Paired gains (% of the second column's delay; positive = the first is better; 95% interval):", ""]
    gains: dict[str, dict[str, dict]] = {}
    for fam, rows in rows_by_family.items():
        parts = []
        for a, b in pairs:
            g = bm.gain_interval(rows, a, b)
            gains.setdefault(fam, {})[f"{a} vs {b}"] = {"mean": g.mean, "low": g.low, "high": g.high, "n": g.n}
            parts.append(f"{a} vs {b}: {g.fmt('+.2f', '%')} ({difference_verdict(g)})")
        lines.append(f"- **{fam}**: " + "; ".join(parts))
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    config = {"count": args.count, "n_tasks": args.n_tasks, "ga_seconds": args.ga_seconds,
              "families": {f: bm.FAMILIES[f] for f in families}, "columns": columns, "pairs": pairs,
              "models": models, "bundle": bm.bundle_commit(), "platform": platform.platform(),
              "cpus": os.cpu_count(), "load_average_at_start": load0,
              "command": " ".join([Path(sys.executable).name, *sys.argv])}
    args.out.with_suffix(".json").write_text(json.dumps({"config": config, "stats": stats, "gains": gains,
                                                         "rows": rows_by_family}, indent=1, default=float))


if __name__ == "__main__":
    main()
