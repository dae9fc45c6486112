"""The chain as a real multi-host network: 4 provider nodes in 4 network namespaces on one link.

`edgepoc network init --hosts <4 IPs>` writes one bundle per host; each host's node (its app process
and its cometbft child) and, on the first, the arbiter are started inside the host's namespace from its
bundle with `ip netns exec <ns> edgepoc network up --dir <bundle>` (restarts: `network start node<i>`),
so they bind that host's address and reach their peers across the shared link, every host's frames
delayed 20 ms (`tc netem`, or where the kernel lacks sch_netem a user-space switch that does the same:
see tests/chain/netns.py).

One network runs the scenarios in order (CI time): steady commits; a partition isolating one node; a
2/2 split (no commits while split, commits again within 20 s of healing); SIGKILL and restart of one
node, then of every node; a paused node (SIGSTOP/SIGCONT). After each: every accepted task committed
exactly once, the same block hash at every height on every node, `chain verify` passes on every node.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from edgepoc.chain.abci import network
from edgepoc.chain.abci.client import random_batches, submit, wait_committed
from edgepoc.chain.crypto import SigningKey
from edgepoc.chain.httpapi import HttpClient
from edgepoc.errors import EdgepocError
from tests.chain.cometnet import FAST
from tests.chain.netns import NetnsLab, remove_stale, unavailable

pytestmark = pytest.mark.slow

NODES = 4
DELAY_MS = 20
EDGEPOC = [sys.executable, "-m", "edgepoc"]
TIMINGS: dict[str, float] = {}
# Fewer (proof-of-app-hash) blocks than the loopback tests: `chain verify` replays them all after every scenario.
PARAMS = {"timeout_commit": 0.5}


class MultiHost:
    """The network of `network init --hosts`, one bundle per namespace, driven through the CLI and the API."""

    __test__ = False

    def __init__(self, folder: Path, lab: NetnsLab):
        self.folder, self.lab = folder, lab
        params = [a for k, v in {**FAST, **PARAMS}.items() for a in ("-p", f"{k}={v}")]
        res = subprocess.run([*EDGEPOC, "network", "init", "--nodes", str(NODES), "--dir", str(folder), "--seed", "1",
                              "--hosts", ",".join(lab.ips), *params], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        self.doc = network.load_network(folder)
        self.chain_id = self.doc["chain_id"]
        self.key = SigningKey.load(folder / "client_key.json")
        self.nonce = 0
        self.accepted: list[str] = []
        self.bundles = [folder / "hosts" / h for h in lab.ips]

    # processes, each inside its host's namespace
    def start(self, names: list[str]) -> None:
        """`edgepoc network start NAME --dir <bundle>` inside the namespace of NAME's host, all at once."""
        def one(name: str) -> subprocess.CompletedProcess:
            i = 0 if name == "arbiter" else int(name[4:])
            return self.lab.exec(i, [*EDGEPOC, "network", "start", name, "--dir", str(self.bundles[i])])
        with ThreadPoolExecutor(len(names)) as pool:
            for name, res in zip(names, pool.map(one, names)):
                assert res.returncode == 0, f"{name}: {res.stderr}"

    def up_hosts(self) -> None:
        """`edgepoc network up --dir <bundle>` on every host at once, as each operator would run it."""
        with ThreadPoolExecutor(NODES) as pool:
            done = list(pool.map(lambda i: self.lab.exec(i, [*EDGEPOC, "network", "up", "--dir", str(self.bundles[i]),
                                                             "--wait", "120"], timeout=180), range(NODES)))
        for i, res in enumerate(done):
            assert res.returncode == 0, f"host {i}: {res.stderr[-500:]}"
        assert "arbiter" in done[0].stderr and "arbiter" not in done[1].stderr  # only the first bundle holds it

    def kill(self, i: int) -> None:
        assert network.stop_member(self.bundles[i], f"node{i}", kill=True), f"node{i} was not running"

    def signal(self, i: int, sig: signal.Signals) -> None:
        """A signal to node i's process group (its app and its cometbft)."""
        os.killpg(int((self.home(i) / "node.pid").read_text()), sig)

    def stop_all(self) -> None:
        for i in range(NODES):
            network.stop_member(self.bundles[i], f"node{i}", kill=True)
        network.stop_member(self.bundles[0], "arbiter", kill=True)

    def home(self, i: int) -> Path:
        return self.bundles[i] / f"node{i}"

    # the API, from the root namespace across the bridge
    def call(self, i: int, method: str, path: str, body=None, timeout: float = 10.0):
        c = HttpClient(self.doc["nodes"][i]["api"], timeout=timeout)
        try:
            return c.get(path) if method == "GET" else c.post(path, body)
        finally:
            c.close()

    def heights(self, nodes=range(NODES)) -> dict[int, int]:
        out = {}
        for i in nodes:
            try:
                out[i] = self.call(i, "GET", "/status", timeout=3.0)["height"]
            except EdgepocError:
                out[i] = -1
        return out

    def wait_ready(self, nodes=range(NODES), height: int = 1, timeout: float = 120.0) -> float:
        """Until the nodes answer at `height` or more with cometbft past block sync; returns the seconds."""
        t0 = time.monotonic()
        todo = set(nodes)
        while todo and time.monotonic() - t0 < timeout:
            for i in list(todo):
                try:
                    st = self.call(i, "GET", "/status", timeout=3.0)
                    if st["height"] >= height and st.get("catching_up") is False:
                        todo.discard(i)
                except EdgepocError:
                    pass
            if todo:
                time.sleep(0.2)
        assert not todo, f"nodes {sorted(todo)} not at height {height} after {timeout:.0f} s: {self.heights()}"
        return time.monotonic() - t0

    def wait_height(self, height: int, nodes=range(NODES), timeout: float = 60.0) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if min(self.heights(nodes).values()) >= height:
                return time.monotonic() - t0
            time.sleep(0.2)
        raise AssertionError(f"nodes {list(nodes)} not at height {height} after {timeout:.0f} s: {self.heights()}")

    def settled(self, quiet: float = 2.0, timeout: float = 15.0) -> dict[int, int]:
        """The heights once no node has moved for `quiet` seconds."""
        last, since, t0 = self.heights(), time.monotonic(), time.monotonic()
        while time.monotonic() - since < quiet and time.monotonic() - t0 < timeout:
            time.sleep(0.25)
            now = self.heights()
            if now != last:
                last, since = now, time.monotonic()
        return last

    def submit(self, node: int, count: int) -> list[str]:
        batches = random_batches(count, 2, self.key, self.chain_id, self.nonce, seed=self.nonce, batch=50)
        self.nonce += count
        c = HttpClient(self.doc["nodes"][node]["api"], timeout=30.0)
        try:
            ids, rejected = submit(c, batches)
        finally:
            c.close()
        assert not rejected, rejected[:3]
        assert len(ids) == count
        self.accepted += ids
        return ids

    def wait_committed(self, ids: list[str], node: int, timeout: float = 90.0) -> float:
        c = HttpClient(self.doc["nodes"][node]["api"], timeout=10.0)
        try:
            res = wait_committed(c, ids, timeout)
        finally:
            c.close()
        assert not res.missing, f"{len(res.missing)} of {len(ids)} accepted tasks not committed in {timeout:.0f} s"
        return res.seconds

    # what must hold after every scenario
    def summaries(self, i: int) -> dict[int, tuple[str, int]]:
        """Node i's chain: height -> (block hash, number of tasks), every height."""
        out: dict[int, tuple[str, int]] = {}
        before = None
        while True:
            q = "/blocks?limit=1000" + (f"&before={before}" if before else "")
            rows = self.call(i, "GET", q)["blocks"]
            out.update({r["height"]: (r["hash"], r["n_tasks"]) for r in rows})
            if not rows or rows[-1]["height"] <= 1:
                return out
            before = rows[-1]["height"]

    def check(self) -> None:
        """Every accepted task committed exactly once, no fork, `edgepoc chain verify --home` passes on every node."""
        t0 = time.monotonic()
        self._check()
        TIMINGS["checks"] = TIMINGS.get("checks", 0.0) + time.monotonic() - t0

    def _check(self) -> None:
        self.wait_ready()
        self.wait_committed(self.accepted, node=0, timeout=60)  # each accepted id is committed ...
        chains = {i: self.summaries(i) for i in range(NODES)}
        top = min(max(c) for c in chains.values())
        ref = chains[0]
        assert sorted(ref) == list(range(1, max(ref) + 1)), "node0's chain has gaps"
        for i in range(1, NODES):
            forks = [h for h in range(1, top + 1) if chains[i][h][0] != ref[h][0]]
            assert not forks, f"fork: node{i} differs from node0 at heights {forks[:5]}"
        # ... and only once: this test is the chain's only client, so the blocks hold exactly the accepted ids
        in_blocks = sum(n for _, n in ref.values())
        assert in_blocks == len(self.accepted) == len(set(self.accepted)), (in_blocks, len(self.accepted))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
        procs = [subprocess.Popen([*EDGEPOC, "chain", "verify", "--home", str(self.home(i))], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env) for i in range(NODES)]  # all at once
        try:
            for i, p in enumerate(procs):
                out, err = p.communicate(timeout=180)
                assert p.returncode == 0, f"node{i}: chain verify: {err[-500:]}"
                rep = json.loads(out.strip().splitlines()[-1])
                assert rep["ok"], f"node{i}: chain verify: {rep['problems'][:3]}"
                assert rep["height"] >= top and rep["tasks"] == len(self.accepted), (i, rep, top)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()


