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
