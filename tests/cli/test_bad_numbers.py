"""Numbers from the command line that cannot work (NaN, infinite, out of range) are one-line errors naming the
flag and exit 2, before any network, training or file is touched: never an internal error, never ignored."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import run_cli


@pytest.mark.parametrize("args, flag", [
    (["submit", "--rate", "nan"], "--rate"),
    (["submit", "--count", "100000000"], "--count"),
    (["submit", "--timeout", "inf", "--wait"], "--timeout"),
    (["network", "up", "--wait", "nan"], "--wait"),
    (["network", "start", "node0", "--wait", "-1"], "--wait"),
    (["module", "add", "{instance}", "--timeout", "inf"], "--timeout"),
    (["train", "--out", "{tmp}/t", "--lr", "nan"], "--lr"),
    (["distill", "--out", "{tmp}/d", "--alpha", "2"], "--alpha"),
    (["distill", "--out", "{tmp}/d", "--temperature", "0"], "--temperature"),
    (["generate", "--out", "{tmp}/g.json", "--load", "inf"], "load"),
    (["generate", "--out", "{tmp}/g.json", "--providers", "0"], "providers"),
    (["generate", "--out", "{tmp}/g.json", "--load", "1e308"], "load"),  # the arrival rate overflowed
    (["generate", "--out", "{tmp}/g.json", "--seed", "-1"], "--seed"),  # numpy's seeds are >= 0
    (["solve", "{instance}", "--method", "random", "--seed", "-1"], "--seed"),
    (["compare", "{instance}", "--instance-seed", "-1"], "--instance-seed"),
    (["train", "--out", "{tmp}/t", "--seed", "-1"], "--seed"),
    (["network", "init", "--nodes", "1", "--seed", "-1"], "--seed"),
])
def test_a_number_that_cannot_work_is_named(tmp_path, args, flag):
    (tmp_path / "i.json").write_text("{}")
    args = [a.replace("{tmp}", str(tmp_path)).replace("{instance}", str(tmp_path / "i.json")) for a in args]
    r = run_cli(*args, *(["--dir", str(tmp_path / "none")] if args[0] in ("submit", "network", "module") else []))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and flag in lines[0], r.stderr
    assert not r.stdout and not list(tmp_path.glob("[tdg]*"))


def test_module_add_names_a_directory_and_refuses_a_huge_file_unread(tmp_path):
    r = run_cli("module", "add", str(tmp_path), "--dir", str(tmp_path / "none"))
    assert r.returncode == 2 and r.stderr.strip() == f"error: FILE: {tmp_path} is a directory", r.stderr
    huge = tmp_path / "huge.wasm"
    with open(huge, "wb") as f:
        f.truncate(100 << 20)  # sparse: 100 MiB that costs no disk
    r = run_cli("module", "add", str(huge), "--dir", str(tmp_path / "none"))
    assert r.returncode == 2 and r.stderr.strip() == (
        f"error: FILE: {huge} is {100 << 20} bytes, over the 64 MiB this command reads"), r.stderr


HASH = "ab" * 32


@pytest.mark.parametrize("args, message", [
    (["--fuel", str(2**70)], "error: --fuel: expected a positive integer below 2^63"),
    (["--memory", str(2**50)], f"error: --memory: {2**50} MiB is more than any machine has"),
    (["--args", ",".join(["1"] * 17)], "error: --args: expected a list of at most 16 64-bit integers"),
    (["--args", str(2**64)], "error: --args[0]: expected a 64-bit integer (-2^63 .. 2^64-1), got 18446744073709551616"),
    (["--function", "f" * 65], "error: --function: expected a name of 1..64 characters"),
    (["--module", "deadbeef"], "error: --module: expected the module's SHA-256 (64 lowercase hex characters)"),
    (["--results", "/proc/edgepoc-none"], "error: --results: cannot write to /proc/edgepoc-none: No such file or directory"),
])
def test_a_work_option_that_cannot_work_is_named_before_anything_is_sent(tmp_path, args, message):
    """The wire's own checks, reported under the option's name (they read "--module.fuel" before), and a results
    folder that cannot be written refused before the tasks are sent (it was an internal error after they ran)."""
    opts = {"--module": HASH, "--function": "f", **dict(zip(args[::2], args[1::2]))}
    r = run_cli("submit", *[x for kv in opts.items() for x in kv], "--dir", str(tmp_path / "none"))
    assert r.returncode == 2 and r.stderr.strip() == message, r.stderr


@pytest.mark.parametrize("option, value", [("--function", "add"), ("--args", "1,2"), ("--fuel", "5"), ("--memory", "4"),
                                           ("--results", "out")])
def test_a_work_option_without_a_module_is_refused_not_ignored(tmp_path, option, value):
    """`submit --function add --args 1,2` without --module sent plain generated tasks, silently dropping both."""
    r = run_cli("submit", option, value, "--dir", str(tmp_path / "none"))
    assert r.returncode == 2 and r.stderr.strip() == f"error: {option}: only with --module (tasks that really run)"


@pytest.mark.parametrize("args, message", [
    (["train", "--lr", "nan"], "error: --lr: must be a finite number > 0, got nan"),
    (["distill", "--alpha", "2"], "error: --alpha: must be a finite number >= 0 and <= 1, got 2.0"),
    (["train-general", "--horizon", "0"], "error: --horizon: must be 1-1000 tasks, got 0"),
    (["train-general", "--pilot", "zz"], "error: --pilot: expected one of greedy, priced, both, mixed, got 'zz'"),
    (["train-rl", "--algo", "dqn", "--param", "gamma=2"], "error: gamma: must be in [0, 1), got 2"),
    (["train-rl", "--algo", "maddpg", "--param", "reward=x"], "error: reward: expected 'latency' or 'regret', got 'x'"),
])
def test_a_training_typo_is_refused_before_pytorch_loads(tmp_path, args, message):
    """PyTorch and PyG take seconds to import (5 s of CPU on this host): the options were checked after that, so a
    typo took as long to be refused as a model to be loaded. The command runs as `edgepoc` does, in a fresh
    interpreter that reports at its exit whether torch was ever imported."""
    script = ("import atexit, os, sys\n"
              "atexit.register(lambda: os.write(2, b'torch imported: %d\\n' % ('torch' in sys.modules)))\n"
              "from edgepoc.cli import run\n"
              f"sys.argv = ['edgepoc', *{[*args, '--out', str(tmp_path / 'run')]!r}]\n"
              "run()\n")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [message, "torch imported: 0"], r.stderr
    assert not (tmp_path / "run").exists()
