"""`network up`, `start` and `status` tell the truth (issue 19), and peers are filtered (issue 20).

One 4-node network (A) is started once with `network up` and reused: a second folder on A's ports is
refused, a SIGKILLed node restarted under a task stream answers /status at once and comes back in
consensus, `status` exits 1 without quorum, an outsider node is refused as a peer. A second, 2-node
network (B) is never in consensus: its starts fail on purpose and must be undone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edgepoc.chain.abci import network
from edgepoc.chain.abci.node import RpcClient
from edgepoc.chain.httpapi import HttpClient
from tests.chain.cometnet import FAST, CometNet, Outsider
from tests.jsonserver import serve_json
from tests.conftest import ctrl_c_as_at_a_terminal

EDGEPOC = [sys.executable, "-m", "edgepoc"]


def edgepoc(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([*EDGEPOC, *args], capture_output=True, text=True, timeout=timeout)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return False


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    n = CometNet(tmp_path_factory.mktemp("cmds") / "a")
    try:
        n.up_result = edgepoc("network", "up", "--dir", str(n.folder))
        yield n
    finally:
        network.down(n.folder)


@pytest.fixture(scope="module")
def net_b(tmp_path_factory):
    """Two nodes and an arbiter on free ports, never started for long."""
    folder = tmp_path_factory.mktemp("cmds") / "b"
    network.init_network(folder, 2, 0, seed=1, params=FAST)
    try:
        yield folder
    finally:
        network.down(folder)


def test_up_waits_for_consensus_and_the_nodes_are_the_processes_it_started(net):
    r = net.up_result
    assert r.returncode == 0, r.stderr
    assert re.search(r"up: 4 nodes in consensus at height \d+", r.stderr), r.stderr
    assert "node2: starting" in r.stderr and "node2: in consensus at height" in r.stderr  # the progress lines
    for i, n in enumerate(net.doc["nodes"]):
        st = net.status(i)
        assert st["state"] == "in consensus" and st["height"] >= 1
        assert st["pid"] == int((net.home(i) / "node.pid").read_text())
        assert st["address"] == n["address"] and st["node_id"] == n["node_id"]


def test_up_refuses_a_second_network_on_the_same_ports(net, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(net.folder, copy, ignore=shutil.ignore_patterns("*.pid", "*.log", "data"))
    r = edgepoc("network", "up", "--dir", str(copy), timeout=60)
    assert r.returncode != 0
    line = r.stderr.strip().splitlines()[-1]
    assert re.search(r"port 127\.0\.0\.1:\d+ is in use by pid \d+ \(.*/" + re.escape(net.folder.name), line), line
    assert "nothing was started" in line
    assert not list(copy.glob("*/*.pid"))
    r = edgepoc("network", "start", "node1", "--dir", str(copy), timeout=60)
    assert r.returncode != 0 and "is in use by pid" in r.stderr, r.stderr
    assert all(st >= 1 for st in net.heights(range(4)).values())  # A untouched


def test_a_foreign_listener_is_named_and_nothing_starts(net_b):
    doc = network.load_network(net_b)
    host, port = doc["nodes"][1]["api"].split("//")[1].rsplit(":", 1)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, int(port)))
        s.listen()
        r = edgepoc("network", "up", "--dir", str(net_b), timeout=60)
    assert r.returncode != 0
    assert f"node1: api port {host}:{port} is in use by pid {os.getpid()}" in r.stderr, r.stderr
    assert not list(net_b.glob("*/*.pid"))


def test_an_api_answered_by_another_process_is_refused_and_undone(net_b, monkeypatch):
    doc = network.load_network(net_b)
    host, port = doc["nodes"][0]["api"].split("//")[1].rsplit(":", 1)

    server = serve_json(lambda request: (503, {"state": "starting", "pid": 1, "address": "ab" * 20}), host, int(port))
    monkeypatch.setattr(network, "check_ports", lambda folder, names: None)  # as if it took the port just after
    try:
        with pytest.raises(network.StartFailed) as exc:
            network.start_members(net_b, ["node0"], timeout=30)
    finally:
        server.shutdown()
        server.server_close()
    assert "answered by another process (pid 1" in str(exc.value) and "stopped what this command started (node0)" \
        in str(exc.value), exc.value
    assert network.running_pid(net_b, "node0") is None


def test_a_member_dying_at_start_is_reported_with_its_error_and_the_start_undone(net_b):
    toml = net_b / "node1" / "cometbft" / "config" / "config.toml"
    text = toml.read_text()
    toml.write_text(re.sub(r"(\[mempool\][\s\S]*?\nsize = )\d+", r"\g<1>-1", text, count=1))
    try:
        r = edgepoc("network", "up", "--dir", str(net_b), timeout=120)
    finally:
        toml.write_text(text)
    assert r.returncode != 0
    line = r.stderr.strip().splitlines()[-1]
    assert "node1 exited at start" in line and "size can't be negative (cometbft.log)" in line, line
    assert "stopped what this command started (arbiter, node0)" in line, line
    assert all(network.running_pid(net_b, m) is None for m in ("arbiter", "node0", "node1"))
    assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline_has(p, str(net_b))]


def test_a_damaged_store_is_named_at_start_not_the_handshake_it_breaks(net_b):
    """Before: cometbft's handshake got an empty Info answer and the operator read a protobuf TypeError."""
    store = net_b / "node1" / "data" / "app.sqlite"
    store.parent.mkdir(parents=True, exist_ok=True)
    # The WAL beside it goes too: an earlier test's node, stopped before a checkpoint, leaves the pages in
    # the WAL, and SQLite rightly reads those over the damaged file (CI once started node1 that way).
    files = [store, store.with_name(store.name + "-wal"), store.with_name(store.name + "-shm")]
    saved = {f: f.read_bytes() for f in files if f.exists()}
    for f in files:
        f.unlink(missing_ok=True)
    store.write_bytes(os.urandom(8192))
    r = None
    try:
        r = edgepoc("network", "start", "node1", "--dir", str(net_b), timeout=120)
    finally:
        if r is None or r.returncode == 0:
            edgepoc("network", "stop", "node1", "--dir", str(net_b), timeout=120)
        for f in files:
            f.unlink(missing_ok=True)
        for f, data in saved.items():
            f.write_bytes(data)
    assert r.returncode != 0
    line = r.stderr.strip().splitlines()[-1]
    assert "node1 exited at start" in line and "app.sqlite: damaged" in line and "move it aside" in line, line
    assert "TypeError" not in r.stderr
    assert network.running_pid(net_b, "node1") is None


