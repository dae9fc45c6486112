"""A CometBFT network of provider nodes: keys, genesis and configs, and the node processes.

Layout of a network folder D:
    network.json        engine, chain id, the nodes (name, home, address, host, api, rpc, ports) and the arbiter
    client_key.json     a fresh client key for `edgepoc submit` (0600)
    node<i>/            app.json, data/app.sqlite, node.log, node.pid, cometbft.log, cometbft.pid,
                        cometbft/ (CometBFT's home: config.toml, genesis.json with the app's genesis as
                        app_state, priv_validator_key.json and node_key.json, both fresh and 0600)
    arbiter/            config.json, arbiter_key.json (0600), genesis.json, arbiter.log, arbiter.pid
    hosts/<host>/       with --hosts: one bundle per machine (its nodes' homes and network.json)
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgepoc.chain.abci.app import voting_powers
from edgepoc.chain.abci.node import cometbft_binary
from edgepoc.chain.crypto import SigningKey
from edgepoc.chain.genesis import MAX_VALIDATORS, ConsensusParams, Genesis, make_validators
from edgepoc.chain.httpapi import HttpClient
from edgepoc.errors import EdgepocError, InputError

HOST = "127.0.0.1"
PORTS_PER_NODE = 4  # p2p, rpc, abci, api
# CometBFT's own Prometheus metrics: base_port + 300 + the node's index on its host (above the 4 ports of
# up to 64 nodes and the arbiter's), or a free port with base_port 0.
PROMETHEUS_PORT_OFFSET = 300
# A node's "state" in /status (edgepoc.chain.abci.boot): its process answers, cometbft block-syncs, past it.
STATE_STARTING, STATE_CATCHING_UP, STATE_IN_CONSENSUS = "starting", "catching up", "in consensus"


_taken: set[int] = set()


def free_port(host: str = HOST) -> int:
    """A port free now and below the kernel's ephemeral range: a port the OS hands out for `bind(0)` can be
    taken by any outgoing connection before the node listens on it (seen under load in the tests)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.SystemRandom()  # port allocation only: nothing measured or reproduced depends on it
    for _ in range(200):
        port = rng.randrange(10000, max(10001, low))
        if port in _taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _taken.add(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _duration(seconds: float) -> str:
    return f"{int(round(seconds * 1000))}ms"


def _set_toml(text: str, section: str, key: str, value: Any) -> str:
    """Set `key = value` inside `[section]` ("" = the top level) of CometBFT's config.toml."""
    rendered = json.dumps(value) if isinstance(value, (str, bool)) else str(value)
    rendered = rendered.lower() if isinstance(value, bool) else rendered
    lines = text.split("\n")
    current = ""
    for i, line in enumerate(lines):
        m = re.match(r"^\[([^\]]+)\]\s*$", line)
        if m:
            current = m.group(1)
            continue
        if current == section and re.match(rf"^{re.escape(key)}\s*=", line):
            lines[i] = f"{key} = {rendered}"
            return "\n".join(lines)
    raise EdgepocError(f"config.toml: no key {key!r} in [{section}] (CometBFT version mismatch?)")


def _rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000000000Z")


def _node_id(cmt_home: Path) -> str:
    doc = json.loads((cmt_home / "config" / "node_key.json").read_text())
    pub = base64.b64decode(doc["priv_key"]["value"])[32:]
    return hashlib.sha256(pub).hexdigest()[:40]


def init_network(folder: Path, nodes: int = 4, base_port: int = 26600, seed: int = 0,
                 params: dict[str, Any] | None = None, chain_id: str = "edgepoc-local",
                 byzantine: dict[int, list[str]] | None = None, student: str | None = None,
                 teacher: str | None = None, hosts: list[str] | None = None) -> dict:
    """Write fresh keys, the genesis and every node's configuration; `base_port=0` picks free ports.

    With `hosts`, node i runs on hosts[i % len(hosts)] (explicit IPs everywhere) and hosts/<host>/ holds
    the bundle to copy to that machine; ports then repeat per host from `base_port`.
    """
    folder = Path(folder)
    if not 1 <= nodes <= MAX_VALIDATORS:
        raise InputError(f"--nodes: must be 1..{MAX_VALIDATORS}, got {nodes}")
    if (folder / "network.json").exists():
        raise EdgepocError(f"{folder} already holds a network; remove it or pick another --dir")
    binary = cometbft_binary()
    p = ConsensusParams.from_dict({**asdict(ConsensusParams()), **(params or {})})
    hosts = hosts or [HOST]
    folder.mkdir(parents=True, exist_ok=True)
    node_hosts = [hosts[i % len(hosts)] for i in range(nodes)]
    ports: list[list[int]] = []
    per_host: dict[str, int] = {}
    for h in node_hosts:
        j = per_host.get(h, 0)
        per_host[h] = j + 1
        ports.append([free_port() if base_port == 0 else base_port + PORTS_PER_NODE * j + k
                      for k in range(PORTS_PER_NODE)])
    pubkeys, ids = [], []
    for i in range(nodes):
        cmt = folder / f"node{i}" / "cometbft"
        res = subprocess.run([binary, "init", "--home", str(cmt)], capture_output=True, text=True)
        if res.returncode != 0:
            raise EdgepocError(f"cometbft init failed: {res.stderr.strip()[:300]}")
        key = json.loads((cmt / "config" / "priv_validator_key.json").read_text())
        pubkeys.append(base64.b64decode(key["pub_key"]["value"]).hex())
        ids.append(_node_id(cmt))
    arbiter_key, client_key = SigningKey.generate(), SigningKey.generate()
    genesis_time = float(int(time.time()))
    genesis = Genesis(chain_id, genesis_time, make_validators(pubkeys, seed), arbiter_key.public_hex, p)
    genesis = Genesis.from_dict(genesis.to_dict())  # validates
    powers = voting_powers(p, [p.initial_score] * nodes)
    cmt_genesis = {
        "genesis_time": _rfc3339(genesis_time), "chain_id": chain_id, "initial_height": "1",
        "consensus_params": {
            "block": {"max_bytes": str(p.max_proposal_bytes + (64 << 10)), "max_gas": "-1"},
            "evidence": {"max_age_num_blocks": "100000", "max_age_duration": "172800000000000", "max_bytes": "1048576"},
            "validator": {"pub_key_types": ["ed25519"]}, "version": {"app": "1"},
            "synchrony": {"precision": "505000000", "message_delay": "15000000000"},
            "feature": {"vote_extensions_enable_height": "0", "pbts_enable_height": "0"}},
        "validators": [{"address": v.address.upper(),
                        "pub_key": {"type": "tendermint/PubKeyEd25519",
                                    "value": base64.b64encode(bytes.fromhex(v.public_key)).decode()},
                        "power": str(powers[i]), "name": v.name} for i, v in enumerate(genesis.validators)],
        "app_hash": "", "app_state": genesis.to_dict()}
    arbiter_port = free_port() if base_port == 0 else base_port + PORTS_PER_NODE * per_host.get(hosts[0], 0)
    arbiter_url = f"http://{hosts[0]}:{arbiter_port}"
    doc: dict[str, Any] = {"engine": "cometbft", "chain_id": chain_id, "nodes": [],
                           "arbiter": {"home": "arbiter", "host": hosts[0], "port": arbiter_port, "url": arbiter_url}}
    for i in range(nodes):
        home = folder / f"node{i}"
        cmt = home / "cometbft"
        host, (p2p, rpc, abci, api) = node_hosts[i], ports[i]
        peers = ",".join(f"{ids[j]}@{node_hosts[j]}:{ports[j][0]}" for j in range(nodes) if j != i)
        cfg = (cmt / "config" / "config.toml").read_text()
        prom = free_port() if base_port == 0 else base_port + PROMETHEUS_PORT_OFFSET + node_hosts[:i].count(host)
        for section, key, value in [
            # ABCI and RPC stay on loopback: cometbft and its app share a machine, and neither may be
            # reachable from outside (anyone on the ABCI port could call FinalizeBlock); p2p and the API face out.
            ("", "moniker", f"node{i}"), ("", "proxy_app", f"127.0.0.1:{abci}"), ("", "abci", "grpc"),
            ("", "log_level", "info"),
            # only the genesis validators' nodes (app.json's allowed_peers) are kept as peers: the app answers
            # CometBFT's /p2p/filter queries (edgepoc.chain.abci.peers)
            ("", "filter_peers", True),
            ("rpc", "laddr", f"tcp://127.0.0.1:{rpc}"), ("rpc", "max_body_bytes", 2 * p.max_tx_bytes + (64 << 10)),
            ("rpc", "max_open_connections", 2000),
            ("p2p", "laddr", f"tcp://{host}:{p2p}"), ("p2p", "persistent_peers", peers),
            ("p2p", "addr_book_strict", False), ("p2p", "allow_duplicate_ip", True), ("p2p", "pex", False),
            ("p2p", "send_rate", 100 << 20), ("p2p", "recv_rate", 100 << 20),
            ("p2p", "flush_throttle_timeout", "10ms"),
            ("mempool", "size", 100000), ("mempool", "max_txs_bytes", 1 << 30), ("mempool", "cache_size", 200000),
            ("mempool", "max_tx_bytes", p.max_tx_bytes),
            ("consensus", "timeout_propose", _duration(p.timeout_propose)),
            ("consensus", "timeout_propose_delta", _duration(p.timeout_delta)),
            ("consensus", "timeout_prevote", _duration(p.timeout_prevote)),
            ("consensus", "timeout_prevote_delta", _duration(p.timeout_delta)),
            ("consensus", "timeout_precommit", _duration(p.timeout_precommit)),
            ("consensus", "timeout_precommit_delta", _duration(p.timeout_delta)),
            ("consensus", "timeout_commit", _duration(p.timeout_commit)),
            ("consensus", "create_empty_blocks", False),  # empty blocks only every interval (and the app-hash proof block)
            ("consensus", "create_empty_blocks_interval", _duration(p.empty_block_interval)),
            ("consensus", "peer_gossip_sleep_duration", "10ms"),
            ("tx_index", "indexer", "null"),
            ("instrumentation", "prometheus", True), ("instrumentation", "prometheus_listen_addr", f"{host}:{prom}"),
        ]:
            cfg = _set_toml(cfg, section, key, value)
        (cmt / "config" / "config.toml").write_text(cfg)
        (cmt / "config" / "genesis.json").write_text(json.dumps(cmt_genesis, indent=1) + "\n")
        app_cfg = {"name": f"node{i}", "host": host, "abci_port": abci, "api_port": api, "rpc_port": rpc,
                   "p2p_port": p2p, "arbiter_url": arbiter_url,
                   "model": str(Path(student).resolve()) if student else None,
                   "byzantine": (byzantine or {}).get(i, []),
                   "allowed_peers": ids}  # CometBFT node ids kept as peers (filter_peers); add full nodes here
        (home / "app.json").write_text(json.dumps(app_cfg, indent=2) + "\n")
        doc["nodes"].append({"name": f"node{i}", "home": f"node{i}", "address": genesis.validators[i].address,
                             "host": host, "api": f"http://{host}:{api}", "rpc": f"http://127.0.0.1:{rpc}",
                             "peer_port": p2p, "abci_port": abci, "node_id": ids[i],
                             "cometbft_metrics": f"http://{host}:{prom}/metrics"})
    arb = folder / "arbiter"
    arb.mkdir(exist_ok=True)
    arbiter_key.save(arb / "arbiter_key.json")
    genesis.save(arb / "genesis.json")
    (arb / "config.json").write_text(json.dumps({"engine": "cometbft", "host": hosts[0], "port": arbiter_port,
                                                 "model": str(Path(teacher).resolve()) if teacher else None},
                                                indent=2) + "\n")
    client_key.save(folder / "client_key.json")
    genesis.save(folder / "genesis.json")
    (folder / "network.json").write_text(json.dumps(doc, indent=2) + "\n")
    if len(hosts) > 1:
        for h in hosts:
            bundle = folder / "hosts" / h
            bundle.mkdir(parents=True, exist_ok=True)
            mine = [n for n in doc["nodes"] if n["host"] == h]
            for n in mine:
                shutil.copytree(folder / n["home"], bundle / n["home"], dirs_exist_ok=True)
            if h == hosts[0]:
                shutil.copytree(arb, bundle / "arbiter", dirs_exist_ok=True)
            (bundle / "network.json").write_text(json.dumps({**doc, "this_host": h}, indent=2) + "\n")
            shutil.copy2(folder / "genesis.json", bundle / "genesis.json")
    return doc


def load_network(folder: Path) -> dict:
    try:
        return json.loads((Path(folder) / "network.json").read_text())
    except FileNotFoundError:
        raise EdgepocError(f"{folder}: no network.json (run `edgepoc network init --dir {folder}`)") from None


def _pid(pidfile: Path) -> int | None:
    """The pid in `pidfile` if that process is alive (not a zombie) and runs edgepoc."""
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return pid if b"edgepoc" in cmd and state != "Z" else None
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError, IndexError):
        return None


