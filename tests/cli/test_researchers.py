"""Issue 19's researcher items, each as a user meets it: help texts that match behaviour, `train-general
--data`, `plot` of a general run, `reproduce --quick`."""

from __future__ import annotations

from typer.testing import CliRunner

from edgepoc.cli.main import app


def _help(*command: str) -> str:
    r = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    return " ".join(r.output.split())


def test_network_init_seed_help_says_what_it_seeds():
    """`--seed` sets the providers' capacities and delays (make_validators); the keys are fresh."""
    text = _help("network", "init")
    assert "Seed for the providers' capacities and delays" in text
    assert "Seed for keys" not in text and "keys are always fresh" in text
