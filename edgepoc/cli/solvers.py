"""`edgepoc dataset info/export/import`: the labelled data-set folders on the command line."""

from __future__ import annotations

from pathlib import Path

import typer

from edgepoc.cli.common import print_json

dataset_app = typer.Typer(help="Inspect, export and import labelled data sets (edgepoc-dataset/1 folders).",
                          no_args_is_help=True)


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


def register(app: typer.Typer) -> None:
    app.add_typer(dataset_app, name="dataset")
