"""Reading the logs that training (`train.py`: log.csv) and distillation (`distill.py`: distill_log.csv) write,
without PyTorch: `edgepoc plot` draws the figures from them and has no model to run."""

from __future__ import annotations

import csv
from pathlib import Path


def read_log(run_dir: str | Path, upto_epoch: int | None = None) -> list[dict]:
    """The training log's rows (numbers as floats; empty cells left out), up to `upto_epoch` if given."""
    path = Path(run_dir) / "log.csv"
    if not path.exists():
        return []
    with path.open() as fh:
        rows = [{k: float(v) for k, v in r.items() if v != ""} for r in csv.DictReader(fh)]
    return [r for r in rows if upto_epoch is None or r["epoch"] <= upto_epoch]


def read_distill_log(run_dir: str | Path) -> list[dict]:
    """The distillation log's rows, numbers as floats."""
    path = Path(run_dir) / "distill_log.csv"
    if not path.exists():
        return []
    with path.open() as fh:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(fh)]