def _alive(pidfile: Path) -> bool:
    """Is the process in `pidfile` still running (whatever it has exec'd so far)?"""
    try:
        pid = int(pidfile.read_text().strip())
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        _reap(pid)
        return state != "Z"
    except (FileNotFoundError, ValueError, IndexError):
        return False


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


def running_pid(folder: Path, name: str) -> int | None:
    """The pid of the member if its process (one this folder started) is running."""
    home, _, role = _member(folder, name)
    return _pid(home / f"{role}.pid")


def start_member(folder: Path, name: str, extra_env: dict[str, str] | None = None) -> int:
    """Start one node (app + cometbft, one process group) or the arbiter; returns its pid."""
    home, args, role = _member(folder, name)
    pidfile = home / f"{role}.pid"
    pid = _pid(pidfile)
    if pid is not None:
        return pid
    log = open(home / f"{role}.log", "ab")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1", **(extra_env or {})}
    # a node starts through `boot` (what `edgepoc node` runs, less the CLI's imports): its API answers
    # /status ("starting") within a fraction of a second, before the application is loaded
    cmd = ["-m", "edgepoc.chain.abci.boot", *args[1:]] if role == "node" else ["-m", "edgepoc", *args]
    proc = subprocess.Popen([sys.executable, *cmd], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True, env=env)
    log.close()
    pidfile.write_text(f"{proc.pid}\n")
    return proc.pid