def _swap_in_node0_key(home: Path) -> None:
    other = home.parent / "node0" / "cometbft" / "config" / "node_key.json"
    (home / "cometbft" / "config" / "node_key.json").write_bytes(other.read_bytes())


@pytest.mark.parametrize("damage, expected", [
    # cometbft would make a new node key, a node id no peer accepts: before, `up` waited 120 s for a catch-up
    (lambda h: (h / "cometbft" / "config" / "node_key.json").unlink(),
     ["node_key.json: missing; it is this node's p2p identity", "restore it from a backup"]),
    # cometbft dies of a nil pointer on it: before, the operator read the last frame of a Go stack trace
    (lambda h: (h / "cometbft" / "config" / "priv_validator_key.json").write_text("{}"),
     ["priv_validator_key.json: damaged (no 'priv_key'); it is this validator's signing key", "from a backup"]),
    (lambda h: (h / "cometbft" / "config" / "priv_validator_key.json").write_text('{"priv_key": {"type": '
                                                                                 '"tendermint/PrivKeyEd25519", "value": "AAAA"}}'),
     ["priv_validator_key.json: damaged (priv_key.value holds 3 bytes, expected 64)"]),
    (_swap_in_node0_key, ["node1: its keys are not the ones this network names", "node_key.json from a backup"]),
    # before: "internal error: KeyError: 'host'"
    (lambda h: (h / "app.json").write_text("{}"), ["node1/app.json: malformed", "missing 6 required"]),
], ids=["node-key-missing", "validator-key-empty", "validator-key-short", "node-key-of-another-node", "app-json-empty"])
def test_a_missing_or_damaged_key_file_is_named_before_cometbft_reads_it(net_b, damage, expected):
    home = net_b / "node1"
    files = [home / "app.json", *(home / "cometbft" / "config").glob("*.json")]
    saved = {f: f.read_bytes() for f in files}
    r = None
    try:
        damage(home)
        r = edgepoc("network", "start", "node1", "--dir", str(net_b), timeout=120)
    finally:
        if r is None or r.returncode == 0:
            edgepoc("network", "stop", "node1", "--dir", str(net_b), timeout=120)
        for f, data in saved.items():
            f.write_bytes(data)
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert all(e in line for e in expected), line
    assert "Traceback" not in r.stderr and network.running_pid(net_b, "node1") is None


def test_a_damaged_arbiter_config_is_one_line_and_nothing_starts(net_b):
    cfg = net_b / "arbiter" / "config.json"
    saved = cfg.read_bytes()
    try:
        cfg.write_text("{}")  # before: "internal error: KeyError: 'port'"
        r = edgepoc("network", "up", "--dir", str(net_b), timeout=120)
    finally:
        cfg.write_bytes(saved)
        network.down(net_b)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
        f"error: arbiter: {cfg}: malformed (needs \"host\", a \"port\" in 1-65535 and an optional \"model\" path; "
        "it is written by `edgepoc network init`)"), r.stderr


def test_a_missing_home_is_named_without_sending_the_operator_to_network_init(tmp_path):
    """A node whose disk is not mounted, or whose app.json was lost: the start said "run `edgepoc network init`",
    which makes a new network with new keys. Now it says what is missing, and nothing starts."""
    folder = tmp_path / "net"
    network.init_network(folder, 4, 0, seed=1)
    home = folder / "node3"
    away = tmp_path / "away"
    home.rename(away)
    said = {}
    for case, make in (("missing", lambda: None), ("empty", home.mkdir),
                       ("no app.json", lambda: (home.rmdir(), away.rename(home), (home / "app.json").unlink()))):
        make()
        r = edgepoc("network", "start", "node3", "--dir", str(folder), timeout=60)
        assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
        said[case] = r.stderr.strip().splitlines()[-1]
        assert network.running_pid(folder, "node3") is None
    assert said["missing"] == (f"error: node3: {home} does not exist (a disk not mounted, a folder moved? `edgepoc "
                               "network init` makes a network's homes); nothing was started"), said
    assert said["empty"] == (f"error: node3: {home} is empty (a disk not mounted?), not a home `edgepoc network init` "
                             "made; nothing was started"), said
    assert said["no app.json"] == (f"error: node3: {home / 'app.json'} does not exist: restore it from a backup "
                                   "(`edgepoc network init` would make a new network, with new keys); nothing was "
                                   "started"), said
    r = edgepoc("node", "--home", str(tmp_path / "nowhere"), timeout=60)  # what systemd runs
    assert r.returncode != 0 and r.stderr.strip().splitlines()[-1] == (
        f"error: node: {tmp_path / 'nowhere'} does not exist (a disk not mounted, a folder moved? `edgepoc network "
        "init` makes a network's homes)"), r.stderr


def _last_error_after_cometbft_died(home: Path, code: int, cometbft_log: str) -> str:
    """`network.last_error` of a home whose node echoed its cometbft's exit `code` and whose cometbft.log ends so."""
    (home / "node.log").write_text(f"x edgepoc.node ERROR cometbft exited with code {code}; stopping\n")
    (home / "cometbft.log").write_text(cometbft_log)
    return network.last_error(home)