@pytest.fixture(scope="module")
def mh(tmp_path_factory):
    why = unavailable()
    if why:
        pytest.skip(f"multi-host test: {why}")
    remove_stale()
    lab = NetnsLab(NODES, DELAY_MS)
    net = None
    try:
        lab.create()
        net = MultiHost(tmp_path_factory.mktemp("multihost") / "net", lab)
        t0 = time.monotonic()
        net.up_hosts()
        net.wait_ready()
        TIMINGS["up"] = time.monotonic() - t0
        yield net
    finally:
        if net is not None:
            net.stop_all()
        lab.destroy()
        print("\nmulti-host timings (s): " + json.dumps({k: round(v, 1) for k, v in TIMINGS.items()})
              + f"; link delay: {lab.delay_how}")


def test_bundles_bind_each_host_and_links_carry_the_delay(mh):
    for i, n in enumerate(mh.doc["nodes"]):
        assert n["host"] == mh.lab.ips[i] and n["api"].startswith(f"http://{mh.lab.ips[i]}:")
        cfg = (mh.home(i) / "cometbft" / "config" / "config.toml").read_text()
        assert f'laddr = "tcp://{mh.lab.ips[i]}:' in cfg  # p2p binds the host's own address (ABCI, RPC: loopback)
        assert not (mh.bundles[i] / f"node{(i + 1) % NODES}").exists()  # a bundle holds its own host's node only
    # Every pair of hosts is linked across the bridge (peers dial with backoff). A pair is linked when either
    # side holds the connection: when two nodes dial each other at the same instant, CometBFT keeps one
    # connection and may drop the peer from the other side's list (it still receives on it, and votes reach
    # it through the other peers), so `reachable` can read false from one side of a working link.
    names = [n["name"] for n in mh.doc["nodes"]]
    deadline = time.monotonic() + 60
    while True:
        missing = {i: {v["name"] for v in mh.call(i, "GET", "/status")["validators"] if v.get("reachable") is False}
                   for i in range(NODES)}
        unlinked = [(names[i], names[j]) for i in range(NODES) for j in range(i + 1, NODES)
                    if names[j] in missing[i] and names[i] in missing[j]]
        if not unlinked or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not unlinked, f"host pairs with no link: {unlinked} (unreachable as each node sees it: {missing})"


