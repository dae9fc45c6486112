"""Training the teacher on GA labels (SPEC §4): Adam, mini-batches of graphs, early stopping.

A run directory holds `config.json` (the `TrainConfig`), `log.csv` (one row per epoch, train and
test metrics), `best.pt` (lowest validation total delay), `last.pt` (with optimizer state, for
`resume`), and `figures.npz` (what `edgepoc plot` needs: demands, final outputs, labels).
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from edgepoc.errors import EdgepocError, InputError, Interrupted
from edgepoc.game.dataset import LabelledInstance
from edgepoc.models.paper.allocation import ModelConfig, count_parameters
from edgepoc.models.checkpoint import build_model, read_checkpoint, save_checkpoint
from edgepoc.models.paper.evaluation import Prepared, batches, evaluate, loss_fn, predict, prepare

LOG_FIELDS = ["epoch", "seconds"] + [f"{split}_{m}" for split in ("train", "test")
                                     for m in ("loss", "delay", "guided_delay", "label_delay", "gap_pct", "accuracy",
                                               "diversity")]


@dataclass
class TrainConfig:
    """Every setting of a training run; written to `config.json` beside its results."""

    model: ModelConfig = field(default_factory=ModelConfig)
    loss: str = "mse"  # "mse" (paper Eq. 4) or "ce"
    lr: float = 2e-3
    weight_decay: float = 0.0
    batch_size: int = 8
    epochs: int = 150
    patience: int = 30  # epochs without a better validation score before stopping
    select_on: str = "guided_delay"  # validation score: guided_delay, delay (argmax) or loss
    seed: int = 0
    threads: int = 2
    data: dict = field(default_factory=dict)  # where the data came from (for the record)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        d["model"] = ModelConfig.from_dict(d["model"])
        return cls(**d)


def _check(cfg: TrainConfig, train: list, test: list) -> None:
    if cfg.select_on not in ("guided_delay", "delay", "loss"):
        raise InputError(f"select_on: expected guided_delay, delay or loss, got {cfg.select_on!r}")
    if cfg.loss not in ("mse", "ce"):
        raise InputError(f"loss: expected mse or ce, got {cfg.loss!r}")
    if not train:
        raise InputError("data: the training set is empty")
    if not test:
        raise InputError("data: the test (validation) set is empty")
    f = cfg.model.features
    for it in list(train) + list(test):
        if it.instance.n_providers != f.n_providers or it.instance.n_resources != f.n_resources:
            raise InputError(f"data: instance {it.instance.name!r} has {it.instance.n_providers} providers and "
                             f"{it.instance.n_resources} resources; the model is for {f.n_providers} and {f.n_resources}")


class RunLog:
    """CSV log (+ TensorBoard when installed)."""

    def __init__(self, run_dir: Path, fields: list[str], append: bool):
        self.path = run_dir / "log.csv"
        self.fields = fields
        if not append or not self.path.exists():
            with self.path.open("w", newline="") as fh:
                csv.writer(fh).writerow(fields)
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter  # needs the optional tensorboard package
            self.tb = SummaryWriter(str(run_dir / "tb"))
        except Exception:
            self.tb = None

    def write(self, row: dict) -> None:
        with self.path.open("a", newline="") as fh:
            csv.writer(fh).writerow([row.get(k, "") for k in self.fields])
        if self.tb is not None:
            for k, v in row.items():
                if k != "epoch":
                    self.tb.add_scalar(k, v, row["epoch"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def save_figure_data(run_dir: Path, model: torch.nn.Module, train: Prepared, test: Prepared, prefix: str = "") -> None:
    """What the paper's figures 4/10 and 7/11 show: demands, and the final outputs vs labels."""
    p_train, p_test = predict(model, train.graphs[:1]), predict(model, test.graphs[:1])
    np.savez_compressed(
        run_dir / f"{prefix}figures.npz",
        train_demand=np.concatenate([i.demand for i in train.instances]),
        test_demand=np.concatenate([i.demand for i in test.instances]),
        train_p=p_train[0], test_p=p_test[0], train_label=train.labels[0], test_label=test.labels[0])


