"""`edgepoc dataset info/export/import/label`: the labelled data-set folders on the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgepoc.cli.common import parse_params, print_json, seed_option

dataset_app = typer.Typer(help="Inspect, export and import labelled data sets (edgepoc-dataset/1 folders).",
                          no_args_is_help=True, rich_markup_mode=None)


@dataset_app.command("info")
def info_cmd(directory: Path = typer.Argument(..., help="Data-set folder.")) -> None:
    """Counts, sizes, mean label delay and the content digest (same job + seed -> same digest)."""
    from edgepoc.game.dataset import dataset_info

    print_json(dataset_info(directory))


@dataset_app.command("export")
def export_cmd(directory: Path = typer.Argument(..., help="Data-set folder."),
               out: Path = typer.Argument(..., help="Folder for instances/*.json and allocations/*.json.")) -> None:
    """Write every item as an instance JSON and (if labelled) an allocation JSON."""
    from edgepoc.game.dataset import export_json

    typer.echo(f"exported {export_json(directory, out)} instances to {out}/", err=True)


@dataset_app.command("import")
def import_cmd(source: Path = typer.Argument(..., help="Folder with instances/*.json (+ allocations/*.json)."),
               directory: Path = typer.Argument(..., help="New data-set folder."),
               overwrite: bool = typer.Option(False, help="Replace a data set already in DIRECTORY.")) -> None:
    """Build a data set from the JSON forms (the inverse of export)."""
    from edgepoc.game.dataset import import_json

    typer.echo(f"imported {import_json(source, directory, overwrite=overwrite)} instances into {directory}/", err=True)


@dataset_app.command("label")
def label_cmd(source: Path = typer.Argument(..., help="An instance JSON file, or a folder of them "
                                                      "(FOLDER/*.json or FOLDER/instances/*.json)."),
              directory: Path = typer.Argument(..., help="New data-set folder."),
              method: str = typer.Option("ga", "--method", "-m", help="Labelling method (see `edgepoc methods`)."),
              seed: int = typer.Option(0, callback=seed_option, help="Seed; file i is solved with a seed derived from (seed, i)."),
              generations: Optional[int] = typer.Option(None, help="GA generations per file (default 20; "
                                                                   "deterministic labels)."),
              seconds: Optional[float] = typer.Option(None, help="Time budget per file (GA: labels then depend "
                                                                 "on machine speed; cpsat: required)."),
              param: Optional[list[str]] = typer.Option(None, "--param", "-p", help="Method setting key=value."),
              overwrite: bool = typer.Option(False, help="Replace a data set already in DIRECTORY.")) -> None:
    """Label your own instance files with a solver into a data set (for `train --data`)."""
    from edgepoc.errors import InputError
    from edgepoc.solvers.labelling import label_files

    if source.is_dir():
        paths = sorted(source.glob("*.json")) or sorted((source / "instances").glob("*.json"))
    elif source.is_file():
        paths = [source]
    else:
        raise InputError(f"source: {source} does not exist")
    if not paths:
        raise InputError(f"source: no *.json instance files in {source} or {source / 'instances'}")
    summary = label_files(paths, directory, method=method, seed=seed, generations=generations, seconds=seconds,
                          params=parse_params(param), overwrite=overwrite)
    typer.echo(f"labelled {summary['written']} instances with {method} into {directory}/"
               + ("" if summary["deterministic"] else " (time budget: labels depend on machine speed)"), err=True)


def register(app: typer.Typer) -> None:
    app.add_typer(dataset_app, name="dataset")