def test_links_carry_the_netem_delay(mh):
    if not mh.lab.delay_applied:
        pytest.skip(f"no link delay: {mh.lab.delay_how}")
    rtt = mh.lab.rtt_ms(0, 1)
    assert rtt is not None and rtt >= 2 * DELAY_MS * 0.9, rtt  # each direction carries DELAY_MS


def test_steady_submit_and_commit(mh):
    ids = mh.submit(0, 400)
    TIMINGS["steady_commit"] = mh.wait_committed(ids, node=3)
    mh.check()


def test_partition_isolating_one_node(mh):
    mh.lab.partition([0, 1, 2], [3])
    try:
        h3 = mh.heights([3])[3]
        stranded = mh.submit(3, 100)  # accepted by the isolated node: they must not be lost
        ids = mh.submit(1, 300)
        TIMINGS["isolated_commit"] = mh.wait_committed(ids, node=2)  # three of four keep committing
        mh.wait_height(h3 + 3, [0, 1, 2], timeout=30)
        assert mh.heights([3])[3] <= h3 + 1, "the isolated node cannot commit on its own"
        assert mh.lab.rtt_ms(3, 0) is None and mh.lab.rtt_ms(0, 1) is not None  # cut from node3 only
    finally:
        mh.lab.heal()
    top = max(mh.heights([0, 1, 2]).values())
    TIMINGS["isolated_catch_up"] = mh.wait_height(top, [3], timeout=60)
    TIMINGS["isolated_tasks_after_heal"] = mh.wait_committed(stranded, node=0, timeout=60)
    mh.check()


