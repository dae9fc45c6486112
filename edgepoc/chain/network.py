"""A local testnet: keys, genesis and configs for N nodes and the arbiter, and their processes.

Layout of a network folder:
    network.json            names, homes and ports of the nodes and the arbiter
    genesis.json            the shared genesis (copied into every home)
    client_key.json         a client key for `edgepoc submit`
    node<i>/                config.json, node_key.json, genesis.json, data/chain.sqlite, node.log, node.pid
    arbiter/                config.json, arbiter_key.json, genesis.json, arbiter.log, arbiter.pid
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edgepoc.chain.crypto import SigningKey
from edgepoc.chain.genesis import ConsensusParams, Genesis, make_validators
from edgepoc.chain.httpapi import HttpClient
from edgepoc.errors import EdgepocError, InputError

HOST = "127.0.0.1"


def free_port() -> int:
    """A port the OS says is free now (bind to port 0), for tests that run side by side."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def init_network(folder: Path, nodes: int = 4, base_port: int = 26600, seed: int = 0,
                 params: dict[str, Any] | None = None, chain_id: str = "edgepoc-local",
                 byzantine: dict[int, list[str]] | None = None, student: str | None = None,
                 teacher: str | None = None) -> dict:
    """Write keys, genesis and configs; `base_port=0` picks free ports (tests)."""
    folder = Path(folder)
    if nodes < 1 or nodes > 64:
        raise InputError(f"--nodes: must be 1..64, got {nodes}")
    if (folder / "network.json").exists():
        raise EdgepocError(f"{folder} already holds a network; remove it or pick another --dir")
    folder.mkdir(parents=True, exist_ok=True)
    keys = [SigningKey.from_seed(f"{chain_id}:node:{seed}:{i}".encode()) for i in range(nodes)]
    arbiter_key = SigningKey.from_seed(f"{chain_id}:arbiter:{seed}".encode())
    client_key = SigningKey.from_seed(f"{chain_id}:client:{seed}".encode())
    p = ConsensusParams.from_dict({**asdict(ConsensusParams()), **(params or {})})
    genesis = Genesis(chain_id, time.time(), make_validators([k.public_hex for k in keys], seed), arbiter_key.public_hex, p)
    genesis = Genesis.from_dict(genesis.to_dict())  # validates
    ports = [free_port() if base_port == 0 else base_port + j for j in range(2 * nodes + 1)]
    genesis.save(folder / "genesis.json")
    client_key.save(folder / "client_key.json")
    arbiter_url = f"http://{HOST}:{ports[2 * nodes]}"
    doc = {"chain_id": chain_id, "nodes": [], "arbiter": {"home": "arbiter", "host": HOST, "port": ports[2 * nodes],
                                                          "url": arbiter_url}}
    for i, key in enumerate(keys):
        home = folder / f"node{i}"
        peers = [{"address": keys[j].address, "host": HOST, "port": ports[2 * j]} for j in range(nodes) if j != i]
        cfg = {"name": f"node{i}", "host": HOST, "peer_port": ports[2 * i], "api_port": ports[2 * i + 1],
               "peers": peers, "arbiter_url": arbiter_url, "byzantine": (byzantine or {}).get(i, []),
               "model": str(Path(student).resolve()) if student else None}
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        key.save(home / "node_key.json")
        genesis.save(home / "genesis.json")
        doc["nodes"].append({"name": f"node{i}", "home": f"node{i}", "address": key.address,
                             "api": f"http://{HOST}:{ports[2 * i + 1]}", "peer_port": ports[2 * i]})
    arb = folder / "arbiter"
    arb.mkdir(exist_ok=True)
    arbiter_key.save(arb / "arbiter_key.json")
    genesis.save(arb / "genesis.json")
    (arb / "config.json").write_text(json.dumps({"host": HOST, "port": ports[2 * nodes],
                                                 "model": str(Path(teacher).resolve()) if teacher else None},
                                                indent=2) + "\n")
    (folder / "network.json").write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def load_network(folder: Path) -> dict:
    try:
        return json.loads((Path(folder) / "network.json").read_text())
    except FileNotFoundError:
        raise EdgepocError(f"{folder}: no network.json (run `edgepoc network init --dir {folder}`)") from None