def stop_member(folder: Path, name: str, kill: bool = False, wait: float = 15.0) -> int | None:
    """Stop one node's process group: SIGTERM, or SIGKILL with `kill` (a crash). Returns the pid it stopped."""
    home, _, role = _member(folder, name)
    pidfile = home / f"{role}.pid"
    pid = _pid(pidfile)
    if pid is None:
        pidfile.unlink(missing_ok=True)
        return None
    try:
        os.killpg(pid, signal.SIGKILL if kill else signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and _group_alive(pid):
        _reap(pid)
        time.sleep(0.05)
    if _group_alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _reap(pid)
    pidfile.unlink(missing_ok=True)
    return pid


def _group_alive(pgid: int) -> bool:
    """Is any process of the group still running (zombies of our own children do not count)?"""
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def local_nodes(folder: Path) -> list[dict]:
    """The nodes whose homes this folder holds (all of them, or one host's bundle's)."""
    return [n for n in load_network(folder)["nodes"] if (Path(folder) / n["home"] / "app.json").exists()]


def has_arbiter(folder: Path) -> bool:
    return (Path(folder) / "arbiter" / "config.json").exists()


def up(folder: Path, env: dict[str, str] | None = None) -> dict[str, int]:
    """Start the arbiter (if this folder holds it) and every node this folder holds (no waiting: see
    `start_members` for the checked start that `network up` does); a taken port raises before any start."""
    names = (["arbiter"] if has_arbiter(folder) else []) + [n["name"] for n in local_nodes(folder)]
    check_ports(folder, [name for name in names if running_pid(folder, name) is None])
    pids = {"arbiter": start_member(folder, "arbiter", env)} if has_arbiter(folder) else {}
    for n in local_nodes(folder):
        pids[n["name"]] = start_member(folder, n["name"], env)
    return pids


def down(folder: Path) -> list[str]:
    names = [n["name"] for n in local_nodes(folder)] + (["arbiter"] if has_arbiter(folder) else [])
    return [name for name in names if stop_member(folder, name)]


def status(folder: Path, timeout: float = 2.0) -> list[dict]:
    """Each node of the network, as its API answers /status (a starting node: its "state" and "phase", no
    height); nodes on other hosts (a bundle) are asked over their API, pid unknown."""
    doc = load_network(folder)
    rows = []
    for n in doc["nodes"]:
        local = (Path(folder) / n["home"] / "app.json").exists()
        pid = _pid(Path(folder) / n["home"] / "node.pid") if local else None
        row: dict[str, Any] = {"name": n["name"], "pid": pid, "api": n["api"]}
        if local and pid is None:
            rows.append(row)
            continue
        got = probe(n["api"], timeout)
        if got is None:
            row["error"] = f"no answer from {n['api']}"
        elif got[0] == 200:
            row.update({k: v for k, v in got[1].items() if k not in ("name", "api")})
            row["pid"] = pid  # a node on another host: its pid there means nothing here
        elif got[1].get("state") == STATE_STARTING:
            row.update(state=STATE_STARTING, phase=got[1].get("phase"), answering_pid=got[1].get("pid"))
        else:
            row["error"] = f"HTTP {got[0]} {got[1].get('error', '')}".strip()
        rows.append(row)
    return rows


def wait_ready(folder: Path, timeout: float = 90.0, names: list[str] | None = None, height: int = 1,
               arbiter: bool = False, in_consensus: bool = True) -> None:
    """Block until the named nodes (default: all) answer /status at `height` or more with CometBFT past block
    sync (it refuses transactions while catching up), and with `arbiter` the arbiter answers; or raise.
    `in_consensus=False`: only until their APIs answer (one host's bundle cannot commit alone)."""
    doc = load_network(folder)
    todo = {n["name"]: n for n in local_nodes(folder) if names is None or n["name"] in names}
    if arbiter and has_arbiter(folder):  # nodes do not need it to start: it loads the teacher (torch), slow on a busy host
        todo["arbiter"] = {"home": "arbiter", "api": doc["arbiter"]["url"], "role": "arbiter"}
    deadline = time.monotonic() + timeout
    while todo and time.monotonic() < deadline:
        for name, n in list(todo.items()):
            if n.get("role") == "arbiter":
                client = HttpClient(n["api"], timeout=1.0)
                try:
                    client.get("/status")
                    del todo[name]
                except EdgepocError:
                    pass
                finally:
                    client.close()
                continue
            if not _alive(Path(folder) / n["home"] / "node.pid"):
                log = (Path(folder) / n["home"] / "node.log")
                tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
                raise EdgepocError(f"{name} exited at start: {tail[0] if tail else 'no log'}")
            client = HttpClient(n["api"], timeout=3.0)
            try:
                st = client.get("/status")
                if not in_consensus or (st["height"] >= height and st.get("catching_up") is False):
                    del todo[name]
            except EdgepocError:
                pass
            finally:
                client.close()
        if todo:
            time.sleep(0.2)
    if todo:
        raise EdgepocError(f"nodes not ready after {timeout:.0f} s: {', '.join(todo)}")


# ---------------------------------------------------------------------------------------------------------
# Starting members truthfully: ports checked first, the answering process checked, consensus waited for,
# a failed start undone.


class StartFailed(EdgepocError):
    """A member did not come up; what this command had started is stopped again."""


def _toml_value(text: str, section: str, key: str) -> str | None:
    current = ""
    for line in text.split("\n"):
        m = re.match(r"^\[([^\]]+)\]\s*$", line)
        if m:
            current = m.group(1)
            continue
        m = re.match(rf"^{re.escape(key)}\s*=\s*(.*?)\s*$", line)
        if m and current == section:
            return m.group(1).strip('"')
    return None


def _split_addr(addr: str) -> tuple[str, int] | None:
    addr = addr.split("://", 1)[-1]
    host, _, port = addr.rpartition(":")
    if not port.isdigit():
        return None
    return (host.strip("[]") or "0.0.0.0"), int(port)


def member_ports(folder: Path, name: str) -> list[tuple[str, str, int]]:
    """(what, host, port) of every port the member listens on: a node's p2p, rpc, abci, api and CometBFT's
    Prometheus port (when on); the arbiter's port."""
    home, _, role = _member(folder, name)
    if role == "arbiter":
        cfg = json.loads((home / "config.json").read_text())
        return [("arbiter", cfg.get("host", HOST), int(cfg["port"]))]
    cfg = json.loads((home / "app.json").read_text())
    out = [("p2p", cfg["host"], int(cfg["p2p_port"])), ("rpc", "127.0.0.1", int(cfg["rpc_port"])),
           ("abci", "127.0.0.1", int(cfg["abci_port"])), ("api", cfg["host"], int(cfg["api_port"]))]
    try:
        toml = (home / "cometbft" / "config" / "config.toml").read_text()
    except OSError:
        return out
    for what, section, key in (("p2p", "p2p", "laddr"), ("rpc", "rpc", "laddr")):
        addr = _split_addr(_toml_value(toml, section, key) or "")
        if addr is not None:  # what cometbft will really bind
            out = [(w, *addr) if w == what else (w, h, p) for w, h, p in out]
    if (_toml_value(toml, "instrumentation", "prometheus") or "").lower() == "true":
        addr = _split_addr(_toml_value(toml, "instrumentation", "prometheus_listen_addr") or "")
        if addr is not None:
            out.append(("prometheus", *addr))
    return out


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 9 and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f[9])
    return inodes


