"""Turn a pipeline run folder into the report: the paper's claims beside what this run measured."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import numpy as np

from edgepoc.chain.consensus import MICRO
from edgepoc.errors import EdgepocError
from edgepoc.experiments.report import Figure, Section, Table, write_report

PAPER_LATENCY_GAIN_PCT = 5.84  # deep model vs the best other method (paper abstract, §5)
PAPER_TEACHER_STUDENT_GAP_PCT = 19.37  # teacher better than student (paper Fig. 17)
PAPER_OVERFIT_EPOCH = 200
SMOKE_NOTE = ("Smoke run (--quick): every stage ran for real, at toy size (few small instances, a few epochs). "
              "It shows that the pipeline works end to end; its numbers do not test the paper's claims. "
              "Run `edgepoc reproduce` without --quick for the experiment at the paper's size.")


def _csv(path: Path) -> list[dict]:
    if not path.is_file():
        raise EdgepocError(f"report: {path} is missing (its stage did not run or failed)")
    with path.open() as fh:
        return list(csv.DictReader(fh))


def _json(path: Path):
    if not path.is_file():
        raise EdgepocError(f"report: {path} is missing (its stage did not run or failed)")
    return json.loads(path.read_text())


def _col(rows: list[dict], key: str) -> np.ndarray:
    if rows and key not in rows[0]:
        raise EdgepocError(f"report: column {key!r} missing from the log")
    return np.array([float(r[key]) if r[key] not in ("", "nan") else np.nan for r in rows])


def _trend(values: np.ndarray) -> tuple[float, float]:
    """Mean of the first and of the last fifth of a series (robust to epoch-to-epoch noise)."""
    v = values[~np.isnan(values)]
    if v.size == 0:
        return float("nan"), float("nan")
    w = max(1, v.size // 5)
    return float(v[:w].mean()), float(v[-w:].mean())


def _verdict(ok: bool) -> str:
    return "holds" if ok else "does not hold"


def _fig(folder: Path, name: str, caption: str) -> Figure:
    return Figure(folder / name, caption)


def training_sections(run: Path) -> tuple[list[Section], list[list[object]]]:
    figs = run / "figures"
    log = _csv(run / "teacher" / "log.csv")
    epochs = _col(log, "epoch")
    acc0, acc1 = _trend(_col(log, "test_accuracy"))
    div0, div1 = _trend(_col(log, "test_diversity"))
    test_loss = _col(log, "test_loss")
    best_loss_epoch = int(epochs[int(np.nanargmin(test_loss))])
    rising_after = bool(np.nanmean(test_loss[int(np.nanargmin(test_loss)):]) > np.nanmin(test_loss) * 1.01)
    overfit_far = rising_after and abs(best_loss_epoch - PAPER_OVERFIT_EPOCH) > 50
    claims = [
        ["accuracy rises during training", "rises", f"test accuracy {acc0:.3f} -> {acc1:.3f}", _verdict(acc1 > acc0)],
        ["diversity D rises during training", "rises", f"test D {div0:.4f} -> {div1:.4f}", _verdict(div1 > div0)],
        [f"overfitting near epoch {PAPER_OVERFIT_EPOCH}", f"~{PAPER_OVERFIT_EPOCH}",
         f"test loss lowest at epoch {best_loss_epoch} of {int(epochs[-1])}"
         + (", rising after" if rising_after else ", not rising after"),
         f"partly: it overfits, but from epoch {best_loss_epoch}" if overfit_far else _verdict(rising_after)],
    ]
    data = Section("Data", [
        "Task demands of the training and test instances (normalised, two resource types), labelled by the "
        "genetic-algorithm meta strategy."],
        figures=[_fig(figs, "fig04_train_demand.png", "Fig. 4: task demand, training data"),
                 _fig(figs, "fig10_test_demand.png", "Fig. 10: task demand, test data")])
    last = log[-1]
    teacher = Section("Teacher model", [
        f"{len(log)} epochs trained; the test loss was lowest at epoch {best_loss_epoch}. Last epoch: "
        f"test accuracy {float(last['test_accuracy']):.3f}, diversity D {float(last['test_diversity']):.4f}, "
        f"argmax delay gap to the labels {float(last['test_gap_pct']):.1f}%."],
        figures=[_fig(figs, n, c) for n, c in [
            ("fig05_loss.png", "Fig. 5: training loss"),
            ("fig06_train_delay.png", "Fig. 6: total delay per epoch, train"),
            ("fig12_test_delay.png", "Fig. 12: total delay per epoch, test"),
            ("fig07_train_actions.png", "Fig. 7: model actions per task, train"),
            ("fig11_test_actions.png", "Fig. 11: model actions per task, test"),
            ("fig08_train_accuracy.png", "Fig. 8: accuracy, train"),
            ("fig13_test_accuracy.png", "Fig. 13: accuracy, test"),
            ("fig09_train_diversity.png", "Fig. 9: diversity score, train"),
            ("fig14_test_diversity.png", "Fig. 14: diversity score, test")]])
    return [data, teacher], claims


def distillation_section(run: Path) -> tuple[Section, list[list[object]]]:
    figs = run / "figures"
    log = _csv(run / "student" / "distill_log.csv")
    last = log[-1]
    t, s = float(last["test_teacher_guided_delay"]), float(last["test_student_guided_delay"])
    ta, sa = float(last["test_teacher_delay"]), float(last["test_student_delay"])
    gap = (s / t - 1) * 100 if t > 0 else float("nan")
    gap_argmax = (sa / ta - 1) * 100 if ta > 0 else float("nan")
    claim = [["teacher better than student by", f"{PAPER_TEACHER_STUDENT_GAP_PCT}%",
              f"{gap:.2f}% (guided decoders), {gap_argmax:.2f}% (argmax)",
              "does not hold: the gap is smaller here (the student loses less than the paper's)"
              if gap < PAPER_TEACHER_STUDENT_GAP_PCT - 5 else _verdict(abs(gap - PAPER_TEACHER_STUDENT_GAP_PCT) < 5)]]
    section = Section("Distillation", [
        f"Student vs teacher on the test instances, last epoch: mean total delay {s:,.2f} vs {t:,.2f} s with the "
        f"guided decoder ({gap:+.2f}%), {sa:,.2f} vs {ta:,.2f} s with argmax ({gap_argmax:+.2f}%). "
        "A small gap is the goal: the paper's 19.37% is a gap to beat, not to match."],
        figures=[_fig(figs, "fig15_distill_loss.png", "Fig. 15: distillation loss"),
                 _fig(figs, "fig16_student_accuracy.png", "Fig. 16: student accuracy"),
                 _fig(figs, "fig17_student_vs_teacher_delay.png", "Fig. 17: student vs teacher total delay")])
    return section, claim


COMPARE_CLAIM = "deep model better than the best other method by"


def comparison_section(run: Path, ran: bool = True) -> tuple[Section, list[list[object]]]:
    """The algorithm comparison (Fig. 18); `ran=False`: a section and claim row saying compare was not run."""
    from edgepoc.experiments.compare import ratio_text
    from edgepoc.experiments.stats import MIN_INTERVAL_N, NO_INTERVAL

    folder = run / "compare"
    if not ran:
        return (Section("Algorithm comparison", [
            "The compare stage was not run for this run folder (no compare/summary.json from these settings): "
            "this report has no algorithm comparison and no Fig. 18. `--stages compare,report` adds them."]),
            [[COMPARE_CLAIM, f"{PAPER_LATENCY_GAIN_PCT}%", "not measured: compare was not run", "not measured"]])
    summary = _json(folder / "summary.json")
    rows = [[m["method"], m.get("status", "ok"), m.get("instances", 0), _num(m.get("mean_total_latency")),
             ratio_text(m), _num(m.get("mean_seconds"))] for m in summary["methods"]]
    claim = summary.get("claim", {})
    measured = claim.get("measured_pct")
    verdict = claim.get("verdict") or _verdict(measured is not None and measured >= PAPER_LATENCY_GAIN_PCT)
    if claim.get("ci_low") is not None and claim.get("ci_high") is not None \
            and (claim.get("instances") or 0) >= MIN_INTERVAL_N:
        # the same sign convention as the number beside it: positive = better
        interval = (f", 95% interval [{claim['ci_low']:+.2f}%, {claim['ci_high']:+.2f}%] over "
                    f"{claim.get('instances')} instances")
    else:
        interval = f", {claim.get('instances')} instance(s): {NO_INTERVAL}" if claim.get("instances") else ""
    claims = [[COMPARE_CLAIM, f"{PAPER_LATENCY_GAIN_PCT}%",
               f"{measured:+.2f}% ({claim.get('deep_method', '?')} vs {claim.get('best_other', '?')}){interval}"
               if measured is not None else "not measured", verdict]]
    n = len(summary.get("best_known", {}))
    text = [f"Every method on the same {n} instance(s), generated from instance seeds never used to train or "
            "select the models (held out). Ratio: total delay over the best any method found on that instance, "
            "mean and 95% interval over the instances. GA and CP-SAT get the same budget on one core (the GA counts "
            "its thread's CPU time; CP-SAT's limit is its own wall clock, so on a busy machine it gets less CPU); the "
            "learned decoders and the no-model search control run their fixed work budgets.",
            claim.get("statement", "")]
    section = Section("Algorithm comparison", text,
                      tables=[Table(["method", "status", "instances", "mean total delay (s)",
                                     "ratio to best known [95% CI]", "seconds per instance"], rows)],
                      figures=[Figure(folder / "fig18_comparison.png", "Fig. 18: algorithm comparison")])
    return section, claims


def _num(v) -> float:
    return float(v) if isinstance(v, (int, float)) else float("nan")


def chain_section(run: Path) -> Section:
    net = run / "testnet"
    status = _json(run / "logs" / "network-status.out") if (run / "logs" / "network-status.out").is_file() else None
    contributions = json.loads((run / "logs" / "contributions.out").read_text())
    db = net / "node0" / "data" / "app.sqlite"  # the CometBFT engine's application store
    if not db.is_file():
        raise EdgepocError(f"report: {db} is missing (the chain stage did not run)")
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        blocks = [json.loads(b) for (b,) in con.execute("SELECT body FROM blocks ORDER BY height")]
        states = [json.loads(s) for (s,) in con.execute("SELECT body FROM states ORDER BY height")]
        evidence = [json.loads(e) for (e,) in con.execute("SELECT body FROM evidence")]
        per_provider = dict(con.execute("SELECT provider, COUNT(*) FROM tasks GROUP BY provider").fetchall())
        latencies = np.array([r[0] for r in con.execute("SELECT latency FROM tasks")])
        work = _work_tables(con, k=len(states[-1]["scores"]) if states else 0)
    finally:
        con.close()
    if not blocks:
        raise EdgepocError("report: the chain committed no block")
    n_tasks = sum(len(b.get("tasks", [])) for b in blocks)
    arbitrated = sum(1 for b in blocks if b.get("arbitration"))
    seconds = float((run / "chain_submit_seconds.txt").read_text())
    k = len(states[-1]["scores"])
    figs = run / "figures"
    _plot_scores(states, figs / "chain_contribution_scores.png")
    _plot_tasks_per_provider([per_provider.get(j, 0) for j in range(k)], figs / "chain_tasks_per_provider.png")
    finality = _finality(run, blocks)
    text = [
        f"{len(blocks)} blocks committed ({sum(1 for b in blocks if b.get('tasks'))} of them holding the "
        f"{n_tasks} tasks; the others are empty heights the nodes kept committing until the network stopped); {arbitrated} block(s) arbitrated by the teacher; "
        f"{len(evidence)} evidence record(s). Submit-to-all-committed took {seconds:.2f} s "
        f"({n_tasks / seconds:,.0f} tasks/s including submission); mean recorded task latency "
        f"{latencies.mean():.3f} s." + (f" Finality p50 {finality[0]:.3f} s, p95 {finality[1]:.3f} s." if finality else ""),
        "Contribution is each provider's Shapley value in the latency-saving game of every block; the decayed "
        "scores set each validator's CometBFT voting power (floored, capped below a third), and CometBFT's "
        "proposer rotation follows voting power.",
    ]
    table = Table(["provider", "tasks served", "score", "balance", "penalties"],
                  [[f"node{j}", per_provider.get(j, 0), states[-1]["scores"][j] / MICRO, states[-1]["balances"][j] / MICRO,
                    states[-1].get("penalties", [0] * k)[j]] for j in range(k)])
    tables = [table]
    if status:
        tables.append(Table(["node", "allocator", "height when the last task committed", "last commit", "peers connected"],
                            [[s.get("name"), s.get("allocator", "?"), s.get("height"), _last_commit(s),
                              sum(1 for v in s.get("validators", []) if v.get("reachable")) - 1]
                             for s in (status if isinstance(status, list) else status.get("nodes", []))]))
    if work is not None:
        text.append(work[0])
        tables.extend(work[1])
        runs = []
        for out in sorted((run / "logs").glob("work-*.out")):
            try:
                d = json.loads(out.read_text().strip().splitlines()[-1])
            except (ValueError, IndexError):
                continue
            runs.append([out.stem[5:], d.get("submitted"), d.get("executed"), d.get("verified"), d.get("failed"),
                         d.get("measured_latency_p50"), d.get("measured_latency_p95"), d.get("simulated_latency_p50")])
        if runs:
            tables.append(Table(["workload", "submitted", "executed", "verified against receipts", "failed",
                                 "measured p50 (s)", "measured p95 (s)", "simulated p50 (s)"], runs))
    rows = contributions.get("validators", []) if isinstance(contributions, dict) else []
    if rows and "available" in rows[0]:
        tables.append(Table(["provider", "available", "measured capacity", "receipts", "tasks taken away",
                             "audits passed", "audits failed"],
                            [[r["name"], "yes" if r["available"] else "no",
                              f"{100 * r['capacity_factor']:.0f} %" + ("" if r["capacity_measured"] else " (declared)"),
                              r["receipts"], r["overdue"], r["audits_passed"], r["audits_failed"]] for r in rows]))
    del contributions  # the table above is read from the store itself, as `chain verify` does
    figures = [Figure(figs / "chain_contribution_scores.png", "contribution scores per height"),
               Figure(figs / "chain_tasks_per_provider.png", "tasks committed per provider")]
    shot = figs / "explorer.png"  # taken by the chain stage while the network ran
    if shot.is_file():
        figures.append(Figure(shot, "the explorer node0 served at /explorer/ after the tasks committed "
                                    "(every node serves one; docs/operations.md)"))
    else:
        why = shot.with_suffix(".txt").read_text().strip() if shot.with_suffix(".txt").is_file() else "not taken"
        text.append(f"No screenshot of the explorer in this run ({why}); docs/explorer.png shows one.")
    return Section("PoC chain", text, tables=tables, figures=figures)


def _work_tables(con: sqlite3.Connection, k: int) -> tuple[str, list[Table]] | None:
    """Tasks that really ran, from node0's store: per provider, executed tasks with measured (receipt block time
    - task block time) and simulated latency; audits and reassignments."""
    try:
        rows = con.execute("SELECT provider, COUNT(*), AVG(measured_latency), AVG(simulated_latency) FROM work "
                           "WHERE kind='main' AND status='executed' GROUP BY provider ORDER BY provider").fetchall()
        n_audit = con.execute("SELECT COUNT(*) FROM work WHERE kind='main' AND audit IS NOT NULL "
                              "AND audit != 'null'").fetchone()[0]
        moved = con.execute("SELECT COUNT(*) FROM work WHERE reassigned > 0").fetchone()[0]
    except sqlite3.OperationalError:
        return None
    if not rows:
        return None
    total = sum(r[1] for r in rows)
    text = (f"{total} tasks really ran on the providers (WebAssembly, fuel-metered, in committed order); each has a "
            f"receipt on chain, and its measured latency is the receipt's block time minus the task's block time. "
            f"{n_audit} were audited by a second provider; {moved} were reassigned by the chain (a provider down or "
            "late).")
    return text, [Table(["provider", "tasks run", "measured latency mean (s)", "simulated latency mean (s)"],
                        [[f"node{p}", n, m, sim] for p, n, m, sim in rows])]


def _last_commit(s: dict) -> str:
    age = s.get("last_commit_age")
    return "-" if not isinstance(age, (int, float)) else f"{age:.1f} s ago"


def _finality(run: Path, blocks: list[dict]) -> tuple[float, float] | None:
    """Seconds per task from its arrival on the chain's clock (the block time) to node0's commit."""
    genesis = _json(run / "testnet" / "genesis.json")
    t0 = float(genesis["genesis_time"])
    # On CometBFT the chain stamps arrival with the block time: what is left is block time to local commit.
    waits = [b.get("committed_at", t0 + b["time"]) - (t0 + t["arrival"]) for b in blocks for t in b.get("tasks", [])]
    if not waits:
        return None
    return float(np.percentile(waits, 50)), float(np.percentile(waits, 95))


def _plot_scores(states: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heights = [s["height"] for s in states]
    scores = np.array([s["scores"] for s in states], dtype=np.float64) / MICRO  # the ledger's micro-units
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for j in range(scores.shape[1]):
        ax.plot(heights, scores[:, j], label=f"node{j}")
    ax.set_xlabel("block height")
    ax.set_ylabel("contribution score (decayed Shapley, s saved)")
    ax.set_title("Contribution scores over time")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_tasks_per_provider(counts: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.bar([f"node{j}" for j in range(len(counts))], counts)
    ax.set_xlabel("provider")
    ax.set_ylabel("tasks committed")
    ax.set_title("Tasks per provider on the chain")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def build_report(run: Path) -> Path:
    """Write `report.html` and `report.md` for a finished pipeline run; returns the HTML path."""
    run = Path(run)
    info = _json(run / "run.json")
    data_teacher, claims = training_sections(run)
    distill, claim_d = distillation_section(run)
    # the comparison is this run's only if compare ran with these settings (run.json lists it) and left its summary
    compare_ran = "compare" in (info["config"].get("stages") or []) and (run / "compare" / "summary.json").is_file()
    comparison, claim_c = comparison_section(run, compare_ran)
    if (run / "logs" / "contributions.out").is_file():
        chain = chain_section(run)
    else:
        chain = Section("PoC chain", ["The chain stage did not run for this run folder (no logs/contributions.out): "
                                      "this report has no chain results. `--stages chain,report` adds them."])
    claims = claim_c + claim_d + claims
    smoke = [SMOKE_NOTE] if info["config"].get("smoke") else []
    summary = Section("The paper's claims beside this run", [
        *smoke,
        f"Configuration: {json.dumps(info['config'])}",
        "Each row: what the paper reports, what this run measured, and whether the claim holds here.",
    ], tables=[Table(["claim", "paper", "this run", "verdict"], claims)])
    timings = Section("Run record", [f"versions: {json.dumps(info['versions'])}"],
                      tables=[Table(["stage", "seconds"], [[k, v] for k, v in info["timings_seconds"].items()])])
    title = "edgepoc run report" + (" (smoke run)" if smoke else "")
    _, html = write_report(run, title, [summary, *data_teacher, distill, comparison, chain, timings])
    return html
