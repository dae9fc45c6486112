"""The paper's figures 4-17 from a run directory's logs (matplotlib, Agg backend: no display).

A training run (`log.csv`, `figures.npz`) gives figures 4-14; a distillation run
(`distill_log.csv`) gives 15-17. A general-model run (`train-general`, or `distill` of a general
teacher: `log.json` beside `teacher.pt` / `student.pt`) gives what it logged: the validation one-pass
ratio to rollout per imitation epoch and per ES generation. Missing data for a figure is an
`EdgepocError`, never an empty plot.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepoc.errors import EdgepocError


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


VARIANT = "paper variant: fixed-K ResourceAllocationModel (`edgepoc train`)"  # SPEC §4: each figure says which
GENERAL_VARIANT = {"teacher": "general model, any K and R (`edgepoc train-general`)",
                   "student": "general student (`edgepoc distill` of a general teacher)"}


def _series(rows: list[dict], key: str, source: str) -> np.ndarray:
    if not rows or key not in rows[0]:
        raise EdgepocError(f"plot: {source} has no column {key!r}")
    return np.array([r[key] for r in rows])


def _line(path: Path, x, ys: dict[str, np.ndarray], title: str, ylabel: str, xlabel: str = "epoch",
          logy: bool = False, variant: str = VARIANT, hline: tuple[float, str] | None = None) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for label, y in ys.items():
        ax.plot(x, y, label=label, linestyle="--" if "label" in label or "teacher" in label else "-",
                marker="o" if len(x) < 30 else None, markersize=3)
    if hline is not None:
        ax.axhline(hline[0], color="grey", linewidth=0.8, linestyle=":", label=hline[1])
    ax.set_title(f"{title}\n({variant})", fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _demand(path: Path, demand: np.ndarray, title: str) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.0, 5.0))
    ax.scatter(demand[:, 0], demand[:, 1], s=3, alpha=0.4, label=f"{demand.shape[0]} tasks")
    ax.set_title(title)
    ax.set_xlabel("demand, resource 1 (normalised)")
    ax.set_ylabel("demand, resource 2 (normalised)" if demand.shape[1] > 1 else "")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _actions(path: Path, p: np.ndarray, label: np.ndarray, title: str) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.0, 3.6))
    idx = np.arange(p.shape[0])
    ax.scatter(idx, p.argmax(axis=1), s=4, label="model action (argmax P)")
    ax.scatter(idx, label + 0.15, s=4, alpha=0.5, label="label (meta strategy), offset +0.15")
    ax.set_yticks(range(p.shape[1]), [f"provider {k}" for k in range(p.shape[1])])
    ax.set_title(f"{title}\n({VARIANT})", fontsize=10)
    ax.set_xlabel("task (arrival order)")
    ax.set_ylabel("chosen provider")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_training(run_dir: Path, out: Path) -> list[Path]:
    from edgepoc.models.paper.logs import read_log

    rows = read_log(run_dir)
    if not rows:
        raise EdgepocError(f"plot: {str(run_dir / 'log.csv')!r} is missing or empty")
    npz = run_dir / "figures.npz"
    if not npz.exists():
        raise EdgepocError(f"plot: {str(npz)!r} is missing (figures 4, 7, 10, 11 need it)")
    fig = np.load(npz)
    src = str(run_dir / "log.csv")
    e = _series(rows, "epoch", src)
    made = [
        _demand(out / "fig04_train_demand.png", fig["train_demand"], "Fig. 4: task demand, training data"),
        _demand(out / "fig10_test_demand.png", fig["test_demand"], "Fig. 10: task demand, test data"),
        _line(out / "fig05_loss.png", e, {"train": _series(rows, "train_loss", src),
                                         "test": _series(rows, "test_loss", src)}, "Fig. 5: training loss", "loss"),
    ]
    for split, fd, fa, facc, fdiv in (("train", 6, 7, 8, 9), ("test", 12, 11, 13, 14)):
        made.append(_line(out / f"fig{fd:02d}_{split}_delay.png", e,
                          {"model (argmax)": _series(rows, f"{split}_delay", src),
                           "model (guided decoder)": _series(rows, f"{split}_guided_delay", src),
                           "label (meta strategy)": _series(rows, f"{split}_label_delay", src)},
                          f"Fig. {fd}: total delay per epoch, {split}", "mean total delay per instance (s, log)",
                          logy=True))
        made.append(_actions(out / f"fig{fa:02d}_{split}_actions.png", fig[f"{split}_p"], fig[f"{split}_label"],
                             f"Fig. {fa}: model actions per task, {split} (best epoch)"))
        made.append(_line(out / f"fig{facc:02d}_{split}_accuracy.png", e,
                          {split: _series(rows, f"{split}_accuracy", src)},
                          f"Fig. {facc}: accuracy against labels, {split}", "share of tasks = label"))
        made.append(_line(out / f"fig{fdiv:02d}_{split}_diversity.png", e,
                          {split: _series(rows, f"{split}_diversity", src)},
                          f"Fig. {fdiv}: diversity score D, {split}", "D (mean pairwise distance of P)"))
    return made


def plot_distillation(run_dir: Path, out: Path) -> list[Path]:
    from edgepoc.models.paper.logs import read_distill_log

    rows = read_distill_log(run_dir)
    if not rows:
        raise EdgepocError(f"plot: {str(run_dir / 'distill_log.csv')!r} is missing or empty")
    src = str(run_dir / "distill_log.csv")
    e = _series(rows, "epoch", src)
    return [
        _line(out / "fig15_distill_loss.png", e, {"train": _series(rows, "train_loss", src),
                                                  "test": _series(rows, "test_loss", src)},
              "Fig. 15: distillation loss", "loss (soft targets + labels)"),
        _line(out / "fig16_student_accuracy.png", e,
              {"train, vs labels": _series(rows, "train_accuracy", src),
               "test, vs labels": _series(rows, "test_accuracy", src),
               "test, vs teacher actions": _series(rows, "test_agreement", src)},
              "Fig. 16: student accuracy", "share of tasks"),
        _line(out / "fig17_student_vs_teacher_delay.png", e,
              {"student (argmax), test": _series(rows, "test_student_delay", src),
               "teacher (argmax), test": _series(rows, "test_teacher_delay", src),
               "student (guided decoder), test": _series(rows, "test_student_guided_delay", src),
               "teacher (guided decoder), test": _series(rows, "test_teacher_guided_delay", src)},
              "Fig. 17: student vs teacher total delay", "mean total delay per instance (s, log)", logy=True),
    ]


def general_kind(run_dir: Path) -> str | None:
    """"teacher" / "student" for a general-model run folder (log.json beside its checkpoint), else None."""
    if not (run_dir / "log.json").exists():
        return None
    for kind in ("teacher", "student"):
        if (run_dir / f"{kind}.pt").exists():
            return kind
    return None


def plot_general(run_dir: Path, out: Path, kind: str) -> list[Path]:
    """A general run's log.json: validation one-pass / rollout per imitation epoch and per ES generation
    (with the ES mini-batch's mean ratio on the training instances)."""
    import json

    src = str(run_dir / "log.json")
    try:
        rows = json.loads((run_dir / "log.json").read_text())
    except ValueError as exc:
        raise EdgepocError(f"plot: {src!r} is not JSON ({exc})") from None
    if not isinstance(rows, list) or not rows:
        raise EdgepocError(f"plot: {src!r} is empty (the run logged no epoch or generation)")
    variant = GENERAL_VARIANT[kind]
    rollout = (1.0, "rollout (ratio 1)")
    made = []
    imit = [r for r in rows if r.get("phase") == "imitation"]
    if imit:
        what = "the GA labels" if kind == "teacher" else "the teacher's decodes (KL)"
        made.append(_line(out / f"general_{kind}_imitation.png", _series(imit, "step", src),
                          {"validation": _series(imit, "val_ratio_to_rollout", src)},
                          f"{kind.capitalize()}: imitation of {what}", "one-pass total delay / rollout",
                          variant=variant, hline=rollout))
    es = [r for r in rows if r.get("phase") == "es"]
    if es:
        ys = {"validation": _series(es, "val_ratio_to_rollout", src)}
        if "train_batch_ratio" in es[0]:
            ys["training mini-batch (perturbed heads, mean)"] = _series(es, "train_batch_ratio", src)
        made.append(_line(out / f"general_{kind}_es.png", _series(es, "step", src), ys,
                          f"{kind.capitalize()}: evolution strategies on f(x)", "one-pass total delay / rollout",
                          xlabel="ES generation", variant=variant, hline=rollout))
    if not made:
        raise EdgepocError(f"plot: {src!r} has no imitation or ES entries")
    return made


def plot_run(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Every figure the run's logs support, as PNGs in `out_dir` (default RUN_DIR/figures)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EdgepocError(f"plot: {str(run_dir)!r} is not a run directory")
    has_train, has_distill = (run_dir / "log.csv").exists(), (run_dir / "distill_log.csv").exists()
    general = general_kind(run_dir)
    if not (has_train or has_distill or general):
        what = ("a compare run (it draws its own fig18_comparison.png)" if (run_dir / "summary.json").exists()
                else "not a training or distillation run")
        raise EdgepocError(f"plot: {str(run_dir)!r} is {what}; plot accepts the folder of `edgepoc train` "
                           "(log.csv: Fig. 4-14), `edgepoc distill` (distill_log.csv: Fig. 15-17) or "
                           "`edgepoc train-general` / a general distill (log.json: imitation and ES curves)")
    out = Path(out_dir) if out_dir else run_dir / "figures"
    out.mkdir(parents=True, exist_ok=True)
    made = []
    if has_train:
        made += plot_training(run_dir, out)
    if has_distill:
        made += plot_distillation(run_dir, out)
    if general:
        made += plot_general(run_dir, out, general)
    return made