def test_a_damaged_sign_state_gets_the_same_hint_as_a_missing_one(tmp_path):
    line = _last_error_after_cometbft_died(
        tmp_path, 1, "I[2026-11-30|18:50:01.000] Closing blockstore module=main\n"
        "Error reading PrivValidator state from /x/data/priv_validator_state.json: invalid character 'g' looking for "
        "beginning of value\n")
    assert line.startswith("Error reading PrivValidator state") and "guard against signing twice" in line, line


def test_ctrl_c_during_up_stops_what_it_started_and_says_so(net_b):
    """Before: exit 130 and nothing said (what it had started was stopped, silently)."""
    import signal

    proc = subprocess.Popen([*EDGEPOC, "network", "up", "--dir", str(net_b)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=ctrl_c_as_at_a_terminal)
    try:
        deadline = time.monotonic() + 60  # once a node runs, however slow the start
        while time.monotonic() < deadline and network.running_pid(net_b, "node0") is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        network.down(net_b)
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == (
        "interrupted: stopped what this command had started"), err[-1500:]
    assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline_has(p, str(net_b))]


@pytest.mark.parametrize("members", [["arbiter", "node0", "node1"], ["node1"]])
def test_a_ctrl_c_between_spawning_a_member_and_its_pid_file_leaves_nothing_running(net_b, monkeypatch, members):
    """Seen in CI: a Ctrl-C during `network up` that landed after a node was spawned but before its pid file was
    written left that node, its cometbft and its worker running, and neither `up`'s undo nor `network down` knew of
    them. Here the Ctrl-C lands right after each spawn: the start takes effect as one step, then the Ctrl-C, and
    the undo stops it."""
    import signal

    real_popen = subprocess.Popen
    spawned = []

    def popen_then_ctrl_c(*args, **kwargs):
        proc = real_popen(*args, **kwargs)
        spawned.append(proc.pid)
        os.kill(os.getpid(), signal.SIGINT)  # pressed now, before the caller has written anything
        return proc

    monkeypatch.setattr(network.subprocess, "Popen", popen_then_ctrl_c)
    # Python's own Ctrl-C handler, as at a terminal (a test run in the background, as CI's, inherits SIGINT ignored)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            network.start_members(net_b, members, timeout=60)
    finally:
        signal.signal(signal.SIGINT, before)
        monkeypatch.undo()
        left = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline_has(p, str(net_b))]
        network.down(net_b)
        for p in left:  # the test's own clean-up, whatever happened
            try:
                os.kill(int(p.name), signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert len(spawned) == 1  # the Ctrl-C stopped the start at its first member
    assert not left, [(p.name, (p / "cmdline").read_bytes()[:200]) for p in left]
    assert all(network.running_pid(net_b, m) is None for m in ("arbiter", "node0", "node1"))


def test_ctrl_c_on_a_node_in_the_foreground_stops_it_and_its_children_cleanly(net_b):
    """`edgepoc node --home DIR` at a terminal: Ctrl-C went to cometbft and the worker too; cometbft exited first,
    and the node ended with "error: node ... stopped: cometbft exited with code 0", exit 2."""
    from tests.conftest import interrupt_cli

    home = net_b / "node0"
    r = interrupt_cli("node", "--home", str(home), when=lambda: (home / "cometbft.pid").exists()
                      and network._processes_of(home), settle=3.0)
    assert r.returncode == 130 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1] == (f"interrupted: the node in {home} stopped, its cometbft and worker "
                                                 "with it"), r.stderr[-2000:]
    assert "cometbft exited with code" not in r.stderr
    assert not network._processes_of(home) and not (home / "cometbft.pid").exists()


def test_a_go_panic_is_named_by_its_panic_line_and_first_frame_not_its_last_frame():
    text = ("I[2026-11-30|18:39:47.363] service start module=proxy\n"
            "panic: runtime error: invalid memory address or nil pointer dereference\n"
            "[signal SIGSEGV: segmentation violation code=0x1 addr=0x20 pc=0xf028b5]\n\n"
            "goroutine 1 [running]:\n"
            "github.com/cometbft/cometbft/privval.loadFilePV({0x14, 0x37}, {0x14, 0x37}, 0x1)\n"
            "\t/root/go/pkg/mod/github.com/cometbft/cometbft@v1.0.1/privval/file.go:225 +0x155\n"
            "main.main()\n\t/root/go/pkg/mod/github.com/cometbft/cometbft@v1.0.1/cmd/cometbft/main.go:49 +0x1df\n")
    assert network._fatal_line(text) == ("panic: runtime error: invalid memory address or nil pointer dereference in "
                                         "privval.loadFilePV")


def _cmdline_has(p: Path, text: str) -> bool:
    try:
        return text.encode() in (p / "cmdline").read_bytes()
    except OSError:
        return False


def test_last_error_line_of_a_log():
    assert network._error_line("I[...] starting\nERROR: failed to start node: listen tcp 1.2.3.4:5: bind: "
                               "address already in use\n").endswith("bind: address already in use")
    assert network._error_line("x edgepoc.node ERROR cometbft exited with code 1; stopping\n") is None
    assert network._error_line("error: store x: damaged (schema)\n") == "error: store x: damaged (schema)"


def test_a_node_home_gone_missing_is_named_and_nothing_starts(net_b):
    """Before, `network up` started the nodes whose homes it found and said "up: 1 nodes in consensus", not a
    word about the one whose home had been moved away."""
    moved = net_b / "node1.moved"
    (net_b / "node1").rename(moved)
    try:
        r = edgepoc("network", "up", "--dir", str(net_b), timeout=60)
    finally:
        moved.rename(net_b / "node1")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"error: node1: home {net_b / 'node1'} is missing (no app.json: moved or deleted?); nothing started. Put it "
        "back, or start the other nodes one by one with `edgepoc network start NODE` (the chain commits while "
        "nodes with over 2/3 of the voting power run)"], r.stderr
    assert not list(net_b.glob("*/*.pid"))


