"""The algorithm comparison (SPEC §8, paper Fig. 18): every method on the same instances.

Each method runs through the solver registry, so every delay is re-simulated by the shared kernel.
Per instance the gap is measured against the best allocation any method found there (the best
known); CP-SAT's proven lower bound is kept too when it ran. A method whose module is missing from
the install is reported as unavailable; a method that fails on one instance is reported failed *there*
and still runs on the others. Each method's ratio to the best known gets a 95 % interval over the
instances; the paper's claim (the deep model 5.84 % better than the best other method) is checked on
the paired per-instance improvement, with its interval, and reads "not significant" where the interval
includes zero difference. A sentence that says "X % worse" gives its interval as how much worse (the same
sign convention as the number beside it). Fewer than 5 instances give no interval anywhere (table, claim,
figure): "n < 5: no interval" (`stats.MIN_INTERVAL_N`).

Fair budgets: the time-budgeted solvers (GA, CP-SAT) get the same budget on one core: the GA counts its
thread's CPU time, so a busy machine does not shorten it; CP-SAT runs one worker on its own wall-clock
limit (OR-Tools has no CPU clock), so on a busy machine it gets less CPU than the GA.
The learned decoders and the no-model `search` control run their default *work* budget (deterministic)
unless a time is given for them explicitly.
"""

from __future__ import annotations

import csv
import importlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgepoc.errors import EdgepocError, InputError, Interrupted
from edgepoc.experiments.stats import MIN_INTERVAL_N, NO_INTERVAL, Interval, claim_verdict, difference_verdict, \
    mean_interval, readable
from edgepoc.game.instance import Instance
from edgepoc.solvers.registry import METHODS, TIME_BUDGET_METHODS, SolveOptions, solve

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ALL_METHODS = ["random", "round-robin", "greedy", "rollout", "ga", "cpsat", "dqn", "maddpg", "search", "teacher",
               "student"]
DEEP_METHODS = ("teacher", "student")  # "the deep model" of the paper's claim
NO_MODEL_CONTROL = "search"  # the models' search decoder on uniform scores
BUDGETED = ("ga", "cpsat")  # methods that --seconds applies to (the same CPU-time budget, one core)
TIMEABLE = tuple(sorted(TIME_BUDGET_METHODS))  # methods that accept a time limit at all
LEARNED = ("dqn", "maddpg", "teacher", "student")  # methods that take a checkpoint
PAPER_CLAIM_PCT = 5.84
# Instance seeds the bundled models were trained or selected on (docs/models.md): a comparison on them
# is not held out. The default comparison seed is far from all of them.
TRAINING_SEEDS = frozenset({0, 1, *range(1000, 2100)})
HELD_OUT_SEED = 5000


def default_methods() -> list[str]:
    """The default method list: every method of ALL_METHODS this install registers."""
    return [m for m in ALL_METHODS if m in METHODS]


@dataclass
class CompareConfig:
    """The settings of one comparison (written as config.json beside the results)."""

    methods: list[str] = field(default_factory=default_methods)
    seconds: float = 2.0  # CPU-time limit per instance for the budgeted solvers (GA, CP-SAT)
    method_seconds: dict[str, float] = field(default_factory=dict)  # per-method overrides
    models: dict[str, str] = field(default_factory=dict)  # method -> checkpoint (absent: bundled)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # method -> solver params
    seed: int = 0
    instances: list[str] = field(default_factory=list)  # names (files or generated)

    def options(self, method: str) -> SolveOptions:
        seconds = self.method_seconds.get(method, self.seconds if method in BUDGETED else None)
        params = dict(self.params.get(method, {}))
        if method == "ga":
            params.setdefault("clock", "cpu")
        elif method == "cpsat":
            params.setdefault("workers", 1)
        return SolveOptions(seed=self.seed, seconds=seconds, model=self.models.get(method), params=params)


