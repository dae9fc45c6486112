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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from edgepoc.chain.abci.app import voting_powers
from edgepoc.chain import consensus as rules
from edgepoc.chain.abci.boot import node_id
from edgepoc.chain.abci.node import (DAMAGED_DB_HINT, AppConfig, cometbft_binary, cometbft_said, damaged_db, disk_free,
                                    missing_file, unwritable)
from edgepoc.chain.crypto import SigningKey, address_of
from edgepoc.chain.genesis import MAX_VALIDATORS, ConsensusParams, Genesis, make_validators
from edgepoc.chain.httpapi import HttpClient
from edgepoc.errors import EdgepocError, InputError, ctrl_c_held

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

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


def cometbft_config(text: str, p: ConsensusParams, *, moniker: str, abci_port: int, rpc_port: int, p2p_laddr: str,
                    peers: str, prometheus: str | None, external_address: str = "",
                    allow_duplicate_ip: bool = True) -> str:
    """A node's CometBFT config.toml (`text`: the one `cometbft init` wrote) set as every edgepoc node runs it:
    ABCI and RPC on loopback, p2p on `p2p_laddr` (advertised as `external_address` when given), the
    persistent peers, filter_peers on, the consensus timeouts and block sizes from genesis' parameters,
    CometBFT's Prometheus metrics on `prometheus` ("host:port"; None: off). `network init` and `network join`
    both write it through here."""
    for section, key, value in [
        # ABCI and RPC stay on loopback: cometbft and its app share a machine, and neither may be
        # reachable from outside (anyone on the ABCI port could call FinalizeBlock); p2p and the API face out.
        ("", "moniker", moniker), ("", "proxy_app", f"127.0.0.1:{abci_port}"), ("", "abci", "grpc"),
        ("", "log_level", "info"),
        # only the genesis validators' nodes (app.json's allowed_peers) are kept as peers: the app answers
        # CometBFT's /p2p/filter queries (edgepoc.chain.abci.peers)
        ("", "filter_peers", True),
        ("rpc", "laddr", f"tcp://127.0.0.1:{rpc_port}"), ("rpc", "max_body_bytes", 2 * p.max_tx_bytes + (64 << 10)),
        ("rpc", "max_open_connections", 2000),
        ("p2p", "laddr", f"tcp://{p2p_laddr}"), ("p2p", "external_address", external_address),
        ("p2p", "persistent_peers", peers),
        ("p2p", "addr_book_strict", False), ("p2p", "allow_duplicate_ip", allow_duplicate_ip), ("p2p", "pex", False),
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
        ("instrumentation", "prometheus", prometheus is not None),
        ("instrumentation", "prometheus_listen_addr", prometheus or ":26660"),
    ]:
        text = _set_toml(text, section, key, value)
    return text


def _consensus_params(params: dict[str, Any] | None, capacity=None, workload=None) -> ConsensusParams:
    """The defaults, then the client-input bounds derived from `workload` on `capacity` (if given), then the
    explicit `params`, which win."""
    from edgepoc.chain.genesis import derive_bounds

    derived = derive_bounds(capacity, workload) if workload is not None else {}
    return ConsensusParams.from_dict({**asdict(ConsensusParams()), **derived, **(params or {})})


def cometbft_genesis(genesis: Genesis, network: dict | None = None) -> dict:
    """CometBFT's genesis.json for `genesis` (the application's genesis is its app_state). `network` (the
    providers' advertised addresses and node ids, the arbiter's URL: what `network join` needs) goes beside
    it in app_state, outside the application's genesis and its hash."""
    p = genesis.params
    powers = voting_powers(p, rules.initial_scores(genesis))
    app_state = genesis.to_dict()
    if network is not None:
        app_state["network"] = network
    return {
        "genesis_time": _rfc3339(genesis.genesis_time), "chain_id": genesis.chain_id, "initial_height": "1",
        "consensus_params": {
            "block": {"max_bytes": str(p.max_proposal_bytes + (64 << 10)), "max_gas": "-1"},
            "evidence": {"max_age_num_blocks": "100000", "max_age_duration": "172800000000000", "max_bytes": "1048576"},
            "validator": {"pub_key_types": ["ed25519"]}, "version": {"app": "1"},
            "synchrony": {"precision": "505000000", "message_delay": "15000000000"},
            "feature": {"vote_extensions_enable_height": str(p.vote_extensions_height), "pbts_enable_height": "0"}},
        "validators": [{"address": v.address.upper(),
                        "pub_key": {"type": "tendermint/PubKeyEd25519",
                                    "value": base64.b64encode(bytes.fromhex(v.public_key)).decode()},
                        "power": str(powers[i]), "name": v.name} for i, v in enumerate(genesis.validators)],
        "app_hash": "", "app_state": app_state}


_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def _check_hosts(hosts: list[str]) -> list[str]:
    """`--hosts`: IP addresses (or DNS names), no empty entry, no repeat; a dotted quad that is not an IPv4
    address (999.1.1.1) is a typo, not a name."""
    import ipaddress

    seen = set()
    for i, h in enumerate(hosts):
        if not h:
            raise InputError(f"--hosts: entry {i + 1} is empty")
        try:
            ipaddress.ip_address(h)
        except ValueError:
            if re.fullmatch(r"[0-9.]+", h) or not _HOSTNAME.match(h):
                raise InputError(f"--hosts: {h!r} is not an IP address or a host name") from None
        if h in seen:
            raise InputError(f"--hosts: {h} is listed twice (node i runs on host i mod H; give each machine once)")
        seen.add(h)
    return list(hosts)


