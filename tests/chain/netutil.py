"""A real testnet for the end-to-end tests: processes on 127.0.0.1, free ports, always cleaned up."""

from __future__ import annotations

import json
import socket
import struct
import time
from pathlib import Path

from edgepoc.chain import network
from edgepoc.chain.client import random_tasks, submit, wait_committed
from edgepoc.chain.crypto import SigningKey
from edgepoc.chain.httpapi import HttpClient
from edgepoc.chain.types import TaskRequest
from edgepoc.errors import EdgepocError

FAST = {"timeout_propose": 0.4, "timeout_prevote": 0.3, "timeout_precommit": 0.3, "timeout_delta": 0.1,
        "timeout_commit": 0.02, "empty_block_interval": 0.5, "allocator": "greedy", "max_block_tasks": 500}


class Testnet:
    __test__ = False

    def __init__(self, folder: Path, nodes: int = 4, params: dict | None = None, byzantine: dict | None = None,
                 student: str | None = None):
        self.folder = folder
        self.doc = network.init_network(folder, nodes, 0, seed=1, params={**FAST, **(params or {})}, byzantine=byzantine,
                                        student=student)
        self.genesis_time = json.loads((folder / "genesis.json").read_text())["genesis_time"]
        self.chain_id = self.doc["chain_id"]
        self.client_key = SigningKey.load(folder / "client_key.json")
        self.nonce = 0

    def up(self) -> None:
        network.up(self.folder)
        network.wait_ready(self.folder, timeout=60)

    def down(self) -> None:
        network.down(self.folder)

    def api(self, i: int) -> HttpClient:
        return HttpClient(self.doc["nodes"][i]["api"], timeout=5.0)

    def status(self, i: int) -> dict:
        c = self.api(i)
        try:
            return c.get("/status")
        finally:
            c.close()

    def heights(self, nodes) -> dict[int, int]:
        out = {}
        for i in nodes:
            try:
                out[i] = self.status(i)["height"]
            except EdgepocError:
                out[i] = -1
        return out

    def make_tasks(self, count: int) -> list[TaskRequest]:
        clock = time.time() - self.genesis_time
        txs = random_tasks(count, 2, self.client_key, self.chain_id, clock, self.nonce, seed=self.nonce)
        self.nonce += count
        return txs

    def submit_and_wait(self, node: int, count: int, timeout: float = 30.0, poll_node: int | None = None):
        c = self.api(node)
        ids, rejected = submit(c, self.make_tasks(count))
        assert not rejected, rejected[:3]
        w = self.api(node if poll_node is None else poll_node)
        res = wait_committed(w, ids, timeout)
        c.close()
        w.close()
        return ids, res

    def wait_height(self, nodes, height: int, timeout: float = 30.0) -> dict[int, int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hs = self.heights(nodes)
            if min(hs.values()) >= height:
                return hs
            time.sleep(0.2)
        return self.heights(nodes)

    def block_hashes(self, i: int, upto: int) -> dict[int, str]:
        c = self.api(i)
        try:
            return {h: c.get(f"/blocks/{h}")["hash"] for h in range(1, upto + 1)}
        finally:
            c.close()

    def block(self, i: int, h: int, timeout: float = 15.0) -> dict:
        """Node i's block at height h, waiting for it: a node may be a height behind the one that answered."""
        deadline = time.time() + timeout
        while True:
            c = self.api(i)
            try:
                return c.get(f"/blocks/{h}")["block"]
            except EdgepocError:
                if time.time() > deadline:
                    raise
            finally:
                c.close()
            time.sleep(0.1)

    def peer_port(self, i: int) -> int:
        return self.doc["nodes"][i]["peer_port"]

    def log(self, i: int) -> str:
        return (self.folder / f"node{i}" / "node.log").read_text(errors="replace")


def send_raw(port: int, payload: bytes, length: int | None = None) -> None:
    """Write one frame (or a lying length header) to a node's peer port and hang up."""
    with socket.create_connection(("127.0.0.1", port), timeout=2.0) as s:
        s.sendall(struct.pack(">I", len(payload) if length is None else length) + payload)
        time.sleep(0.05)