def port_holder(port: int) -> str | None:
    """Who listens on `port` on this machine: "pid 123 (cometbft start --home ...)", or None if that is not
    visible to this user."""
    inodes = {f"socket:[{i}]" for i in _listening_inodes(port)}
    if not inodes:
        return None
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            for fd in (p / "fd").iterdir():
                try:
                    if os.readlink(fd) in inodes:
                        cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                        cmd = re.sub(r"^\S*/", "", " ".join(cmd.split()))  # the program's name, not its folder
                        return f"pid {p.name} ({cmd[:120]})"
                except OSError:
                    continue
        except OSError:
            continue
    return None


def port_problem(host: str, port: int) -> str | None:
    """None if `host:port` can be listened on now (as cometbft and uvicorn do, with SO_REUSEADDR), else why not."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                return f"cannot be used: address {host} is not on this machine (run this folder on its host)"
            if exc.errno == errno.EADDRINUSE:
                holder = port_holder(port)
                return f"is in use by {holder}" if holder else "is in use (by a process this user cannot see)"
            return f"cannot be used: {exc.strerror or exc}"
    return None


def check_ports(folder: Path, names: list[str]) -> None:
    """Raise (before anything starts) naming the first port of `names` that is taken, and by whom."""
    problems = []
    for name in names:
        for what, host, port in member_ports(folder, name):
            why = port_problem(host, port)
            if why is not None:
                problems.append(f"{name}: {what} port {host}:{port} {why}")  # e.g. "... is in use by pid 12 (...)"
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise StartFailed(f"{problems[0]}{more}; nothing was started")


def probe(url: str, timeout: float = 2.0) -> tuple[int, dict] | None:
    """(HTTP status, JSON body) of GET url/status, or None if nothing answers. A starting node answers
    503 with {"state": "starting", "pid", "address", "node_id", "phase"}."""
    import http.client

    hostport = url.split("//", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout)
    try:
        conn.request("GET", "/status")
        r = conn.getresponse()
        raw = r.read()
        try:
            doc = json.loads(raw) if raw else {}
        except ValueError:
            doc = {}
        return r.status, doc if isinstance(doc, dict) else {}
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()


def _error_line(text: str) -> str | None:
    """The last line of a log chunk that says what went wrong."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    patterns = (r"^(error|panic)\b", r"^E\[", r" (ERROR|CRITICAL) ", r"address already in use", r"^\w*(Error|Exception):")
    for ln in reversed(lines):
        if "cometbft exited with code" in ln:
            continue  # the node's echo of its child's death: the reason is in cometbft.log
        if any(re.search(p, ln, re.I if p.startswith("^(error") else 0) for p in patterns):
            return ln[:300]
    return None


def last_error(home: Path, offsets: dict[str, int] | None = None) -> str:
    """The last error line written since `offsets` (log name -> size before the start) to the member's logs:
    the node's own first (its `error: ...` line), then cometbft's (e.g. "bind: address already in use")."""
    offsets = offsets or {}
    found = {}
    for log in ("node.log", "arbiter.log", "cometbft.log"):
        path = Path(home) / log
        if not path.exists():
            continue
        with open(path, "rb") as f:
            f.seek(offsets.get(log, 0))
            text = f.read().decode(errors="replace")
        line = _error_line(text)
        if line is not None:
            found[log] = line
        elif text.strip() and log != "cometbft.log":
            found.setdefault("tail", text.strip().splitlines()[-1][:300])
    node_line = found.get("node.log") or found.get("arbiter.log")
    comet_line = found.get("cometbft.log")
    if node_line and comet_line and ("cometbft" in node_line or "exited" in node_line):
        return f"{comet_line} (cometbft.log)"
    if node_line:
        return node_line
    if comet_line:
        return f"{comet_line} (cometbft.log)"
    return found.get("tail") or "no error in its log"


def _log_sizes(home: Path) -> dict[str, int]:
    out = {}
    for log in ("node.log", "arbiter.log", "cometbft.log"):
        try:
            out[log] = (Path(home) / log).stat().st_size
        except OSError:
            out[log] = 0
    return out


def _network_tip(doc: dict, exclude: set[str], timeout: float = 1.0) -> int:
    """The highest height the other nodes of the network report (0 if none answers)."""
    tip = 0
    for n in doc["nodes"]:
        if n["name"] in exclude:
            continue
        got = probe(n["api"], timeout)
        if got is not None and got[0] == 200 and isinstance(got[1].get("height"), int):
            tip = max(tip, got[1]["height"])
    return tip


class Progress:
    """One status line on stderr: rewritten in place on a terminal, a line per change of phase otherwise."""

    def __init__(self, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.last: dict[str, str] = {}
        self.t0 = time.monotonic()

    def show(self, states: dict[str, str]) -> None:
        el = time.monotonic() - self.t0
        if self.tty:
            width = shutil.get_terminal_size((100, 20)).columns
            line = f"[{el:5.1f} s] " + " | ".join(f"{k}: {v}" for k, v in states.items())
            self.stream.write("\r" + line[:width - 1] + "\x1b[K")
            self.stream.flush()
            return
        for k, v in states.items():
            phase = re.sub(r"[\d.]+", "#", v)  # a new line when the phase changes, not the numbers in it
            if self.last.get(k) != phase:
                self.last[k] = phase
                self.stream.write(f"  [{el:5.1f} s] {k}: {v}\n")
                self.stream.flush()

    def done(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def start_members(folder: Path, names: list[str], timeout: float = 120.0, consensus: bool = True,
                  env: dict[str, str] | None = None, progress: Progress | None = None) -> dict[str, dict]:
    """Start the named members (nodes and/or "arbiter") and wait until each is up; undo on failure.

    Before starting anything: every port of every member not already running must be free (else
    StartFailed naming the port and its holder). Then each started node must be answered on its API by
    the process just started (pid, validator address and node id as network.json says), and, with
    `consensus`, be past block sync at the network's tip (the other nodes' highest height when it started,
    at least 1); the arbiter must answer with its key's address. A member that exits, an API answered by
    another process, or a timeout stops every member this call started (nothing else) and raises
    StartFailed with the reason (the last error line of the failing member's logs).

    Returns name -> {"pid", "state", "height", "api_s" (seconds until its API answered), "ready_s",
    "already" (it was running before: not started, not stopped)}.
    """
    folder = Path(folder)
    doc = load_network(folder)
    nodes = {n["name"]: n for n in doc["nodes"]}
    result: dict[str, dict] = {}
    todo = []
    for name in names:
        pid = running_pid(folder, name)
        if pid is not None:
            result[name] = {"pid": pid, "already": True}
        else:
            todo.append(name)
    check_ports(folder, todo)
    progress = progress or Progress(open(os.devnull, "w"))
    t0 = time.monotonic()
    offsets = {name: _log_sizes(_member(folder, name)[0]) for name in todo}
    started: dict[str, int] = {}

    def undo() -> list[str]:
        progress.done()
        return [name for name in reversed(list(started)) if stop_member(folder, name, wait=10.0)]
    try:
        for name in todo:
            started[name] = start_member(folder, name, env)
            result[name] = {"pid": started[name], "already": False}
        target = max(1, _network_tip(doc, set(todo))) if consensus else 0
        _wait_members(folder, doc, nodes, result, started, offsets, target, consensus, timeout, t0, progress)
    except StartFailed as exc:
        stopped = undo()
        raise StartFailed(f"{exc}; stopped what this command started ({', '.join(reversed(stopped))})"
                          if stopped else str(exc)) from None
    except BaseException:
        undo()
        raise
    progress.done()
    return result


def others_answer(folder: Path, names: list[str]) -> bool:
    """Does any node of the network outside `names` answer its API as running (so there is a chain to join)?"""
    for n in load_network(folder)["nodes"]:
        if n["name"] not in names:
            got = probe(n["api"], 1.0)
            if got is not None and got[0] == 200:
                return True
    return False


def _arbiter_address(folder: Path) -> str | None:
    try:
        return SigningKey.load(Path(folder) / "arbiter" / "arbiter_key.json").address
    except (OSError, ValueError, EdgepocError, KeyError):
        return None


def _wait_members(folder: Path, doc: dict, nodes: dict, result: dict, started: dict[str, int],
                  offsets: dict, target: int, consensus: bool, timeout: float, t0: float, progress: Progress) -> None:
    waiting = dict(started)
    for name, r in result.items():  # already running: still checked that it answers as itself
        if r.get("already"):
            waiting[name] = r["pid"]
    states = {name: STATE_STARTING for name in waiting}
    arbiter_addr = _arbiter_address(folder) if "arbiter" in waiting else None
    while True:
        for name in list(waiting):
            pid = waiting[name]
            home, _, role = _member(folder, name)
            if name in started and not _alive(home / f"{role}.pid"):
                raise StartFailed(f"{name} exited at start: {last_error(home, offsets.get(name))}")
            url = doc["arbiter"]["url"] if name == "arbiter" else nodes[name]["api"]
            got = probe(url, timeout=2.0)
            if got is None:
                states[name] = f"{STATE_STARTING} (no answer yet)"
                continue
            code, st = got
            r = result[name]
            r.setdefault("api_s", time.monotonic() - t0)
            if name == "arbiter":
                if code == 200 and arbiter_addr and st.get("address") not in (None, arbiter_addr):
                    raise StartFailed(f"arbiter: {url} is answered by another arbiter (address "
                                      f"{str(st.get('address'))[:12]}, not this network's)")
                if code == 200:
                    states[name] = "answering"
                    r.update(state="answering", ready_s=time.monotonic() - t0)
                    del waiting[name]
                continue
            want_addr, want_id = nodes[name].get("address"), nodes[name].get("node_id")
            if (st.get("pid") is not None and st.get("pid") != pid) or (
                    st.get("address") is not None and st.get("address") != want_addr) or (
                    st.get("node_id") and want_id and st.get("node_id") != want_id):
                raise StartFailed(
                    f"{name}: its API {url} is answered by another process (pid {st.get('pid')}, address "
                    f"{str(st.get('address'))[:12]}, node id {str(st.get('node_id'))[:12]}), not the node "
                    f"{'just started' if name in started else 'running'} (pid {pid}, address {str(want_addr)[:12]})")
            if code != 200:
                states[name] = f"{STATE_STARTING} ({st.get('phase') or f'HTTP {code}'})"
                continue
            h, catching = st.get("height"), st.get("catching_up")
            r.update(height=h)
            if catching is None:
                states[name] = f"{STATE_STARTING} (waiting for cometbft)"
            elif not consensus:
                states[name] = f"running at height {h} (not waiting for consensus)"
                r.update(state="running", ready_s=time.monotonic() - t0)
                del waiting[name]
            elif catching or not isinstance(h, int) or h < target:
                states[name] = f"{STATE_CATCHING_UP} (height {h}, tip {target})"
            else:
                states[name] = f"{STATE_IN_CONSENSUS} at height {h}"
                r.update(state=STATE_IN_CONSENSUS, ready_s=time.monotonic() - t0)
                del waiting[name]
        progress.show(states)
        if not waiting:
            return
        if time.monotonic() - t0 > timeout:
            name = next(iter(waiting))
            raise StartFailed(f"{name} not ready after {timeout:.0f} s: {states[name]}"
                              + (f"; last error: {last_error(_member(folder, name)[0], offsets.get(name))}"
                                 if name in started else "")
                              + " (raise --wait for a long catch-up)")
        time.sleep(0.2)