def init_network(folder: Path, nodes: int = 4, base_port: int = 26600, seed: int = 0,
                 params: dict[str, Any] | None = None, chain_id: str = "edgepoc-local",
                 byzantine: dict[int, list[str]] | None = None, student: str | None = None,
                 teacher: str | None = None, hosts: list[str] | None = None,
                 workload: ArrayLike | None = None) -> dict:
    """Write fresh keys, the genesis and every node's configuration; `base_port=0` picks free ports.

    With `workload` (tasks x resources of demand), the client-input bounds are derived from it and the
    providers (`genesis.derive_bounds`); explicit `params` still win.

    With `hosts`, node i runs on hosts[i % len(hosts)] (explicit IPs everywhere) and hosts/<host>/ holds
    the bundle to copy to that machine; ports then repeat per host from `base_port`.
    """
    folder = Path(folder)
    if not 1 <= nodes <= MAX_VALIDATORS:
        raise InputError(f"--nodes: must be 1..{MAX_VALIDATORS}, got {nodes}")
    if (folder / "network.json").exists():
        raise EdgepocError(f"{folder} already holds a network; remove it or pick another --dir")
    hosts = _check_hosts(hosts) if hosts else [HOST]
    if len(hosts) > nodes:  # host i runs node i: a host past the last node would get a bundle with no node in it
        raise InputError(f"--hosts: {len(hosts)} hosts for {nodes} nodes: {', '.join(hosts[nodes:])} would run "
                         "nothing (give one host per machine that runs a node, or more --nodes)")
    top = base_port + PROMETHEUS_PORT_OFFSET + nodes  # the highest port a host's members use
    if base_port != 0 and not (1 <= base_port and top <= 65535):
        raise InputError(f"--base-port: must be 0 (free ports) or 1..{65535 - PROMETHEUS_PORT_OFFSET - nodes} "
                         f"(this network uses ports up to base + {PROMETHEUS_PORT_OFFSET + nodes}), got {base_port}")
    binary = cometbft_binary()
    p = _consensus_params(params)
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
        ids.append(node_id(cmt))
    arbiter_key, client_key = SigningKey.generate(), SigningKey.generate()
    genesis_time = float(int(time.time()))
    validators = make_validators(pubkeys, seed)
    if workload is not None:  # the bounds depend on the providers' capacities, known only now
        p = _consensus_params(params, [v.capacity for v in validators], workload)
    genesis = Genesis(chain_id, genesis_time, validators, arbiter_key.public_hex, p)
    genesis = Genesis.from_dict(genesis.to_dict())  # validates
    cmt_genesis = cometbft_genesis(genesis)
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
        cfg = cometbft_config(cfg, p, moniker=f"node{i}", abci_port=abci, rpc_port=rpc, p2p_laddr=f"{host}:{p2p}",
                              peers=peers, prometheus=f"{host}:{prom}")
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
    """network.json of `folder`, checked for what every command reads: the nodes' name, api and home."""
    path = Path(folder) / "network.json"
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise EdgepocError(f"{folder}: no network.json (run `edgepoc network init --dir {folder}`)") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise EdgepocError(f"{path}: not readable JSON ({e})") from None
    nodes = doc.get("nodes") if isinstance(doc, dict) else None
    if not isinstance(nodes, list) or not nodes:
        raise EdgepocError(f"{path}: nodes: expected a non-empty list of nodes (written by `edgepoc network init`)")
    for i, n in enumerate(nodes):
        if not isinstance(n, dict):
            raise EdgepocError(f"{path}: nodes[{i}]: expected an object, got {type(n).__name__}")
        for key in ("name", "api"):
            if not isinstance(n.get(key), str) or not n[key]:
                raise EdgepocError(f"{path}: nodes[{i}].{key}: expected a non-empty string, got {n.get(key)!r}")
        if n.get("home") is not None and not isinstance(n["home"], str):
            raise EdgepocError(f"{path}: nodes[{i}].home: expected a folder name or null, got {n['home']!r}")
    return doc


def _pid(pidfile: Path) -> int | None:
    """The pid in `pidfile` if that process is alive (not a zombie) and runs edgepoc."""
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        # a process still inside its exec (just spawned: Popen returns then) shows no arguments for a moment; read
        # as "not ours", a stop right after a start (a Ctrl-C during `network up`) left that member running
        for _ in range(100):
            if cmd:
                break
            time.sleep(0.01)
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


def check_member(folder: Path, name: str) -> None:
    """InputError unless `name` is the arbiter or a node of `folder` that runs on this machine."""
    _member(folder, name)


def _member(folder: Path, name: str) -> tuple[Path, list[str], str]:
    doc = load_network(folder)
    if name == "arbiter":
        where = (doc.get("arbiter") or {}).get("home", "arbiter")
        if where is None:
            raise InputError(f"arbiter: runs on another machine ({doc['arbiter'].get('url')}); start or stop it there")
        home = Path(folder) / where
        return home, ["arbiter", "--home", str(home)], "arbiter"
    for n in doc["nodes"]:
        if n["name"] == name:
            if n.get("home") is None:
                raise InputError(f"NODE: {name} runs on another machine ({n.get('host')}); start or stop it there")
            home = Path(folder) / n["home"]
            return home, ["node", "--home", str(home)], "node"
    raise InputError(f"NODE: no node named {name!r} in {folder} (have {', '.join(n['name'] for n in doc['nodes'])})")


def running_pid(folder: Path, name: str) -> int | None:
    """The pid of the member if its process (one this folder started) is running."""
    home, _, role = _member(folder, name)
    return _pid(home / f"{role}.pid")


def start_member(folder: Path, name: str, extra_env: dict[str, str] | None = None) -> int:
    """Start one node (app + cometbft, one process group) or the arbiter; returns its pid. A Ctrl-C during the start
    takes effect once the pid file is written, so `network stop` / `down` can always find what was started."""
    home, args, role = _member(folder, name)
    pidfile = home / f"{role}.pid"
    pid = _pid(pidfile)
    if pid is not None:
        return pid
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1", **(extra_env or {})}
    # a node starts through `boot` (what `edgepoc node` runs, less the CLI's imports): its API answers
    # /status ("starting") within a fraction of a second, before the application is loaded
    cmd = ["-m", "edgepoc.chain.abci.boot", *args[1:]] if role == "node" else ["-m", "edgepoc", *args]
    with ctrl_c_held():
        with open(home / f"{role}.log", "ab") as log:
            proc = subprocess.Popen([sys.executable, *cmd], stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True, env=env)
        pidfile.write_text(f"{proc.pid}\n")
    return proc.pid


STOP_GRACE = 15.0  # seconds a member has to obey SIGTERM before SIGKILL follows


@dataclass(frozen=True)
class Stopped:
    """How a member stopped: its pid, and whether SIGKILL had to follow an unanswered SIGTERM."""
    pid: int
    forced: bool = False


def stop_member(folder: Path, name: str, kill: bool = False, wait: float = STOP_GRACE) -> Stopped | None:
    """Stop one node's process group: SIGTERM, or SIGKILL with `kill` (a crash); SIGKILL too if the SIGTERM is
    not obeyed within `wait` seconds. None if it was not running."""
    home, _, role = _member(folder, name)
    pidfile = home / f"{role}.pid"
    pid = _pid(pidfile)
    if pid is None:
        _forget(pidfile)
        return None
    try:
        os.killpg(pid, signal.SIGKILL if kill else signal.SIGTERM)
    except ProcessLookupError:
        pass
    if not kill:
        # a paused member (SIGSTOP, a debugger, `docker pause`) would hold its SIGTERM until the wait ran out and
        # be killed without a clean shutdown: continue it, and its cometbft and worker, which have sessions of
        # their own, so that the node can stop them as it ends
        for target in (-pid, *_processes_of(home)):
            try:
                os.kill(target, signal.SIGCONT)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and _group_alive(pid):
        _reap(pid)
        time.sleep(0.05)
    forced = False
    if _group_alive(pid):
        forced = not kill
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _reap(pid)
    # a node's cometbft and worker run in sessions of their own: the node stops them as it ends, or, killed, their
    # death signal does; either way they are gone before this returns, so the member's ports are free
    deadline = time.monotonic() + 5.0
    while (left := _processes_of(home)) and time.monotonic() < deadline:
        time.sleep(0.05)
    for child in left:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _forget(pidfile)
    return Stopped(pid, forced)