def test_other_machines_nodes_are_not_missing_homes(tmp_path):
    """One host's share of an `init --hosts` network names every node's home, each on its own host; only
    this host's nodes can be missing here."""
    import json

    nodes = [{"name": f"node{i}", "home": f"node{i}", "host": f"10.0.0.{i + 1}", "api": "http://x:1"}
             for i in range(3)]
    (tmp_path / "network.json").write_text(json.dumps({"this_host": "10.0.0.1", "nodes": nodes}))
    assert network.missing_homes(tmp_path) == ["node0"]
    (tmp_path / "node0").mkdir()
    (tmp_path / "node0" / "app.json").write_text("{}")
    assert network.missing_homes(tmp_path) == []


def test_start_of_an_unknown_node_is_one_line_naming_the_nodes_there_are(net_b):
    r = edgepoc("network", "start", "nodeX", "--dir", str(net_b))
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"error: NODE: no node named 'nodeX' in {net_b} (have node0, node1)"], r.stderr  # nothing said before it


def test_status_exits_1_when_the_network_is_down(net_b):
    r = edgepoc("network", "status", "--dir", str(net_b), timeout=60)
    assert r.returncode == 1 and "no node answers: the network is down" in r.stdout, r.stdout + r.stderr
    r = edgepoc("network", "status", "--dir", str(net_b), "--json", timeout=60)
    assert r.returncode == 1 and "the network is down" in r.stderr


class Stream(threading.Thread):
    """About 200 signed tasks a second to node0 and node1 while a node restarts."""

    def __init__(self, net: CometNet):
        super().__init__(daemon=True)
        self.net, self.stop, self.sent = net, threading.Event(), 0

    def run(self):
        clients = [self.net.api(0), self.net.api(1)]
        k = 0
        while not self.stop.is_set():
            try:
                clients[k % 2].post("/tasks", {"tasks": [b.to_dict() for b in self.net.batches(20, 20)]})
                self.sent += 20
            except Exception:
                pass
            k += 1
            time.sleep(0.1)


