"""A provider's disk fills (a fault of operators' machines): the rest of the network commits on, `network status`
names the node and its disk, `network start` refuses with the reason instead of starting a node that dies
before it can log why, and once space is freed the node starts and catches up.

node3's home is moved onto a small tmpfs (needs root, as the multi-host test does) and the tmpfs is filled.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgepoc.chain.abci import network
from edgepoc.cli.chain import _stalled, _warnings, quorum_of
from tests.chain.cometnet import CometNet

pytestmark = pytest.mark.slow


def edgepoc(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgepoc", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture()
def small_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root (mounts a tmpfs)")
    where = tmp_path / "small"
    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160m", "tmpfs", str(where)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _fill(disk: Path, leave: int) -> Path:
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free
    with open(filler, "wb") as f:
        f.truncate(0)
        os.posix_fallocate(f.fileno(), 0, max(0, free - leave))
    return filler


def test_a_full_disk_stops_one_node_is_named_and_refused_until_space_is_freed(tmp_path, small_disk):
    net = CometNet(tmp_path / "net")
    home = net.folder / "node3"
    shutil.move(str(home), str(small_disk / "node3"))
    home.symlink_to(small_disk / "node3")
    try:
        net.up()
        filler = _fill(small_disk, leave=2 << 20)
        # the network goes on; node3's next writes fail and it drops out (cometbft dies, or stalls). The filling
        # is a fixed amount of work, slower on a busy host: the whole test took 30 s alone, 90 s on two test workers
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            r = edgepoc("submit", "--dir", str(net.folder), "--count", "2000", "--rate", "2000", "--wait",
                        "--timeout", "60")
            assert r.returncode == 0, r.stderr[-2000:]
            assert json.loads(r.stdout.strip().splitlines()[-1])["missing"] == 0
            rows = network.status(net.folder)
            node3 = next(x for x in rows if x["name"] == "node3")
            if "height" not in node3 or _stalled(node3, max(x.get("height", 0) for x in rows)):
                break
        else:
            pytest.fail("node3 kept committing on a full disk")
        st = edgepoc("network", "status", "--dir", str(net.folder))
        assert st.returncode == 0, st.stdout + st.stderr  # three of four nodes still hold quorum
        out = " ".join(st.stdout.split())
        assert "warning: node3:" in out and "MiB free on the disk of its store or cometbft data" in out, out
        network.stop_member(net.folder, "node3")  # stalled rather than dead: the operator stops it first
        r = edgepoc("network", "start", "node3", "--dir", str(net.folder))
        assert r.returncode != 0
        line = r.stderr.strip().splitlines()[-1]
        assert "node3:" in line and "MiB free on the disk of" in line and "free some space; nothing was started" \
            in line, line
        assert network.running_pid(net.folder, "node3") is None
        filler.unlink()
        r = edgepoc("network", "start", "node3", "--dir", str(net.folder))
        assert r.returncode == 0, r.stderr[-2000:]
        tip = max(x.get("height", 0) for x in network.status(net.folder))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            node3 = next(x for x in network.status(net.folder) if x["name"] == "node3")
            if node3.get("height", 0) >= tip and node3.get("catching_up") is False:
                break
            time.sleep(0.5)
        assert node3.get("height", 0) >= tip, node3
    finally:
        net.down()


def _row(name: str, height: int | None, age: float = 0.5, **extra) -> dict:
    r = {"name": name, "pid": 1, **extra}
    if height is not None:
        r.update(height=height, last_commit_age=age, catching_up=False, state="in consensus",
                 validators=[{"name": f"node{i}", "power": 250, "reachable": True} for i in range(4)])
    return r


def test_a_node_behind_the_others_and_not_committing_is_stalled_and_out_of_the_quorum():
    rows = [_row("node0", 300), _row("node1", 300), _row("node2", 299), _row("node3", 294, age=40.0)]
    q = quorum_of(rows)
    assert q["up"] == 750 and not q["lost"] and q["unreachable"] == ["node3"]
    assert q["why"]["node3"] == "stalled at height 294 (others at 300)"
    assert [w.split(":")[0] for w in _warnings(rows, 300)] == ["node3"]
    # behind but committing (it is catching up block by block), or stale with everyone (an idle or stuck
    # network): not stalled
    assert not _stalled(_row("node3", 294, age=0.3), 300) and not _stalled(_row("node3", 300, age=40.0), 300)
    rows[2]["last_commit_age"] = rows[3]["last_commit_age"] = 40.0
    rows[2]["height"] = 290
    assert quorum_of(rows)["lost"]  # half the power stalled: a commit needs more than two thirds


def test_status_warns_of_a_low_disk_on_a_running_or_a_stopped_node():
    rows = [_row("node0", 300, disk_free_bytes=50 << 30), _row("node1", 300, disk_free_bytes=200 << 20),
            {"name": "node2", "pid": None, "disk_free_bytes": 0}]
    warnings = _warnings(rows, 300)
    assert warnings == ["node1: 200 MiB free on the disk of its store or cometbft data (a full disk stops its commits)",
                        "node2: 0 MiB free on the disk of its store or cometbft data (a full disk stops its commits)"]


def test_a_home_on_a_disk_remounted_read_only_is_refused_and_named_and_stop_still_works(tmp_path, small_disk):
    """A disk error makes the kernel remount a file system read-only. A node started there failed with the bare
    OSError of its first write ("node.log: Read-only file system"), and `network stop`/`down` ended in a
    traceback: even a missing pid file's unlink fails there. Now the start is refused before anything starts,
    naming the folder and what to do; `network status` says it; stop and down work."""
    net = CometNet(tmp_path / "net")
    home = net.folder / "node3"
    shutil.move(str(home), str(small_disk / "node3"))
    home.symlink_to(small_disk / "node3")
    r = subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot remount the tmpfs read-only: {r.stderr.strip()}")
    r = edgepoc("network", "start", "node3", "--dir", str(net.folder))
    assert r.returncode != 0
    line = r.stderr.strip().splitlines()[-1]
    assert line == (f"error: node3: cannot write to {home}: a read-only file system (a disk error remounts one "
                    "read-only: see `dmesg`, repair the disk or remount it read-write); nothing was started"), line
    assert "Traceback" not in r.stderr
    row = next(x for x in network.status(net.folder) if x["name"] == "node3")
    assert row["pid"] is None and "read-only file system" in row["unwritable"], row
    assert [w.startswith("node3: cannot write to") for w in _warnings([row], None)] == [True, False]  # and a low disk
    for args in (["network", "stop", "node3"], ["network", "down"]):
        r = edgepoc(*args, "--dir", str(net.folder))
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    assert network.status(net.folder)[3].get("unwritable") is None
