"""`edgepoc generate`, `solve`, `evaluate`: the game's files on the command line."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import numpy as np
import typer
from rich.table import Table

from edgepoc.cli.common import parse_params, print_json, seed_option, stdout_console, with_bar
from edgepoc.errors import InputError
from edgepoc.experiments.stats import readable
from edgepoc.game.files import allocation_to_dict, read_allocation, read_instance, write_instance, write_json
from edgepoc.game.generators import PRESETS, generate
from edgepoc.game.metrics import evaluate as evaluate_metrics

if TYPE_CHECKING:
    from edgepoc.solvers.registry import SolveResult


def generate_cmd(
    out: Path = typer.Option(..., "--out", "-o",
                             help="A .json file (count 1) or a folder for one JSON per instance; "
                                  "with --label a data-set folder (created, or resumed if it holds this job)."),
    preset: str = typer.Option("paper", help=f"Generator preset: {', '.join(PRESETS)}."),
    seed: int = typer.Option(0, callback=seed_option, help="Seed; instance i of a seed is the same whatever --count is."),
    count: int = typer.Option(1, help="How many instances."),
    n_tasks: Optional[int] = typer.Option(None, "--n-tasks", help="Tasks per instance (preset default if unset)."),
    providers: Optional[int] = typer.Option(None, help="Providers per instance (preset default if unset)."),
    load: Optional[float] = typer.Option(None, help="Offered load, 1.0 = providers saturated (preset default if unset)."),
    label: Optional[str] = typer.Option(None, help="Label every instance with a solver: ga, greedy or cpsat "
                                                   "(writes a data-set folder)."),
    generations: Optional[int] = typer.Option(None, help="GA generations per instance (default 20; "
                                                         "deterministic labels)."),
    seconds: Optional[float] = typer.Option(None, help="Time budget per instance (GA: labels then depend on "
                                                       "machine speed; cpsat: required)."),
    workers: Optional[int] = typer.Option(None, help="Worker processes (default: all cores)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address",
                                              help="Run on a Ray cluster at this address ('local': start one here)."),
    param: Optional[list[str]] = typer.Option(None, "--param", "-p", help="Labeller setting key=value (repeatable)."),
    shard_size: int = typer.Option(32, "--shard-size", help="Items per data-set shard."),
) -> None:
    """Generate seeded instances of a preset (paper, varied, alibaba, heavy), optionally labelled into a data set."""
    if label is not None:
        from edgepoc.solvers.labelling import LabelJob, run_labelling

        if out.suffix == ".json":
            raise InputError(f"--out: with --label the output is a data-set folder, not {out}")
        if shard_size < 1:
            raise InputError(f"--shard-size: must be >= 1, got {shard_size}")
        instance_params = {k: v for k, v in {"n_tasks": n_tasks, "providers": providers, "load": load}.items()
                           if v is not None}
        job = LabelJob(preset=preset, seed=seed, count=count, label=label, generations=generations,
                       seconds=seconds, params=parse_params(param), instance_params=instance_params)
        summary = run_labelling(out, job, workers=workers, ray_address=ray_address, shard_size=shard_size)
        typer.echo(f"{summary['written']} labelled instances written to {out}/ "
                   f"({summary['skipped']} already there)", err=True)
        return
    for name, value in (("--generations", generations), ("--seconds", seconds), ("--workers", workers),
                        ("--ray-address", ray_address), ("--param", param)):
        if value:
            raise InputError(f"{name}: only used with --label")
    instances = generate(preset, seed=seed, count=count, n_tasks=n_tasks, providers=providers, load=load)
    if out.suffix == ".json":
        if count != 1:
            raise InputError(f"--out: {out} is one file but --count is {count}; give a folder")
        write_instance(out, instances[0])
        typer.echo(f"wrote {out}", err=True)
        return
    out.mkdir(parents=True, exist_ok=True)
    for inst in instances:
        write_instance(out / f"{inst.name}.json", inst)
    typer.echo(f"wrote {len(instances)} instances to {out}/", err=True)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # `a` not there yet
        return False


def printable(text: str) -> str:
    """A name as it fits on one line of output: control characters (a newline in an instance's name) escaped."""
    return text if text.isprintable() else json.dumps(text)[1:-1]


def solve_cmd(
    instance: Path = typer.Argument(..., help="Instance JSON (edgepoc-instance/1)."),
    method: str = typer.Option("greedy", "--method", "-m", help="Allocation method (see `edgepoc methods`)."),
    model: Optional[Path] = typer.Option(None, help="Checkpoint for learned methods (default: the bundled one)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the allocation JSON here (then stdout "
                                                                 "gets a one-line summary)."),
    seed: int = typer.Option(0, callback=seed_option, help="Seed for randomised methods."),
    seconds: Optional[float] = typer.Option(None, help="Time budget for methods that have one."),
    param: Optional[list[str]] = typer.Option(None, "--param", "-p", help="Method setting key=value (repeatable)."),
) -> None:
    """Allocate every task of INSTANCE; print the allocation JSON (or write it to --out)."""
    from edgepoc.solvers.registry import (METHODS, MODEL_METHODS, PARAM_METHODS, PROGRESS_METHODS, TIME_BUDGET_METHODS,
                                          SolveOptions, solve)

    inst = read_instance(instance)
    if out is not None and _same_file(out, instance):
        raise InputError(f"--out: {out} is the instance file itself; the allocation would replace the instance "
                         "(give another file name)")
    if model is not None and method in METHODS and method not in MODEL_METHODS:
        raise InputError(f"--model: method {method} uses no model (only {', '.join(sorted(MODEL_METHODS))} do)")
    if param and method in METHODS and method not in PARAM_METHODS:
        raise InputError(f"--param: method {method} takes no settings (only {', '.join(sorted(PARAM_METHODS))} do)")
    if seconds is not None and not seconds > 0:
        raise InputError(f"--seconds: must be > 0, got {seconds}")
    if seconds is not None and method in METHODS and method not in TIME_BUDGET_METHODS:
        raise InputError(f"--seconds: method {method} takes no time budget (only "
                         f"{', '.join(sorted(TIME_BUDGET_METHODS))} do)")
    options = SolveOptions(seed=seed, seconds=seconds, model=str(model) if model else None, params=parse_params(param))

    def run(bar: Callable[[float, float], None]) -> SolveResult:
        options.progress = bar
        return solve(inst, method, options)

    # a bar on a terminal for the methods that report (the GA: tens of seconds on thousands of tasks; the searches:
    # minutes on 100,000 tasks, whose work grows faster than the tasks); none in pipes
    unit = "seconds" if seconds or method == "bound" else "populations" if method == "ga" else "sweeps"
    result = with_bar(f"{method}: {unit}", 0, run) if method in PROGRESS_METHODS else solve(inst, method, options)
    doc = allocation_to_dict(inst, result.assignment, method, result.total_latency, result.seconds, **result.extra)
    if out:
        write_json(out, doc)
        typer.echo(f"wrote {out}: {method} on {printable(inst.name)} ({inst.n_tasks} tasks, {inst.n_providers} providers), "
                   f"total delay {readable(result.total_latency, ',.4f')} s, {result.seconds:.3f} s")
        return
    print_json(doc)


def evaluate_cmd(
    instance: Path = typer.Argument(..., help="Instance JSON."),
    allocation: Path = typer.Argument(..., help="Allocation JSON for that instance."),
    table: bool = typer.Option(False, "--table", help="A table for people instead of JSON."),
    force: bool = typer.Option(False, "--force", help="Evaluate even if the allocation names another instance."),
) -> None:
    """Re-simulate an allocation and print its metrics."""
    inst = read_instance(instance)
    x, doc = read_allocation(allocation, inst, check_name=not force)
    metrics = evaluate_metrics(inst, x)
    claimed = doc.get("total_latency")  # a finite number or None: `read_allocation` checked it
    if claimed is not None and not np.isclose(claimed, metrics["total_latency"], rtol=1e-9, atol=1e-9):
        typer.echo(f"warning: {allocation.name} claims total_latency {claimed}; re-simulated, it is "
                   f"{metrics['total_latency']} (the metrics below are the re-simulated ones)", err=True)
    if not table:
        print_json(metrics)
        return
    t = Table(title=f"{inst.name}: {inst.n_tasks} tasks, {inst.n_providers} providers")
    t.add_column("metric")
    t.add_column("value", justify="right")
    for key in ("total_latency", "mean_latency", "p95_latency", "max_latency", "makespan", "jain_fairness"):
        t.add_row(key, f"{metrics[key]:.4f}")
    for j, pid in enumerate(inst.provider_ids):
        t.add_row(f"{pid}: tasks / utilisation",
                  f"{metrics['tasks_per_provider'][j]} / {metrics['utilisation'][j]:.3f}")
    stdout_console().print(t)


def methods_cmd() -> None:
    """List the allocation methods."""
    from edgepoc.solvers.registry import METHODS

    for name, (_, summary) in METHODS.items():
        typer.echo(f"{name:12s} {summary}")


def register(app: typer.Typer) -> None:
    app.command("generate")(generate_cmd)
    app.command("solve")(solve_cmd)
    app.command("evaluate")(evaluate_cmd)
    app.command("methods")(methods_cmd)
