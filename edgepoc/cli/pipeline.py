"""`edgepoc demo` and `edgepoc reproduce`: the whole system end to end, then the report."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgepoc.cli.common import seed_option
from edgepoc.experiments.pipeline import STAGES, PipelineConfig, paper_config, quick_config, run_pipeline


def _stages(stages: Optional[str]) -> list[str]:
    return [s.strip() for s in stages.split(",") if s.strip()] if stages else list(STAGES)


def default_run_folder(name: str, root: Path = Path("runs")) -> Path:
    """`root/name`, or `root/name-2`, `-3`, ... when an earlier run's chain holds it: running `make demo` again
    keeps the earlier run and its results instead of refusing (an explicit `--out` that holds a run still
    refuses, with a one-line error)."""
    folder, i = root / name, 2
    while (folder / "testnet" / "network.json").exists():
        folder, i = root / f"{name}-{i}", i + 1
    return folder


def demo_cmd(
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder (results, figures, report); default "
                                       "runs/demo, or runs/demo-2, -3, ... when an earlier run holds it."),
    quick: bool = typer.Option(False, "--quick", help="The CI-sized run: about 3 minutes on a busy 2-core "
                                                      "machine (under 1 outside the chain stage)."),
    seed: int = typer.Option(0, callback=seed_option, help="Seed for data, labels, training and the chain."),
    stages: Optional[str] = typer.Option(None, help=f"Comma-separated subset of: {', '.join(STAGES)}."),
) -> None:
    """Generate -> GA labels -> teacher -> student -> comparison -> 4-node PoC chain -> report.

    About 2 minutes on 2 idle cores (5 on a busy machine); --quick about 3 on a busy machine.
    """
    out = default_run_folder("demo") if out is None else out
    cfg = quick_config(str(out), seed) if quick else PipelineConfig(out=str(out), seed=seed)
    cfg.stages = _stages(stages)
    _run(cfg)


def _run(cfg: PipelineConfig) -> None:
    report = run_pipeline(cfg)
    if report:
        typer.echo(f"report: {report}  (and {Path(report).with_suffix('.md')})"
                   + ("  [smoke run: toy size, not the paper's experiment]" if cfg.smoke else ""))


def reproduce_cmd(
    preset: str = typer.Option("paper", help="Instance preset of the experiment."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder; default runs/reproduce, or "
                                       "runs/reproduce-2, -3, ... when an earlier run holds it."),
    seed: int = typer.Option(0, callback=seed_option, help="Seed for everything in the run."),
    epochs: Optional[int] = typer.Option(None, help="Teacher epochs (default: 300, early stopping may end sooner)."),
    stages: Optional[str] = typer.Option(None, help=f"Comma-separated subset of: {', '.join(STAGES)}."),
    quick: bool = typer.Option(False, "--quick", help="A smoke run: every stage at toy size (60-task instances, "
                                                      "a few epochs), under 5 minutes on 2 cores; the run and its "
                                                      "report say it is one."),
) -> None:
    """The paper's experiment at its size, every figure of §5 and a report: about 25 minutes on 2 cores.

    As in the paper, one training instance of 1000 tasks and one test instance of 1000 tasks (3
    providers, 2 resources); the comparison runs on 10 further held-out instances of 1000 tasks.
    Without the compare stage the report says that compare was not run.
    """
    out = default_run_folder("reproduce") if out is None else out
    cfg = quick_config(str(out), seed) if quick else paper_config(str(out), seed)
    cfg.preset = preset
    if epochs is not None:
        cfg.epochs = epochs
    cfg.stages = _stages(stages)
    _run(cfg)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)
    app.command("reproduce")(reproduce_cmd)
