"""Labelled training data for the model: from a data-set directory, or labelled in memory.

`edgepoc train --data DIR` reads the project's data-set format (`edgepoc.game.dataset.read_dataset`).
Without a directory, instances come from a generator preset and are labelled here with a solver
from the registry (`ga`, the paper's meta strategy, by default; `greedy` as a fast fallback).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress

from edgepoc.errors import EdgepocError, InputError
from edgepoc.game.dataset import LabelledInstance
from edgepoc.game.generators import generate
from edgepoc.game.instance import Instance
from edgepoc.game.kernel import simulate
from edgepoc.game.validate import ASSIGNMENT_DTYPE


def read_labelled(path: str | Path) -> list[LabelledInstance]:
    """Every labelled instance of a data-set directory; unlabelled ones are an error."""
    try:
        from edgepoc.game.dataset import read_dataset
    except ImportError:
        raise EdgepocError("data: this install cannot read data-set directories yet (no read_dataset)") from None
    items = list(read_dataset(path))
    if not items:
        raise InputError(f"data: {str(path)!r} holds no instances")
    missing = sum(1 for it in items if it.assignment is None)
    if missing:
        raise InputError(f"data: {missing} of {len(items)} instances in {str(path)!r} have no label allocation")
    return items


def label_instances(instances: list[Instance], labeler: str = "ga", seed: int = 0,
                    seconds: float | None = None, params: dict | None = None,
                    show_progress: bool = True) -> list[LabelledInstance]:
    """Label each instance with a registered solver; the label's delay is re-simulated by the kernel."""
    from edgepoc.solvers.registry import SolveOptions, solve

    out = []
    with Progress(console=Console(stderr=True), disable=not show_progress, transient=True) as bar:
        task = bar.add_task(f"labelling with {labeler}", total=len(instances))
        for i, inst in enumerate(instances):
            res = solve(inst, labeler, SolveOptions(seed=seed + i, seconds=seconds, params=dict(params or {})))
            out.append(LabelledInstance(inst, res.assignment, res.total_latency,
                                        {"method": labeler, "seed": seed + i, "seconds": res.seconds}))
            bar.advance(task)
    return out


def generated_labelled(preset: str, seed: int, count: int, start_index: int = 0, labeler: str = "ga",
                       seconds: float | None = None, params: dict | None = None, **gen_params) -> list[LabelledInstance]:
    """`count` instances of a preset, labelled in memory."""
    return label_instances(generate(preset, seed=seed, count=count, start_index=start_index, **gen_params),
                           labeler, seed=seed * 100003 + start_index, seconds=seconds, params=params)


def label_latency(item: LabelledInstance) -> float:
    """The label's total delay, re-simulated (never trusted from a file)."""
    return simulate(item.instance, np.asarray(item.assignment, dtype=np.int64))


def save_label_record(path: str | Path, spec: dict, items: list[LabelledInstance]) -> None:
    """Keep generated labels beside a run: the generator spec + label allocations, so a later
    command (`distill --from-run`) regenerates the identical instances instead of re-running GA."""
    import json

    np.savez_compressed(path, spec=json.dumps(spec),
                        **{f"label_{i}": np.asarray(it.assignment, dtype=ASSIGNMENT_DTYPE)
                           for i, it in enumerate(items)})


def load_label_record(path: str | Path) -> list[LabelledInstance]:
    import json

    path = Path(path)
    if not path.exists():
        raise InputError(f"data: {str(path)!r} does not exist")
    rec = np.load(path)
    spec = json.loads(str(rec["spec"]))
    instances = generate(spec["preset"], seed=spec["seed"], count=spec["count"],
                         start_index=spec.get("start_index", 0), **spec.get("params", {}))
    items = []
    for i, inst in enumerate(instances):
        x = rec[f"label_{i}"].astype(np.int64)
        items.append(LabelledInstance(inst, x, simulate(inst, x), {"method": spec.get("labeler"), "record": str(path)}))
    return items
