"""`edgepoc compare`: every allocation method on the same instances (paper Fig. 18)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgepoc.cli.common import parse_params, seed_option, stdout_console


def compare_cmd(
    instances: Optional[list[Path]] = typer.Argument(None, help="Instance JSON files, or folders of them (every "
                                                     "*.json, as `generate --count N --out DIR` writes; or --preset)."),
    preset: Optional[str] = typer.Option(None, help="Generate the instances from this preset instead."),
    count: int = typer.Option(10, help="How many generated instances (with --preset)."),
    n_tasks: Optional[int] = typer.Option(None, "--n-tasks", help="Tasks per generated instance (preset default)."),
    instance_seed: int = typer.Option(5000, "--instance-seed", callback=seed_option,
                                      help="Seed of the generated instances (5000: held out from the bundled "
                                           "models' training and selection seeds)."),
    methods: Optional[str] = typer.Option(None, help="Comma-separated methods (default: every registered one "
                                                     "of random, round-robin, greedy, rollout, ga, cpsat, dqn, "
                                                     "maddpg, search, teacher, student)."),
    seconds: float = typer.Option(2.0, help="Limit per instance for ga (CPU time) and cpsat (wall time), one core each."),
    method_seconds: Optional[list[str]] = typer.Option(None, "--method-seconds",
                                                       help="Per-method limit, e.g. cpsat=10 (repeatable; "
                                                            "ga, cpsat, search, teacher, student)."),
    teacher: Optional[Path] = typer.Option(None, help="Teacher checkpoint (default: bundled)."),
    student: Optional[Path] = typer.Option(None, help="Student checkpoint (default: bundled)."),
    dqn: Optional[Path] = typer.Option(None, help="DQN checkpoint (default: bundled)."),
    maddpg: Optional[Path] = typer.Option(None, help="MADDPG checkpoint (default: bundled)."),
    seed: int = typer.Option(0, callback=seed_option, help="Seed passed to every method."),
    out: Path = typer.Option(Path("runs/compare"), "--out", "-o", help="Folder for tables, figure, config."),
) -> None:
    """Every method on the same instances: ratio to the best known with a 95 % interval, Fig. 18 PNG.

    Give instance files or folders of them, or --preset NAME for --count (10) held-out instances of
    instance seed 5000.
    """
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from edgepoc.errors import InputError, Interrupted
    from edgepoc.experiments.compare import TRAINING_SEEDS, CompareConfig, compare, default_methods, ratio_text, \
        write_results
    from edgepoc.experiments.stats import readable
    from edgepoc.game.files import read_instance
    from edgepoc.game.generators import generate

    if instances and preset:
        raise InputError("instances: give instance files or --preset, not both")
    if instances:
        insts = [read_instance(p) for p in _instance_files(instances)]
    elif preset:
        if count < 1:
            raise InputError(f"--count: must be >= 1, got {count}")
        insts = generate(preset, seed=instance_seed, count=count, n_tasks=n_tasks)
    else:
        raise InputError("instances: give instance files or --preset NAME")
    if not seconds > 0:
        raise InputError(f"--seconds: must be > 0, got {seconds}")
    limits = {k: float(v) for k, v in parse_params(method_seconds).items()}
    if any(not v > 0 for v in limits.values()):
        raise InputError("--method-seconds: limits must be > 0")
    models = {m: str(p) for m, p in {"teacher": teacher, "student": student, "dqn": dqn, "maddpg": maddpg}.items() if p}
    chosen = [m.strip() for m in methods.split(",") if m.strip()] if methods else default_methods()
    config = CompareConfig(methods=chosen, seconds=seconds, method_seconds=limits, models=models, seed=seed)
    console = Console(stderr=True)
    if preset and instance_seed in TRAINING_SEEDS:
        console.print(f"note: instance seed {instance_seed} was used to train or select the bundled models; "
                      "this comparison is not held out (default: 5000)", style="yellow", soft_wrap=True)
    result = compare(insts, config=config)
    paths = write_results(result, out)
    console = stdout_console()
    table = Table(title=f"algorithm comparison on {len(result.best_known)} instance(s)"
                  + (f" (interrupted {result.interrupted})" if result.interrupted else ""), box=box.SIMPLE_HEAD)
    for col in ("method", "status", "solved", "mean delay (s)", "ratio to best [95% CI]", "s/inst"):
        table.add_column(col, justify="left" if col in ("method", "status") else "right", no_wrap=True)
    for r in result.summary():
        table.add_row(r["method"], r["status"].split(":")[0], str(r["instances"]),
                      readable(r["mean_total_latency"], ",.2f") if "mean_total_latency" in r else "—", ratio_text(r),
                      f"{r['mean_seconds']:.3f}" if "mean_seconds" in r else "—")
    console.print(table)
    for m, why in result.status.items():
        if why != "ok":
            console.print(f"{m}: {why}", style="yellow", soft_wrap=True)
    console.print(result.claim()["statement"], soft_wrap=True)
    console.print(f"results: {paths['summary_md']}, {paths['results']}, {paths['figure']}", soft_wrap=True)
    if result.interrupted:
        raise Interrupted(f"{result.interrupted}; the comparison of those {len(result.best_known)} is in {out}/, "
                          "marked as interrupted (the same command runs them all again)")


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_cmd)


def _instance_files(paths: list[Path]) -> list[Path]:
    """Files as given; a folder stands for its *.json files in name order (or its instances/ folder's, as a data
    set's export has them), so `compare DIR` takes what `generate --count N --out DIR` wrote."""
    from edgepoc.errors import InputError

    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(p.glob("*.json")) or sorted((p / "instances").glob("*.json"))
            if not found:
                raise InputError(f"instances: no *.json instance files in {p} or {p / 'instances'}")
            out.extend(found)
        else:
            out.append(p)
    return out