@dataclass
class MethodRun:
    method: str
    instance: str
    total_latency: float
    seconds: float
    gap_pct: float = math.nan
    lower_bound: float | None = None
    status: str = "ok"  # "ok" or "failed: <why>" (then total_latency is NaN)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class CompareResult:
    config: CompareConfig
    runs: list[MethodRun]  # one per (instance, method) that was tried, failed ones included
    status: dict[str, str]  # method -> "ok" | "unavailable: ..." | "failed on i of n instance(s): ..."
    best_known: dict[str, float]  # instance -> best total delay any method found
    interrupted: str | None = None  # Ctrl-C: "after K of N instances" (the runs are those K instances')

    def ok_runs(self, method: str) -> list[MethodRun]:
        return [r for r in self.runs if r.method == method and r.ok]

    def ratio_interval(self, method: str) -> Interval:
        """Mean ratio of the method's total delay to the best known, with its 95 % interval."""
        return mean_interval([r.total_latency / self.best_known[r.instance] for r in self.ok_runs(method)
                              if self.best_known[r.instance] > 0])

    def delay_interval(self, method: str) -> Interval:
        """Mean total delay over the instances the method solved, with its 95 % interval."""
        return mean_interval([r.total_latency for r in self.ok_runs(method)])

    def summary(self) -> list[dict[str, Any]]:
        """Per method: instances solved, mean total delay, gap to the best known, ratio with its interval
        (intervals NaN from fewer than MIN_INTERVAL_N instances)."""
        rows = []
        for m in self.config.methods:
            runs = self.ok_runs(m)
            row: dict[str, Any] = {"method": m, "status": self.status.get(m, "ok"), "instances": len(runs)}
            if runs:
                ratio, delay = self.ratio_interval(m), self.delay_interval(m)
                row.update(mean_total_latency=float(np.mean([r.total_latency for r in runs])),
                           delay_ci_low=delay.low, delay_ci_high=delay.high,
                           mean_gap_pct=float(np.mean([r.gap_pct for r in runs])),
                           max_gap_pct=float(np.max([r.gap_pct for r in runs])),
                           ratio_to_best=ratio.mean, ratio_ci_low=ratio.low, ratio_ci_high=ratio.high,
                           mean_seconds=float(np.mean([r.seconds for r in runs])))
            rows.append(row)
        return rows

    def improvement(self, method: str, baseline: str) -> Interval:
        """Per-instance `(baseline - method) / baseline` in %, paired on the instances both solved."""
        a = {r.instance: r.total_latency for r in self.ok_runs(method)}
        b = {r.instance: r.total_latency for r in self.ok_runs(baseline)}
        return mean_interval([(b[i] - a[i]) / b[i] * 100 for i in a if i in b and b[i] > 0])

    def claim(self) -> dict[str, Any]:
        """Is the deep model 5.84 % better than the best other method? Paired over instances, with a 95 % interval."""
        n = len(self.best_known)
        means = {r["method"]: r["mean_total_latency"] for r in self.summary()
                 if "mean_total_latency" in r and r["instances"] == n}
        deep = {m: v for m, v in means.items() if m in DEEP_METHODS}
        other = {m: v for m, v in means.items() if m not in DEEP_METHODS}
        if not deep or not other:
            missing = "the deep model (teacher/student)" if not deep else "any other method"
            return {"paper_pct": PAPER_CLAIM_PCT, "measured_pct": None, "holds": None, "verdict": "not measured",
                    "statement": f"The paper's claim was not checked: {missing} did not run on every instance."}
        d = min(deep, key=deep.get)
        o = min(other, key=other.get)
        gain = self.improvement(d, o)
        verdict = claim_verdict(gain, PAPER_CLAIM_PCT)
        amount, interval = gain_text(gain)
        opening = {"holds": "holds here", "does not hold": "does not hold here",
                   "not significant": "is not confirmed here (the difference is not significant)"}[verdict]
        statement = (f"The paper's claim {opening}: the best deep "
                     f"model ({d}) is {amount} than the best other method ({o}) on average "
                     f"over {gain.n} instance(s){interval}: "
                     f"{difference_verdict(gain)}; the paper reports {PAPER_CLAIM_PCT}% better.")
        doc: dict[str, Any] = {"paper_pct": PAPER_CLAIM_PCT, "measured_pct": gain.mean, "ci_low": gain.low,
                               "ci_high": gain.high, "instances": gain.n, "holds": verdict == "holds",
                               "verdict": verdict, "deep_method": d, "best_other": o, "statement": statement}
        control = self.control()
        if control:
            doc["control"] = control
            doc["statement"] += " " + control["statement"]
        return doc

    def control(self) -> dict[str, Any] | None:
        """The deep model against the same search decoder with no model (uniform scores)."""
        n = len(self.best_known)
        runs = {m: self.ok_runs(m) for m in (*DEEP_METHODS, NO_MODEL_CONTROL)}
        deep = [m for m in DEEP_METHODS if len(runs[m]) == n]
        if not deep or len(runs[NO_MODEL_CONTROL]) != n:
            return None
        d = min(deep, key=lambda m: np.mean([r.total_latency for r in runs[m]]))
        gain = self.improvement(d, NO_MODEL_CONTROL)
        verdict = difference_verdict(gain)
        amount, interval = gain_text(gain)
        return {"deep_method": d, "measured_pct": gain.mean, "ci_low": gain.low, "ci_high": gain.high,
                "verdict": verdict,
                "statement": f"Against the no-model control ({NO_MODEL_CONTROL}: the same search on uniform "
                             f"scores) {d} is {amount} on average{interval}: {verdict}."}


