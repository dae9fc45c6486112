"""A real CometBFT network for the end-to-end tests: app + cometbft processes on 127.0.0.1, always cleaned up."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

from edgepoc.chain.abci import network
from edgepoc.chain.abci.client import WaitResult, random_batches, submit, wait_committed
from edgepoc.chain.abci.node import RpcClient, checktx_log
from edgepoc.chain.abci.wire import TaskBatch
from edgepoc.chain.crypto import SigningKey
from edgepoc.chain.httpapi import HttpClient
from edgepoc.errors import EdgepocError

# Short CometBFT timeouts: the tests run on 2 busy cores.
FAST = {"timeout_propose": 1.0, "timeout_prevote": 0.3, "timeout_precommit": 0.3, "timeout_delta": 0.2,
        "timeout_commit": 0.05, "empty_block_interval": 1.0, "allocator": "greedy", "max_block_tasks": 2000}


class CometNet:
    __test__ = False

    def __init__(self, folder: Path, nodes: int = 4, params: dict | None = None, byzantine: dict | None = None,
                 student: str | None = None):
        self.folder = folder
        self.doc = network.init_network(folder, nodes, 0, seed=1, params={**FAST, **(params or {})},
                                        byzantine=byzantine, student=student)
        self.chain_id = self.doc["chain_id"]
        self.client_key = SigningKey.load(folder / "client_key.json")
        self.nonce = 0

    def up(self) -> None:
        network.up(self.folder)
        network.wait_ready(self.folder, timeout=180, arbiter=True)

    def down(self) -> None:
        network.down(self.folder)

    def api(self, i: int) -> HttpClient:
        return HttpClient(self.doc["nodes"][i]["api"], timeout=10.0)

    def rpc(self, i: int) -> RpcClient:
        host, port = self.doc["nodes"][i]["rpc"].rsplit(":", 1)
        return RpcClient(host.split("//")[1], int(port))

    def get(self, i: int, path: str):
        c = self.api(i)
        try:
            return c.get(path)
        finally:
            c.close()

    def post(self, i: int, path: str, body):
        c = self.api(i)
        try:
            return c.post(path, body)
        finally:
            c.close()

    def status(self, i: int) -> dict:
        return self.get(i, "/status")

    def heights(self, nodes) -> dict[int, int]:
        out = {}
        for i in nodes:
            try:
                out[i] = self.status(i)["height"]
            except EdgepocError:
                out[i] = -1
        return out

    def batches(self, count: int, per: int = 100) -> list[TaskBatch]:
        out = random_batches(count, 2, self.client_key, self.chain_id, self.nonce, seed=self.nonce, batch=per)
        self.nonce += count
        return out

    def submit_and_wait(self, node: int, count: int, timeout: float = 60.0, poll_node: int | None = None,
                        per: int = 100) -> tuple[list[str], WaitResult]:
        c = self.api(node)
        ids, rejected = submit(c, self.batches(count, per))
        c.close()
        assert not rejected, rejected[:3]
        poll = node if poll_node is None else poll_node
        w = self.api(poll)
        res = wait_committed(w, ids, timeout)
        w.close()
        if not res.missing:
            self.settle(poll)
        return ids, res

    def settle(self, node: int, timeout: float = 20.0) -> None:
        """Wait until every node that answers has applied the height `node` is at: a test that reads another
        node's counts right after `node` reported the tasks committed would otherwise race it by a block.
        Stopped nodes are skipped; one that stays behind is left to the test's own assertion."""
        try:
            target = self.status(node)["height"]
        except EdgepocError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(h >= target for h in self.heights(range(len(self.doc["nodes"]))).values() if h >= 0):
                return
            time.sleep(0.1)

    def broadcast(self, i: int, tx: bytes) -> dict:
        """Straight to CometBFT's RPC, around the app's API: CheckTx alone must stop a bad transaction."""
        try:
            return self.rpc(i).call("broadcast_tx_sync", {"tx": base64.b64encode(tx).decode()})
        except EdgepocError as exc:  # CometBFT v1 answers an invalid transaction with an RPC error
            return {"code": -1, "log": checktx_log(str(exc))}

    def wait_height(self, nodes, height: int, timeout: float = 60.0) -> dict[int, int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hs = self.heights(nodes)
            if min(hs.values()) >= height:
                return hs
            time.sleep(0.2)
        return self.heights(nodes)

    def block(self, i: int, h: int, timeout: float = 30.0) -> dict:
        """Node i's block at height h, waiting for it (a node may be a height behind)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.get(i, f"/blocks/{h}")
            except EdgepocError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.1)

    def block_hashes(self, i: int, upto: int) -> dict[int, str]:
        return {h: self.block(i, h)["hash"] for h in range(1, upto + 1)}

    def log(self, i: int) -> str:
        return (self.folder / f"node{i}" / "node.log").read_text(errors="replace")

    def home(self, i: int) -> Path:
        return self.folder / f"node{i}"


def raw_tx(d: dict) -> bytes:
    return json.dumps(d, sort_keys=True, separators=(",", ":")).encode()


class Outsider:
    """A CometBFT node that is not one of the network's: a fresh home with the public genesis, the built-in
    no-op application, and persistent_peers pointing at every node of the network. Always stopped."""

    __test__ = False

    def __init__(self, folder: Path, net_doc: dict, genesis: Path):
        import subprocess

        from edgepoc.chain.abci.boot import node_id
        from edgepoc.chain.abci.node import cometbft_binary

        self.home = Path(folder)
        binary = cometbft_binary()
        subprocess.run([binary, "init", "--home", str(self.home)], check=True, capture_output=True)
        (self.home / "config" / "genesis.json").write_text(Path(genesis).read_text())
        self.rpc_port, p2p = network.free_port(), network.free_port()
        peers = ",".join(f"{n['node_id']}@{n['host']}:{n['peer_port']}" for n in net_doc["nodes"])
        cfg = (self.home / "config" / "config.toml").read_text()
        for section, key, value in [("", "moniker", "outsider"), ("rpc", "laddr", f"tcp://127.0.0.1:{self.rpc_port}"),
                                    ("p2p", "laddr", f"tcp://127.0.0.1:{p2p}"), ("p2p", "persistent_peers", peers),
                                    ("p2p", "pex", False), ("p2p", "addr_book_strict", False),
                                    ("p2p", "allow_duplicate_ip", True)]:
            cfg = network._set_toml(cfg, section, key, value)
        (self.home / "config" / "config.toml").write_text(cfg)
        self.id = node_id(self.home)
        self.log = open(self.home / "cometbft.log", "ab")
        self.proc = subprocess.Popen([binary, "start", "--home", str(self.home), "--proxy_app", "noop"],
                                     stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def peers(self) -> list[str]:
        """The node ids the outsider is connected to now."""
        return [p["node_info"]["id"] for p in RpcClient("127.0.0.1", self.rpc_port).call("net_info")["peers"]]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