def _forget(pidfile: Path) -> None:
    """Remove a pid file if it can be: on a disk remounted read-only even a missing file's unlink fails (EROFS),
    and a stale pid file is harmless (`_pid` checks the process it names)."""
    try:
        pidfile.unlink(missing_ok=True)
    except OSError:
        pass


def _processes_of(home: Path) -> list[int]:
    """A member's own children still running: its `cometbft start --home HOME/cometbft` and its worker
    (`-m edgepoc.chain.abci.worker --home HOME`), found by those arguments (nothing else that names the folder)."""
    home_s = str(home.resolve())
    mine = ([b"start", b"--home", f"{home_s}/cometbft".encode()],
            [b"-m", b"edgepoc.chain.abci.worker", b"--home", home_s.encode()])
    found = []
    for p, _ in _running():
        try:
            args = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(args[i:i + len(m)] == m for m in mine for i in range(len(args))):
            found.append(int(p.name))
    return found


def _group_alive(pgid: int) -> bool:
    """Is any process of the group still running (zombies of our own children do not count)?"""
    return any(int(fields[2]) == pgid for _, fields in _running())


def _running() -> Iterator[tuple[Path, list[str]]]:
    """(/proc/PID, the fields of its stat after the command name) of every process but zombies."""
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):  # gone meanwhile
            continue
        if fields[0] != "Z":
            yield p, fields


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def local_nodes(folder: Path) -> list[dict]:
    """The nodes whose homes this folder holds (all of them, or one host's bundle's)."""
    return [n for n in load_network(folder)["nodes"]
            if n.get("home") is not None and (Path(folder) / n["home"] / "app.json").exists()]


def missing_homes(folder: Path) -> list[str]:
    """Nodes network.json says this folder holds whose home has no app.json: moved or deleted. `local_nodes`
    leaves them out, as it leaves out other machines' nodes, so `up` must ask. Another machine's node has no
    home (a provider's network) or, in one host's share of an `init --hosts` network, another `host`."""
    doc = load_network(folder)
    here = doc.get("this_host")
    return [n["name"] for n in doc["nodes"]
            if n.get("home") is not None and (here is None or n.get("host") == here)
            and not (Path(folder) / n["home"] / "app.json").exists()]


def arbiter_home(folder: Path) -> Path | None:
    """The arbiter's home if this folder holds it (network.json's arbiter "home"; "arbiter" by default)."""
    try:
        where = (load_network(folder).get("arbiter") or {}).get("home", "arbiter")
    except EdgepocError:
        where = "arbiter"
    return None if where is None else Path(folder) / where


def has_arbiter(folder: Path) -> bool:
    home = arbiter_home(folder)
    return home is not None and (home / "config.json").exists()


def up(folder: Path, env: dict[str, str] | None = None) -> dict[str, int]:
    """Start the arbiter (if this folder holds it) and every node this folder holds (no waiting: see
    `start_members` for the checked start that `network up` does); a taken port raises before any start."""
    names = (["arbiter"] if has_arbiter(folder) else []) + [n["name"] for n in local_nodes(folder)]
    check_startable(folder, [name for name in names if running_pid(folder, name) is None])
    pids = {"arbiter": start_member(folder, "arbiter", env)} if has_arbiter(folder) else {}
    for n in local_nodes(folder):
        pids[n["name"]] = start_member(folder, n["name"], env)
    return pids


def stop_members(folder: Path, names: list[str], wait: float = STOP_GRACE) -> list[str]:
    """`stop_member` for each of `names` at once, each in its own thread; the names of those that were running, in
    the order given. One after another, each waited out before the next got its SIGTERM, a stop took about a second
    per member (a node flushes its store and stops its cometbft and worker): `network down` 5 s for 4 nodes and
    the arbiter, and one member slow to end held every later one running."""
    if not names:
        return []
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        stopped = list(pool.map(lambda name: stop_member(folder, name, wait=wait), names))
    return [name for name, s in zip(names, stopped) if s]


def down(folder: Path) -> list[str]:
    """Stop every member this folder holds; the names of those that were running, in network.json's order."""
    return stop_members(folder, [n["name"] for n in local_nodes(folder)] + (["arbiter"] if has_arbiter(folder) else []))


def status(folder: Path, timeout: float = 2.0) -> list[dict]:
    """Each node of the network, as its API answers /status (a starting node: its "state" and "phase", no
    height); nodes on other hosts (a bundle) are asked over their API, pid unknown."""
    doc = load_network(folder)
    rows = []
    members = []
    for n in doc["nodes"]:
        local = n.get("home") is not None and (Path(folder) / n["home"] / "app.json").exists()
        members.append((n, local, _pid(Path(folder) / n["home"] / "node.pid") if local else None))
    asked = [n["api"] for n, local, pid in members if not (local and pid is None)]
    # asked at once: a paused node costs the command one timeout, not one per paused node
    with ThreadPoolExecutor(max_workers=max(1, min(16, len(asked)))) as pool:
        answers = dict(zip(asked, pool.map(lambda url: probe(url, timeout), asked)))
    for n, local, pid in members:
        row: dict[str, Any] = {"name": n["name"], "pid": pid, "api": n["api"]}
        if local and pid is None:
            row["disk_free_bytes"] = disk_free(Path(folder) / n["home"])  # a full disk is one reason it stopped
            row["unwritable"] = unwritable(Path(folder) / n["home"])  # a disk remounted read-only is another
            rows.append(row)
            continue
        got = answers[n["api"]]
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
        from edgepoc.chain.abci.arbiter import arbiter_config

        cfg = arbiter_config(home)
        return [("arbiter", cfg["host"], cfg["port"])]
    cfg = AppConfig.load(home)  # one line naming what is wrong with a damaged app.json
    out = [("p2p", cfg.host, int(cfg.p2p_port)), ("rpc", "127.0.0.1", int(cfg.rpc_port)),
           ("abci", "127.0.0.1", int(cfg.abci_port)), ("api", cfg.host, int(cfg.api_port))]
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


def check_ports(folder: Path, names: list[str], settle: float = 10.0) -> None:
    """Raise (before anything starts) naming the first port of `names` that is taken, and by whom.

    A port in use by no process we can see is often a socket of a process that was just killed and is still
    being torn down (seen right after a SIGKILL under load): it is checked again for up to `settle` seconds."""
    problems = []
    deadline = time.monotonic() + settle
    for name in names:
        for what, host, port in member_ports(folder, name):
            why = port_problem(host, port)
            while why is not None and "cannot see" in why and time.monotonic() < deadline:
                time.sleep(0.25)
                why = port_problem(host, port)
            if why is not None:
                problems.append(f"{name}: {what} port {host}:{port} {why}")  # e.g. "... is in use by pid 12 (...)"
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise StartFailed(f"{problems[0]}{more}; nothing was started")


