"""The teacher against GA labels on held-out `paper` instances (issue 4 targets).

For each of `--count` held-out `paper` instances (1000 tasks; seed 1000, never used in training)
the GA labels are computed in this run; then, on ONE core (torch and numba single-threaded):

* argmax inference time (features + forward + argmax; median of `--repeats`), target <= 20 ms;
* the `search` decoder within a `--budget-ms` budget (default 50), target: within 2% of GA;
* the same decoder without the greedy candidate (`lambdas` without the ECT extreme), and the same
  search with NO model (uniform P, greedy start only: greedy + the GA's local search + random kicks),
  so the model's own contribution is visible; greedy-ECT alone as the simple baseline;
* accuracy against the GA label and the diversity score D of P.

    python benchmarks/bench_model.py [--count 10] [--model CKPT] [--labeler ga] [--label-seconds S]
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

from edgepoc.game.generators import generate
from edgepoc.game.kernel import greedy_assignment, simulate
from edgepoc.models.checkpoint import bundled_path, load_model
from edgepoc.models.decode import DEFAULT_LAMBDAS, DecodeOptions, decode
from edgepoc.models.metrics import accuracy, diversity
from edgepoc.models.solve import model_probabilities
from edgepoc.solvers.registry import SolveOptions, solve

HELD_OUT_SEED = 1000


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def held_out(count: int, labeler: str, label_seconds: float | None, params: dict) -> list[dict]:
    """The benchmark instances with their labels, computed now (shared with bench_distill.py)."""
    out = []
    for inst in generate("paper", seed=HELD_OUT_SEED, count=count):
        res = solve(inst, labeler, SolveOptions(seed=0, seconds=label_seconds, params=dict(params)))
        out.append({"instance": inst, "label": res.assignment, "label_delay": res.total_latency,
                    "label_seconds": res.seconds, "greedy_delay": greedy_assignment(inst)[1]})
    return out


def run_model(model, inst, label, budget_ms: float, repeats: int, seed: int) -> dict:
    p = model_probabilities(model, inst)
    argmax_ms = median_ms(lambda: model_probabilities(model, inst).argmax(axis=1), repeats)
    x_arg = p.argmax(axis=1)
    t0 = time.perf_counter()
    p_again = model_probabilities(model, inst)  # the decoder's wall time includes inference
    x, info = decode(inst, p_again, DecodeOptions("search", budget_s=budget_ms / 1e3, seed=seed), started_at=t0)
    search_ms = 1e3 * (time.perf_counter() - t0)
    no_greedy = tuple(v for v in DEFAULT_LAMBDAS if v < 1e8)
    x_ng, _ = decode(inst, p, DecodeOptions("search", budget_s=budget_ms / 1e3, seed=seed, lambdas=no_greedy))
    uniform = np.full_like(p, 1.0 / p.shape[1])  # no model: the decoder's local search on its own
    x_nm, _ = decode(inst, uniform, DecodeOptions("search", budget_s=budget_ms / 1e3, seed=seed, lambdas=(1e9,)))
    return {"argmax_ms": argmax_ms, "argmax_delay": simulate(inst, x_arg), "search_delay": simulate(inst, x),
            "search_ms": search_ms, "source": info["source"], "search_no_greedy_delay": simulate(inst, x_ng),
            "no_model_search_delay": simulate(inst, x_nm),
            "accuracy": accuracy(x_arg, label), "diversity": diversity(p)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=10)
    ap.add_argument("--model", type=Path, default=None, help="teacher checkpoint (default: bundled)")
    ap.add_argument("--labeler", default="ga")
    ap.add_argument("--label-seconds", type=float, default=None)
    ap.add_argument("--label-param", action="append", default=[])
    ap.add_argument("--budget-ms", type=float, default=50.0)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "model.md")
    args = ap.parse_args()
    load_at_start = os.getloadavg()[0]  # the budget is wall-clock: a busy machine searches less in it
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    from edgepoc.cli.common import parse_params

    path = args.model or bundled_path("teacher")
    model, doc = load_model(path, expect_kind="teacher")
    cases = held_out(args.count, args.labeler, args.label_seconds, parse_params(args.label_param))
    warm = cases[0]["instance"]
    run_model(model, warm, cases[0]["label"], 5, 2, 0)  # compile / warm caches outside the timing
    rows = []
    for i, c in enumerate(cases):
        r = run_model(model, c["instance"], c["label"], args.budget_ms, args.repeats, i)
        r.update({k: c[k] for k in ("label_delay", "label_seconds", "greedy_delay")})
        r["name"] = c["instance"].name
        rows.append(r)

    def gap(key):
        return np.array([100.0 * (r[key] / r["label_delay"] - 1.0) for r in rows])

    lines = [
        f"# Teacher vs {args.labeler} labels: {args.count} held-out `paper` instances (1000 tasks, seed {HELD_OUT_SEED})",
        "",
        f"Model `{path.name}` ({sum(p.numel() for p in model.parameters()):,} parameters, {model.config.conv} conv), "
        f"one core (torch + numba 1 thread), {platform.machine()}, {os.cpu_count()} CPUs, 1-min load average "
        f"{load_at_start:.1f} at start (the budget is wall-clock), decode budget {args.budget_ms:g} ms.",
        "Gaps are (method / label - 1) in %; negative = better than the label.",
        "",
        "| instance | label delay | label s | greedy gap % | argmax gap % | search gap % | search w/o greedy gap % "
        "| no-model search gap % | winner | argmax ms | search ms | accuracy | D |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        g = lambda k: 100.0 * (r[k] / r["label_delay"] - 1.0)  # noqa: E731
        lines.append(f"| {r['name']} | {r['label_delay']:.1f} | {r['label_seconds']:.1f} | {g('greedy_delay'):+.2f} "
                     f"| {g('argmax_delay'):+.2f} | {g('search_delay'):+.2f} | {g('search_no_greedy_delay'):+.2f} "
                     f"| {g('no_model_search_delay'):+.2f} | {r['source']} | {r['argmax_ms']:.2f} | {r['search_ms']:.1f} | {r['accuracy']:.3f} "
                     f"| {r['diversity']:.4f} |")
    s = gap("search_delay")
    summary = {
        "labeler": args.labeler, "instances": args.count, "budget_ms": args.budget_ms,
        "greedy_gap_pct_mean": float(gap("greedy_delay").mean()),
        "argmax_gap_pct_mean": float(gap("argmax_delay").mean()),
        "search_gap_pct_mean": float(s.mean()), "search_gap_pct_max": float(s.max()),
        "search_no_greedy_gap_pct_mean": float(gap("search_no_greedy_delay").mean()),
        "no_model_search_gap_pct_mean": float(gap("no_model_search_delay").mean()),
        "no_model_search_gap_pct_max": float(gap("no_model_search_delay").max()),
        "beats_label": int((s < 0).sum()), "within_2pct": int((s <= 2.0).sum()),
        "argmax_ms_median": float(np.median([r["argmax_ms"] for r in rows])),
        "search_ms_median": float(np.median([r["search_ms"] for r in rows])),
        "accuracy_mean": float(np.mean([r["accuracy"] for r in rows])),
        "diversity_mean": float(np.mean([r["diversity"] for r in rows])),
    }
    lines += [
        "",
        f"**Mean gap to {args.labeler}:** greedy {summary['greedy_gap_pct_mean']:+.2f}%, teacher argmax "
        f"{summary['argmax_gap_pct_mean']:+.2f}%, teacher search {summary['search_gap_pct_mean']:+.2f}% "
        f"(worst {summary['search_gap_pct_max']:+.2f}%; without the greedy candidate "
        f"{summary['search_no_greedy_gap_pct_mean']:+.2f}%; the same search without the model, from greedy: "
        f"{summary['no_model_search_gap_pct_mean']:+.2f}%, worst {summary['no_model_search_gap_pct_max']:+.2f}%); "
        f"search beats the label on "
        f"{summary['beats_label']}/{args.count}.",
        f"**Targets:** search within 2% of the label: on every instance {'met' if s.max() <= 2.0 else 'missed'} "
        f"({int((s <= 2.0).sum())}/{args.count} within 2%), on the mean {'met' if s.mean() <= 2.0 else 'missed'} "
        f"(mean {s.mean():+.2f}%); argmax inference <= 20 ms: "
        f"{'met' if summary['argmax_ms_median'] <= 20 else 'missed'} ({summary['argmax_ms_median']:.2f} ms median); "
        f"search decode (incl. inference) median {summary['search_ms_median']:.1f} ms.",
        f"Accuracy vs labels {summary['accuracy_mean']:.3f}; diversity D {summary['diversity_mean']:.4f}.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    config.update({"model_path": str(path), "held_out_seed": HELD_OUT_SEED, "platform": platform.platform(),
                   "cpus": os.cpu_count(), "load_average_at_start": load_at_start})
    args.out.with_suffix(".json").write_text(json.dumps({"config": config, "summary": summary, "rows": rows},
                                                        indent=1, default=float))


if __name__ == "__main__":
    main()