def gain_text(gain: Interval) -> tuple[str, str]:
    """("1.18% worse", " (95% interval of how much worse: [-0.95%, +3.32%])") for a paired improvement in %
    (positive = better): the interval in the sign convention of the words beside it; no interval part
    when there is none (the verdict then says "n < 5: no interval")."""
    better = not gain.mean < 0
    word = "better" if better else "worse"
    if not gain.defined:
        return f"{abs(gain.mean):.2f}% {word}", ""
    low, high = (gain.low, gain.high) if better else (-gain.high, -gain.low)
    return f"{abs(gain.mean):.2f}% {word}", f" (95% interval of how much {word}: [{low:+.2f}%, {high:+.2f}%])"


def _available(method: str) -> str | None:
    """None when the method's module imports; otherwise why not (e.g. the models are not installed)."""
    module = METHODS[method][0].partition(":")[0]
    try:
        importlib.import_module(module)
    except ImportError as exc:
        return f"unavailable: {exc}"
    return None


def method_status(runs: list[MethodRun], method: str, available: str | None) -> str:
    """`ok`, `unavailable: ...` or `failed on i of n instance(s): <first error>`."""
    if available:
        return available
    failed = [r for r in runs if r.method == method and not r.ok]
    if not failed:
        return "ok"
    tried = sum(1 for r in runs if r.method == method)
    return f"failed on {len(failed)} of {tried} instance(s): {failed[0].status.removeprefix('failed: ')}"


def compare(instances: list[Instance], methods: list[str] | None = None, config: CompareConfig | None = None,
            progress: bool = True) -> CompareResult:
    """Run every method on every instance; a failure is recorded for that instance and the rest still run."""
    config = config or CompareConfig()
    if methods is not None:
        config.methods = list(methods)
    if not instances:
        raise InputError("instances: nothing to compare (give instance files or --preset/--count)")
    unknown = [m for m in config.methods if m not in METHODS]
    if unknown:
        raise InputError(f"--methods: unknown method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}")
    untimed = sorted(m for m in config.method_seconds if m not in TIMEABLE)
    if untimed:
        raise InputError(f"--method-seconds: {', '.join(untimed)} take(s) no time budget; "
                         f"only {', '.join(TIMEABLE)} do")
    names = [inst.name for inst in instances]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise InputError(f"instances: the same instance given twice ({', '.join(dup)})")
    config.instances = names
    available = {m: _available(m) for m in config.methods}
    runs: list[MethodRun] = []
    from edgepoc.progress import progress_bar

    bar = progress_bar()
    bar.disable = not progress
    interrupted = None
    with bar:
        task = bar.add_task("compare", total=len(instances) * len(config.methods), status="")
        try:
            _run_all(instances, config, available, runs, bar, task)
        except KeyboardInterrupt:  # keep the instances every method finished, as a smaller comparison that says so
            ran = sum(available[m] is None for m in config.methods)  # an unavailable method has no runs
            finished = [inst for inst in instances if sum(r.instance == inst.name for r in runs) == ran]
            if not finished:
                raise Interrupted("before any instance had every method run; nothing was written") from None
            interrupted = f"after {len(finished)} of {len(instances)} instances"
            instances = finished
            keep = {inst.name for inst in finished}
            runs = [r for r in runs if r.instance in keep]
            config.instances = [inst.name for inst in finished]
    best = {}
    for inst in instances:
        totals = [r.total_latency for r in runs if r.instance == inst.name and r.ok]
        best[inst.name] = min(totals) if totals else math.nan
    for r in runs:
        if r.ok:
            b = best[r.instance]
            r.gap_pct = (r.total_latency - b) / b * 100 if b > 0 else 0.0
    status = {m: method_status(runs, m, available[m]) for m in config.methods}
    return CompareResult(config, runs, status, best, interrupted)


