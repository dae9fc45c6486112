"""The labelling job: instances of a preset, each labelled by a solver, into a data-set folder (SPEC §3).

Instance `i` of a seed is generated from `(preset, seed, i)` and labelled with solver seed
`label_seed(seed, i)`, so an item does not depend on which worker made it, in which order, or whether
the job was interrupted. Items are appended in index order in crash-safe shards; a re-run of the same
job in the same folder skips the indices already stored (resume) and refuses a folder that holds a
different job. With a GA generation budget (the default) a data set is a pure function of its job
settings; a time budget (`seconds`) makes labels depend on machine speed, and the meta says so.

Work runs on a local process pool over all cores by default, or on a Ray cluster (`ray_address`;
`"local"` starts one in-process) when the optional `edgepoc[ray]` extra is installed.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from edgepoc.errors import EdgepocError, InputError, Interrupted
from edgepoc.game.dataset import LabelledInstance, append, create_dataset, done_indices, load_manifest
from edgepoc.game.generators import PRESETS, generate

LABELLERS = ("ga", "greedy", "cpsat")
DEFAULT_GA_GENERATIONS = 20


@dataclass
class LabelJob:
    """What to generate and how to label it; stored in the manifest (`meta.job`) and checked on resume."""

    preset: str = "paper"
    seed: int = 0
    count: int = 1
    start_index: int = 0
    label: str = "ga"
    generations: int | None = None  # GA generations per instance (None: DEFAULT_GA_GENERATIONS unless seconds)
    seconds: float | None = None  # time budget per instance (GA stops on it too; CP-SAT's limit)
    params: dict[str, Any] = field(default_factory=dict)  # solver settings (GAConfig fields for ga)
    instance_params: dict[str, Any] = field(default_factory=dict)  # preset settings: n_tasks, providers, load

    def validate(self) -> None:
        if self.preset not in PRESETS:
            raise InputError(f"preset: unknown preset {self.preset!r}; known: {', '.join(PRESETS)}")
        if self.label not in LABELLERS:
            raise InputError(f"label: unknown labeller {self.label!r}; known: {', '.join(LABELLERS)}")
        if self.count < 0 or self.start_index < 0:
            raise InputError("count/start_index: must be >= 0")
        if self.generations is not None and self.generations < 1:
            raise InputError(f"generations: must be >= 1, got {self.generations}")
        if self.seconds is not None and not self.seconds > 0:
            raise InputError(f"seconds: must be > 0, got {self.seconds}")
        if self.label == "cpsat" and self.seconds is None:
            raise InputError("seconds: the cpsat labeller needs a time limit per instance (--seconds)")

    @property
    def deterministic(self) -> bool:
        return self.label == "greedy" or (self.label == "ga" and self.seconds is None)

    def identity(self) -> dict[str, Any]:
        """The settings that define the items (count and start are free: a job can be extended)."""
        d = asdict(self)
        d.pop("count")
        d.pop("start_index")
        return d


def job_difference(stored: Any, wanted: dict[str, Any]) -> str:
    """The settings that differ between a stored job and the one asked for, named one by one."""
    if not isinstance(stored, dict):
        return "it was not made by `generate --label`"
    names = {"instance_params": "", "params": "--param "}
    diffs = []
    for key in sorted(set(stored) | set(wanted)):
        a, b = stored.get(key), wanted.get(key)
        if a == b:
            continue
        if key in names and isinstance(a, dict) and isinstance(b, dict):
            for sub in sorted(set(a) | set(b)):
                if a.get(sub) != b.get(sub):
                    diffs.append(f"{names[key]}{sub}: stored {a.get(sub)!r}, asked {b.get(sub)!r}")
        else:
            diffs.append(f"{key}: stored {a!r}, asked {b!r}")
    return "; ".join(diffs)


def label_seed(seed: int, index: int) -> int:
    """The solver seed of instance `index`: independent streams per index, the same on every worker."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def label_one(job: LabelJob, index: int) -> LabelledInstance:
    """Generate instance `index` of the job and label it (runs in a worker)."""
    from edgepoc.solvers.registry import SolveOptions, solve

    inst = generate(job.preset, seed=job.seed, count=1, start_index=index, **job.instance_params)[0]
    params = dict(job.params)
    if job.label == "ga" and "generations" not in params:
        params["generations"] = job.generations or (None if job.seconds is not None else DEFAULT_GA_GENERATIONS)
    seed = label_seed(job.seed, index)
    res = solve(inst, job.label, SolveOptions(seed=seed, seconds=job.seconds, params=params))
    meta: dict[str, Any] = {"index": index, "method": job.label, "seed": seed, "seconds": res.seconds,
                            "preset": job.preset, "dataset_seed": job.seed, "deterministic": job.deterministic}
    for key in ("greedy_latency", "generations", "stop_reason", "settings", "lower_bound", "optimal", "gap"):
        if key in res.extra:
            meta[key] = res.extra[key]
    return LabelledInstance(inst, res.assignment, res.total_latency, meta)


