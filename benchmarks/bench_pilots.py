"""Which look-ahead pilot guides a one-pass decoder best? The rollout method's bases, no model (issue 18, item 4).

The general model's one-pass corrects a look-ahead pilot: for task `i` and each provider `k`, the cost of the
next H tasks after `i` goes to `k`. This benchmark measures the pilots themselves, as decoders
(`solve --method rollout`), on TUNING instances (seed 4000; never the held-out ones):

* `greedy`: the look-ahead tasks completed by greedy (earliest completion);
* `priced`: by priced greedy (a task is also charged for the delay it imposes on the tasks behind it);
* `mixed` at weight w: (1 - w) x the priced pilot's cost + w x the cost of the same tasks on a FIXED plan
  (priced greedy's choices for them from the queues without task i, computed once per task).

An adaptive pilot re-decides every look-ahead task after each candidate, so two candidates' costs differ
partly by the pilot's own reshuffling of the tasks behind them, and more so the longer the look-ahead: the
`greedy` and `priced` rows get WORSE with a longer look-ahead. On a fixed plan only the candidate differs.

Each cell: mean ratio to GA-5s (CPU) [95 % t-interval] over the family's instances; CPU ms per 1000 tasks
of the mixed pilot at H = 75 beside the priced one at H = 50 (the one-pass decoders' two pilots).

    python benchmarks/bench_pilots.py              # 12 instances of alibaba, paper, varied -> results/pilots.md|json
    python benchmarks/bench_pilots.py --quick      # 3 instances, 300 tasks, GA 1 s -> runs/
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
from edgepoc.game.kernel import simulate  # noqa: E402
from edgepoc.solvers.registry import SolveOptions, solve  # noqa: E402
from edgepoc.solvers.rollout import DEFAULT_PRICE, rollout_assignment  # noqa: E402

FAMILIES = ("alibaba", "paper", "varied")
TUNING_SEED = 4000
HORIZONS = (20, 50, 75, 100, 150)
# (label, price, fixed-plan weight)
BASES = (("greedy", 0.0, 0.0), ("priced", DEFAULT_PRICE, 0.0), ("mixed 0.3", DEFAULT_PRICE, 0.3),
         ("mixed 0.5", DEFAULT_PRICE, 0.5), ("mixed 0.7", DEFAULT_PRICE, 0.7), ("fixed plan only", DEFAULT_PRICE, 1.0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 instances per family, 300 tasks, GA 1 s (development)")
    ap.add_argument("--count", type=int, default=None, help="instances per family (default 12; quick 3)")
    ap.add_argument("--out", type=Path, default=None, help="Markdown file (+ .json beside it)")
    args = ap.parse_args()
    count = args.count or (3 if args.quick else 12)
    n_tasks, ga_seconds = (300, 1.0) if args.quick else (1000, 5.0)
    out = args.out or (ROOT / "runs" / "pilots-quick.md" if args.quick
                       else Path(__file__).parent / "results" / "pilots.md")
    numba.set_num_threads(1)
    load_at_start = os.getloadavg()[0]
    warm = generate("paper", seed=4999, count=1, n_tasks=60)[0]  # compile before any clock
    for _, price, mix in BASES:
        rollout_assignment(warm, 5, None, price, mix=mix)
    t_start = time.perf_counter()
    ratios: dict[str, dict[str, list[float]]] = {}
    ms: dict[str, dict[str, list[float]]] = {}
    for fam in FAMILIES:
        size = {} if fam == "varied" else {"n_tasks": n_tasks}
        ratios[fam], ms[fam] = {}, {"priced H=50": [], "mixed 0.5 H=75": []}
        for i, inst in enumerate(generate(fam, seed=TUNING_SEED, count=count, **size)):
            ga = solve(inst, "ga", SolveOptions(seed=i, seconds=ga_seconds, params={"clock": "cpu"})).total_latency
            for label, price, mix in BASES:
                for h in HORIZONS:
                    t0 = time.thread_time()
                    x = rollout_assignment(inst, h, None, price, mix=mix)
                    cpu = time.thread_time() - t0
                    ratios[fam].setdefault(f"{label} H={h}", []).append(simulate(inst, x) / ga)
                    if f"{label} H={h}" in ms[fam]:
                        ms[fam][f"{label} H={h}"].append(cpu * 1e6 / inst.n_tasks)
            print(f"{fam} {inst.name}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in ratios[fam].items()
                                                    if k.endswith("H=75")), flush=True)
    lines = [f"# Look-ahead pilots as decoders, no model: ratio to GA-{ga_seconds:g}s on TUNING instances", "",
             f"{count} instances per family (seed {TUNING_SEED}; {n_tasks} tasks, `varied` draws 50-1000), one core, "
             f"{platform.machine()}, {os.cpu_count()} CPUs, load average {load_at_start:.1f} at start. Run took "
             f"{time.perf_counter() - t_start:.0f} s. Command: `python benchmarks/bench_pilots.py"
             f"{' --quick' if args.quick else ''}`.", "",
             "Each cell: mean ratio to the GA's total delay [95 % interval]; lower is better.", ""]
    for fam in FAMILIES:
        lines += [f"## {fam}", "", "| base | " + " | ".join(f"H = {h}" for h in HORIZONS) + " |",
                  "|---|" + "---:|" * len(HORIZONS)]
        for label, _, _ in BASES:
            cells = []
            for h in HORIZONS:
                iv = mean_interval(ratios[fam][f"{label} H={h}"])
                cells.append(f"{iv.mean:.3f} [{iv.low:.3f}, {iv.high:.3f}]" if np.isfinite(iv.low)
                             else f"{iv.mean:.3f}")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines += ["", "CPU ms per 1000 tasks (median): " + ", ".join(
            f"{k} {np.median(v):.1f}" for k, v in ms[fam].items()), ""]
    text = "\n".join(lines)
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    config = {"quick": args.quick, "count": count, "n_tasks": n_tasks, "ga_seconds": ga_seconds, "seed": TUNING_SEED,
              "horizons": HORIZONS, "bases": BASES, "platform": platform.platform(), "cpus": os.cpu_count(),
              "load_average_at_start": load_at_start, "command": " ".join([Path(sys.executable).name, *sys.argv])}
    out.with_suffix(".json").write_text(json.dumps({"config": config, "ratios": ratios, "ms_per_1000": ms},
                                                   indent=1, default=float))


if __name__ == "__main__":
    main()