def _run_all(instances: list[Instance], config: CompareConfig, available: dict[str, str | None],
             runs: list[MethodRun], bar, task) -> None:
    """Every method on every instance, instance by instance, into `runs`."""
    for inst in instances:
        for m in config.methods:
            bar.update(task, status=f"{inst.name}: {m}")
            if available[m] is None:
                try:
                    res = solve(inst, m, config.options(m))
                except EdgepocError as exc:
                    runs.append(MethodRun(m, inst.name, math.nan, math.nan, status=f"failed: {exc}"))
                else:
                    lb = res.extra.get("lower_bound")
                    runs.append(MethodRun(m, inst.name, res.total_latency, res.seconds,
                                          lower_bound=float(lb) if lb is not None else None))
            bar.advance(task)


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
        w.writerow(["instance", "method", "status", "total_latency", "gap_to_best_known_pct", "seconds",
                    "lower_bound", "best_known"])
        for r in result.runs:
            num = (lambda v, spec: "" if not math.isfinite(v) else format(v, spec))
            w.writerow([r.instance, r.method, r.status, num(r.total_latency, ".6f"), num(r.gap_pct, ".4f"),
                        num(r.seconds, ".4f"), "" if r.lower_bound is None else f"{r.lower_bound:.6f}",
                        num(result.best_known[r.instance], ".6f")])
    summary = result.summary()
    cols = ["method", "status", "instances", "mean_total_latency", "delay_ci_low", "delay_ci_high", "mean_gap_pct",
            "max_gap_pct", "ratio_to_best", "ratio_ci_low", "ratio_ci_high", "mean_seconds"]
    with paths["summary_csv"].open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(summary)
    claim = result.claim()
    stopped = (f"**Interrupted (Ctrl-C) {result.interrupted}**: this comparison covers only the instances every "
               "method finished.\n\n" if result.interrupted else "")
    paths["summary_md"].write_text(stopped + summary_markdown(summary, claim))
    doc = {"methods": summary, "claim": claim, "best_known": result.best_known,
           **({"interrupted": result.interrupted} if result.interrupted else {})}
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
    return readable(v, spec) if isinstance(v, (int, float)) else "—"


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def ratio_text(row: dict) -> str:
    """`1.023 [1.010, 1.036]`: the ratio to the best known with its 95 % interval (— when not measured;
    `1.023 (n < 5: no interval)` from fewer than 5 instances)."""
    r = row.get("ratio_to_best")
    if not _finite(r):
        return "—"
    lo, hi = row.get("ratio_ci_low"), row.get("ratio_ci_high")
    if row.get("instances", MIN_INTERVAL_N) >= MIN_INTERVAL_N and _finite(lo) and _finite(hi):
        return f"{readable(r, '.3f')} [{readable(lo, '.3f')}, {readable(hi, '.3f')}]"
    return f"{readable(r, '.3f')} ({NO_INTERVAL})" if row.get("instances", 0) < MIN_INTERVAL_N else readable(r, ".3f")