def test_a_sigkilled_node_restarted_under_load_answers_at_once_and_is_back_in_consensus(net):
    stream = Stream(net)
    stream.start()
    try:
        time.sleep(1.0)
        old = network.stop_member(net.folder, "node3", kill=True)
        assert old
        time.sleep(2.0)
        top = max(net.heights([0, 1, 2]).values())
        url = net.doc["nodes"][3]["api"]
        t0 = time.monotonic()
        proc = subprocess.Popen([*EDGEPOC, "network", "start", "node3", "--dir", str(net.folder)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        seen = []  # (seconds, HTTP status, state, pid) of node3's /status while `start` runs
        while proc.poll() is None and time.monotonic() - t0 < 150:
            got = network.probe(url, 1.0)
            if got is not None:
                seen.append((time.monotonic() - t0, got[0], got[1].get("state"), got[1].get("pid")))
            time.sleep(0.05)
        out, err = proc.communicate(timeout=30)
    finally:
        stream.stop.set()
        stream.join(5)
    assert proc.returncode == 0, err
    pid = int((net.home(3) / "node.pid").read_text())
    assert pid != old.pid
    m = re.search(r"node3: in consensus at height (\d+) in [\d.]+ s \(pid (\d+); its API answered after ([\d.]+) s\)",
                  err)
    assert m, err
    assert int(m.group(2)) == pid and float(m.group(3)) <= 5.0
    starting = [s for s in seen if s[1] == 503 and s[2] == "starting"]
    assert starting and all(s[3] == pid for s in starting), seen[:5]  # answered "starting" by the new process
    assert seen and seen[0][1] == 503, seen[:3]  # nothing else answered first
    st = net.status(3)
    assert st["state"] == "in consensus" and st["height"] >= top and st["pid"] == pid
    assert stream.sent > 0


def test_status_exits_1_without_quorum_and_0_with_it(net):
    r = edgepoc("network", "status", "--dir", str(net.folder))
    assert r.returncode == 0 and "quorum: voting power up" in r.stdout, r.stdout + r.stderr
    for name in ("node2", "node3"):
        before = (net.folder / name / "node.log").stat().st_size
        if name == "node2":
            # a paused node (SIGSTOP: a debugger, `docker pause`) ends cleanly too; before, its SIGTERM waited
            # for the 15 s grace, a SIGKILL followed, and the command still said "clean shutdown"
            pid = network.running_pid(net.folder, name)
            for target in (-pid, *network._processes_of(net.folder / name)):
                os.kill(target, signal.SIGSTOP)
            t0 = time.monotonic()
            r = edgepoc("network", "stop", name, "--dir", str(net.folder))
            took = time.monotonic() - t0
            assert r.returncode == 0 and "stopped with SIGTERM (clean shutdown)" in r.stderr, r.stderr
            assert took < 12, took
        else:
            assert network.stop_member(net.folder, name)
        # a clean stop is no failure: before, the group's SIGTERM reached cometbft too, which exited first, and every
        # stop logged "ERROR cometbft exited with code 0" and ended the node with an error
        log = (net.folder / name / "node.log").read_bytes()[before:].decode()
        assert "cometbft exited with code" not in log and "stopped:" not in log, log[-1500:]
        assert not network._processes_of(net.folder / name)
    r = edgepoc("network", "status", "--dir", str(net.folder))
    assert r.returncode == 1 and "quorum lost" in r.stdout and "node2, node3" in r.stdout, r.stdout
    r = edgepoc("network", "status", "--dir", str(net.folder), "--json")
    assert r.returncode == 1 and re.match(r"quorum lost: voting power up \d+/\d+, a commit needs", r.stderr), r.stderr
    assert len(json.loads(r.stdout)) == 4
    starts = {name: subprocess.Popen([*EDGEPOC, "network", "start", name, "--dir", str(net.folder)], text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE) for name in ("node2", "node3")}
    for name, proc in starts.items():  # both join the two that answer: back in consensus, quorum again
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0 and f"{name}: in consensus at height" in err, err
    r = edgepoc("network", "status", "--dir", str(net.folder))
    assert r.returncode == 0, r.stdout


def test_every_node_killed_during_a_submit_is_waited_out_and_every_task_committed_once(net, tmp_path):
    """Every node SIGKILLed while `submit --wait` streams tasks, then `network up` a few seconds later: the submit
    waits the outage out (before: it stopped at the first refused connection, exit 2, and its last JSON line had
    no `committed`), sends again the tasks the crashed mempools lost, and every task is committed exactly once."""
    from edgepoc.chain.crypto import SigningKey

    def chain_tasks() -> int:
        r = edgepoc("chain", "verify", "--home", str(net.home(0)))
        assert r.returncode == 0, r.stderr[-1000:]
        return json.loads(r.stdout.strip().splitlines()[-1])["tasks"]

    before = chain_tasks()
    SigningKey.generate().save(tmp_path / "key.json")
    n = 1200
    receipt = tmp_path / "receipt.jsonl"
    proc = subprocess.Popen([*EDGEPOC, "submit", "--dir", str(net.folder), "--key", str(tmp_path / "key.json"),
                             "--count", str(n), "--rate", "300", "--batch", "50", "--wait", "--timeout", "150",
                             "--receipt", str(receipt)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60  # the kill comes once the stream is under way, however slow the start
        while time.monotonic() < deadline and not (receipt.exists() and '"accepted"' in receipt.read_text()):
            time.sleep(0.1)
        assert proc.poll() is None and '"accepted"' in receipt.read_text()
        for i in range(4):
            assert network.stop_member(net.folder, f"node{i}", kill=True)
        time.sleep(3.0)
        up = edgepoc("network", "up", "--dir", str(net.folder))
        assert up.returncode == 0, up.stderr[-1500:]
        out, err = proc.communicate(timeout=200)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert "no node answers" in err, err[-2000:]
    doc = json.loads(out.strip().splitlines()[-1])
    assert (doc["submitted"], doc["committed"], doc["missing"]) == (n, n, 0), doc
    deadline = time.monotonic() + 20
    while chain_tasks() != before + n and time.monotonic() < deadline:  # node0 may still be writing its last block
        time.sleep(1.0)
    assert chain_tasks() == before + n  # each once: nothing lost, nothing committed twice


def test_ctrl_c_during_a_submit_says_what_went_and_the_accepted_tasks_still_commit(net, tmp_path):
    """Ctrl-C in the middle of a stream: before, exit 130 and nothing printed (which tasks went was lost unless a
    receipt was kept). Now the last JSON line lists the accepted ids and how many were not sent, one line says so,
    and the accepted tasks commit without the command."""
    import signal

    from edgepoc.client import EdgepocClient

    n = 3000
    receipt = tmp_path / "receipt.jsonl"
    proc = subprocess.Popen([*EDGEPOC, "submit", "--dir", str(net.folder), "--count", str(n), "--rate", "200",
                             "--batch", "20", "--wait", "--receipt", str(receipt)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=ctrl_c_as_at_a_terminal)
    try:
        deadline = time.monotonic() + 60  # Ctrl-C once the stream is under way, however slow the start
        while time.monotonic() < deadline and not (receipt.exists() and '"accepted"' in receipt.read_text()):
            time.sleep(0.1)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted: ") and f"rerun with --receipt {receipt} to send the rest" in last, last
    doc = json.loads(out.strip().splitlines()[-1])
    ids = doc["ids"]
    assert 0 < doc["submitted"] == len(ids) < n and doc["unsent"] > 0 and doc["committed"] is None, doc
    assert doc["submitted"] + doc["rejected"] + doc["unsent"] == n, doc
    client = EdgepocClient([m["api"] for m in json.loads((net.folder / "network.json").read_text())["nodes"]])
    done = client.wait(ids, timeout=60)
    assert not done.missing, f"{len(done.missing)} accepted tasks not committed"


def test_an_outsider_with_the_public_genesis_is_refused_as_a_peer(net, tmp_path):
    outsider = Outsider(tmp_path / "outsider", net.doc, net.home(0) / "cometbft" / "config" / "genesis.json")
    try:
        deadline = time.monotonic() + 8.0
        while time.monotonic() < deadline:
            for n in net.doc["nodes"]:
                host, port = n["rpc"].split("//")[1].rsplit(":", 1)
                ids = [p["node_info"]["id"] for p in RpcClient(host, int(port)).call("net_info")["peers"]]
                assert outsider.id not in ids, f"{n['name']} kept the outsider as a peer"
            time.sleep(0.5)
    finally:
        outsider.stop()
    logs = "".join((net.home(i) / "cometbft.log").read_text(errors="replace") for i in range(4))
    assert f"filtered ID<{outsider.id}>" in logs  # refused by the application's /p2p/filter/id answer
    app_cfg = json.loads((net.home(0) / "app.json").read_text())
    assert sorted(app_cfg["allowed_peers"]) == sorted(n["node_id"] for n in net.doc["nodes"])
    c = HttpClient(net.doc["nodes"][0]["api"], timeout=10)
    try:
        assert c.get("/status")["state"] == "in consensus"
    finally:
        c.close()


def test_a_batch_over_a_blocks_share_of_one_client_is_split_and_every_task_committed(net, tmp_path):
    """300 tasks of a quarter second of the whole network's capacity each: 75 s, over the 60 s one block takes
    from a client. The chain refuses the batch and says how many of its first tasks fit; submit re-signs the
    batch in parts that fit and every task is committed (before: every task rejected, exit 2)."""
    from edgepoc.chain.crypto import SigningKey
    from edgepoc.game.files import write_instance
    from edgepoc.game.instance import Instance

    genesis = json.loads((net.folder / "genesis.json").read_text())
    total = [sum(v["capacity"][r] for v in genesis["validators"]) for r in range(2)]
    n = 300
    inst = Instance.create([[1.0, 1.0]], [0.0], [0.01 * i for i in range(n)], [[0.25 * c for c in total]] * n)
    write_instance(tmp_path / "heavy.json", inst)
    SigningKey.generate().save(tmp_path / "key.json")  # its own client: its backlog does not slow other tests
    r = edgepoc("submit", str(tmp_path / "heavy.json"), "--dir", str(net.folder), "--key", str(tmp_path / "key.json"),
                "--wait", "--timeout", "120", timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resent in" in r.stderr and "smaller batches" in r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert (out["submitted"], out["rejected"], out["committed"], out["missing"]) == (n, 0, n, 0)


def test_a_resumed_submit_splits_a_planned_batch_the_chain_refuses_as_too_big(net, tmp_path):
    """An interrupted `submit --receipt` left a planned, unsent batch of 65 s of one client's work (over the 60 s
    one block takes). The resumed run sends it, the chain refuses it, and the run re-signs it in parts with the
    client's key (before: a resumed run had no key, and the batch's 260 tasks ended rejected)."""
    from edgepoc.chain.abci.client import instance_batches
    from edgepoc.chain.crypto import SigningKey
    from edgepoc.client import Receipt
    from edgepoc.game.instance import Instance

    genesis = json.loads((net.folder / "genesis.json").read_text())
    total = [sum(v["capacity"][r] for v in genesis["validators"]) for r in range(2)]
    n = 260
    inst = Instance.create([[1.0, 1.0]], [0.0], [0.0] * n, [[0.25 * c for c in total]] * n)
    key = SigningKey.generate()
    key.save(tmp_path / "key.json")
    (batch,) = instance_batches(inst, key, net.chain_id, 1, n)
    rec = Receipt(tmp_path / "receipt.jsonl")
    rec.plan(batch.to_dict(), list(batch.ids))
    rec.close()
    r = edgepoc("submit", "--dir", str(net.folder), "--key", str(tmp_path / "key.json"),
                "--receipt", str(tmp_path / "receipt.jsonl"), timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming from" in r.stderr and "smaller batches" in r.stderr, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert (out["submitted"], out["rejected"]) == (n, 0), out
    assert sorted(out["ids"]) == sorted(batch.ids)
    assert net.get(0, f"/tasks/{batch.ids[-1]}")["status"] in ("pending", "committed")


def test_cometbft_data_reset_without_the_store_is_refused_with_what_to_do(net, tmp_path):
    """An operator wipes a node's cometbft data (unsafe-reset-all) and keeps data/app.sqlite: before, cometbft
    replayed from genesis into the later store and panicked on an app hash mismatch. Now the start is refused,
    naming both stores; with the store moved aside too the node syncs both from its peers."""
    name = "node3"
    home = net.folder / name
    assert network.stop_member(net.folder, name)
    data = home / "cometbft" / "data"
    for p in data.iterdir():
        if p.name != "priv_validator_state.json":  # the double-sign guard stays, as unsafe-reset-all keeps its key
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    r = edgepoc("network", "start", name, "--dir", str(net.folder), timeout=120)
    assert r.returncode != 0
    line = r.stderr.strip().splitlines()[-1]
    assert "cometbft's block store is gone but the application's store is at height" in line, line
    assert "must be reset together" in line and "app.sqlite aside too" in line, line
    assert network.running_pid(net.folder, name) is None
    store = home / "data" / "app.sqlite"
    for side in home.glob("data/app.sqlite*"):
        side.rename(tmp_path / side.name)
    r = edgepoc("network", "start", name, "--dir", str(net.folder), timeout=180)
    assert r.returncode == 0 and f"{name}: in consensus at height" in r.stderr, r.stderr[-2000:]
    v = edgepoc("chain", "verify", "--home", str(home), timeout=180)
    assert v.returncode == 0 and json.loads(v.stdout.strip().splitlines()[-1])["ok"], v.stdout + v.stderr
    assert store.exists()


def test_a_damaged_cometbft_database_is_named_at_once_and_its_way_out_works(net, tmp_path):
    """A block-store table that fails its checksum does not stop cometbft: it runs on, cannot serve its RPC and
    logs a stack trace per call (233 MB in 2 minutes, measured). `network start` waited its full 120 s, then
    suggested a longer wait. Now it stops within seconds, names the damage and the way out, which works."""
    name = "node2"
    home = net.folder / name
    data = home / "cometbft" / "data"
    tables: list[Path] = []
    for _ in range(3):  # pebble writes its first table when it reopens a store whose log holds blocks
        assert network.stop_member(net.folder, name)
        tables = sorted((data / "blockstore.db").glob("*.sst"), key=lambda p: p.stat().st_size)
        if tables:
            break
        assert edgepoc("network", "start", name, "--dir", str(net.folder), timeout=120).returncode == 0
    assert tables, "a block-store table to damage"
    raw = bytearray(tables[-1].read_bytes())
    for i in range(len(raw) // 4, len(raw) // 4 + 64):
        raw[i] ^= 0xFF
    tables[-1].write_bytes(raw)
    t0 = time.monotonic()
    r = edgepoc("network", "start", name, "--dir", str(net.folder), timeout=180)
    took = time.monotonic() - t0
    assert r.returncode != 0
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: {name}: pebble") and "checksum mismatch" in line, line
    assert "cometbft's database is damaged" in line and "keep priv_validator_state.json" in line, line
    assert took < 30, f"the damage took {took:.0f} s to name"
    assert network.running_pid(net.folder, name) is None
    # started another way (systemd, `edgepoc node`), the node runs on beside a cometbft that serves nothing:
    # its /status says why, and `network status` warns with the way out
    network.start_member(net.folder, name)
    row: dict = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not row.get("cometbft_error"):
        time.sleep(1)
        row = next(x for x in network.status(net.folder) if x["name"] == name)
    assert "checksum mismatch" in str(row.get("cometbft_error")) and "keep priv_validator_state.json" in str(
        row.get("cometbft_error")), row
    s = edgepoc("network", "status", "--dir", str(net.folder), timeout=60)
    assert f"warning: {name}: pebble" in " ".join(s.stdout.split()), s.stdout
    assert network.stop_member(net.folder, name)
    for p in [*(data / d for d in ("blockstore.db", "state.db", "evidence.db", "cs.wal")),
              *home.glob("data/app.sqlite*")]:  # the way out the line gives
        p.rename(tmp_path / p.name)
    r = edgepoc("network", "start", name, "--dir", str(net.folder), timeout=180)
    assert r.returncode == 0 and f"{name}: in consensus at height" in r.stderr, r.stderr[-2000:]
    v = edgepoc("chain", "verify", "--home", str(home), timeout=180)
    assert v.returncode == 0 and json.loads(v.stdout.strip().splitlines()[-1])["ok"], v.stdout + v.stderr


def test_a_damaged_database_line_is_found_past_the_start_offset_and_said_without_its_stack(tmp_path):
    log = tmp_path / "cometbft.log"
    log.write_text('E[2026-12-02|21:49:37.362] panic in RPC HTTP handler module=rpc-server err="pebble/table: '
                   'invalid table 000004 (checksum mismatch at 149537/800)" stack="goroutine 10301 [running]:..."\n')
    size = log.stat().st_size
    assert network._damaged_db_error(log, size) == (None, size)  # what was there before this start is not read
    said, pos = network._damaged_db_error(log, 0)
    assert said == "pebble/table: invalid table 000004 (checksum mismatch at 149537/800)" and pos == size
    with open(log, "a") as f:
        f.write("2026/12/02 21:49:38 background error: pebble: could not open table 000004: pebble/table: invalid "
                "table 000004\nI[...] a line still being writ")
    said, pos = network._damaged_db_error(log, size)
    assert said == "pebble: could not open table 000004: pebble/table: invalid table 000004", said
    assert pos == log.stat().st_size - len("I[...] a line still being writ")  # the cut line is read again later
    line = _last_error_after_cometbft_died(tmp_path, 1, 'ERROR: failed to create node: failed to initialize database: '
                                           'pebble: database "/x/blockstore.db": pebble: MANIFEST name "garbage" is '
                                           'malformed\n')
    assert "(cometbft.log; cometbft's database is damaged" in line, line
    line = _last_error_after_cometbft_died(tmp_path, 1, "ERROR: failed to create node: error during handshake: error "
                                           "on replay: app block height (160) is higher than core (23)\n")
    assert "older than the application's store" in line and "app.sqlite* aside too" in line, line
    # a database cometbft could not open for another reason is not called damaged (moving it aside would be wrong)
    for other in ("resource temporarily unavailable", "read-only file system", "permission denied"):
        line = _last_error_after_cometbft_died(tmp_path, 1, "ERROR: failed to create node: failed to initialize "
                                               f'database: pebble: open /x/blockstore.db/LOCK: {other}\n')
        assert other in line and "damaged" not in line, line


def test_a_cometbft_panic_whose_words_do_not_say_what_to_do_gets_a_hint(tmp_path):
    line = _last_error_after_cometbft_died(tmp_path, 2, "I[...] replaying\npanic: state.AppHash does not match "
                                           "AppHash after replay. Got 1234, expected 5678.\n")
    assert line.startswith("panic: state.AppHash does not match") and "move data/app.sqlite aside too" in line, line


def test_cometbft_last_bare_words_are_the_reason_with_a_hint_for_the_sign_state(tmp_path):
    """CometBFT ends a refused start with a bare line after its shutdown logs; the operator read the node's echo
    ("cometbft exited with code 1") instead. A missing sign state also says how to recover without double signing."""
    line = _last_error_after_cometbft_died(
        tmp_path, 1,
        "E[2026-11-29|21:15:50.543] Error serving server module=main err=\"use of closed network connection\"\n"
        "I[2026-11-29|21:15:50.544] Closing evidencestore module=main\n"
        "open /x/cometbft/data/priv_validator_state.json: no such file or directory\n")
    assert line.startswith("open /x/cometbft/data/priv_validator_state.json: no such file or directory (cometbft.log; "
                           "it is the guard against signing twice"), line
    assert '{"height": "H", "round": 0, "step": 0}' in line
    assert network._fatal_line("I[...] Closing blockstore\n2026/11/29 21:05:44 [JOB 1] WAL file replayed\n") is None


def test_tasks_not_committed_in_time_are_explained_by_the_node(net, tmp_path):
    """`submit --wait` timing out said only "N tasks not committed within T s". Past its client's share it now
    says they are pending and for how long the client's work in blocks keeps the network busy; `task ID` says
    how many of its client's tasks wait before it (ahead) and the same time (client_busy_for).

    One submit, so the timing is the chain's: the 200 tasks (160 s of the whole network) are split into parts
    that all enter the mempool in one request; blocks take a client's work only up to max_client_backlog (60 s)
    ahead, so after about two parts the rest waits there for tens of seconds. (Two submits, heavy then light,
    depended on whether the heavy parts reached a block before the light batch's CheckTx: CI saw both.)"""
    from edgepoc.chain.crypto import SigningKey
    from edgepoc.client import Receipt
    from edgepoc.game.files import write_instance
    from edgepoc.game.instance import Instance

    genesis = json.loads((net.folder / "genesis.json").read_text())
    total = [sum(v["capacity"][r] for v in genesis["validators"]) for r in range(2)]
    heavy = Instance.create([[1.0, 1.0]], [0.0], [0.0] * 200, [[0.8 * c for c in total]] * 200)
    write_instance(tmp_path / "heavy.json", heavy)
    SigningKey.generate().save(tmp_path / "key.json")
    r = edgepoc("submit", str(tmp_path / "heavy.json"), "--dir", str(net.folder), "--key", str(tmp_path / "key.json"),
                "--receipt", str(tmp_path / "receipt.jsonl"), "--wait", "--timeout", "6", timeout=180)
    assert r.returncode != 0
    line = r.stderr.strip().splitlines()[-1]
    assert re.search(r"(\d+) tasks not committed within 6 s: \1 still pending(, the first behind \d+ earlier tasks "
                     r"of this client)?; its work in blocks keeps the network busy \d+ s more \(a client's tasks enter "
                     r"blocks in order", line), line
    waiting = [t for t, rec in Receipt(tmp_path / "receipt.jsonl").records.items() if rec.get("state") != "committed"]
    assert len(waiting) >= 2, waiting
    last = net.get(0, f"/tasks/{waiting[-1]}")
    assert last["status"] == "pending" and last["ahead"] >= 1 and last["client_busy_for"] > 0, last


def test_an_instance_with_other_resources_than_the_network_is_refused_before_sending(net, tmp_path):
    from edgepoc.game.files import write_instance
    from edgepoc.game.instance import Instance

    write_instance(tmp_path / "r3.json", Instance.create([[1.0, 1.0, 1.0]], [0.0], [0.0, 0.1], [[0.1, 0.1, 0.1]] * 2))
    r = edgepoc("submit", str(tmp_path / "r3.json"), "--dir", str(net.folder), "--wait")
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path / 'r3.json'}: its tasks demand 3 resources each, this network's providers have 2"), r.stderr
    # demands outside the genesis bounds: before, one such task made the chain refuse its whole signed batch
    # (1,002 valid tasks of a 2,000-task heavy-tailed instance lost with two)
    demand = [[0.5, 0.5]] * 5
    demand[2] = [0.5, 5000.0]
    write_instance(tmp_path / "big.json", Instance.create([[1.0, 1.0]], [0.0], [0.0] * 5, demand))
    r = edgepoc("submit", str(tmp_path / "big.json"), "--dir", str(net.folder), "--wait")
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2 and last.startswith(f"error: {tmp_path / 'big.json'}: 1 of 5 tasks have demands outside "
                                                 "this network's bounds [0.0001, 1000]") and "tasks[2] (t2)" in last, r.stderr


def test_a_node_whose_cometbft_dies_exits_non_zero_so_its_service_restarts_it(tmp_path):
    """The node stops when its cometbft dies, by design, but it stopped as for the operator's SIGTERM, with exit 0,
    so the systemd unit (Restart=on-failure) left it down. It now ends with one error line and exit 2."""
    network.init_network(tmp_path / "net", 1, 0, seed=5, params=FAST)
    home = tmp_path / "net" / "node0"
    with open(home / "node.log", "ab") as log:  # where `network up` sends a node's output
        proc = subprocess.Popen([sys.executable, "-m", "edgepoc.chain.abci.boot", "--home", str(home)],
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        committed = re.compile(r"Committed state .* height=2 ")
        while time.monotonic() < deadline and not committed.search(_read(home / "cometbft.log")):
            assert proc.poll() is None, _read(home / "node.log")[-2000:]
            time.sleep(0.2)
        assert committed.search(_read(home / "cometbft.log")), "the one-node chain commits"
        os.kill(int((home / "cometbft.pid").read_text()), 9)
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    last = _read(home / "node.log").strip().splitlines()[-1]
    assert code == 2 and last == "error: node node0 stopped: cometbft exited with code -9", (code, last)
    # cometbft, SIGKILLed, logged no reason of its own: the node's line is what `network start` reports
    assert network.last_error(home) == last


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def test_down_stops_every_member_at_once_so_one_slow_to_stop_delays_no_other(tmp_path):
    """`network down` stopped the members one after another, each waited out before the next got its SIGTERM: one
    node slow to end (a store to flush, a busy disk) held every later one running. Now they all get theirs at once.
    The members here are real processes under the pid files of an initialised network: node0 takes 6 s to end
    after its SIGTERM, the others end at once; 3 s into the `down`, all but node0 are gone."""
    folder = tmp_path / "net"
    network.init_network(folder, 3, 0, seed=1, params=FAST)
    slow = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: (time.sleep(6), sys.exit(0)))"
    procs = {}
    for name, home, role in (("node0", "node0", "node"), ("node1", "node1", "node"), ("node2", "node2", "node"),
                             ("arbiter", "arbiter", "arbiter")):
        ready = tmp_path / f"{name}.ready"
        code = ((slow if name == "node0" else "pass") + f"; open({str(ready)!r}, 'w').close()"
                "; [time.sleep(0.05) for _ in range(2400)]")
        # "edgepoc" in the arguments: a pid file counts only for a process that runs edgepoc
        procs[name] = subprocess.Popen([sys.executable, "-c", f"import time; {code}", "edgepoc"],
                                       start_new_session=True)
        (folder / home / f"{role}.pid").write_text(f"{procs[name].pid}\n")
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"{name}.ready").exists() for name in procs) and time.monotonic() < deadline:
        time.sleep(0.05)  # node0's handler is set (an interpreter can take seconds to start on a busy host)
    stopped = []
    t0 = time.monotonic()
    downing = threading.Thread(target=lambda: stopped.extend(network.down(folder)))
    downing.start()
    try:
        time.sleep(3.0)
        assert downing.is_alive(), "down returned before node0 had ended"
        assert [p.poll() is None for p in procs.values()] == [True, False, False, False]
        downing.join(30)
        assert stopped == ["node0", "node1", "node2", "arbiter"]
        assert procs["node0"].wait(1) == 0 and 5.5 < time.monotonic() - t0 < 14  # its clean stop, not the SIGKILL
    finally:
        for p in procs.values():
            p.kill()
            p.wait()
