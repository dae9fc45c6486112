"""`edgepoc compare`: every allocation method on the same instances (paper Fig. 18)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgepoc.cli.common import parse_params


def compare_cmd(
    instances: Optional[list[Path]] = typer.Argument(None, help="Instance JSON files (or use --preset)."),
    preset: Optional[str] = typer.Option(None, help="Generate the instances from this preset instead."),
    count: int = typer.Option(10, help="How many generated instances (with --preset)."),
    n_tasks: Optional[int] = typer.Option(None, "--n-tasks", help="Tasks per generated instance (preset default)."),
    instance_seed: int = typer.Option(0, "--instance-seed", help="Seed of the generated instances."),
    methods: str = typer.Option(",".join(["random", "round-robin", "greedy", "ga", "cpsat", "dqn", "maddpg",
                                          "teacher", "student"]), help="Comma-separated methods to run."),
    seconds: float = typer.Option(2.0, help="Time limit per instance for ga, cpsat, teacher, student."),
    method_seconds: Optional[list[str]] = typer.Option(None, "--method-seconds",
                                                       help="Per-method limit, e.g. cpsat=10 (repeatable)."),
    teacher: Optional[Path] = typer.Option(None, help="Teacher checkpoint (default: bundled)."),
    student: Optional[Path] = typer.Option(None, help="Student checkpoint (default: bundled)."),
    dqn: Optional[Path] = typer.Option(None, help="DQN checkpoint (default: bundled)."),
    maddpg: Optional[Path] = typer.Option(None, help="MADDPG checkpoint (default: bundled)."),
    seed: int = typer.Option(0, help="Seed passed to every method."),
    out: Path = typer.Option(Path("runs/compare"), "--out", "-o", help="Folder for the tables, figure and config."),
) -> None:
    """Total delay, gap to the best known and wall time per method; table, CSV/Markdown, Fig. 18 PNG."""
    from rich.console import Console
    from rich.table import Table

    from edgepoc.errors import InputError
    from edgepoc.experiments.compare import CompareConfig, compare, write_results
    from edgepoc.game.files import read_instance
    from edgepoc.game.generators import generate

    if instances and preset:
        raise InputError("instances: give instance files or --preset, not both")
    if instances:
        insts = [read_instance(p) for p in instances]
    elif preset:
        insts = generate(preset, seed=instance_seed, count=count, n_tasks=n_tasks)
    else:
        raise InputError("instances: give instance files or --preset NAME")
    if not seconds > 0:
        raise InputError(f"--seconds: must be > 0, got {seconds}")
    limits = {k: float(v) for k, v in parse_params(method_seconds).items()}
    if any(not v > 0 for v in limits.values()):
        raise InputError("--method-seconds: limits must be > 0")
    models = {m: str(p) for m, p in {"teacher": teacher, "student": student, "dqn": dqn, "maddpg": maddpg}.items() if p}
    config = CompareConfig(methods=[m.strip() for m in methods.split(",") if m.strip()], seconds=seconds,
                           method_seconds=limits, models=models, seed=seed)
    result = compare(insts, config=config)
    paths = write_results(result, out)
    console = Console()
    table = Table(title=f"algorithm comparison on {len(insts)} instance(s)")
    for col in ("method", "status", "mean total delay (s)", "gap to best known (%)", "seconds / instance"):
        table.add_column(col, justify="left" if col in ("method", "status") else "right")
    for r in result.summary():
        table.add_row(r["method"], r["status"].split(":")[0], *(f"{r[k]:{f}}" if k in r else "—" for k, f in
                      (("mean_total_latency", ",.2f"), ("mean_gap_pct", ".2f"), ("mean_seconds", ".3f"))))
    console.print(table)
    for m, why in result.status.items():
        if why != "ok":
            console.print(f"{m}: {why}", style="yellow", soft_wrap=True)
    console.print(result.claim()["statement"])
    console.print(f"results: {paths['summary_md']}, {paths['results']}, {paths['figure']}")


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_cmd)