def summary_markdown(summary: list[dict], claim: dict) -> str:
    lines = ["| method | status | instances | mean total delay (s) | ratio to best known [95% CI] | "
             "gap to best known (%) | max gap (%) | seconds / instance |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in summary:
        lines.append(f"| {r['method']} | {r['status']} | {r['instances']} | {_fmt(r.get('mean_total_latency'), ',.2f')} "
                     f"| {ratio_text(r)} | {_fmt(r.get('mean_gap_pct'), '.2f')} | {_fmt(r.get('max_gap_pct'), '.2f')} "
                     f"| {_fmt(r.get('mean_seconds'), '.3f')} |")
    return "\n".join(lines) + "\n\n" + claim["statement"] + "\n"


def _error_bars(ax, rows: list[dict], key: str, low: str, high: str) -> np.ndarray:
    """Draw each bar's 95 % interval on `ax` (none from fewer than 5 instances); returns the (2, n)
    distances below/above each bar's top (0 where no interval was drawn)."""
    out = np.zeros((2, len(rows)))
    drawn = [i for i, r in enumerate(rows)
             if r.get("instances", 0) >= MIN_INTERVAL_N and _finite(r.get(low)) and _finite(r.get(high))]
    for i in drawn:
        out[:, i] = max(rows[i][key] - rows[i][low], 0.0), max(rows[i][high] - rows[i][key], 0.0)
    if drawn:
        ax.errorbar(drawn, [rows[i][key] for i in drawn], yerr=out[:, drawn], fmt="none", ecolor="black",
                    elinewidth=1, capsize=4)
    return out


def _spans_decades(values: list[float], decades: float = 3.0) -> bool:
    """Whether positive, finite `values` spread over more than `decades` orders of magnitude (and stay below 1e200:
    matplotlib's log ticks overflow near float64's limit, so beyond it the axes stay linear)."""
    v = [x for x in values if _finite(x)]
    return bool(v) and min(v) > 0 and max(v) < 1e200 and math.log10(max(v) / min(v)) > decades


def comparison_figure(summary: list[dict]) -> Figure:
    """Fig. 18 as a matplotlib figure: mean total delay and ratio to the best known, each with 95 % error
    bars over the instances (none from fewer than 5: the panel says so), and wall time per instance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in summary if "mean_total_latency" in r]
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4.4))
    names = [r["method"] for r in rows]
    colors = ["tab:red" if n in DEEP_METHODS else "tab:purple" if n in ("dqn", "maddpg") else "tab:blue"
              for n in names]
    few = [r["method"] for r in rows if r.get("instances", 0) < MIN_INTERVAL_N]
    ax1.bar(names, [r["mean_total_latency"] for r in rows], color=colors)
    delay_err = _error_bars(ax1, rows, "mean_total_latency", "delay_ci_low", "delay_ci_high")
    for i, r in enumerate(rows):
        ax1.text(i, r["mean_total_latency"] + delay_err[1, i], f"{readable(r['mean_gap_pct'], '+.1f')}%", ha="center",
                 va="bottom", fontsize=8)
    # bars that span orders of magnitude (a method 1e299 x the best on an extreme instance) on log axes: on linear
    # ones every other bar is invisible and the tick labels do not fit
    wide = _spans_decades([r["mean_total_latency"] for r in rows]) or _spans_decades([r["ratio_to_best"] for r in rows])
    if wide:
        ax1.set_yscale("log")
    ax1.set_ylim(top=ax1.get_ylim()[1] * (1.15 if few else 1.08))  # room for the labels above the bars
    ax1.set_ylabel("mean total delay (s)")
    ax1.set_title("total delay, 95% interval (label: gap to best known)", fontsize=10)
    ax2.bar(names, [r["ratio_to_best"] for r in rows], color=colors)
    ratio_err = _error_bars(ax2, rows, "ratio_to_best", "ratio_ci_low", "ratio_ci_high")
    ax2.axhline(1.0, color="grey", linewidth=0.8)
    if rows:
        top = max(r["ratio_to_best"] + ratio_err[1, i] for i, r in enumerate(rows))
        bottom = min(r["ratio_to_best"] - ratio_err[0, i] for i, r in enumerate(rows))
        if wide:
            ax2.set_yscale("log")
            ax2.set_ylim(0.9 * min(1.0, bottom) if bottom > 0 else 0.9, top * 2)
        else:
            ax2.set_ylim(min(0.95, bottom - 0.02), top * (1.04 if few else 1.02) + 0.01)
    ax2.set_ylabel("total delay / best known")
    ax2.set_title("ratio to best known, 95% interval", fontsize=10)
    for ax in (ax1, ax2):
        if few:
            ax.text(0.5, 0.97, NO_INTERVAL + ("" if len(few) == len(rows) else f" ({', '.join(few)})"),
                    transform=ax.transAxes, ha="center", va="top", fontsize=8, color="tab:red")
    ax3.bar(names, [max(r["mean_seconds"], 1e-5) for r in rows], color=colors)
    ax3.set_yscale("log")
    ax3.set_ylabel("seconds per instance")
    ax3.set_title("wall time", fontsize=10)
    for ax in (ax1, ax2, ax3):
        ax.tick_params(axis="x", rotation=40)
    n = max((r.get("instances", 0) for r in rows), default=0)
    fig.suptitle(f"Fig. 18: algorithm comparison on {n} instance(s); error bars: 95% interval over the instances")
    fig.tight_layout()
    return fig


def plot_comparison(summary: list[dict], path: Path) -> None:
    """Fig. 18 (`comparison_figure`) as a PNG."""
    import matplotlib.pyplot as plt

    fig = comparison_figure(summary)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