def _label_task(args: tuple[LabelJob, int]) -> LabelledInstance:
    return label_one(*args)


def _pool_results(job: LabelJob, pending: list[int], workers: int) -> Iterator[LabelledInstance]:
    """Labelled items in index order from a local process pool."""
    if workers == 1:
        for i in pending:
            yield label_one(job, i)
        return
    ctx = multiprocessing.get_context("spawn")  # no fork of a process holding threads (rich, numba)
    with ctx.Pool(workers) as pool:
        yield from pool.imap(_label_task, [(job, i) for i in pending], chunksize=1)


def _ray_results(job: LabelJob, pending: list[int], address: str, window: int) -> Iterator[LabelledInstance]:
    """Labelled items in index order from a Ray cluster, at most `window` tasks in flight."""
    try:
        import ray
    except ImportError:
        raise EdgepocError("ray-address: Ray is not installed (pip install 'edgepoc[ray]')") from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=None if address == "local" else address, ignore_reinit_error=True,
                 log_to_driver=False, include_dashboard=False)
    try:
        remote = ray.remote(label_one)
        inflight: deque = deque()
        todo = iter(pending)
        for i in todo:
            inflight.append(remote.remote(job, i))
            if len(inflight) >= window:
                break
        while inflight:
            item = ray.get(inflight.popleft())
            nxt = next(todo, None)
            if nxt is not None:
                inflight.append(remote.remote(job, nxt))
            yield item
    finally:
        if started:
            ray.shutdown()


