"""Issue 14's researcher paper cuts, each as a user hits it: labelling one's own files, evaluating the
wrong instance's allocation, budgets a method ignores, setting clashes, docs that disagree, --help at 80."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from edgepoc.cli.main import app
from edgepoc.game.dataset import read_dataset
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[2]


def test_dataset_label_own_files_equals_generate_label(tmp_path):
    """`dataset label` of exported instance files gives the labels `generate --label` gives (same seed)."""
    common = ["--preset", "paper", "--n-tasks", "30", "--count", "3", "--seed", "11"]
    r = run_cli("generate", *common, "--out", str(tmp_path / "files"))
    assert r.returncode == 0, r.stderr
    r = run_cli("dataset", "label", str(tmp_path / "files"), str(tmp_path / "mine"), "--method", "ga",
                "--seed", "11", "--generations", "3")
    assert r.returncode == 0, r.stderr
    assert "labelled 3 instances with ga" in r.stderr
    r = run_cli("generate", *common, "--label", "ga", "--generations", "3", "--workers", "1",
                "--out", str(tmp_path / "ref"))
    assert r.returncode == 0, r.stderr
    mine = {it.instance.name: it for it in read_dataset(tmp_path / "mine")}
    ref = {it.instance.name: it for it in read_dataset(tmp_path / "ref")}
    assert mine.keys() == ref.keys()
    for name, it in ref.items():
        assert mine[name].assignment.tolist() == it.assignment.tolist()
        assert mine[name].total_latency == it.total_latency
    # one file, another method; then bad input is one line
    one = sorted((tmp_path / "files").glob("*.json"))[0]
    r = run_cli("dataset", "label", str(one), str(tmp_path / "one"), "--method", "rollout")
    assert r.returncode == 0, r.stderr
    assert [it.meta["method"] for it in read_dataset(tmp_path / "one")] == ["rollout"]
    for args, message in ((["dataset", "label", str(tmp_path / "nope"), str(tmp_path / "x")], "does not exist"),
                          (["dataset", "label", str(one), str(tmp_path / "mine")], "already holds a data set"),
                          (["dataset", "label", str(one), str(tmp_path / "y"), "--method", "cpsat"], "--seconds")):
        r = run_cli(*args)
        assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    # two files with one instance name (another tool's export): the files are named, nothing is written
    twin = tmp_path / "twins"
    twin.mkdir()
    for i in range(2):
        (twin / f"copy{i}.json").write_text(one.read_text())
    r = run_cli("dataset", "label", str(twin), str(tmp_path / "z"), "--method", "greedy")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "copy0.json" in r.stderr and "copy1.json" in r.stderr and "own \"name\"" in r.stderr
    assert not (tmp_path / "z").exists()


def test_evaluate_refuses_another_instances_allocation(tmp_path):
    for seed in ("1", "2"):
        r = run_cli("generate", "--n-tasks", "20", "--seed", seed, "--out", str(tmp_path / f"i{seed}.json"))
        assert r.returncode == 0, r.stderr
    r = run_cli("solve", str(tmp_path / "i1.json"), "--out", str(tmp_path / "a1.json"))
    assert r.returncode == 0, r.stderr
    # a file whose claimed delay is not what its assignment gives: evaluate says so and reports the true one
    doc = json.loads((tmp_path / "a1.json").read_text())
    true = doc["total_latency"]
    doc["total_latency"] = true / 2
    (tmp_path / "claimed.json").write_text(json.dumps(doc))
    r = run_cli("evaluate", str(tmp_path / "i1.json"), str(tmp_path / "claimed.json"))
    assert r.returncode == 0 and json.loads(r.stdout)["total_latency"] == true
    assert r.stderr.startswith(f"warning: claimed.json claims total_latency {true / 2}; re-simulated, it is {true}")
    r = run_cli("evaluate", str(tmp_path / "i1.json"), str(tmp_path / "a1.json"))
    assert r.returncode == 0 and r.stderr == ""
    r = run_cli("evaluate", str(tmp_path / "i2.json"), str(tmp_path / "a1.json"))
    assert r.returncode == 2
    assert r.stderr.strip() == ("error: allocation: a1.json is for instance 'paper-s1-0', not 'paper-s2-0' "
                                "(--force evaluates it anyway)")
    r = run_cli("evaluate", str(tmp_path / "i2.json"), str(tmp_path / "a1.json"), "--force")
    assert r.returncode == 0 and json.loads(r.stdout)["total_latency"] > 0


def test_seconds_on_a_method_without_budget_is_refused(tmp_path):
    run_cli("generate", "--n-tasks", "10", "--out", str(tmp_path / "i.json"))
    for method in ("dqn", "maddpg", "greedy", "rollout"):
        r = run_cli("solve", str(tmp_path / "i.json"), "--method", method, "--seconds", "2")
        assert r.returncode == 2, (method, r.stderr)
        assert r.stderr.startswith(f"error: --seconds: method {method} takes no time budget")
    r = run_cli("solve", str(tmp_path / "i.json"), "--method", "ga", "--seconds", "0.2")
    assert r.returncode == 0, r.stderr


def test_generate_label_names_the_setting_that_differs(tmp_path):
    base = ["generate", "--preset", "paper", "--n-tasks", "15", "--count", "1", "--label", "greedy",
            "--workers", "1", "--out", str(tmp_path / "ds")]
    assert run_cli(*base).returncode == 0
    r = run_cli(*base[:4], "20", *base[5:])
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "n_tasks: stored 15, asked 20" in r.stderr and "'preset'" not in r.stderr
    r = run_cli(*base, "--seed", "3")
    assert "seed: stored 0, asked 3" in r.stderr


def test_docs_agree_on_timings_and_sizes():
    readme = " ".join((ROOT / "README.md").read_text().split())
    runner = CliRunner()
    demo = runner.invoke(app, ["demo", "--help"], env={"COLUMNS": "200"}).output
    quick_readme = re.search(r"`--quick` (about \d+ minutes)", readme).group(1)
    assert quick_readme in " ".join(demo.split())
    repro = " ".join(runner.invoke(app, ["reproduce", "--help"], env={"COLUMNS": "200"}).output.split())
    minutes = re.search(r"about (\d+) minutes", repro).group(1)
    assert f"about {minutes} minutes" in readme
    assert "one training instance of 1000 tasks and one test instance of 1000 tasks" in repro
    assert "ONE training instance of 1000 tasks and ONE test instance of 1000 tasks" in readme


def _commands(cmd, path):
    yield path, cmd
    if hasattr(cmd, "commands"):
        ctx = type(cmd).context_class(cmd)
        for name in cmd.list_commands(ctx):
            yield from _commands(cmd.get_command(ctx, name), [*path, name])


def test_help_at_80_columns_shows_every_option_in_full():
    runner = CliRunner()
    seen = 0
    for path, cmd in _commands(typer.main.get_command(app), []):
        r = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80"}, prog_name="edgepoc")
        assert r.exit_code == 0, (path, r.output)
        assert "…" not in r.output, path
        assert max(len(line) for line in r.output.splitlines()) <= 80, path
        names = [o for p in cmd.params for o in (*p.opts, *p.secondary_opts) if o.startswith("--")]
        assert all(n in r.output for n in names), (path, [n for n in names if n not in r.output])
        seen += 1
    assert seen > 20  # every command and sub-command was looked at


@pytest.mark.parametrize("command", ["solve", "compare", "dataset label", "evaluate"])
def test_new_options_documented(command):
    r = CliRunner().invoke(app, [*command.split(), "--help"], env={"COLUMNS": "80"})
    assert r.exit_code == 0
    text = " ".join(r.output.split())
    expected = {"solve": "one-line summary", "compare": "held out", "dataset label": "--method",
                "evaluate": "--force"}[command]
    assert expected in text


@pytest.mark.parametrize("args", [
    ["generate", "--count", "2", "--n-tasks", "20", "--out", "{bad}"],
    ["compare", "--preset", "paper", "--count", "1", "--n-tasks", "20", "--out", "{bad}"],
    ["network", "init", "--nodes", "2", "--dir", "{bad}"],
    ["train-general", "--count", "1", "--out", "{bad}"],
])
def test_an_output_folder_under_a_file_is_one_line_naming_it(tmp_path, args):
    """A folder the system refuses (here: under a plain file) is the user's path, not an internal error: one line
    naming the path and the system's reason, exit 2 (before: "internal error: NotADirectoryError", exit 1)."""
    (tmp_path / "plain").write_text("x")
    bad = str(tmp_path / "plain" / "out")
    r = run_cli(*[a.replace("{bad}", bad) for a in args])
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines()[-1] == f"error: {bad}: Not a directory", r.stderr


