"""Knowledge distillation (paper §4.4, SPEC §5): a small student learns from the teacher and labels.

Loss = `alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T))` (soft targets at temperature
`T`, Hinton et al.) `+ (1 - alpha) * MSE(sigmoid(student), one-hot label)` (paper Eq. 4). Logged per
epoch: distillation loss (train/test), student accuracy against labels and against the teacher's
actions, student and teacher total delay on the same instances (argmax, and the guided decoder
without its greedy candidate). A run directory holds `config.json`, `distill_log.csv`, `best.pt`
(the student with the lowest test guided delay), `last.pt`.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from edgepoc.errors import EdgepocError, InputError
from edgepoc.game.dataset import LabelledInstance
from edgepoc.models.paper.allocation import count_parameters
from edgepoc.models.checkpoint import load_model, save_checkpoint
from edgepoc.models.paper.evaluation import Prepared, argmax_delays, batches, guided_delays, predict, prepare
from edgepoc.models.metrics import accuracy
from edgepoc.models.paper.student import StudentModel, student_config

DISTILL_FIELDS = ["epoch", "seconds", "train_loss", "test_loss", "train_accuracy", "test_accuracy",
                  "test_agreement", "train_student_delay", "test_student_delay", "train_teacher_delay",
                  "test_teacher_delay", "test_student_guided_delay", "test_teacher_guided_delay",
                  "test_label_delay", "test_gap_to_teacher_pct"]


@dataclass
class DistillConfig:
    """Every setting of a distillation run; written to `config.json`."""

    hidden: int = 16
    rnn_hidden: int = 8
    decoder_hidden: int = 16
    alpha: float = 0.7  # weight of the soft-target term; 1 - alpha on the labels
    temperature: float = 2.0
    lr: float = 3e-3
    batch_size: int = 8
    epochs: int = 150
    patience: int = 30
    seed: int = 0
    threads: int = 2
    teacher: str = ""
    data: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def distillation_loss(s_logits: torch.Tensor, t_logits: torch.Tensor, y: torch.Tensor,
                      alpha: float, temperature: float) -> torch.Tensor:
    """Weighted mix of soft-target matching (temperature) and the labels (MSE, paper Eq. 4)."""
    soft = F.kl_div(F.log_softmax(s_logits / temperature, dim=1), F.softmax(t_logits / temperature, dim=1),
                    reduction="batchmean") * temperature ** 2
    hard = F.mse_loss(torch.sigmoid(s_logits), y)
    return alpha * soft + (1.0 - alpha) * hard


@torch.no_grad()
def _loss(student, teacher_logits: list[torch.Tensor], data: Prepared, cfg: DistillConfig) -> float:
    student.eval()
    total, count = 0.0, 0
    for g, t in zip(data.graphs, teacher_logits):
        total += float(distillation_loss(student.logits(g), t, g.y, cfg.alpha, cfg.temperature)) * g.num_nodes
        count += g.num_nodes
    return total / max(count, 1)


def distill(teacher_path: str | Path, train_items: list[LabelledInstance], test_items: list[LabelledInstance],
            cfg: DistillConfig, run_dir: str | Path, show_progress: bool = True) -> dict:
    """Train a student from a teacher checkpoint; returns a summary (best epoch, sizes, delays)."""
    if not 0.0 <= cfg.alpha <= 1.0 or cfg.temperature <= 0:
        raise InputError("distill settings: alpha must be in [0, 1] and temperature > 0")
    if not train_items or not test_items:
        raise InputError("data: distillation needs non-empty training and test sets")
    teacher, _ = load_model(teacher_path, expect_kind="teacher")
    features = teacher.config.features
    for it in list(train_items) + list(test_items):
        if it.instance.n_providers != features.n_providers:
            raise EdgepocError(f"model: teacher is for {features.n_providers} providers, instance "
                               f"{it.instance.name!r} has {it.instance.n_providers}")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, cfg.threads))
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    cfg.teacher = str(teacher_path)
    (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    train, test = prepare(train_items, features), prepare(test_items, features)
    with torch.no_grad():
        t_train = [teacher.logits(g) for g in train.graphs]
        t_test = [teacher.logits(g) for g in test.graphs]
    t_probs_train = [torch.sigmoid(t).numpy() for t in t_train]
    t_probs_test = [torch.sigmoid(t).numpy() for t in t_test]
    teacher_guided_test = guided_delays(test, t_probs_test).mean()
    teacher_delay_train = argmax_delays(train, t_probs_train).mean()
    teacher_delay_test = argmax_delays(test, t_probs_test).mean()
    student = StudentModel(student_config(features, cfg.hidden, cfg.rnn_hidden, cfg.decoder_hidden))
    meta = {"params": count_parameters(student), "teacher_params": count_parameters(teacher),
            "teacher": str(teacher_path)}
    opt = torch.optim.Adam(student.parameters(), lr=cfg.lr)
    # teacher logits travel with each graph through batching
    for g, t in zip(train.graphs, t_train):
        g.t_logits = t
    with (run_dir / "distill_log.csv").open("w", newline="") as fh:
        csv.writer(fh).writerow(DISTILL_FIELDS)
    best_delay, best_epoch, epoch, t0 = float("inf"), 0, 0, time.perf_counter()
    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn(), TextColumn("{task.fields[status]}")]
    with Progress(*columns, console=Console(stderr=True), disable=not show_progress) as bar:
        task = bar.add_task("distilling", total=cfg.epochs, status="")
        for epoch in range(1, cfg.epochs + 1):
            student.train()
            for b in batches(train.graphs, cfg.batch_size, rng.permutation(len(train))):
                opt.zero_grad()
                loss = distillation_loss(student.logits(b), b.t_logits, b.y, cfg.alpha, cfg.temperature)
                loss.backward()
                opt.step()
            s_train, s_test = predict(student, train.graphs), predict(student, test.graphs)
            d_train, d_test = argmax_delays(train, s_train).mean(), argmax_delays(test, s_test).mean()
            g_test = guided_delays(test, s_test).mean()
            row = {
                "epoch": epoch, "seconds": time.perf_counter() - t0,
                "train_loss": _loss(student, t_train, train, cfg), "test_loss": _loss(student, t_test, test, cfg),
                "train_accuracy": np.mean([accuracy(p.argmax(1), y) for p, y in zip(s_train, train.labels)]),
                "test_accuracy": np.mean([accuracy(p.argmax(1), y) for p, y in zip(s_test, test.labels)]),
                "test_agreement": np.mean([accuracy(p.argmax(1), t.argmax(1)) for p, t in zip(s_test, t_probs_test)]),
                "train_student_delay": d_train, "test_student_delay": d_test,
                "train_teacher_delay": teacher_delay_train, "test_teacher_delay": teacher_delay_test,
                "test_student_guided_delay": g_test, "test_teacher_guided_delay": teacher_guided_test,
                "test_label_delay": test.label_delays.mean(),
                "test_gap_to_teacher_pct": 100.0 * (g_test / teacher_guided_test - 1.0),
            }
            with (run_dir / "distill_log.csv").open("a", newline="") as fh:
                csv.writer(fh).writerow([float(row[k]) for k in DISTILL_FIELDS])
            if g_test < best_delay:  # selected, like the teacher, by the guided decoder's delay
                best_delay, best_epoch = g_test, epoch
                save_checkpoint(run_dir / "best.pt", student, {**meta, "epoch": epoch,
                                                               "test_student_guided_delay": float(g_test)})
            save_checkpoint(run_dir / "last.pt", student, {**meta, "epoch": epoch})
            bar.update(task, advance=1, status=f"loss {row['train_loss']:.4f} test guided delay {g_test:.4g} "
                                                f"(best {best_delay:.4g}, epoch {best_epoch}) gap to teacher "
                                                f"{row['test_gap_to_teacher_pct']:+.2f}%")
            if epoch - best_epoch >= cfg.patience:
                break
    return {"best_epoch": best_epoch, "best_test_student_guided_delay": float(best_delay),
            "test_teacher_guided_delay": float(teacher_guided_test), "epochs_run": epoch,
            "seconds": time.perf_counter() - t0, **meta}