def run_labelling(
    directory: str | Path,
    job: LabelJob,
    workers: int | None = None,
    ray_address: str | None = None,
    shard_size: int = 32,
    flush_seconds: float = 15.0,
    progress: bool = True,
    on_item: Callable[[LabelledInstance], None] | None = None,
) -> dict[str, Any]:
    """Generate and label the job's instances into `directory`, resuming what is already there.

    Items are flushed as a shard every `shard_size` items or `flush_seconds`, whichever comes first.
    """
    job.validate()
    directory = Path(directory)
    workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise InputError(f"workers: must be >= 1, got {workers}")
    if (directory / "manifest.json").exists():
        stored = load_manifest(directory)["meta"].get("job")
        if stored != job.identity():
            raise InputError(f"out: {str(directory)!r} holds a different data set ({job_difference(stored, job.identity())}); "
                             "use another folder or the same settings to resume")
    else:
        create_dataset(directory, {"job": job.identity(), "deterministic": job.deterministic})
    done = done_indices(directory)
    wanted = range(job.start_index, job.start_index + job.count)
    pending = [i for i in wanted if i not in done]
    results: Iterable[LabelledInstance]
    if ray_address:
        results = _ray_results(job, pending, ray_address, window=2 * workers)
    else:
        results = _pool_results(job, pending, min(workers, max(1, len(pending))))
    written, batch, last_flush = 0, [], time.monotonic()
    columns = (TextColumn("[bold]labelling[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), disable=not progress) as bar:
        task = bar.add_task(f"{job.preset} with {job.label}", total=len(wanted), completed=len(wanted) - len(pending))
        try:
            for item in results:
                batch.append(item)
                if on_item:
                    on_item(item)
                if len(batch) >= shard_size or time.monotonic() - last_flush > flush_seconds:
                    written += append(directory, batch)  # what is flushed survives an interruption
                    batch, last_flush = [], time.monotonic()
                bar.advance(task)
        except KeyboardInterrupt:  # keep the labels in hand too, and say what a rerun does
            # A Ctrl-C inside a flush can land after its shard is in the manifest but before `batch` is emptied:
            # then those items were stored twice and "1 of 30 kept" was said of a folder holding 2 (CI). So only
            # what the folder lacks is added, and what is kept is counted there.
            stored = done_indices(directory)
            append(directory, [it for it in batch if it.meta.get("index") not in stored])
            kept = len(set(wanted) & done_indices(directory))
            raise Interrupted(f"{kept} of {len(wanted)} labelled instances are kept in {directory}/; the same command "
                              "resumes from them") from None
        written += append(directory, batch)
    return {"directory": str(directory), "requested": len(wanted), "skipped": len(wanted) - len(pending),
            "written": written, "workers": 0 if ray_address else workers, "ray_address": ray_address}


def label_files(paths: list[Path], directory: str | Path, method: str = "ga", seed: int = 0,
                generations: int | None = None, seconds: float | None = None, params: dict[str, Any] | None = None,
                overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Label one's own instance files with a solver into a new data-set folder (one process, file order).

    Item `i` is solved with seed `label_seed(seed, i)`; a GA without `seconds` runs `generations`
    (default 20) generations, so the labels are a pure function of the files and these settings.
    """
    from edgepoc.game.dataset import write_dataset
    from edgepoc.game.files import read_instance
    from edgepoc.solvers.registry import METHODS, SolveOptions, solve

    if method not in METHODS:
        raise InputError(f"--method: unknown method {method!r}; known: {', '.join(METHODS)}")
    if not paths:
        raise InputError("instances: no instance files to label")
    if generations is not None and generations < 1:
        raise InputError(f"--generations: must be >= 1, got {generations}")
    if generations is not None and method != "ga":
        raise InputError(f"--generations: only the ga labeller takes generations, not {method}")
    if seconds is not None and not seconds > 0:
        raise InputError(f"--seconds: must be > 0, got {seconds}")
    if method == "cpsat" and seconds is None:
        raise InputError("--seconds: the cpsat labeller needs a time limit per instance")
    instances = [read_instance(p) for p in paths]  # all files are checked before any work starts
    names = [inst.name for inst in instances]
    repeated = [n for n, c in Counter(names).items() if c > 1]
    if repeated:  # a data set keys its items by name: say which files collide
        name, more = repeated[0], len(repeated) - 1
        files = [str(p) for p, n in zip(paths, names) if n == name]
        raise InputError(f"instances: {len(files)} files share the instance name {name!r} ({', '.join(files[:3])}"
                         f"{', ...' if len(files) > 3 else ''}){f' and {more} more names repeat' if more else ''}: "
                         f"a data set keys its items by name, so give each file its own \"name\"")
    params = dict(params or {})
    if method == "ga" and "generations" not in params:
        params["generations"] = generations or (None if seconds is not None else DEFAULT_GA_GENERATIONS)
    deterministic = method in ("greedy", "rollout", "round-robin") or (method == "ga" and seconds is None)
    job = {"source": [str(p) for p in paths], "method": method, "seed": seed, "generations": generations,
           "seconds": seconds, "params": params}

    def items() -> Iterator[LabelledInstance]:
        columns = (TextColumn("[bold]labelling[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn())
        with Progress(*columns, console=Console(stderr=True), disable=not progress) as bar:
            task = bar.add_task(f"{len(instances)} files with {method}", total=len(instances))
            for i, (path, inst) in enumerate(zip(paths, instances)):
                s = label_seed(seed, i)
                res = solve(inst, method, SolveOptions(seed=s, seconds=seconds, params=dict(params)))
                meta: dict[str, Any] = {"index": i, "method": method, "seed": s, "seconds": res.seconds,
                                        "source": str(path), "deterministic": deterministic}
                for key in ("greedy_latency", "generations", "stop_reason", "lower_bound", "optimal", "gap"):
                    if key in res.extra:
                        meta[key] = res.extra[key]
                yield LabelledInstance(inst, res.assignment, res.total_latency, meta)
                bar.advance(task)

    # in place: hours of labelling stopped half-way keep their finished shards
    count = write_dataset(directory, items(), meta={"job": job, "deterministic": deterministic}, overwrite=overwrite,
                          atomic=False)
    return {"directory": str(directory), "written": count, "method": method, "deterministic": deterministic}