MIN_START_FREE = 64 << 20  # bytes a member's disk must have free to start: cometbft's WAL and blocks, the store


def check_startable(folder: Path, names: list[str]) -> None:
    """Before anything starts (`up`, `start_members`): every home there, every port of `names` free, every disk
    with room."""
    for name in names:
        home = _member(folder, name)[0]
        own = home / ("config.json" if name == "arbiter" else "app.json")
        if not own.exists():  # a disk not mounted, a file lost: the member's process would die at once
            raise StartFailed(f"{name}: {missing_file(home, own)}; nothing was started")
    check_ports(folder, names)
    check_disks(folder, names)


def check_disks(folder: Path, names: list[str]) -> None:
    """Raise (before anything starts) naming the first member whose disk is (nearly) full or cannot be written:
    started there, cometbft fails its first write and dies, and with its log on the same disk nothing says why."""
    for name in names:
        home = _member(folder, name)[0]
        if (why := unwritable(home)) is not None:
            raise StartFailed(f"{name}: {why}; nothing was started")
        free = disk_free(home)
        if free is not None and free < MIN_START_FREE:
            raise StartFailed(f"{name}: {free / (1 << 20):.1f} MiB free on the disk of {home} (a member needs at "
                              f"least {MIN_START_FREE >> 20} MiB to start); free some space; nothing was started")


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


