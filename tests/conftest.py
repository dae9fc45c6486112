"""Shared fixtures: small instances and a way to run the real CLI as a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgepoc.game.instance import Instance


def random_instance(rng: np.random.Generator, n: int, k: int, r: int = 2, task_delays: bool = False) -> Instance:
    arrival = np.sort(rng.uniform(0, n * 0.3, size=n))
    return Instance.create(
        capacity=rng.uniform(0.5, 1.5, size=(k, r)),
        provider_delay=rng.uniform(0.0, 0.1, size=k),
        arrival=arrival,
        demand=rng.uniform(0.05, 1.0, size=(n, r)),
        task_delays=rng.uniform(0.0, 0.2, size=(n, k)) if task_delays else None,
        name=f"rand-{n}-{k}",
    )


@pytest.fixture
def tiny_instance() -> Instance:
    return random_instance(np.random.default_rng(7), 8, 3)


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `edgepoc ARGS` exactly as a user would, in a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "edgepoc", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def ctrl_c_as_at_a_terminal() -> None:
    """SIGINT as a terminal delivers it: a run started in the background (CI under nohup, `cmd &`) ignores it, and a
    child inherits that, so its Python would never raise KeyboardInterrupt."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _commands_loaded(pid: int) -> bool:
    """The CLI has loaded its commands (Numba's LLVM binding is mapped: `edgepoc.cli.main` imports it), so a Ctrl-C
    is no longer one "before it started"."""
    try:
        return "llvmlite" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def interrupt_cli(*args: str, when, limit: float = 120, settle: float = 0.0,
                  loaded: bool = False) -> subprocess.CompletedProcess:
    """Start `edgepoc ARGS`, wait until `when()` holds (at most `limit` s), then press Ctrl-C: SIGINT to its whole
    process group, as a terminal sends it. `loaded`: wait first until the command has loaded (its imports can take
    seconds on a busy host, so a clock started with the process says little). Returns the finished command
    (returncode, stdout, stderr)."""
    import os
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-m", "edgepoc", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, preexec_fn=ctrl_c_as_at_a_terminal)
    try:
        deadline = time.monotonic() + limit
        while loaded and time.monotonic() < deadline and proc.poll() is None and not _commands_loaded(proc.pid):
            time.sleep(0.05)
        while time.monotonic() < deadline and proc.poll() is None and not when():
            time.sleep(0.05)
        time.sleep(settle)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