def test_split_two_two_stops_commits_until_healed(mh):
    mh.lab.partition([0, 1], [2, 3])
    try:
        frozen = mh.settled()  # a block whose precommits were already on the wire may still land
        ids = mh.submit(0, 200) + mh.submit(3, 200)  # accepted into each side's mempool
        time.sleep(8.0)
        during = mh.heights()
        assert max(during.values()) == max(frozen.values()), f"committed while split: {frozen} -> {during}"
    finally:
        mh.lab.heal()
    t0 = time.monotonic()
    mh.wait_height(max(during.values()) + 1, timeout=20)
    TIMINGS["split_resume"] = time.monotonic() - t0
    assert TIMINGS["split_resume"] < 20
    TIMINGS["split_tasks_after_heal"] = mh.wait_committed(ids, node=1, timeout=60)
    mh.check()


def test_sigkill_and_restart_one_node_then_all(mh):
    mh.kill(2)
    ids = mh.submit(0, 300)
    TIMINGS["one_killed_commit"] = mh.wait_committed(ids, node=1)
    top = max(mh.heights([0, 1, 3]).values())
    t0 = time.monotonic()
    mh.start(["node2"])
    mh.wait_ready([2], height=top)
    TIMINGS["one_restart_catch_up"] = time.monotonic() - t0
    mh.check()

    top = min(mh.heights().values())
    for i in range(NODES):
        mh.kill(i)
    t0 = time.monotonic()
    mh.start([f"node{i}" for i in range(NODES)])
    mh.wait_ready(height=top)
    TIMINGS["all_restart"] = time.monotonic() - t0
    ids = mh.submit(3, 300)
    TIMINGS["after_all_restart_commit"] = mh.wait_committed(ids, node=2)
    mh.check()


def test_paused_node(mh):
    mh.signal(1, signal.SIGSTOP)
    try:
        ids = mh.submit(0, 300)
        TIMINGS["paused_commit"] = mh.wait_committed(ids, node=3)
    finally:
        mh.signal(1, signal.SIGCONT)
    top = max(mh.heights([0, 2, 3]).values())
    TIMINGS["paused_catch_up"] = mh.wait_height(top, [1], timeout=60)
    mh.check()