@pytest.mark.parametrize("args,message", [
    (["--preset", "nope"], "error: --preset: unknown preset 'nope'; known: paper, varied, alibaba, heavy"),
    (["--epochs", "0"], "error: --epochs: must be >= 1, got 0"),
])
def test_reproduce_refuses_a_bad_setting_before_any_stage_runs(tmp_path, args, message):
    """Before: `reproduce --epochs 0` ran the GA labelling stage first and failed in the training stage after it."""
    out = tmp_path / "run"
    r = run_cli("reproduce", "--out", str(out), *args)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [message], r.stderr
    assert not out.exists()


def test_an_input_too_large_for_the_machine_is_one_line_not_an_internal_error():
    """10^11 tasks ask numpy for ~4.4 TiB: exit 2 with the limit named (was "internal error: MemoryError", exit 1;
    then numpy's "Unable to allocate"; now refused before any array, as 10^8 tasks, which fit numpy's first
    allocation and then ran the machine out of memory, are)."""
    r = run_cli("generate", "--n-tasks", "100000000000", "--out", "/nonexistent/never-written.json")
    assert r.returncode == 2, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("error: tasks: at most 10,000,000 tasks per instance") and "100,000,000,000" in line, line


def test_train_refuses_zero_epochs_before_it_labels(tmp_path):
    """`train --epochs 0` trained nothing and then failed on the best.pt no epoch had saved ("checkpoint ...
    does not exist"); the pipeline's pre-flight check names the same rule."""
    out = tmp_path / "run"
    r = run_cli("train", "--preset", "paper", "--count", "2", "--n-tasks", "20", "--out", str(out), "--epochs", "0")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == ["error: --epochs: must be >= 1, got 0"], r.stderr
    assert not out.exists()
