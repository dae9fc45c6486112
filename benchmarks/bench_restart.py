"""How fast a SIGKILLed node is back: its API answering, and at the tip in consensus, under a task stream.

A 4-node network on loopback (free ports, the default allocator); an open-loop client sends `--rate`
signed tasks per second spread over the nodes; each round SIGKILLs `--node` (default: the node with
the least voting power, which must block-sync: one holding a third or more switches to consensus at
once) with its cometbft, lets the others commit for `--down` seconds, then runs `edgepoc network start
NODE` (the CLI, as an operator would) and polls the node's /status every 50 ms from a thread:

    spawned when the node process was created (its node.pid written): the CLI's own imports before it
    api     first HTTP answer of the node's API (any status code), from the start command
    tip     first /status with cometbft past block sync (catching_up false) and a height at or above
            the tip the other nodes reported at that moment
    command when `network start` returned (it waits until the node is in consensus)
    node_api, node_tip: api and tip counted from `spawned` (what the node itself takes)

Targets (issue 19): api <= 5 s, tip <= 10 s.

    python benchmarks/bench_restart.py [--rounds 5] [--rate 400] [--down 3] [--node weakest|node<i>]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from edgepoc.chain.abci import network
from edgepoc.chain.abci.client import random_batches
from edgepoc.chain.crypto import SigningKey
from edgepoc.chain.genesis import Genesis
from edgepoc.chain.httpapi import HttpClient

RESULTS = Path(__file__).parent / "results"


def _status(url: str, timeout: float = 1.0) -> tuple[int, dict] | None:
    host, port = url.split("//")[1].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", "/status")
        r = conn.getresponse()
        body = r.read()
        try:
            return r.status, json.loads(body)
        except ValueError:
            return r.status, {}
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


class Stream(threading.Thread):
    """`rate` tasks/s in 10 signed batches a second, alternating between the given nodes' APIs."""

    def __init__(self, doc: dict, key: SigningKey, rate: float, nodes: list[int], resources: int):
        super().__init__(daemon=True)
        self.doc, self.key, self.rate, self.nodes, self.resources = doc, key, rate, nodes, resources
        self.stop = threading.Event()
        self.sent = self.failed = 0

    def run(self) -> None:
        per = max(1, int(self.rate / 10))
        nonce = time.time_ns() // 1000
        clients = [HttpClient(self.doc["nodes"][i]["api"], timeout=5.0) for i in self.nodes]
        t0, k = time.monotonic(), 0
        while not self.stop.is_set():
            time.sleep(max(0.0, t0 + k * 0.1 - time.monotonic()))
            b = random_batches(per, self.resources, self.key, self.doc["chain_id"], nonce, seed=k, batch=per)
            nonce += per
            try:
                clients[k % len(clients)].post("/tasks", {"tasks": [x.to_dict() for x in b]})
                self.sent += per
            except Exception:
                self.failed += per
            k += 1


def weakest(doc: dict) -> str:
    """The node with the least voting power now: one under 1/3 of it must block-sync from its peers (a node
    holding 1/3 or more switches to consensus at once, since the chain cannot go on without it)."""
    for n in doc["nodes"]:
        got = _status(n["api"], 2.0)
        if got is not None and got[0] == 200 and got[1].get("validators"):
            return min(got[1]["validators"], key=lambda v: (v["power"], v["name"]))["name"]
    return doc["nodes"][-1]["name"]


