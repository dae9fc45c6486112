"""The algorithm comparison (SPEC §8, paper Fig. 18): every method on the same instances.

Each method runs through the solver registry, so every delay is re-simulated by the shared kernel.
Per instance the gap is measured against the best allocation any method found there (the best
known); CP-SAT's proven lower bound is kept too when it ran. A method whose module is missing from
the install is reported as unavailable; one that fails is reported with its error, and the others
still run. The paper's claim (the deep model 5.84% better than the best other method) is checked
on the mean total delay.
"""

from __future__ import annotations

import csv
import importlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgepoc.errors import EdgepocError, InputError
from edgepoc.game.instance import Instance
from edgepoc.solvers.registry import METHODS, SolveOptions, solve

ALL_METHODS = ["random", "round-robin", "greedy", "ga", "cpsat", "dqn", "maddpg", "teacher", "student"]
DEEP_METHODS = ("teacher", "student")  # "the deep model" of the paper's claim
BUDGETED = ("ga", "cpsat", "teacher", "student")  # methods that take a time limit (--seconds)
LEARNED = ("dqn", "maddpg", "teacher", "student")  # methods that take a checkpoint
PAPER_CLAIM_PCT = 5.84


@dataclass
class CompareConfig:
    """The settings of one comparison (written as config.json beside the results)."""

    methods: list[str] = field(default_factory=lambda: list(ALL_METHODS))
    seconds: float = 2.0  # time limit per instance for the budgeted methods
    method_seconds: dict[str, float] = field(default_factory=dict)  # per-method overrides
    models: dict[str, str] = field(default_factory=dict)  # method -> checkpoint (absent: bundled)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # method -> solver params
    seed: int = 0
    instances: list[str] = field(default_factory=list)  # names (files or generated)

    def options(self, method: str) -> SolveOptions:
        seconds = self.method_seconds.get(method, self.seconds if method in BUDGETED else None)
        return SolveOptions(seed=self.seed, seconds=seconds, model=self.models.get(method),
                            params=dict(self.params.get(method, {})))


@dataclass
class MethodRun:
    method: str
    instance: str
    total_latency: float
    seconds: float
    gap_pct: float = math.nan
    lower_bound: float | None = None


@dataclass
class CompareResult:
    config: CompareConfig
    runs: list[MethodRun]
    status: dict[str, str]  # method -> "ok" | "unavailable: ..." | "failed: ..."
    best_known: dict[str, float]  # instance -> best total delay any method found

    def summary(self) -> list[dict[str, Any]]:
        """Per method: mean total delay, mean gap to the best known, mean seconds per instance."""
        rows = []
        for m in self.config.methods:
            runs = [r for r in self.runs if r.method == m]
            row: dict[str, Any] = {"method": m, "status": self.status.get(m, "ok"), "instances": len(runs)}
            if runs:
                row.update(mean_total_latency=float(np.mean([r.total_latency for r in runs])),
                           mean_gap_pct=float(np.mean([r.gap_pct for r in runs])),
                           max_gap_pct=float(np.max([r.gap_pct for r in runs])),
                           mean_seconds=float(np.mean([r.seconds for r in runs])))
            rows.append(row)
        return rows

    def claim(self) -> dict[str, Any]:
        """Is the deep model 5.84% better than the best other method (on mean total delay)?"""
        means = {r["method"]: r["mean_total_latency"] for r in self.summary()
                 if "mean_total_latency" in r and r["instances"] == len(self.best_known)}
        deep = {m: v for m, v in means.items() if m in DEEP_METHODS}
        other = {m: v for m, v in means.items() if m not in DEEP_METHODS}
        if not deep or not other:
            missing = "the deep model (teacher/student)" if not deep else "any other method"
            return {"paper_pct": PAPER_CLAIM_PCT, "measured_pct": None, "holds": None,
                    "statement": f"The paper's claim was not checked: {missing} did not run on every instance."}
        d = min(deep, key=deep.get)
        o = min(other, key=other.get)
        pct = (other[o] - deep[d]) / other[o] * 100 if other[o] > 0 else 0.0
        holds = pct >= PAPER_CLAIM_PCT
        word = "better" if pct >= 0 else "worse"
        statement = (f"The paper's claim {'holds' if holds else 'does not hold'} here: the best deep model "
                     f"({d}, mean total delay {deep[d]:,.2f} s) is {abs(pct):.2f}% {word} than the best other "
                     f"method ({o}, {other[o]:,.2f} s) over {len(self.best_known)} instance(s); the paper "
                     f"reports {PAPER_CLAIM_PCT}% better.")
        return {"paper_pct": PAPER_CLAIM_PCT, "measured_pct": pct, "holds": holds, "deep_method": d,
                "best_other": o, "statement": statement}


def _available(method: str) -> str | None:
    """None when the method's module imports; otherwise why not (e.g. the models are not installed)."""
    module = METHODS[method][0].partition(":")[0]
    try:
        importlib.import_module(module)
    except ImportError as exc:
        return f"unavailable: {exc}"
    return None


