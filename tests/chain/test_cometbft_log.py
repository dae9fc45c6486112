"""A node's cometbft.log is bounded: cometbft's output goes through the node, rotated by size (`node.relay_log`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from edgepoc.chain.abci.node import relay_log


def _child(lines: int, width: int) -> subprocess.Popen:
    code = f"import sys\nfor i in range({lines}): sys.stdout.write(f'line {{i:06d}} ' + 'x' * {width} + '\\n')\n"
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_a_childs_output_is_rotated_by_size_and_the_newest_lines_are_kept_whole(tmp_path: Path):
    log = tmp_path / "cometbft.log"
    child = _child(5000, 90)  # 5000 lines of 103 bytes: 515 kB through files of at most 50 kB, 3 kept
    thread = relay_log(child.stdout, log, max_bytes=50_000, backups=3)
    assert child.wait(30) == 0
    thread.join(10)
    assert not thread.is_alive(), "the relay ends when the child's output closes"
    files = [log, *(tmp_path / f"cometbft.log.{i}" for i in (1, 2, 3))]
    assert all(f.exists() for f in files) and not (tmp_path / "cometbft.log.4").exists()
    assert all(f.stat().st_size <= 50_000 for f in files)
    kept = "".join(f.read_text() for f in reversed(files)).splitlines()
    numbers = [int(line.split()[1]) for line in kept]
    assert all(line.startswith("line ") and len(line) == 102 for line in kept), "no line cut at a rotation"
    assert numbers == list(range(numbers[0], 5000)), "the newest lines, in order, none lost between files"
    assert len(kept) > 1400


def test_an_unwritable_log_never_stops_the_reading(tmp_path: Path):
    """A child blocked on a full pipe would stop consensus: lines that cannot be written are dropped, the pipe
    is drained to its end."""
    log = tmp_path / "cometbft.log"
    child = _child(20_000, 90)  # 2 MB: far past a pipe's 64 kB
    thread = relay_log(child.stdout, log, max_bytes=10_000, backups=1)
    log.unlink()
    log.mkdir()  # the rotation's file is now a folder: every write fails
    assert child.wait(30) == 0, "the child ran to its end"
    thread.join(10)
    assert not thread.is_alive()