def one_round(folder: Path, doc: dict, name: str, down: float) -> dict:
    me = next(n for n in doc["nodes"] if n["name"] == name)
    others = [n for n in doc["nodes"] if n["name"] != name]
    assert network.stop_member(folder, name, kill=True), f"{name} was not running"
    time.sleep(down)
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "edgepoc", "network", "start", name, "--dir", str(folder)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    api = tip = command = spawned = None
    tip_height = None
    pidfile = folder / me["home"] / "node.pid"
    while time.monotonic() - t0 < 120 and (tip is None or command is None):
        if command is None and proc.poll() is not None:
            command = time.monotonic() - t0
        if spawned is None and pidfile.exists():  # written right after the node process is created
            spawned = time.monotonic() - t0
        tops = [s[1].get("height") for s in (_status(n["api"], 0.5) for n in others) if s and s[0] == 200]
        top = max([h for h in tops if isinstance(h, int)], default=None)
        got = _status(me["api"], 1.0)
        now = time.monotonic() - t0
        if got is not None and api is None:
            api = now
        if got is not None and got[0] == 200 and top is not None and tip is None:
            st = got[1]
            if st.get("catching_up") is False and isinstance(st.get("height"), int) and st["height"] >= top:
                tip, tip_height = now, st["height"]
        time.sleep(0.05)
    try:
        out, err = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    command = command if command is not None else time.monotonic() - t0
    since = (lambda x: None if x is None or spawned is None else x - spawned)
    return {"api": api, "tip": tip, "command": command, "spawned": spawned, "node_api": since(api),
            "node_tip": since(tip), "rc": proc.returncode, "height": tip_height,
            "stderr_tail": err.strip().splitlines()[-1:] if err.strip() else []}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rate", type=float, default=400.0)
    ap.add_argument("--down", type=float, default=3.0, help="seconds the node stays down each round")
    ap.add_argument("--node", default="weakest", help="the node to restart (default: the one with the least power)")
    ap.add_argument("--label", default="", help="name of this run in the results file")
    ap.add_argument("--dir", default=None, help="keep the network in this folder (default: a temporary one)")
    ap.add_argument("--param", "-p", action="append", default=[], help="consensus parameter key=value")
    args = ap.parse_args()
    params = {"timeout_commit": 0.05}
    for kv in args.param:
        k, v = kv.split("=", 1)
        params[k] = json.loads(v) if v[:1].isdigit() or v in ("true", "false") else v
    with tempfile.TemporaryDirectory(prefix="bench_restart_") as tmp:
        folder = Path(args.dir or tmp) / "net"
        doc = network.init_network(folder, 4, 0, seed=0, params=params)
        key = SigningKey.load(folder / "client_key.json")
        stream = None
        try:
            network.up(folder)
            network.wait_ready(folder, 180)
            stream = Stream(doc, key, args.rate, list(range(len(doc["nodes"]))),
                            Genesis.load(folder / "genesis.json").n_resources)
            stream.start()
            time.sleep(3.0)
            rounds = []
            for r in range(args.rounds):
                name = weakest(doc) if args.node == "weakest" else args.node
                res = one_round(folder, doc, name, args.down)
                res["node"] = name
                rounds.append(res)
                print(f"round {r + 1} ({name}): node process after {res['spawned'] if res['spawned'] is None else round(res['spawned'], 2)} s, "
                      f"api {res['api'] if res['api'] is None else round(res['api'], 2)} s, "
                      f"tip {res['tip'] if res['tip'] is None else round(res['tip'], 2)} s (height {res['height']}), "
                      f"command {res['command']:.2f} s (exit {res['rc']}) {res['stderr_tail']}", file=sys.stderr)
                time.sleep(2.0)
        finally:
            if stream is not None:
                stream.stop.set()
                stream.join(5)
            network.down(folder)

    def summary(key: str) -> dict:
        xs = [r[key] for r in rounds if r[key] is not None]
        return {"median": statistics.median(xs) if xs else None, "max": max(xs) if xs else None,
                "missing": len(rounds) - len(xs)}

    doc = {"label": args.label, "rate": args.rate, "down": args.down, "rounds": rounds, "cpus": os.cpu_count(),
           "api": summary("api"), "tip": summary("tip"), "command": summary("command"),
           "spawned": summary("spawned"), "node_api": summary("node_api"), "node_tip": summary("node_tip"),
           "sent": stream.sent if stream else 0, "send_failed": stream.failed if stream else 0}
    print(json.dumps({k: doc[k] for k in ("label", "spawned", "api", "tip", "node_api", "node_tip", "command", "sent",
                                          "send_failed")}, indent=1))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "bench_restart.json"
    old = json.loads(path.read_text()) if path.exists() else []
    path.write_text(json.dumps([*old, doc], indent=1) + "\n")


if __name__ == "__main__":
    main()