def train_model(train_items: list[LabelledInstance], test_items: list[LabelledInstance], cfg: TrainConfig,
                run_dir: str | Path, resume: bool = False, show_progress: bool = True) -> dict:
    """Train, log every epoch, keep the best checkpoint by the validation (test-set) score `select_on`."""
    _check(cfg, train_items, test_items)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, cfg.threads))
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    train, test = prepare(train_items, cfg.model.features), prepare(test_items, cfg.model.features)
    model = build_model(cfg.model)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start, best_delay, best_epoch = 1, float("inf"), 0
    last = run_dir / "last.pt"
    if resume:
        if not last.exists():
            raise EdgepocError(f"resume: no last.pt in {str(run_dir)!r}")
        doc = read_checkpoint(last)
        if doc["config"] != cfg.model.to_dict():
            raise EdgepocError("resume: the model settings differ from the run being resumed")
        model.load_state_dict(doc["state_dict"])
        st = doc["train_state"]
        opt.load_state_dict(st["optimizer"])
        start, best_delay, best_epoch = int(st["epoch"]) + 1, float(st["best_delay"]), int(st["best_epoch"])
        if start > cfg.epochs:
            raise EdgepocError(f"resume: {last} already holds epoch {start - 1}, and --epochs is {cfg.epochs}: "
                               "give a larger --epochs to train on")
        rng = np.random.default_rng([cfg.seed, start])
        torch.manual_seed(cfg.seed + start)
    (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    log = RunLog(run_dir, LOG_FIELDS, append=resume)
    step = loss_fn(cfg.loss)
    t0 = time.perf_counter()
    meta = {"params": count_parameters(model), "train_instances": len(train), "test_instances": len(test)}
    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn(), TextColumn("{task.fields[status]}")]
    saved = start - 1  # the last epoch whole in last.pt
    try:
        with Progress(*columns, console=Console(stderr=True), disable=not show_progress) as bar:
            task = bar.add_task("training", total=cfg.epochs, completed=start - 1, status="")
            for epoch in range(start, cfg.epochs + 1):
                model.train()
                for b in batches(train.graphs, cfg.batch_size, rng.permutation(len(train))):
                    opt.zero_grad()
                    loss = step(model, b)
                    loss.backward()
                    opt.step()
                tr, te = evaluate(model, train, cfg.loss), evaluate(model, test, cfg.loss)
                row = {"epoch": epoch, "seconds": time.perf_counter() - t0}
                row.update({f"train_{k}": v for k, v in tr.items()})
                row.update({f"test_{k}": v for k, v in te.items()})
                log.write(row)
                if te[cfg.select_on] < best_delay:
                    best_delay, best_epoch = te[cfg.select_on], epoch
                    save_checkpoint(run_dir / "best.pt", model, {**meta, "epoch": epoch, "test": te, "train": tr})
                save_checkpoint(last, model, {**meta, "epoch": epoch}, train_state={
                    "optimizer": opt.state_dict(), "epoch": epoch, "best_delay": best_delay, "best_epoch": best_epoch})
                saved = epoch
                bar.update(task, advance=1, status=f"loss {tr['loss']:.4f} test {cfg.select_on} {te[cfg.select_on]:.4g} "
                                                    f"(best {best_delay:.4g}, epoch {best_epoch})")
                if epoch - best_epoch >= cfg.patience:
                    break
    except KeyboardInterrupt:  # every epoch is saved as it ends: say where the run stands
        log.close()
        raise Interrupted(f"{last} holds epoch {saved} (best.pt: epoch {best_epoch}); the same command with --resume "
                          "continues" if saved >= 1 else "no epoch had finished; nothing was saved") from None
    log.close()
    from edgepoc.models.checkpoint import load_model
    best, _ = load_model(run_dir / "best.pt")
    save_figure_data(run_dir, best, train, test)
    return {"best_epoch": best_epoch, f"best_test_{cfg.select_on}": best_delay, "epochs_run": epoch,
            "seconds": time.perf_counter() - t0, **meta}