def _fatal_line(text: str) -> str | None:
    """CometBFT's last words when it refuses to start: a bare line after its shutdown logs (e.g. "open
    .../priv_validator_state.json: no such file or directory"), not a log record (`I[...]`, `E[...]`) nor a line of
    its databases' (`2026/11/29 21:05:44 [JOB 1] ...`)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines or re.match(r"^[DIWE]\[|^\d{4}/\d\d/\d\d ", lines[-1]):
        return None
    panics = [i for i, ln in enumerate(lines) if ln.startswith("panic: ")]
    if panics and re.search(r"\.go:\d+|^main\.main\(\)|^goroutine \d+", lines[-1]):
        # a Go crash ends in its stack trace: the reason is the panic line, the place its first frame outside the runtime
        i = panics[-1]
        frame = next((ln.split("(", 1)[0] for ln in lines[i + 1:] if re.match(r"^[\w./-]+\.[\w]+\(", ln)
                      and not ln.startswith(("runtime.", "panic("))), None)
        return (lines[i] + (f" in {frame.rsplit('/', 1)[-1]}" if frame else ""))[:300]
    return lines[-1][:300]


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
            f.seek(_still_at(f, offsets.get(log, 0)))
            text = f.read().decode(errors="replace")
        line = _error_line(text)
        if log == "cometbft.log":
            line = _fatal_line(text) or line
        if line is not None:
            found[log] = line
        elif text.strip() and log != "cometbft.log":
            found.setdefault("tail", text.strip().splitlines()[-1][:300])
    node_line = found.get("node.log") or found.get("arbiter.log")
    comet_line = found.get("cometbft.log")
    if comet_line:
        hint = DAMAGED_DB_HINT if damaged_db(comet_line) else next(
            (h for pattern, h in COMETBFT_HINTS if pattern in comet_line), None)
        comet_line = f"{comet_line} (cometbft.log" + (f"; {hint})" if hint else ")")
    if node_line and comet_line and ("cometbft" in node_line or "exited" in node_line):
        return comet_line
    return node_line or comet_line or found.get("tail") or "no error in its log"


_SIGN_STATE_HINT = (
    "it is the guard against signing twice at one height: restore it from a backup, or, with none, write "
    "{\"height\": \"H\", \"round\": 0, \"step\": 0} there with H the network's height (`network status`): the node "
    "then signs nothing at a height it may have signed")

# CometBFT's start-up failures whose own words do not say what to do, and what to do (a damaged database:
# `damaged_db`, DAMAGED_DB_HINT).
COMETBFT_HINTS = (
    ("AppHash does not match AppHash after replay",
     "cometbft's data and the application's store disagree: if cometbft's data was reset, move data/app.sqlite "
     "aside too and start again, and the node syncs both from its peers"),
    ("priv_validator_state.json: no such file", _SIGN_STATE_HINT),
    ("Error reading PrivValidator state", _SIGN_STATE_HINT),  # there but damaged
    ("is higher than core",  # "app block height (H) is higher than core (h)": cometbft's data restored from an older backup
     "cometbft's data is older than the application's store (restored from an older backup?): move data/app.sqlite* "
     "aside too and start again, and the node syncs both from its peers"),
)


def _still_at(log: Any, pos: int) -> int:
    """`pos`, a byte offset taken earlier in the open `log`, or 0 if the file is shorter now: rotated since
    (`node.relay_log`), so what came after `pos` is the new file from its start."""
    return pos if pos <= os.fstat(log.fileno()).st_size else 0


def _damaged_db_error(path: Path, pos: int) -> tuple[str | None, int]:
    """(what cometbft said of its damaged database, if it said so in `path` past byte `pos`; the new position)."""
    try:
        with open(path, "rb") as f:
            pos = _still_at(f, pos)
            f.seek(pos)
            chunk = f.read(8 << 20)
    except OSError:
        return None, pos
    # a line cut at the chunk's end is read again next time (the position stops at its start), unless it fills the chunk
    cut = chunk.rfind(b"\n") + 1 or len(chunk)
    text = chunk[:cut].decode(errors="replace")
    found = next((ln for ln in reversed(text.splitlines()) if damaged_db(ln)), None)
    if found is None:
        return None, pos + cut
    return cometbft_said(found), pos + cut


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
    check_startable(folder, todo)
    progress = progress or Progress(open(os.devnull, "w"))
    t0 = time.monotonic()
    offsets = {name: _log_sizes(_member(folder, name)[0]) for name in todo}
    started: dict[str, int] = {}

    def undo() -> list[str]:
        progress.done()
        return stop_members(folder, list(reversed(started)), wait=10.0)
    try:
        for name in todo:
            with ctrl_c_held():  # started and recorded as one step: undo() stops everything that runs
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
        return SigningKey.load(arbiter_home(folder) / "arbiter_key.json").address
    except (OSError, ValueError, EdgepocError, KeyError, TypeError):
        return None


def _wait_members(folder: Path, doc: dict, nodes: dict, result: dict, started: dict[str, int],
                  offsets: dict, target: int, consensus: bool, timeout: float, t0: float, progress: Progress) -> None:
    waiting = dict(started)
    for name, r in result.items():  # already running: still checked that it answers as itself
        if r.get("already"):
            waiting[name] = r["pid"]
    states = {name: STATE_STARTING for name in waiting}
    arbiter_addr = _arbiter_address(folder) if "arbiter" in waiting else None
    comet_pos = {name: offsets.get(name, {}).get("cometbft.log", 0) for name in started}
    while True:
        for name in list(waiting):
            pid = waiting[name]
            home, _, role = _member(folder, name)
            if name in started and not _alive(home / f"{role}.pid"):
                raise StartFailed(f"{name} exited at start: {last_error(home, offsets.get(name))}")
            if name in started and role == "node":
                said, comet_pos[name] = _damaged_db_error(home / "cometbft.log", comet_pos[name])
                if said:
                    raise StartFailed(f"{name}: {said} (cometbft.log; {DAMAGED_DB_HINT})")
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
            other_pid = st.get("pid") is not None and st.get("pid") != pid
            other_keys = (st.get("address") is not None and st.get("address") != want_addr) or (
                bool(st.get("node_id")) and bool(want_id) and st.get("node_id") != want_id)
            if other_keys and st.get("pid") == pid:
                raise StartFailed(  # the process is ours, its key files are not the node's
                    f"{name}: its keys are not the ones this network names (address {str(st.get('address'))[:12]}, "
                    f"node id {str(st.get('node_id'))[:12]}; network.json: address {str(want_addr)[:12]}, node id "
                    f"{str(want_id)[:12]}): restore {name}'s cometbft/config/priv_validator_key.json and "
                    "node_key.json from a backup")
            if other_pid or other_keys:
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


# ---------------------------------------------------------------------------------------------------------
# The provider flow: each provider makes its own keys on its own machine (`keygen`), a coordinator builds the
# genesis from their public files only (`build_genesis`), each provider joins with its own keys (`join`).

PROVIDER_FILE = "provider.json"  # public: what the provider hands the coordinator
ARBITER_FILE = "arbiter.json"  # public: the arbiter's key and URL
LOCAL_FILE = "local.json"  # this machine's bind addresses and loopback ports (not secret, never shared)
PROVIDER_KIND, ARBITER_KIND = "edgepoc-provider", "edgepoc-arbiter"
PROVIDER_FIELDS = ("kind", "name", "public_key", "address", "node_id", "capacity", "delay", "p2p", "api")
ARBITER_FIELDS = ("kind", "public_key", "address", "url")
# Defaults of a provider's machine: CometBFT's own p2p/RPC/ABCI/Prometheus ports, the API and arbiter beside them.
DEFAULT_P2P, DEFAULT_RPC, DEFAULT_ABCI, DEFAULT_API, DEFAULT_METRICS, DEFAULT_ARBITER = (
    26656, 26657, 26658, 26659, 26660, 26661)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
_HEX = re.compile(r"^[0-9a-f]+$")
_UNSPECIFIED = ("0.0.0.0", "::", "")


def _hostport(text: str, what: str, *, specified: bool = False) -> tuple[str, int]:
    """("host", port) from "host:port" or "[v6]:port" (an http:// prefix is dropped); `specified`: not 0.0.0.0."""
    raw = str(text).strip()
    addr = raw.split("://", 1)[-1].rstrip("/")
    host, _, port = addr.rpartition(":")
    host = host.strip("[]")
    if not port.isdigit() or not 1 <= int(port) <= 65535 or not host or "/" in host or " " in host:
        raise InputError(f"{what}: expected HOST:PORT with a port in 1..65535, got {raw!r}")
    if specified and host in _UNSPECIFIED:
        raise InputError(f"{what}: {raw!r} is not an address others can reach (give this machine's IP or name)")
    return host, int(port)


def _fmt(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _url(host: str, port: int) -> str:
    return f"http://{_fmt(host, port)}"


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or name == "arbiter":
        raise InputError(f"{what}: {name!r} is not a name (1-32 of letters, digits, '_', '.', '-'; not 'arbiter')")
    return name


def _check_capacity(cap: Any, what: str) -> list[float]:
    if isinstance(cap, str):
        try:
            cap = [float(x) for x in cap.split(",")]
        except ValueError:
            raise InputError(f"{what}: expected comma-separated numbers, got {cap!r}") from None
    if not isinstance(cap, list) or not 1 <= len(cap) <= 16 or not all(
            isinstance(c, (int, float)) and not isinstance(c, bool) for c in cap):
        raise InputError(f"{what}: expected 1..16 numbers (one per resource), got {cap!r}")
    if not all(0 < float(c) < 1e6 and float(c) == float(c) for c in cap):
        raise InputError(f"{what}: every capacity must be a finite number > 0, got {cap!r}")
    return [float(c) for c in cap]


def _check_delay(delay: Any, what: str) -> float:
    if not isinstance(delay, (int, float)) or isinstance(delay, bool) or not 0 <= float(delay) <= 3600:
        raise InputError(f"{what}: the provider's delay must be a number of seconds in [0, 3600], got {delay!r}")
    return float(delay)


def _check_hex(value: Any, n: int, what: str) -> str:
    if not isinstance(value, str) or len(value) != n or not _HEX.match(value):
        raise InputError(f"{what}: expected {n} lowercase hex digits, got {str(value)[:80]!r}")
    return value


def _private_field(doc: Any, path: str = "") -> str | None:
    """The first field of `doc` that looks like private key material."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            if re.search(r"priv|secret|seed|mnemonic", str(k), re.I):
                return f"{path}{k}"
            got = _private_field(v, f"{path}{k}.")
            if got:
                return got
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            got = _private_field(v, f"{path}{i}.")
            if got:
                return got
    return None


def load_public(path: Path, kind: str = PROVIDER_KIND) -> dict:
    """A provider's (or the arbiter's) public file, every field checked; InputError in one line naming the file."""
    path = Path(path)
    label = path.name if path.name not in (PROVIDER_FILE, ARBITER_FILE) else str(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: does not exist") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a JSON file ({str(exc)[:120]})") from None
    if not isinstance(doc, dict):
        raise InputError(f"{label}: expected a JSON object")
    secret = _private_field(doc)
    if secret:
        raise InputError(f"{label}: holds private key material ({secret}); hand over only the public file "
                         f"`edgepoc network keygen` wrote ({PROVIDER_FILE} or {ARBITER_FILE})")
    want = PROVIDER_FIELDS if kind == PROVIDER_KIND else ARBITER_FIELDS
    if doc.get("kind") != kind:
        other = "an arbiter's file" if doc.get("kind") == ARBITER_KIND else "a provider's file" \
            if doc.get("kind") == PROVIDER_KIND else f"kind {doc.get('kind')!r}"
        raise InputError(f"{label}: is {other}, expected {kind} (from `edgepoc network keygen"
                         f"{' --arbiter' if kind == ARBITER_KIND else ''}`)")
    unknown = sorted(set(doc) - set(want))
    missing = [k for k in want if k not in doc]
    if unknown or missing:
        raise InputError(f"{label}: " + "; ".join(
            ([f"unknown field(s) {', '.join(unknown)}"] if unknown else [])
            + ([f"missing field(s) {', '.join(missing)}"] if missing else [])) + f" (expected {', '.join(want)})")
    pk = _check_hex(doc["public_key"], 64, f"{label}: public_key")
    if doc["address"] != address_of(pk):
        raise InputError(f"{label}: address {str(doc['address'])[:40]!r} does not match its public_key")
    if kind == ARBITER_KIND:
        h, p = _hostport(doc["url"], f"{label}: url", specified=True)
        return {**doc, "url": _url(h, p)}
    _check_name(doc["name"], f"{label}: name")
    _check_hex(doc["node_id"], 40, f"{label}: node_id")
    cap = _check_capacity(doc["capacity"], f"{label}: capacity")
    delay = _check_delay(doc["delay"], f"{label}: delay")
    _hostport(doc["p2p"], f"{label}: p2p", specified=True)
    h, p = _hostport(doc["api"], f"{label}: api", specified=True)
    return {**doc, "capacity": cap, "delay": delay, "api": _url(h, p)}


def _secure(folder: Path) -> None:
    """Private key files 0600 and their folders 0700."""
    for f in folder.rglob("*"):
        if f.is_file() and (f.name in ("priv_validator_key.json", "node_key.json", "arbiter_key.json")):
            os.chmod(f, 0o600)
    for d in [folder, *(d for d in folder.rglob("*") if d.is_dir())]:
        os.chmod(d, 0o700)


def keygen(out: Path, name: str, capacity: str | list[float], delay: float, bind: str = f"0.0.0.0:{DEFAULT_P2P}",
           advertise: str | None = None, api_bind: str = f"0.0.0.0:{DEFAULT_API}", api_advertise: str | None = None,
           rpc_port: int = DEFAULT_RPC, abci_port: int = DEFAULT_ABCI, metrics: str | None = None,
           model: str | None = None) -> dict:
    """Make one provider's keys on this machine, in `out` (CometBFT's home `out/cometbft`: validator key and
    node key, 0600, never copied anywhere), and write its public file `out/provider.json` (returned) and its
    local settings `out/local.json`. `metrics`: CometBFT's Prometheus address ("off": none; default: the API's
    host, port 26660)."""
    out = Path(out)
    if (out / PROVIDER_FILE).exists() or (out / "cometbft").exists() or (out / "arbiter_key.json").exists():
        raise EdgepocError(f"{out}: already holds keys; keys are never overwritten (pick another --out)")
    _check_name(name, "--name")
    cap = _check_capacity(capacity, "--capacity")
    delay = _check_delay(delay, "--delay")
    bh, bp = _hostport(bind, "--bind")
    if advertise is None and bh in _UNSPECIFIED:
        raise InputError(f"--advertise: needed with --bind {bind} (the IP:PORT the other providers dial)")
    ah, ap = _hostport(advertise or bind, "--advertise", specified=True)
    abh, abp = _hostport(api_bind, "--api-bind")
    api_adv = api_advertise or _fmt(ah if abh in _UNSPECIFIED else abh, abp)
    aah, aap = _hostport(api_adv, "--api-advertise", specified=True)
    for what, port in (("--rpc-port", rpc_port), ("--abci-port", abci_port)):
        if not 1 <= int(port) <= 65535:
            raise InputError(f"{what}: expected a port in 1..65535, got {port}")
    loopback = {"p2p": bp, "api": abp, "rpc": rpc_port, "abci": abci_port}
    if metrics is None:
        metrics = _fmt(abh, DEFAULT_METRICS)
    if metrics != "off":
        mh, mp = _hostport(metrics, "--metrics")
        metrics = _fmt(mh, mp)
        loopback["metrics"] = mp
    seen: dict[int, str] = {}
    for what, port in loopback.items():
        if port in seen:
            raise InputError(f"ports: {what} and {seen[port]} both use port {port} on this machine")
        seen[port] = what
    if model is not None and not Path(model).is_file():
        raise InputError(f"--model: {model} does not exist")
    out.mkdir(parents=True, exist_ok=True)
    cmt = out / "cometbft"
    res = subprocess.run([cometbft_binary(), "init", "--home", str(cmt)], capture_output=True, text=True)
    if res.returncode != 0:
        raise EdgepocError(f"cometbft init failed: {res.stderr.strip()[:300]}")
    key = json.loads((cmt / "config" / "priv_validator_key.json").read_text())
    pk = base64.b64decode(key["pub_key"]["value"]).hex()
    public = {"kind": PROVIDER_KIND, "name": name, "public_key": pk, "address": address_of(pk),
              "node_id": node_id(cmt), "capacity": cap, "delay": delay, "p2p": _fmt(ah, ap), "api": _url(aah, aap)}
    local = {"role": "provider", "name": name, "p2p_bind": _fmt(bh, bp), "api_bind": _fmt(abh, abp),
             "rpc_port": int(rpc_port), "abci_port": int(abci_port), "metrics": None if metrics == "off" else metrics,
             "model": str(Path(model).resolve()) if model else None}
    _secure(out)
    (out / LOCAL_FILE).write_text(json.dumps(local, indent=2) + "\n")
    (out / PROVIDER_FILE).write_text(json.dumps(public, indent=2) + "\n")
    os.chmod(out / PROVIDER_FILE, 0o644)
    return public


def keygen_arbiter(out: Path, bind: str = f"0.0.0.0:{DEFAULT_ARBITER}", advertise: str | None = None,
                   model: str | None = None) -> dict:
    """Make the arbiter's key on its machine (`out/arbiter_key.json`, 0600) and its public file `out/arbiter.json`
    (key, address, the URL nodes reach it at)."""
    out = Path(out)
    if (out / ARBITER_FILE).exists() or (out / "arbiter_key.json").exists() or (out / "cometbft").exists():
        raise EdgepocError(f"{out}: already holds keys; keys are never overwritten (pick another --out)")
    bh, bp = _hostport(bind, "--bind")
    if advertise is None and bh in _UNSPECIFIED:
        raise InputError(f"--advertise: needed with --bind {bind} (the IP:PORT the nodes reach the arbiter at)")
    ah, ap = _hostport(advertise or bind, "--advertise", specified=True)
    if model is not None and not Path(model).is_file():
        raise InputError(f"--model: {model} does not exist")
    out.mkdir(parents=True, exist_ok=True)
    key = SigningKey.generate()
    key.save(out / "arbiter_key.json")
    public = {"kind": ARBITER_KIND, "public_key": key.public_hex, "address": key.address, "url": _url(ah, ap)}
    _secure(out)
    (out / LOCAL_FILE).write_text(json.dumps({"role": "arbiter", "bind": _fmt(bh, bp),
                                              "model": str(Path(model).resolve()) if model else None}, indent=2) + "\n")
    (out / ARBITER_FILE).write_text(json.dumps(public, indent=2) + "\n")
    os.chmod(out / ARBITER_FILE, 0o644)
    return public


def parse_builds(items: list[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        name, eq, version = item.partition("=")
        if not eq or not name.strip() or not version.strip():
            raise InputError(f"--build: expected COMPONENT=VERSION, got {item!r}")
        out[name.strip()] = version.strip()
    return out


def parse_time(text: str) -> float:
    """Whole unix seconds from "1764583200" or an RFC 3339 time ("2026-12-01T10:00:00Z")."""
    try:
        return float(int(float(text)))
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"--genesis-time: expected unix seconds or e.g. 2026-12-01T10:00:00Z, got {text!r}") from None
    if t.tzinfo is None:
        raise InputError(f"--genesis-time: {text!r} has no time zone (add Z for UTC)")
    return float(int(t.timestamp()))


def build_genesis(providers: list[Path], arbiter: Path | None = None, arbiter_url: str | None = None,
                  arbiter_key: str | None = None, chain_id: str = "edgepoc", params: dict[str, Any] | None = None,
                  builds: dict[str, str] | None = None, pin_builds: bool = True,
                  genesis_time: float | None = None, workload: ArrayLike | None = None) -> dict:
    """CometBFT's genesis for the providers' public files (in the order given) and the arbiter's public key:
    validators with their declared capacities and delays, the consensus parameters, the builds every node
    must run (this machine's edgepoc, CometBFT, wasmtime, NumPy and Python, overridden by `builds`; none
    without `pin_builds`), and beside them the providers' advertised addresses and node ids and the arbiter's
    URL. Reads nothing but the files given. Every problem is an InputError in one line."""
    if not providers:
        raise InputError("--provider: give every provider's public file (provider.json), one --provider each")
    if len(providers) > MAX_VALIDATORS:
        raise InputError(f"--provider: {len(providers)} providers; a network has at most {MAX_VALIDATORS} "
                         "(MAX_VALIDATORS: the contribution game's coalition masks are sized for it)")
    if not isinstance(chain_id, str) or not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,49}$", chain_id):
        raise InputError(f"--chain-id: {chain_id!r}: 1-50 of letters, digits, '_', '.', '-'")
    docs = [load_public(Path(f)) for f in providers]
    labels = [Path(f).name if Path(f).name != PROVIDER_FILE else str(f) for f in providers]
    seen: dict[tuple[str, Any], str] = {}
    for label, d in zip(labels, docs):
        for what, value in (("name", d["name"]), ("public key", d["public_key"]), ("node id", d["node_id"])):
            if (what, value) in seen:
                raise InputError(f"{label}: duplicate {what} {str(value)[:16]!r} (also in {seen[(what, value)]})")
            seen[(what, value)] = label
    endpoints: dict[tuple[str, int], str] = {}

    def endpoint(addr: str, what: str, label: str) -> None:
        key = _hostport(addr, what)
        if key in endpoints:
            raise InputError(f"{label}: {what} address {_fmt(*key)} is also {endpoints[key]} (duplicate host:port)")
        endpoints[key] = f"{label}'s {what} address"
    for label, d in zip(labels, docs):
        endpoint(d["p2p"], "p2p", label)
        endpoint(d["api"], "api", label)
    r = len(docs[0]["capacity"])
    for label, d in zip(labels, docs):
        if len(d["capacity"]) != r:
            raise InputError(f"{label}: capacity has {len(d['capacity'])} resources, {labels[0]} has {r} "
                             "(every provider declares the same resources)")
    if arbiter is not None:
        a = load_public(Path(arbiter), ARBITER_KIND)
        arbiter_key = arbiter_key or a["public_key"]
        arbiter_url = arbiter_url or a["url"]
    if arbiter_key is None or arbiter_url is None:
        raise InputError("--arbiter: give the arbiter's public file (arbiter.json from `network keygen --arbiter`), "
                         "or --arbiter-key and --arbiter-url")
    _check_hex(arbiter_key, 64, "--arbiter-key")
    if ("public key", arbiter_key) in seen:
        raise InputError(f"--arbiter: its key is {seen[('public key', arbiter_key)]}'s validator key; the arbiter "
                         "needs its own")
    ah, ap = _hostport(arbiter_url, "--arbiter-url", specified=True)
    arbiter_url = _url(ah, ap)
    endpoint(arbiter_url, "arbiter", "the arbiter")
    p = _consensus_params(params, [d["capacity"] for d in docs], workload)
    from edgepoc.chain.builds import local_builds

    pinned = {**local_builds(), **(builds or {})} if pin_builds else {}
    from edgepoc.chain.genesis import ValidatorInfo

    vals = [ValidatorInfo(d["name"], d["public_key"], d["address"], 1, d["capacity"], d["delay"]) for d in docs]
    t = float(int(time.time())) if genesis_time is None else float(genesis_time)
    genesis = Genesis.from_dict(Genesis(chain_id, t, vals, arbiter_key, p, pinned).to_dict())  # validates
    net = {"providers": [{"name": d["name"], "node_id": d["node_id"], "p2p": d["p2p"], "api": d["api"]}
                         for d in docs], "arbiter_url": arbiter_url}
    return cometbft_genesis(genesis, net)


def _read_genesis_doc(path: Path) -> tuple[bytes, dict, Genesis, dict]:
    try:
        raw = Path(path).read_bytes()
        doc = json.loads(raw)
    except FileNotFoundError:
        raise InputError(f"--genesis: {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"--genesis: {path} is not JSON ({str(exc)[:120]})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("app_state"), dict):
        raise InputError(f"--genesis: {path} is not a CometBFT genesis with the edgepoc app_state")
    genesis = Genesis.from_dict(doc["app_state"])
    net = doc["app_state"].get("network")
    if not isinstance(net, dict) or not isinstance(net.get("providers"), list) \
            or len(net["providers"]) != len(genesis.validators):
        raise InputError(f"--genesis: {path} has no providers' addresses (build it with `edgepoc network genesis`)")
    return raw, doc, genesis, net


def join(home: Path, genesis_path: Path, model: str | None = None) -> dict:
    """Join the network of `genesis_path` with the keys in `home` (made there by `keygen`): write the node's
    config.toml (persistent peers: the other providers' advertised addresses; filter_peers with the genesis
    validators' node ids; p2p bound as keygen said and advertised as genesis says; ABCI and RPC on loopback),
    its genesis.json, app.json and network.json, so `network up --dir home` (or `edgepoc node --home home`)
    starts it. The arbiter's folder gets its config.json, genesis.json and network.json. Returns
    network.json's content plus "warnings" (e.g. builds that differ from genesis': the node will refuse to
    start)."""
    home = Path(home)
    raw, doc, genesis, net = _read_genesis_doc(genesis_path)
    try:
        local = json.loads((home / LOCAL_FILE).read_text())
    except FileNotFoundError:
        raise EdgepocError(f"{home}: no {LOCAL_FILE} (make this machine's keys with `edgepoc network keygen --out "
                           f"{home}`)") from None
    from edgepoc.chain.builds import mismatches

    warnings = []
    bad = mismatches(genesis.builds) if genesis.builds else []
    if bad:
        warnings.append(f"build mismatch: this machine runs {'; '.join(bad)}; the node will refuse to start")
    provs = net["providers"]
    same_host = len({_hostport(pv["p2p"], "p2p")[0] for pv in provs}) < len(provs)
    others = []
    for i, (v, pv) in enumerate(zip(genesis.validators, provs)):
        h, pp = _hostport(pv["p2p"], "p2p")
        others.append({"name": v.name, "home": None, "address": v.address, "host": h, "api": pv["api"],
                       "rpc": None, "peer_port": pp, "node_id": pv["node_id"]})
    ah, ap = _hostport(net["arbiter_url"], "arbiter_url")
    arbiter_entry = {"home": None, "host": ah, "port": ap, "url": net["arbiter_url"]}
    out: dict[str, Any] = {"engine": "cometbft", "chain_id": genesis.chain_id, "nodes": others,
                           "arbiter": arbiter_entry}
    if local.get("role") == "arbiter":
        key = SigningKey.load(home / "arbiter_key.json")
        if key.public_hex != genesis.arbiter_public_key:
            raise EdgepocError(f"{home}: this arbiter's key is not the one genesis names (genesis: "
                               f"{genesis.arbiter_address[:12]}, here: {key.address[:12]})")
        bh, bp = _hostport(local["bind"], "bind")
        genesis.save(home / "genesis.json")
        (home / "config.json").write_text(json.dumps({"engine": "cometbft", "host": bh, "port": bp,
                                                      "model": model or local.get("model")}, indent=2) + "\n")
        out["arbiter"] = {**arbiter_entry, "home": ".", "bind": _fmt(bh, bp)}
        out["this_host"] = ah
        out["role"] = "arbiter"
    else:
        from edgepoc.chain.abci.node import validator_address

        address = validator_address(home)
        me = genesis.index_of(address)
        if me is None:
            raise EdgepocError(f"{home}: this provider's validator key ({address[:12]}) is not in the genesis; was its "
                               f"{PROVIDER_FILE} given to `network genesis`?")
        my_id = node_id(home / "cometbft")
        if provs[me]["node_id"] != my_id:
            raise EdgepocError(f"{home}: this node's id {my_id[:12]} is not the one genesis names for "
                               f"{genesis.validators[me].name} ({str(provs[me]['node_id'])[:12]})")
        cmt = home / "cometbft" / "config"
        old = cmt / "genesis.json"
        if (home / "data" / "app.sqlite").exists() and old.exists() and old.read_bytes() != raw:
            raise EdgepocError(f"{home}: already runs another genesis and has a store; a folder joins one chain")
        p = genesis.params
        bh, bp = _hostport(local["p2p_bind"], "p2p_bind")
        abh, abp = _hostport(local["api_bind"], "api_bind")
        peers = ",".join(f"{pv['node_id']}@{pv['p2p']}" for j, pv in enumerate(provs) if j != me)
        cfg = cometbft_config((cmt / "config.toml").read_text(), p, moniker=genesis.validators[me].name,
                              abci_port=local["abci_port"], rpc_port=local["rpc_port"], p2p_laddr=_fmt(bh, bp),
                              peers=peers, prometheus=local.get("metrics"), external_address=provs[me]["p2p"],
                              allow_duplicate_ip=same_host)
        (cmt / "config.toml").write_text(cfg)
        old.write_bytes(raw)  # the same bytes on every node
        app_cfg = {"name": genesis.validators[me].name, "host": abh, "abci_port": local["abci_port"],
                   "api_port": abp, "rpc_port": local["rpc_port"], "p2p_port": bp, "arbiter_url": net["arbiter_url"],
                   "model": model or local.get("model"), "byzantine": [],
                   "allowed_peers": [pv["node_id"] for pv in provs]}
        (home / "app.json").write_text(json.dumps(app_cfg, indent=2) + "\n")
        api_local = _url("127.0.0.1" if abh in _UNSPECIFIED else abh, abp)
        out["nodes"][me].update({"home": ".", "api": api_local, "api_public": provs[me]["api"],
                                 "rpc": _url("127.0.0.1", local["rpc_port"]), "abci_port": local["abci_port"]})
        if local.get("metrics"):
            out["nodes"][me]["cometbft_metrics"] = f"http://{local['metrics']}/metrics"
        out["this_host"] = others[me]["host"]
        out["role"] = "provider"
    (home / "network.json").write_text(json.dumps(out, indent=2) + "\n")
    return {**out, "warnings": warnings}


def service_unit(home: Path, user: str | None = None) -> tuple[str, str]:
    """(unit file name, text) of a systemd unit that runs the node (or the arbiter) joined in `home`, restarted
    on failure. The node runs in the foreground (`python -m edgepoc.chain.abci.boot`, what `edgepoc node` runs):
    systemd holds its process group, cometbft included."""
    import getpass

    home = Path(home).resolve()
    doc = load_network(home)
    python = sys.executable
    if (doc.get("arbiter") or {}).get("home") == ".":
        name = "arbiter"
        what = f"edgepoc arbiter of chain {doc['chain_id']}"
        exec_start = f"{python} -m edgepoc arbiter --home {home}"
    else:
        mine = [n for n in doc["nodes"] if n.get("home") == "."]
        if not mine:
            raise EdgepocError(f"{home}: holds no joined node or arbiter (run `edgepoc network join` first)")
        name = mine[0]["name"]
        what = f"edgepoc node {name} of chain {doc['chain_id']} (app + cometbft)"
        exec_start = f"{python} -m edgepoc.chain.abci.boot --home {home}"
    if any(c.isspace() for c in str(home) + python):
        raise EdgepocError("service: the home folder and the python path must not contain spaces")
    text = "\n".join([
        "[Unit]",
        f"Description={what}",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"User={user or getpass.getuser()}",
        f"WorkingDirectory={home}",
        "Environment=OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 PYTHONUNBUFFERED=1",
        f"ExecStart={exec_start}",
        "Restart=on-failure",
        "RestartSec=5",
        # SIGTERM to the node alone, which stops its cometbft and worker in order; whatever is left of the unit's
        # processes when it has ended is killed (control-group sent it to all at once: cometbft exited first and
        # the node took that for a failure)
        "KillMode=mixed",
        "TimeoutStopSec=30",
        "LimitNOFILE=65536",
        "UMask=0077",
        f"StandardOutput=append:{home}/{'arbiter' if name == 'arbiter' else 'node'}.log",
        "StandardError=inherit",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        ""])
    return f"edgepoc-{name}.service", text
