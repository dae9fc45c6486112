"""What every experiment writes beside its results: config, seeds, versions, timings."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

PACKAGES = ["edgepoc", "numpy", "numba", "torch", "torch-geometric", "ortools", "deap", "stable-baselines3",
            "gymnasium", "pettingzoo", "cryptography"]


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    try:
        out["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                           cwd=Path(__file__).parent, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        out["git_commit"] = "unknown"
    return out


_NOT_SETTINGS = ("stages", "out")  # what may differ between the parts of one run


class RunRecord:
    """Collects timings per stage and writes `run.json` (config, versions, timings) into the run folder.

    A run folder may be finished in parts (`--stages compare,report` after the others): when its
    `run.json` holds the same settings, the earlier stages' timings are kept and `config.stages` lists
    every stage that ran; other settings start a fresh record. The folder's own path (`out`) is not a
    setting: a run folder moved or copied elsewhere continues its record.
    """

    def __init__(self, out_dir: Path, config: Any):
        self.out_dir = out_dir
        self.config = asdict(config) if is_dataclass(config) else dict(config)
        self.timings: dict[str, float] = {}
        self.started = time.time()
        out_dir.mkdir(parents=True, exist_ok=True)
        self._resume(out_dir / "run.json")
        self.write()

    def _resume(self, path: Path) -> None:
        try:
            old = json.loads(path.read_text())
            old_config, old_timings = dict(old["config"]), dict(old["timings_seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            return
        same = {k: v for k, v in old_config.items() if k not in _NOT_SETTINGS} == \
            {k: v for k, v in self.config.items() if k not in _NOT_SETTINGS}
        if not same:
            return
        new_stages = list(self.config.get("stages") or [])
        ran = [s for s in old_config.get("stages") or [] if s not in new_stages]
        self.config["stages"] = ran + new_stages
        self.timings = {k: v for k, v in old_timings.items() if k not in new_stages}
        self.started = float(old.get("started_unix", self.started))

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield  # a stage that failed or was interrupted gets no timing: the record lists what finished
        self.timings[name] = round(time.perf_counter() - t0, 3)
        self.write()

    def write(self) -> Path:
        path = self.out_dir / "run.json"
        doc = {"config": self.config, "versions": versions(), "timings_seconds": self.timings,
               "started_unix": self.started}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
        tmp.replace(path)
        return path
