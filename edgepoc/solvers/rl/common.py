"""Pieces the RL trainers share: checkpoints, validation, the progress bar, the bundled models."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from edgepoc.files import atomic_path
from edgepoc.errors import EdgepocError, InputError
from edgepoc.game.generators import generate
from edgepoc.game.instance import Instance
from edgepoc.game.kernel import earliest_finishers, greedy_assignment, simulate

if TYPE_CHECKING:
    from numpy.typing import ArrayLike


def bundled_checkpoint(algo: str, n_providers: int = 3) -> Path:
    """The small checkpoint shipped in the package for `algo` ('dqn' or 'maddpg') and `n_providers` (a flat
    dispatcher serves one number of providers; `bundled_provider_counts` says which are shipped)."""
    return Path(str(resources.files("edgepoc.solvers") / "bundled" / f"{algo}-k{n_providers}.pt"))


def bundled_provider_counts(algo: str) -> list[int]:
    folder = Path(str(resources.files("edgepoc.solvers") / "bundled"))
    return sorted(int(p.stem.rsplit("-k", 1)[1]) for p in folder.glob(f"{algo}-k*.pt"))


def save_rl_checkpoint(path: Path, fmt: str, config: Any, payload: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save({"format": fmt, "config": asdict(config), **payload}, tmp)


def load_checkpoint(path: str | Path | None, algo: str, fmt: str, n_providers: int = 3) -> dict:
    """Read a checkpoint written by `train-rl` (None: the bundled one for `n_providers`); wrong files get one
    line."""
    if path:
        p = Path(path)
        if not p.is_file():
            raise InputError(f"model: checkpoint {p} not found")
    else:
        p = bundled_checkpoint(algo, n_providers)
        if not p.is_file():
            shipped = ", ".join(map(str, bundled_provider_counts(algo))) or "none"
            raise InputError(f"model: no bundled {algo} model for {n_providers} providers (bundled: {shipped}); train "
                             f"one with `edgepoc train-rl --algo {algo} --providers {n_providers}` and pass it with "
                             "--model")
    try:
        doc = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated or foreign file
        raise InputError(f"model: {p} is not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise InputError(f"model: {p} is a {got!r} checkpoint, expected {fmt!r}")
    return doc


def model_label(path: str | None, algo: str, n_providers: int) -> str:
    """What `solve` reports as the model: the file given, or which bundled one."""
    return path or f"bundled {algo}-k{n_providers}"


def single_provider(instance: Instance, options: Any, algo: str) -> tuple[np.ndarray, dict] | None:
    """With one provider every policy sends every task to it: answer without a checkpoint (none is shipped,
    or could be trained, for a dispatcher with one action). None when the instance has more providers and a
    model given with --model is used as usual."""
    if instance.n_providers != 1 or options.model:
        return None
    return np.zeros(instance.n_tasks, dtype=np.int64), {"model": f"none ({algo} has one action with 1 provider)"}


def trained_count(options: Any, algo: str, instance: Instance) -> int:
    """How many providers the policy `solve` will use was trained for: the --model checkpoint's, else the
    bundled one for the instance's count, else (more providers than any bundled one) the largest bundled."""
    shipped = bundled_provider_counts(algo)
    if options.model or instance.n_providers in shipped or not shipped or instance.n_providers < max(shipped):
        return instance.n_providers
    return max(shipped)


def shortlist_play(instance: Instance, free_times: ArrayLike | None, width: int,
                   decide: Callable[[np.ndarray, np.ndarray], int]) -> np.ndarray:
    """Dispatch every task with a policy trained for `width` providers on an instance with more: each task
    is decided among the `width` providers that would finish it first on the current queues (ties to the
    lower index; in their instance order), which always holds greedy's choice. `decide(provider_rows
    (width, 5), task (2,)) -> position in the shortlist`, the rows being the dispatcher's own features
    (`dispatch_provider_features`). Returns the assignment."""
    from edgepoc.solvers.rl.env import QueueStepper
    from edgepoc.solvers.rl.features import dispatch_provider_features, dispatch_task_features, time_scale

    queue = QueueStepper(instance, free_times)
    scale = time_scale(instance)
    finish = np.empty(instance.n_providers)
    keep = np.empty(width, dtype=np.int64)
    while not queue.done:
        i = queue.index
        earliest_finishers(queue.free, instance.ready[i], instance.processing[i], width, finish, keep)
        rows = dispatch_provider_features(instance, i, queue.free, scale)[keep]
        queue.assign(int(keep[decide(rows, dispatch_task_features(instance, i, scale))]))
    return queue.assignment.copy()


def shortlist_label(options: Any, algo: str, width: int, instance: Instance) -> str:
    return (f"{model_label(options.model, algo, width)} on each task's {width} earliest-finishing of "
            f"{instance.n_providers} providers")


def check_providers(instance: Instance, n_providers: int, algo: str) -> None:
    if instance.n_providers != n_providers:
        raise InputError(f"instance {instance.name}: has {instance.n_providers} providers, the {algo} "
                         f"checkpoint was trained for {n_providers}; train one with `edgepoc train-rl`")


@dataclass
class Validation:
    """A few held-out instances to pick the best checkpoint by, with greedy's delay as the yardstick."""

    instances: list[Instance]
    greedy: float

    @classmethod
    def make(cls, preset: str, seed: int, count: int, **params: Any) -> "Validation":
        insts = generate(preset, seed=seed, count=count, **params)
        return cls(insts, float(sum(greedy_assignment(i)[1] for i in insts)))

    def score(self, solve: Callable[[Instance], np.ndarray]) -> float:
        """Total delay of the policy over the validation instances, as a ratio to greedy's."""
        total = sum(simulate(inst, solve(inst)) for inst in self.instances)
        return total / self.greedy if self.greedy > 0 else float(total)


class TrainLog:
    """Evaluation history written as JSON lines beside the checkpoints."""

    def __init__(self, out: Path) -> None:
        self.path = out / "log.jsonl"
        self.path.write_text("")
        self.t0 = time.perf_counter()
        self.best = float("inf")

    def record(self, step: int, ratio: float, **extra: Any) -> bool:
        """Append one evaluation; True when it is the best so far."""
        row = {"step": step, "seconds": round(time.perf_counter() - self.t0, 2), "val_ratio_to_greedy": ratio, **extra}
        # no NaN tokens (losses before the first update): the log stays strict JSON for other tools
        row = {k: None if isinstance(v, float) and v != v else v for k, v in row.items()}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        better = ratio < self.best
        self.best = min(self.best, ratio)
        return better


def require_positive(name: str, value: float) -> None:
    if not value > 0:
        raise InputError(f"{name}: must be > 0, got {value}")


def torch_threads(n: int) -> None:
    """The trainers are small: one or two threads is fastest and leaves the other cores alone."""
    try:
        torch.set_num_threads(max(1, int(n)))
    except RuntimeError as exc:  # pragma: no cover - set after parallel work started
        raise EdgepocError(f"threads: {exc}") from None