def compare(instances: list[Instance], methods: list[str] | None = None, config: CompareConfig | None = None,
            progress: bool = True) -> CompareResult:
    """Run every method on every instance; failures of one method do not stop the others."""
    config = config or CompareConfig()
    if methods is not None:
        config.methods = list(methods)
    if not instances:
        raise InputError("instances: nothing to compare (give instance files or --preset/--count)")
    unknown = [m for m in config.methods if m not in METHODS]
    if unknown:
        raise InputError(f"--methods: unknown method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}")
    config.instances = [inst.name for inst in instances]
    status = {m: _available(m) or "ok" for m in config.methods}
    runs: list[MethodRun] = []
    from edgepoc.solvers.rl.common import progress_bar

    bar = progress_bar()
    bar.disable = not progress
    with bar:
        task = bar.add_task("compare", total=len(instances) * len(config.methods), status="")
        for inst in instances:
            for m in config.methods:
                bar.update(task, status=f"{inst.name}: {m}")
                if status[m] == "ok":
                    try:
                        res = solve(inst, m, config.options(m))
                    except EdgepocError as exc:
                        status[m] = f"failed: {exc}"
                    else:
                        lb = res.extra.get("lower_bound")
                        runs.append(MethodRun(m, inst.name, res.total_latency, res.seconds,
                                              lower_bound=float(lb) if lb is not None else None))
                bar.advance(task)
    best = {}
    for inst in instances:
        totals = [r.total_latency for r in runs if r.instance == inst.name]
        best[inst.name] = min(totals) if totals else math.nan
    for r in runs:
        b = best[r.instance]
        r.gap_pct = (r.total_latency - b) / b * 100 if b > 0 else 0.0
    return CompareResult(config, runs, status, best)


def write_results(result: CompareResult, out: str | Path) -> dict[str, Path]:
    """results.csv (per instance), summary.csv / summary.md / summary.json, fig18_comparison.png, config.json."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"config": out / "config.json", "results": out / "results.csv", "summary_csv": out / "summary.csv",
             "summary_md": out / "summary.md", "summary_json": out / "summary.json",
             "figure": out / "fig18_comparison.png"}
    paths["config"].write_text(json.dumps(asdict(result.config), indent=2))
    with paths["results"].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["instance", "method", "total_latency", "gap_to_best_known_pct", "seconds", "lower_bound",
                    "best_known"])
        for r in result.runs:
            w.writerow([r.instance, r.method, f"{r.total_latency:.6f}", f"{r.gap_pct:.4f}", f"{r.seconds:.4f}",
                        "" if r.lower_bound is None else f"{r.lower_bound:.6f}", f"{result.best_known[r.instance]:.6f}"])
    summary = result.summary()
    cols = ["method", "status", "instances", "mean_total_latency", "mean_gap_pct", "max_gap_pct", "mean_seconds"]
    with paths["summary_csv"].open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(summary)
    claim = result.claim()
    paths["summary_md"].write_text(summary_markdown(summary, claim))
    doc = {"methods": summary, "claim": claim, "best_known": result.best_known}
    paths["summary_json"].write_text(json.dumps(_without_nan(doc), indent=2, allow_nan=False))
    plot_comparison(summary, paths["figure"])
    return paths


def _without_nan(obj: Any) -> Any:
    """JSON has no NaN: a value nobody measured becomes null."""
    if isinstance(obj, dict):
        return {k: _without_nan(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_without_nan(v) for v in obj]
    return None if isinstance(obj, float) and not math.isfinite(obj) else obj


def _fmt(v: Any, spec: str) -> str:
    return format(v, spec) if isinstance(v, (int, float)) else "—"


def summary_markdown(summary: list[dict], claim: dict) -> str:
    lines = ["| method | status | instances | mean total delay (s) | gap to best known (%) | max gap (%) | "
             "seconds / instance |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in summary:
        lines.append(f"| {r['method']} | {r['status']} | {r['instances']} | {_fmt(r.get('mean_total_latency'), ',.2f')} "
                     f"| {_fmt(r.get('mean_gap_pct'), '.2f')} | {_fmt(r.get('max_gap_pct'), '.2f')} "
                     f"| {_fmt(r.get('mean_seconds'), '.3f')} |")
    return "\n".join(lines) + "\n\n" + claim["statement"] + "\n"


def plot_comparison(summary: list[dict], path: Path) -> None:
    """Fig. 18: mean total delay per method (left) and wall time per instance (right, log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in summary if "mean_total_latency" in r]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    names = [r["method"] for r in rows]
    colors = ["tab:red" if n in DEEP_METHODS else "tab:purple" if n in ("dqn", "maddpg") else "tab:blue"
              for n in names]
    ax1.bar(names, [r["mean_total_latency"] for r in rows], color=colors)
    for i, r in enumerate(rows):
        ax1.text(i, r["mean_total_latency"], f"{r['mean_gap_pct']:+.1f}%", ha="center", va="bottom", fontsize=8)
    ax1.set_ylabel("mean total delay (s)")
    ax1.set_title("total delay (label: gap to best known)")
    ax2.bar(names, [max(r["mean_seconds"], 1e-5) for r in rows], color=colors)
    ax2.set_yscale("log")
    ax2.set_ylabel("seconds per instance")
    ax2.set_title("wall time")
    for ax in (ax1, ax2):
        ax.tick_params(axis="x", rotation=40)
    fig.suptitle("Fig. 18: algorithm comparison")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