def _pid(pidfile: Path) -> int | None:
    """The pid in `pidfile` if that process is alive and is an edgepoc process."""
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes() if Path(f"/proc/{pid}").exists() else b"edgepoc"
        state = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}/stat").exists() else "R"
        return pid if b"edgepoc" in cmd and state != "Z" else None
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return None


def _member(folder: Path, name: str) -> tuple[Path, list[str], str]:
    doc = load_network(folder)
    if name == "arbiter":
        home = Path(folder) / "arbiter"
        return home, ["arbiter", "--home", str(home)], "arbiter"
    for n in doc["nodes"]:
        if n["name"] == name:
            home = Path(folder) / n["home"]
            return home, ["node", "--home", str(home)], "node"
    raise InputError(f"NODE: no node named {name!r} in {folder} (have {', '.join(n['name'] for n in doc['nodes'])})")


def start_member(folder: Path, name: str, extra_env: dict[str, str] | None = None) -> int:
    """Start one node (or the arbiter) as its own process; returns its pid."""
    home, args, role = _member(folder, name)
    pidfile = home / f"{role}.pid"
    pid = _pid(pidfile)
    if pid is not None:
        return pid
    log = open(home / f"{role}.log", "ab")
    env = {**os.environ, **(extra_env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "edgepoc", *args], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True, env=env)
    log.close()
    pidfile.write_text(f"{proc.pid}\n")
    return proc.pid


def stop_member(folder: Path, name: str, kill: bool = False, wait: float = 5.0) -> bool:
    """Stop one node: SIGTERM (SIGKILL with `kill`, a crash); True if it was running."""
    home, _, role = _member(folder, name)
    pidfile = home / f"{role}.pid"
    pid = _pid(pidfile)
    if pid is None:
        pidfile.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and _pid(pidfile) is not None:
        _reap(pid)
        time.sleep(0.05)
    if _pid(pidfile) is not None:
        os.kill(pid, signal.SIGKILL)
        _reap(pid)
    pidfile.unlink(missing_ok=True)
    return True


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def up(folder: Path, env: dict[str, str] | None = None) -> dict[str, int]:
    doc = load_network(folder)
    pids = {"arbiter": start_member(folder, "arbiter", env)}
    for n in doc["nodes"]:
        pids[n["name"]] = start_member(folder, n["name"], env)
    return pids


def down(folder: Path) -> list[str]:
    doc = load_network(folder)
    stopped = []
    for name in [n["name"] for n in doc["nodes"]] + ["arbiter"]:
        if stop_member(folder, name):
            stopped.append(name)
    return stopped


def status(folder: Path, timeout: float = 1.0) -> list[dict]:
    doc = load_network(folder)
    rows = []
    for n in doc["nodes"]:
        pid = _pid(Path(folder) / n["home"] / "node.pid")
        row: dict[str, Any] = {"name": n["name"], "pid": pid, "api": n["api"]}
        if pid is not None:
            client = HttpClient(n["api"], timeout=timeout)
            try:
                row.update(client.get("/status"))
            except EdgepocError as exc:
                row["error"] = str(exc)
            finally:
                client.close()
        rows.append(row)
    return rows


def wait_ready(folder: Path, timeout: float = 60.0, names: list[str] | None = None) -> None:
    """Block until the named nodes (default: all) answer /status, or raise after `timeout`."""
    doc = load_network(folder)
    todo = {n["name"]: n["api"] for n in doc["nodes"] if names is None or n["name"] in names}
    deadline = time.monotonic() + timeout
    while todo and time.monotonic() < deadline:
        for name, api in list(todo.items()):
            client = HttpClient(api, timeout=1.0)
            try:
                client.get("/status")
                del todo[name]
            except EdgepocError:
                pass
            finally:
                client.close()
        if todo:
            time.sleep(0.2)
    if todo:
        raise EdgepocError(f"nodes not ready after {timeout:.0f} s: {', '.join(todo)}")
