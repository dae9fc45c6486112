"""`edgepoc node`, `arbiter`, `network ...`, `submit`, `chain verify`, `contributions`: the PoC chain."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from edgepoc.cli.common import check_number, parse_params, print_json, seed_option, stdout_console, with_bar
from edgepoc.errors import EdgepocError, InputError, Interrupted

network_app = typer.Typer(help="A network of provider nodes (CometBFT + the edgepoc app), on loopback or on several hosts.", no_args_is_help=True)
chain_app = typer.Typer(help="Inspect and verify a node's chain.", no_args_is_help=True)
DEFAULT_DIR = Path("testnet")


def node_cmd(
    home: Path = typer.Option(..., "--home", help="The node's home folder (from `network init`)."),
) -> None:
    """Run one provider's node (the ABCI app, its cometbft process, the client API) until killed.

    Test builds misbehave as proposers with EDGEPOC_BYZANTINE=grab-all,wrong-latency,duplicate
    (or "byzantine" in the node's app.json)."""
    from edgepoc.chain.abci.node import run_node

    try:
        run_node(home)
    except KeyboardInterrupt:  # run_node's cleanup has run: its cometbft and worker are stopped
        raise Interrupted(f"the node in {home} stopped, its cometbft and worker with it") from None


def arbiter_cmd(
    home: Path = typer.Option(..., "--home", help="The arbiter's home folder (network/arbiter)."),
    method: str = typer.Option("auto", help="Allocation method: auto (teacher, else GA), or any solver name."),
) -> None:
    """Run the resource management centre's arbiter (teacher allocations, signed) until killed."""
    from edgepoc.chain.abci.arbiter import run_arbiter

    try:
        run_arbiter(home, method)  # its config is read first (`arbiter_config`), a missing one named in one line
    except KeyboardInterrupt:
        raise Interrupted(f"the arbiter in {home} stopped") from None


def _net(dir: Path | None = None):
    """The network module (CometBFT nodes), imported when a command needs it."""
    from edgepoc.chain.abci import network

    return network


def _workload(paths: Optional[list[Path]]):
    """The demands (tasks x resources) of the --workload instance files, or None."""
    if not paths:
        return None
    import numpy as np

    from edgepoc.game.files import read_instance

    demands = [read_instance(p).demand for p in paths]
    if len({d.shape[1] for d in demands}) != 1:
        raise InputError("--workload: the instance files declare different numbers of resources")
    return np.concatenate(demands)


def _say_bounds(genesis_file: Path, workload: Optional[list[Path]]) -> None:
    if not workload:
        return
    doc = json.loads(genesis_file.read_text())
    p = (doc.get("app_state") or doc).get("params", {})
    typer.echo("bounds from the workload: " + ", ".join(
        f"{k} {p[k]:g}" for k in ("max_demand", "min_demand", "max_client_block_seconds", "max_client_backlog",
                                  "max_backlog") if k in p), err=True)


def network_init(
    nodes: int = typer.Option(4, help="Number of provider nodes."),
    base_port: int = typer.Option(26600, help="First port (node i: p2p base+4i, RPC +1, ABCI +2, API +3; arbiter after); 0 = free ports."),
    dir: Path = typer.Option(DEFAULT_DIR, "--dir", help="Folder for the network."),
    seed: int = typer.Option(0, callback=seed_option, help="Seed for the providers' capacities and delays (keys are always fresh, not seeded)."),
    chain_id: str = typer.Option("edgepoc-local", help="Chain id."),
    param: Optional[list[str]] = typer.Option(None, "--param", "-p", help="Consensus parameter key=value (repeatable)."),
    student: Optional[Path] = typer.Option(None, help="Student checkpoint every node allocates with (default: bundled, else greedy)."),
    teacher: Optional[Path] = typer.Option(None, help="Teacher checkpoint for the arbiter (default: bundled, else GA)."),
    hosts: Optional[str] = typer.Option(None, help="Comma-separated IPs: node i runs on host i mod H; writes one bundle per host under DIR/hosts/."),
    workload: Optional[list[Path]] = typer.Option(None, "--workload", help="Instance file(s) (SPEC §2) the network must accept: demand and work bounds are derived from them and the providers (--param still wins)."),
) -> None:
    """Write fresh keys, the genesis and CometBFT + app configs for a network of provider nodes."""
    from edgepoc.chain.abci.network import init_network

    for name, path in (("--student", student), ("--teacher", teacher)):
        if path is not None and not path.is_file():
            raise InputError(f"{name}: {path} does not exist")
    host_list = [h.strip() for h in hosts.split(",")] if hosts is not None else None
    doc = init_network(dir, nodes, base_port, seed, parse_params(param), chain_id, student=student, teacher=teacher,
                       hosts=host_list, workload=_workload(workload))
    _say_bounds(dir / "genesis.json", workload)
    typer.echo(f"initialised {nodes} nodes in {dir}/ (chain {chain_id}); start them with `edgepoc network up --dir {dir}`",
               err=True)
    for n in doc["nodes"]:
        typer.echo(f"  {n['name']}  {n['address'][:12]}  api {n['api']}  rpc {n['rpc']}  p2p :{n['peer_port']}", err=True)
    if host_list and len(host_list) > 1:
        typer.echo(f"  one bundle per machine in {dir}/hosts/<ip>/: copy it there and run `edgepoc network up --dir` on it",
                   err=True)


def network_up(dir: Path = typer.Option(DEFAULT_DIR, "--dir"),
               wait: float = typer.Option(120.0, help="Seconds to wait for the nodes to be in consensus.")) -> None:
    """Start every node and the arbiter as separate processes, and wait until they are in consensus.

    Refuses (nothing started) if any of their ports is taken, naming the port and who holds it. Each node
    must be answered on its API by the process just started (pid, validator address and node id); a
    member that exits at start, an API answered by another process or a timeout stops what this command
    started, prints the failing member's last error line and exits non-zero. A bundle of a multi-host
    network waits only until its nodes run (one host cannot commit alone)."""
    check_number("--wait", wait)
    net = _net(dir)
    doc = net.load_network(dir)
    bundle = "this_host" in doc  # one machine's share of a multi-host network
    missing = net.missing_homes(dir)
    if missing:  # before: the others started and "up: 3 nodes in consensus" did not say a fourth was left out
        homes = {n["name"]: n["home"] for n in doc["nodes"]}
        raise InputError(f"{', '.join(missing)}: home {', '.join(str(dir / homes[k]) for k in missing)} is missing "
                         "(no app.json: moved or deleted?); nothing started. Put it back, or start the other nodes "
                         "one by one with `edgepoc network start NODE` (the chain commits while nodes with over 2/3 "
                         "of the voting power run)")
    names = (["arbiter"] if net.has_arbiter(dir) else []) + [n["name"] for n in net.local_nodes(dir)]
    t0 = time.monotonic()
    net.check_ports(dir, [k for k in names if net.running_pid(dir, k) is None])  # before anything starts
    typer.echo(f"starting {', '.join(names)}; waiting up to {wait:.0f} s for them"
               f"{' to run' if bundle else ' to be in consensus'} ...", err=True)
    res = _start_members(net, dir, names, wait, consensus=not bundle)
    nodes = net.local_nodes(dir)
    already = [k for k, v in res.items() if v.get("already")]
    heights = [v["height"] for k, v in res.items() if k != "arbiter" and isinstance(v.get("height"), int)]
    what = "running" if bundle else f"in consensus at height {min(heights) if heights else '-'}"
    typer.echo(f"up: {f'{len(nodes)} nodes {what}' if nodes else 'the arbiter answering'} in {time.monotonic() - t0:.1f} s ("
               + ", ".join(f"{k} pid {v['pid']}" for k, v in res.items())
               + (f"; already running: {', '.join(already)}" if already else "")
               + (f"); explorer: {nodes[0]['api']}/explorer/ (every node serves one)" if nodes else ")"), err=True)


def _start_members(net, dir: Path, names: list[str], wait: float, consensus: bool) -> dict:
    """`network.start_members` with a progress line; Ctrl-C (after it has stopped what it started) says so, exit 130."""
    try:
        return net.start_members(dir, names, wait, consensus=consensus, progress=net.Progress())
    except KeyboardInterrupt:
        typer.echo("interrupted: stopped what this command had started", err=True)
        raise typer.Exit(130) from None


def network_down(dir: Path = typer.Option(DEFAULT_DIR, "--dir")) -> None:
    """Stop every node and the arbiter."""
    down = _net(dir).down

    stopped = down(dir)
    typer.echo(f"stopped: {', '.join(stopped) or 'nothing was running'}", err=True)


def _round_step(r: dict) -> str:
    rnd, step = r.get("round"), r.get("step")
    if rnd is None or (isinstance(rnd, int) and rnd < 0):
        return str(step or "idle")
    return f"{rnd}/{step}" if step else str(rnd)


STALLED_BEHIND = 3  # blocks behind the highest height any node reports ...
STALLED_AGE = 10.0  # ... with no commit for this many seconds: a stalled node (empty blocks come every second)
DISK_LOW = 1 << 30  # bytes free below which `network status` warns (as the EdgepocDiskLow alert)


def _tip(rows: list[dict]) -> int | None:
    heights = [r["height"] for r in rows if isinstance(r.get("height"), int)]
    return max(heights) if heights else None


def _stalled(r: dict, tip: int | None) -> bool:
    """In consensus by its own account, yet behind the others and committing nothing: a full disk, or a wedged
    cometbft, leaves a node whose process answers but whose vote is gone."""
    age = r.get("last_commit_age")
    return (isinstance(r.get("height"), int) and tip is not None and r["height"] <= tip - STALLED_BEHIND
            and isinstance(age, (int, float)) and age > STALLED_AGE and r.get("catching_up") is not True)


def _voting(r: dict, tip: int | None = None) -> bool:
    """Does this `network status` row count toward quorum: its API answers with a height, its cometbft is
    not block-syncing (a starting node answers without a height; unknown counts as voting, as a slow RPC
    on a busy node is no sign of a lost one), and it is not stalled behind the highest height `tip`?"""
    return "height" in r and r.get("catching_up") is not True and not _stalled(r, tip)


def _why_out(r: dict, tip: int | None = None) -> str:
    if _stalled(r, tip):
        return f"stalled at height {r['height']} (others at {tip})"
    if "height" in r:
        return str(r.get("state") or "catching up")
    if r.get("state") == "starting":
        return "starting"
    return "not running" if r.get("pid") is None and "error" not in r else "no answer"


def quorum_of(rows: list[dict]) -> dict | None:
    """Voting power of the nodes in consensus against what a commit needs (> 2/3), from `network status` rows;
    also lost when no node in consensus sees more than 2/3 of the power among its peers and itself (a
    partition). None when no node answers."""
    vals = next((r["validators"] for r in rows if r.get("validators")), None)
    if vals is None:
        return None
    tip = _tip(rows)
    power = {v.get("name"): int(v.get("power", 1)) for v in vals}
    total = sum(power.values())
    voting = {r["name"] for r in rows if _voting(r, tip)}
    up = sum(p for name, p in power.items() if name in voting)
    seen = [sum(power.get(v.get("name"), 0) for v in r["validators"] if v.get("reachable"))
            for r in rows if r["name"] in voting and r.get("validators")
            and all(v.get("reachable") is not None for v in r["validators"])]
    partitioned = bool(seen) and 3 * max(seen) <= 2 * total
    return {"up": up, "total": total, "needed": total * 2 // 3 + 1, "lost": 3 * up <= 2 * total or partitioned,
            "partitioned": partitioned, "best_seen": max(seen) if seen else None,
            "unreachable": [r["name"] for r in rows if not _voting(r, tip)],
            "why": {r["name"]: _why_out(r, tip) for r in rows if not _voting(r, tip)}}


def _mib(n: int) -> str:
    return f"{n / (1 << 20):,.0f} MiB" if n < 10 << 30 else f"{n / (1 << 30):,.0f} GiB"


def _warnings(rows: list[dict], tip: int | None) -> list[str]:
    """What an operator should act on although quorum holds: stalled nodes, low disks, a damaged database, a home
    that cannot be written."""
    out = []
    for r in rows:
        for key in ("cometbft_error", "unwritable"):  # a damaged database; a home that cannot be written
            if isinstance(r.get(key), str):
                out.append(f"{r['name']}: {r[key][:600]}")
        if _stalled(r, tip):
            out.append(f"{r['name']}: stalled at height {r['height']} while others are at {tip}, no commit for "
                       f"{r['last_commit_age']:.0f} s (a full disk or a wedged cometbft; see its cometbft.log, then "
                       f"`edgepoc network stop {r['name']}` and `start` it)")
        free = r.get("disk_free_bytes")
        if isinstance(free, int) and not isinstance(free, bool) and free < DISK_LOW:
            out.append(f"{r['name']}: {_mib(free)} free on the disk of its store or cometbft data (a full disk "
                       "stops its commits)")
    return out


def network_status(dir: Path = typer.Option(DEFAULT_DIR, "--dir"), as_json: bool = typer.Option(False, "--json")) -> None:
    """Each node's height, last commit and peers; whether the network has quorum.

    Exits 1, with a one-line reason, when no node answers or the nodes in consensus hold 2/3 of the
    voting power or less (or none of them sees more than 2/3 among its peers)."""
    rows = _net(dir).status(dir)
    q = quorum_of(rows)
    tip = _tip(rows)
    stalled = [r["name"] for r in rows if _stalled(r, tip)]
    down = [r["name"] for r in rows if not _voting(r, tip) and r["name"] not in stalled]
    out = "; ".join([f"unreachable: {', '.join(down)}"] * bool(down) + [f"stalled: {', '.join(stalled)}"] * bool(stalled))
    warnings = _warnings(rows, tip)
    if q is None:
        reason = "no node answers: the network is down" + (f" ({', '.join(down)})" if down else "")
    elif q["lost"] and q["partitioned"] and 3 * q["up"] > 2 * q["total"]:
        reason = (f"quorum lost: partitioned, no node in consensus sees more than {q['best_seen']}/{q['total']} "
                  f"of the voting power (a commit needs {q['needed']})")
    elif q["lost"]:
        reason = f"quorum lost: voting power up {q['up']}/{q['total']}, a commit needs {q['needed']}; {out or 'unreachable: -'}"
    else:
        reason = None
    if as_json:
        print_json(rows)
        for w in warnings:
            typer.echo(f"warning: {w}", err=True)
        if reason:
            typer.echo(reason, err=True)
            raise typer.Exit(1)
        return
    table = Table("node", "pid", "height", "last commit", "round", "mempool", "tasks", "peers", "worker")
    for r in rows:
        if "height" not in r:
            why = _why_out(r)
            if why == "starting" and r.get("phase"):
                why = f"starting: {r['phase']}"
            table.add_row(r["name"], str(r.get("pid") or "-"), "-", why, "", "", "", "", "")
            continue
        age = r.get("last_commit_age")
        peers = r.get("peers")
        if peers is not None:
            up = f"{sum(1 for p in peers if p.get('connected'))}/{len(peers)}"
        else:
            vals = r.get("validators") or []
            up = f"{sum(1 for v in vals if v.get('reachable')) - 1}/{max(0, len(vals) - 1)}" if vals else "-"
        last = "-" if age is None else f"{age:.1f} s ago"
        if r.get("state") == "catching up":
            last += " (catching up)"
        elif r["name"] in stalled:
            last = f"[bold red]{last} (stalled)[/]"
        table.add_row(r["name"], str(r["pid"] or "-"), str(r["height"]), last,
                      _round_step(r), str(r.get("mempool", "-")), str(r.get("tasks_committed", "-")), up,
                      _worker_cell(r.get("worker")))
    console = stdout_console()
    console.print(table)
    for w in warnings:
        console.print(f"[yellow]warning:[/] {w}", soft_wrap=True)
    if reason is None:
        console.print(f"quorum: voting power up {q['up']}/{q['total']} (a commit needs {q['needed']})"
                      + (f"; {out}" if out else ""), soft_wrap=True)
        return
    console.print(reason.replace("quorum lost", "[bold red]quorum lost[/]", 1), soft_wrap=True)
    raise typer.Exit(1)


QUIET_WORKER = 10.0  # seconds without a heartbeat before `network status` says so (the node kills it at its limit)


def _worker_cell(w: dict | None) -> str:
    """The provider's worker as `network status` shows it: running (restarts, of them hung), quiet, down, or "-"
    (none, an arbiter)."""
    if not w:
        return "-"
    n, hung = int(w.get("restarts") or 0), int(w.get("stalls") or 0)
    if w.get("running"):
        notes = [f"{n} restart{'s' if n > 1 else ''}" + (f", {hung} hung" if hung else "")] if n else []
        quiet = w.get("quiet_seconds")
        if isinstance(quiet, (int, float)) and quiet > QUIET_WORKER:
            notes.append(f"[yellow]quiet {quiet:.0f} s[/]")
        return "up" + (f" ({'; '.join(notes)})" if notes else "")
    return "[bold red]left down[/]" if w.get("left_down") else "[red]down[/]"


def network_stop(name: str = typer.Argument(..., help="node<i> or arbiter"), dir: Path = typer.Option(DEFAULT_DIR, "--dir"),
                 kill: bool = typer.Option(False, "--kill", help="SIGKILL (a crash) instead of SIGTERM.")) -> None:
    """Stop one node (for demos and fault tests)."""
    net = _net(dir)
    stop_member = net.stop_member
    doc = net.load_network(dir)
    home = next((n.get("home") for n in doc["nodes"] if n["name"] == name),
                (doc.get("arbiter") or {}).get("home", "arbiter") if name == "arbiter" else None)
    pids = []
    if home is not None:
        for f in sorted((dir / home).glob("*.pid")):
            try:
                pids.append(int(f.read_text().split()[0]))
            except (ValueError, IndexError, OSError):
                pass
    was = stop_member(dir, name, kill=kill)
    how = ("SIGKILL (a crash: no clean shutdown)" if kill
           else f"SIGKILL: it did not end within {net.STOP_GRACE:g} s of SIGTERM (no clean shutdown)" if was and was.forced
           else "SIGTERM (clean shutdown)")
    pid_txt = f", pid {', '.join(map(str, pids))}" if pids else ""
    typer.echo(f"{name}: stopped with {how}{pid_txt}" if was else f"{name}: was not running", err=True)


def network_start(name: str = typer.Argument(..., help="node<i> or arbiter"), dir: Path = typer.Option(DEFAULT_DIR, "--dir"),
                  wait: float = typer.Option(120.0, help="Seconds to wait for the node to be back in consensus.")) -> None:
    """Start (restart) one node and wait until it is back at the network's tip in consensus.

    As `network up`: ports checked first, the answering process checked, the last error line printed and
    the start undone on failure (exit non-zero). When no other node answers, it waits only until the node
    runs (there is no chain to catch up with)."""
    check_number("--wait", wait)
    net = _net(dir)
    net.check_member(dir, name)  # an unknown name (or a node of another machine) is refused before anything is said
    consensus = name != "arbiter" and net.others_answer(dir, [name])
    t0 = time.monotonic()
    if name != "arbiter" and not consensus:
        typer.echo(f"{name}: no other node answers; not waiting for consensus", err=True)
    r = _start_members(net, dir, [name], wait, consensus=consensus)[name]
    if r.get("already"):
        typer.echo(f"{name}: already running (pid {r['pid']})", err=True)
        return
    where = (f"in consensus at height {r.get('height')}" if r.get("state") == "in consensus"
             else r.get("state", "running"))
    api = f"; its API answered after {r['api_s']:.1f} s" if r.get("api_s") is not None else ""
    typer.echo(f"{name}: {where} in {time.monotonic() - t0:.1f} s (pid {r['pid']}{api})", err=True)


def network_keygen(
    out: Path = typer.Option(..., "--out", help="This machine's folder for the keys (created; never overwritten)."),
    name: Optional[str] = typer.Option(None, help="The provider's name in the network (1-32 of letters, digits, _.-)."),
    capacity: Optional[str] = typer.Option(None, help="Declared capacity per resource, comma-separated, e.g. 1.2,0.8."),
    delay: Optional[float] = typer.Option(None, help="Declared delay in seconds (the provider's network latency)."),
    bind: Optional[str] = typer.Option(None, help="p2p (or the arbiter's) listen address HOST:PORT [0.0.0.0:26656; arbiter 0.0.0.0:26661]."),
    advertise: Optional[str] = typer.Option(None, help="HOST:PORT the others dial (default: --bind's, unless that is 0.0.0.0)."),
    api_bind: str = typer.Option("0.0.0.0:26659", help="The client API's listen address HOST:PORT."),
    api_advertise: Optional[str] = typer.Option(None, help="HOST:PORT clients use for the API (default: --api-bind's host, or --advertise's when that is 0.0.0.0)."),
    rpc_port: int = typer.Option(26657, help="CometBFT's RPC port (on 127.0.0.1 only)."),
    abci_port: int = typer.Option(26658, help="The ABCI port between cometbft and the app (127.0.0.1 only)."),
    metrics: Optional[str] = typer.Option(None, help="CometBFT's Prometheus HOST:PORT [API host:26660]; 'off': none."),
    model: Optional[Path] = typer.Option(None, help="Student checkpoint (teacher with --arbiter) this machine uses."),
    arbiter: bool = typer.Option(False, "--arbiter", help="Make the arbiter's key instead of a provider's."),
) -> None:
    """Make this provider's keys on this machine and print its PUBLIC file (also written to OUT/provider.json).

    The validator key and node key (CometBFT's, 0600) stay in OUT; hand only OUT/provider.json (or
    OUT/arbiter.json with --arbiter) to the coordinator, who runs `network genesis`."""
    net = _net()
    if arbiter:
        extra = [k for k, v in (("--name", name), ("--capacity", capacity), ("--delay", delay)) if v is not None]
        if extra:
            raise InputError(f"{', '.join(extra)}: a provider's, not the arbiter's (drop --arbiter or them)")
        public = net.keygen_arbiter(out, bind or f"0.0.0.0:{net.DEFAULT_ARBITER}", advertise,
                                    str(model) if model else None)
        what = net.ARBITER_FILE
    else:
        missing = [k for k, v in (("--name", name), ("--capacity", capacity), ("--delay", delay)) if v is None]
        if missing:
            raise InputError(f"{', '.join(missing)}: needed for a provider's keys")
        public = net.keygen(out, name, capacity, delay, bind or f"0.0.0.0:{net.DEFAULT_P2P}", advertise, api_bind,
                            api_advertise, rpc_port, abci_port, metrics, str(model) if model else None)
        what = net.PROVIDER_FILE
    print_json(public)
    typer.echo(f"keys in {out}/ (private, 0600: never copy them); give {out}/{what} to the coordinator", err=True)


def network_genesis(
    provider: Optional[list[Path]] = typer.Option(None, "--provider", help="A provider's public file (repeat, in order)."),
    out: Path = typer.Option(..., "--out", help="The genesis file to write (CometBFT's genesis.json)."),
    providers: Optional[Path] = typer.Option(None, "--providers", help="A TOML file naming everything instead: "
                                             "provider = [public files], arbiter, arbiter_url, chain_id, [params], "
                                             "[builds] (paths relative to the file)."),
    arbiter: Optional[Path] = typer.Option(None, help="The arbiter's public file (arbiter.json)."),
    arbiter_url: Optional[str] = typer.Option(None, help="Where the arbiter runs, http://HOST:PORT (overrides the file's)."),
    arbiter_key: Optional[str] = typer.Option(None, help="The arbiter's public key (hex), without --arbiter."),
    chain_id: str = typer.Option("edgepoc", help="Chain id."),
    param: Optional[list[str]] = typer.Option(None, "--param", "-p", help="Consensus parameter key=value (repeatable)."),
    build: Optional[list[str]] = typer.Option(None, "--build", help="Pin COMPONENT=VERSION (default: this machine's edgepoc, cometbft, wasmtime, numpy, python)."),
    no_builds: bool = typer.Option(False, "--no-builds", help="Pin no builds (nodes do not check them)."),
    genesis_time: Optional[str] = typer.Option(None, help="When the chain starts: unix seconds or 2026-12-01T10:00:00Z (default: now); consensus waits for it."),
    force: bool = typer.Option(False, help="Overwrite --out."),
    workload: Optional[list[Path]] = typer.Option(None, "--workload", help="Instance file(s) (SPEC §2) the network must accept: demand and work bounds are derived from them and the providers (--param still wins)."),
) -> None:
    """Build the genesis from the providers' and the arbiter's PUBLIC files only (no key is read here).

    Every field is checked (one-line errors: duplicate names, keys, node ids or addresses, bad capacities or
    delays, more than 32 providers, ...). The genesis pins the builds every node must run; a node on
    others refuses to start. Give the file to every provider: `edgepoc network join --genesis FILE`."""
    from edgepoc.files import write_atomic

    net = _net()
    if out.exists() and not force:
        raise InputError(f"--out: {out} exists (use --force to overwrite)")
    params = parse_params(param)
    builds = net.parse_builds(build)
    if providers is not None:
        spec = _providers_toml(providers)
        provider = [*(provider or []), *spec["provider"]]
        arbiter = arbiter or spec.get("arbiter")
        arbiter_url = arbiter_url or spec.get("arbiter_url")
        arbiter_key = arbiter_key or spec.get("arbiter_key")
        chain_id = spec.get("chain_id", chain_id)
        params = {**spec.get("params", {}), **params}
        builds = {**spec.get("builds", {}), **builds}
    if not provider:
        raise InputError("--provider or --providers: name at least one provider's public file")
    doc = net.build_genesis(provider, arbiter, arbiter_url, arbiter_key, chain_id, params,
                            builds, pin_builds=not no_builds,
                            genesis_time=net.parse_time(genesis_time) if genesis_time else None,
                            workload=_workload(workload))
    write_atomic(out, json.dumps(doc, indent=1) + "\n")
    _say_bounds(out, workload)
    app = doc["app_state"]
    typer.echo(f"genesis of chain {chain_id}: {len(app['validators'])} providers "
               f"({', '.join(v['name'] for v in app['validators'])}), arbiter at {app['network']['arbiter_url']}; "
               f"builds pinned: {', '.join(f'{k} {v}' for k, v in app.get('builds', {}).items()) or 'none'}; "
               f"written to {out}", err=True)


def _providers_toml(path: Path) -> dict:
    """The `--providers` file: provider (list of public files), arbiter, arbiter_url, arbiter_key, chain_id,
    [params], [builds]; one-line errors for anything else."""
    import tomllib

    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"--providers: {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"--providers: {path} is not TOML ({exc})") from None
    known = {"provider", "arbiter", "arbiter_url", "arbiter_key", "chain_id", "params", "builds"}
    extra = set(doc) - known
    if extra:
        raise InputError(f"--providers: unknown keys {sorted(extra)}; known: {', '.join(sorted(known))}")
    files = doc.get("provider")
    if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
        raise InputError("--providers: provider = [\"p0/provider.json\", ...] (a list of public files) is needed")
    base = path.parent
    out = {"provider": [base / f for f in files]}
    if isinstance(doc.get("arbiter"), str):
        out["arbiter"] = base / doc["arbiter"]
    for k in ("arbiter_url", "arbiter_key", "chain_id"):
        if k in doc:
            if not isinstance(doc[k], str):
                raise InputError(f"--providers: {k} must be a string")
            out[k] = doc[k]
    for k in ("params", "builds"):
        if k in doc:
            if not isinstance(doc[k], dict):
                raise InputError(f"--providers: [{k}] must be a table")
            out[k] = {str(a): (str(b) if k == "builds" else b) for a, b in doc[k].items()}
    return out


def network_join(
    genesis: Path = typer.Option(..., "--genesis", help="The genesis file from `network genesis`."),
    home: Path = typer.Option(..., "--home", help="This machine's folder from `network keygen`."),
    model: Optional[Path] = typer.Option(None, help="Student (or, for the arbiter, teacher) checkpoint."),
) -> None:
    """Join the network with this machine's own keys: write its configs (peers from the genesis' advertised
    addresses, only the genesis validators kept as peers, ABCI and RPC on loopback); then start it with
    `edgepoc network up --dir HOME` or `edgepoc node --home HOME` (or a service: `network service`)."""
    if model is not None and not model.is_file():
        raise InputError(f"--model: {model} does not exist")
    doc = _net().join(home, genesis, str(model.resolve()) if model else None)
    for w in doc.get("warnings", []):
        typer.echo(f"warning: {w}", err=True)
    if doc.get("role") == "arbiter":
        typer.echo(f"arbiter joined chain {doc['chain_id']} (listens on {doc['arbiter']['bind']}); start it with "
                   f"`edgepoc network up --dir {home}`", err=True)
        return
    me = next(n for n in doc["nodes"] if n.get("home") == ".")
    typer.echo(f"{me['name']} joined chain {doc['chain_id']} ({len(doc['nodes'])} providers; p2p advertised as "
               f"{me['host']}:{me['peer_port']}, API {me.get('api_public')}); start it with "
               f"`edgepoc network up --dir {home}`", err=True)


def network_service(
    home: Path = typer.Option(..., "--home", help="A joined node's (or the arbiter's) folder."),
    user: Optional[str] = typer.Option(None, help="User= of the unit (default: the current user)."),
    out: Optional[Path] = typer.Option(None, help="Write the unit there (a folder: its default name) instead of printing."),
) -> None:
    """A systemd unit for the node (or the arbiter) in HOME: runs it in the foreground, Restart=on-failure.

    Install: `edgepoc network service --home H --out /etc/systemd/system/` then `systemctl daemon-reload;
    systemctl enable --now edgepoc-NAME`."""
    name, text = _net().service_unit(home, user)
    if out is None:
        typer.echo(text, nl=False)
        return
    path = out / name if out.is_dir() else out
    path.write_text(text)
    typer.echo(f"wrote {path}; then: systemctl daemon-reload && systemctl enable --now {name}", err=True)


def _node_urls(nodes: Optional[list[str]], dir: Optional[Path]) -> tuple[list[str], list[str] | None]:
    """The API URLs to use (and the nodes' names, when they come from a network folder)."""
    if nodes:
        return list(nodes), None
    doc = _net(dir).load_network(dir or DEFAULT_DIR)
    return [n["api"] for n in doc["nodes"]], [n["name"] for n in doc["nodes"]]


def _client(nodes: Optional[list[str]], dir: Optional[Path], timeout: float = 10.0):
    from edgepoc.client import EdgepocClient

    urls, names = _node_urls(nodes, dir)
    return EdgepocClient(urls, timeout=timeout, names=names)


def _stopped_hint(dir: Optional[Path], what: str) -> str:
    home = (dir or DEFAULT_DIR) / "node0"
    return f"; a stopped network can still be read from a node's store: `edgepoc {what} --home {home}`"


def _check_demand_bounds(path: Path, inst, bounds) -> None:
    """Refuse an instance with demands the chain's CheckTx would refuse, before anything is signed: one such
    task rejects the whole signed batch it travels in (hundreds of valid tasks with it). `bounds`: the node's
    [min_demand, max_demand] from /status (absent on an older node: the chain's own check still applies)."""
    import numpy as np

    if not bounds:
        return
    low, high = float(bounds[0]), float(bounds[1])
    bad = np.flatnonzero(((inst.demand < low) | (inst.demand > high)).any(axis=1))
    if len(bad):
        shown = ", ".join(f"tasks[{i}] ({inst.task_ids[i]}) [{', '.join(f'{v:.6g}' for v in inst.demand[i])}]"
                          for i in bad[:3])
        raise InputError(f"{path}: {len(bad)} of {inst.n_tasks} tasks have demands outside this network's bounds "
                         f"[{low:g}, {high:g}] (genesis min_demand, max_demand): {shown}"
                         f"{' ...' if len(bad) > 3 else ''}; drop or rescale them, or init the network with "
                         f"--workload {path} (bounds derived from it)")


def submit_cmd(
    instance: Optional[Path] = typer.Argument(None, help="Instance JSON whose tasks to submit (else --count generated tasks)."),
    node: Optional[list[str]] = typer.Option(None, metavar="URL", help="Node API URL (repeatable: fail over between them; default: every node of --dir)."),
    dir: Optional[Path] = typer.Option(None, "--dir", help="Network folder (for the node URLs and client key)."),
    key: Optional[Path] = typer.Option(None, help="Client key (default: <dir>/client_key.json, else a fresh key)."),
    count: int = typer.Option(100, help="Generated tasks (without INSTANCE)."),
    rate: float = typer.Option(0.0, help="Tasks per second to send generated tasks at (0: all at once)."),
    replay: bool = typer.Option(False, "--replay", help="With INSTANCE: send its tasks at its arrival times (batches "
                                                        "of tasks within 0.1 s), not all at once."),
    seed: int = typer.Option(0, callback=seed_option, help="Seed for generated demands."),
    nonce: Optional[int] = typer.Option(None, help="First nonce (default: microseconds now, so reruns never replay)."),
    batch: int = typer.Option(500, help="Tasks per client-signed batch (CometBFT engine) or per request."),
    wait: bool = typer.Option(False, "--wait", help="Block until the tasks are committed."),
    timeout: float = typer.Option(120.0, help="Seconds the whole run may take: how long it waits out a moment when no "
                                              "node answers; with --wait also resending what a busy chain refused, "
                                              "then waiting for the commits."),
    receipt: Optional[Path] = typer.Option(None, help="JSON-lines receipt (task id -> accepted / committed at height h / "
                                                      "rejected and why); if it exists, resume: resend what is not final."),
    module: Optional[str] = typer.Option(None, help="Run a WebAssembly module on chain (its hash, from `module add`)."),
    function: str = typer.Option("", help="The module's exported function to call (with --module)."),
    args: str = typer.Option("", help="Comma-separated integer arguments (with --module), e.g. 1,2."),
    fuel: Optional[int] = typer.Option(None, help="Fuel each task may use (its CPU demand; with --module, default "
                                                  "100,000,000); out of fuel stops it."),
    memory: Optional[int] = typer.Option(None, help="MiB of memory each task may use (with --module, default 16)."),
    results: Optional[Path] = typer.Option(None, help="With --module: wait until every task ran, fetch each result from "
                                                      "the provider that ran it, check it against the receipt on chain, "
                                                      "write DIR/<task id>.json."),
) -> None:
    """Sign tasks with a client key and submit them to any reachable node; with --wait, report where they were committed.

    With --module, every task runs FUNCTION(ARGS) of that module on the provider the chain assigns it to."""
    from edgepoc.chain.crypto import SigningKey
    from edgepoc.client import Receipt, is_busy
    from edgepoc.game.files import read_instance

    if batch < 1 or count < 1:
        raise InputError("--batch and --count must be >= 1")
    if count > MAX_SUBMIT_COUNT:  # every task is signed up front: 100 k take 1.8 s and 24 MB, so 100 M would take ~24 GB
        raise InputError(f"--count: at most {MAX_SUBMIT_COUNT:,} tasks per run, got {count:,} (run submit several "
                         "times, each with its own --receipt)")
    check_number("--rate", rate)
    check_number("--timeout", timeout)
    work = None
    if module is not None:
        from edgepoc.chain.abci.wire import Work

        if instance is not None:
            raise InputError("--module: give either an INSTANCE or a module to run, not both")
        parts = args.split(",") if args.strip() else []  # "" calls a function of no arguments
        empty = next((i for i, a in enumerate(parts) if not a.strip()), None)
        if empty is not None:  # "1,,2" is a typo, not the two arguments 1 and 2
            raise InputError(f"--args: an empty value at position {empty + 1} of {args!r}; "
                             "expected comma-separated integers")
        try:
            arg_list = [int(a, 0) for a in parts]
        except ValueError:
            raise InputError(f"--args: expected comma-separated integers, got {args!r}") from None
        if not function:
            raise InputError("--function: name the exported function to call (see `edgepoc module add`'s output)")
        fuel = 100_000_000 if fuel is None else fuel
        memory = 16 if memory is None else memory
        if fuel < 1 or memory < 1:
            raise InputError("--fuel and --memory must be >= 1")
        if memory >= 1 << 43:  # MiB: the wire's bound on bytes is 2^63
            raise InputError(f"--memory: {memory} MiB is more than any machine has")
        try:
            work = Work.from_dict({"nonce": 0, "module": module.lower(), "function": function, "args": arg_list,
                                   "fuel": fuel, "memory": memory << 20}, "-")
        except InputError as exc:  # the wire's field names are the options' names: "-.fuel" reads "--fuel"
            raise InputError(str(exc).replace("-.", "--", 1)) from None
        if results is not None:
            _writable_folder("--results", results)  # before any task is sent, not after they ran
    else:
        given = [name for name, v in (("--function", function), ("--args", args), ("--fuel", fuel),
                                      ("--memory", memory), ("--results", results)) if v]
        if given:
            raise InputError(f"{given[0]}: only with --module (tasks that really run)")
    if replay and (instance is None or rate > 0):
        raise InputError("--replay: only with an INSTANCE, and not with --rate (the instance's arrivals set the pace)")
    client = _client(node, dir)
    # with --wait the command ends by about --timeout: resending what a busy chain refused shares it with the wait
    deadline = time.monotonic() + timeout
    if wait:
        client.submit_deadline = deadline
    # nodes restarting (or a network blip) are waited out for as long as the run may take, not given up on at once
    client.outage_deadline = deadline
    client.on_outage = lambda msg: typer.echo(msg, err=True)
    rec = Receipt(receipt) if receipt is not None else None
    items: list = rec.planned_items() if rec is not None else []
    pace = None
    signer = None  # the key that signed this run's batches: it re-signs a batch too big for a block in parts
    if key is None and (dir or DEFAULT_DIR).joinpath("client_key.json").exists():
        key = (dir or DEFAULT_DIR) / "client_key.json"
    if items:
        c = rec.counts()
        typer.echo(f"resuming from {receipt}: {len(items)} requests planned; {c.get('committed', 0)} tasks committed, "
                   f"{c.get('rejected', 0)} rejected, the rest resent (harmless if they got there before)", err=True)
        own = SigningKey.load(key) if key else None  # the receipt's batches are split only if this key signed them
        if own is not None and any(body.get("client") == own.public_hex for body, _ in items):
            signer = own
    else:
        signer = SigningKey.load(key) if key else SigningKey.generate()
        st = client.status()
        chain_id = st["chain_id"]
        nonce0 = nonce if nonce is not None else time.time_ns() // 1000
        # client-signed batches of `per` tasks; the chain stamps arrivals, genesis holds the delays
        from edgepoc.chain.abci.client import instance_batches, random_batches

        per = min(2000, batch if rate == 0 else max(1, int(rate / 10)))
        if work is not None:
            from edgepoc.chain.abci.client import work_batches

            items = work_batches(count, signer, chain_id, nonce0, work, per)
        elif instance is not None:
            inst = read_instance(instance)
            if inst.n_resources != int(st["resources"]):
                raise InputError(f"{instance}: its tasks demand {inst.n_resources} resources each, this network's "
                                 f"providers have {st['resources']}")
            _check_demand_bounds(instance, inst, st.get("demand_bounds"))
            # the chain takes the demands only: it stamps arrivals (block time) and holds providers and delays
            typer.echo(f"{instance}: {inst.n_tasks} tasks' demands are sent; the chain stamps their arrival times and "
                       f"serves them on its own providers with their delays"
                       + ("; they go at the instance's arrival times (--replay)" if replay else
                          " (--replay sends them at the instance's arrival times)"), err=True)
            if replay:
                from edgepoc.chain.abci.client import replay_batches

                items, offsets = replay_batches(inst, signer, chain_id, nonce0, batch=per)
                t0 = time.monotonic()
                pace = [t0 + o for o in offsets]
            else:
                items = instance_batches(inst, signer, chain_id, nonce0, per)
        else:
            items = random_batches(count, int(st["resources"]), signer, chain_id, nonce0, seed, per)
        if rate > 0:
            t0 = time.monotonic()
            pace = [t0 + j * per / rate for j in range(len(items))]
        batch = 1 if pace is not None else max(1, 20000 // per)  # signed batches per request
    res = with_bar("sent", 0, lambda bar: client.submit(items, rec, batch, pace, progress=bar))
    if res.interrupted:
        _say_interrupted(res, None, wait, receipt)
    if signer is not None and not res.failed:  # batches over a block's share of one client: split and resend
        from edgepoc.chain.abci.client import split_oversized

        for _ in range(8):  # each round at least halves the refused batches
            parts, redo = split_oversized(items, res.rejected, signer)
            if not parts:
                break
            typer.echo(f"{len(redo)} tasks came in batches over one block's share of a client; resent in "
                       f"{len(parts)} smaller batches", err=True)
            if rec is not None:  # the refusal was of their batch, not of them: planned again, as these parts
                for body, ids in parts:
                    rec.plan(body, ids)
            more = client.submit(parts, rec, max(1, 20000 // max(1, len(parts[0][1]))))
            res.rejected = [r for r in res.rejected if r.get("id") not in redo] + more.rejected
            res.accepted += more.accepted
            res.bodies.update(more.bodies)
            res.outage_seconds += more.outage_seconds
            res.unsent += more.unsent
            res.busy_seconds += more.busy_seconds
            res.failed = more.failed
            items = parts
            if more.failed:
                break
    total = len(res.accepted) + len(res.rejected) + len(res.unsent)
    via = client.urls[client.current]
    typer.echo(f"submitted {len(res.accepted)} tasks via {via} ({len(res.rejected)} rejected"
               f"{f', {res.skipped} already final in the receipt' if res.skipped else ''})", err=True)
    for r in res.rejected[:5]:
        typer.echo(f"  rejected {r.get('id') or '#' + str(r.get('index'))}: {r['reason']}", err=True)
    if res.failed:
        hint = f"; rerun with --receipt {receipt} to resume" if receipt else "; use --receipt FILE to be able to resume"
        # the contract's keys too, null: with no node answering, how many of the accepted tasks are committed is
        # not known (some may be: blocks went on until the outage); then which tasks got there
        print_json({"submitted": len(res.accepted), "rejected": len(res.rejected), "unsent": len(res.unsent),
                    **({"committed": None, "missing": None} if wait else {}), "ids": res.accepted})
        raise EdgepocError(f"stopped after {len(res.accepted)} of {total} tasks were accepted ({res.failed}; no node "
                           f"answered for {res.outage_seconds:.0f} s){hint}")
    if not res.accepted and res.rejected:
        print_json({"submitted": 0, "rejected": len(res.rejected), "ids": []})
        raise EdgepocError(f"every task was rejected; first reason: {res.rejected[0]['reason']}")
    if not wait and results is None:
        print_json({"submitted": len(res.accepted), "rejected": len(res.rejected), "ids": res.accepted})
        return
    w = _wait_with_bar(client, res.accepted, max(0.0, deadline - time.monotonic()) if wait else timeout, rec,
                       res.bodies)
    if w.interrupted:
        _say_interrupted(res, w, wait, receipt)
    if w.resent:
        typer.echo(f"  {w.resent} tasks the nodes had lost (a mempool does not survive a crash) were sent again",
                   err=True)
    heights = sorted({s["height"] for s in w.committed.values()})
    providers = Counter(s.get("provider_name", str(s.get("provider"))) for s in w.committed.values())
    flagged = Counter(w.flagged.values())
    where = f"blocks {heights[0]}..{heights[-1]}" if heights else "no block"
    typer.echo(f"committed {len(w.committed)}/{len(res.accepted)} tasks in {where} within {w.seconds:.2f} s; "
               f"providers: {', '.join(f'{k}: {v}' for k, v in sorted(providers.items())) or 'none'}", err=True)
    if w.down_seen:
        typer.echo(f"  down while waiting: {', '.join(sorted(w.down_seen))}"
                   + (f"; tasks assigned to them anyway: {', '.join(f'{k}: {v}' for k, v in sorted(flagged.items()))}"
                      if flagged else ""), err=True)
    lost = None
    if w.missing:
        q = client.quorum()
        if q is not None and q["lost"]:
            lost = q
            typer.echo(f"  the network has lost quorum: voting power up {q['up']}/{q['total']}, needed {q['needed']}; "
                       f"unreachable: {', '.join(q['down']) or '-'}", err=True)
    extra: dict = {}
    interrupted = False
    if work is not None and not w.missing:
        extra, interrupted = _executed_report(client, dir, res.accepted, w.committed, timeout, results)
    print_json({"submitted": len(res.accepted), "rejected": len(res.rejected), "committed": len(w.committed),
                "missing": len(w.missing), "heights": heights, "providers": dict(providers), "seconds": w.seconds,
                "providers_down": sorted(w.down_seen), "assigned_while_down": dict(flagged),
                **({"quorum": lost} if lost else {}), **extra})
    if interrupted:
        typer.echo(f"interrupted while waiting for results: {extra['executed']} of {len(res.accepted)} tasks executed "
                   "so far" + (f" (their results are in {results}/)" if results else "") + "; the others are committed "
                   "and run without this command (`edgepoc task ID` gives each one's result)", err=True)
        raise typer.Exit(130)
    if extra.get("failed") or extra.get("not_executed"):
        raise EdgepocError(f"{extra.get('not_executed', 0)} tasks not executed within {timeout:.0f} s, "
                           f"{extra.get('failed', 0)} results failed their check")
    if w.missing:
        why = " (the network has lost quorum)" if lost else _why_missing(client, list(w.missing))
        raise EdgepocError(f"{len(w.missing)} tasks not committed within {timeout:.0f} s{why}"
                           + (f"; the receipt {receipt} has them: rerun with it to resume" if receipt else ""))
    held = sum(1 for r in res.rejected if is_busy(r["reason"]))
    if held:
        raise EdgepocError(f"{held} tasks were not taken within {timeout:.0f} s: the chain was still busy with this "
                           "client's earlier work (admission control); "
                           + (f"rerun with --receipt {receipt} to send them" if receipt else
                              "use --receipt FILE and a longer --timeout to send them"))


def _say_interrupted(res, w, wait: bool, receipt: Path | None) -> None:
    """Ctrl-C during a submit: the last JSON line and one line of what went, then exit 130. Tasks a node accepted
    commit without this command; only what was not sent is left to do."""
    if w is None:  # while sending
        print_json({"submitted": len(res.accepted), "rejected": len(res.rejected), "unsent": len(res.unsent),
                    **({"committed": None, "missing": None} if wait else {}), "ids": res.accepted})
        rest = (f"; rerun with --receipt {receipt} to send the rest" if receipt else
                "; --receipt FILE makes a run resumable")
        typer.echo(f"interrupted: {len(res.accepted)} tasks were accepted before it (they commit without this command; "
                   f"the request in flight may have reached a node too), {len(res.unsent)} not sent{rest}", err=True)
    else:  # while waiting
        print_json({"submitted": len(res.accepted), "rejected": len(res.rejected), "committed": len(w.committed),
                    "missing": len(w.missing), "seconds": w.seconds})
        typer.echo(f"interrupted while waiting: {len(w.committed)} of {len(res.accepted)} tasks committed so far; the "
                   "others are on their way, not lost (`edgepoc task ID` tells where one stands"
                   + (f"; rerun with --receipt {receipt} to wait for them)" if receipt else ")"), err=True)
    raise typer.Exit(130)


def _writable_folder(option: str, folder: Path) -> None:
    """`folder` exists (made if need be) and takes files; InputError naming the option otherwise."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".edgepoc-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InputError(f"{option}: cannot write to {folder}: {exc.strerror or exc}") from None


def _why_missing(client, missing: list[str]) -> str:
    """Where the tasks not committed in time are, from the node: still pending (behind how many of this client's
    tasks, and for how long its admitted work keeps the network busy) or unknown to it (dropped)."""
    try:
        statuses = client.tasks(missing)
        pending = [i for i in missing if (statuses.get(i) or {}).get("status") == "pending"]
        unknown = sum(1 for i in missing if (statuses.get(i) or {}).get("status") == "unknown")
        first = client.task(pending[0]) if pending else {}
    except (EdgepocError, KeyError, TypeError, AttributeError):
        return ""
    parts = []
    if pending:
        ahead = first.get("ahead")
        busy = first.get("client_busy_for")
        parts.append(f"{len(pending)} still pending"
                     + (f", the first behind {ahead} earlier tasks of this client" if ahead else "")
                     + (f"; its work in blocks keeps the network busy {busy:.0f} s more" if busy else "")
                     + " (a client's tasks enter blocks in order, each client a share: wait longer with --timeout)")
    if unknown:
        parts.append(f"{unknown} unknown to the node (not in its mempool: dropped; resubmit them)")
    return f": {'; '.join(parts)}" if parts else ""


def _wait_with_bar(client, ids: list[str], timeout: float, receipt, bodies: dict | None = None):
    """`client.wait`, with a bar of the tasks committed so far; `bodies`: resend what the nodes lost."""
    return with_bar("committed", len(ids), lambda bar: client.wait(ids, timeout, receipt=receipt, progress=bar,
                                                                   bodies=bodies))


def _executed_report(client, dir: Optional[Path], ids: list[str], committed: dict, timeout: float,
                     results: Optional[Path]) -> tuple[dict, bool]:
    """Wait until the tasks ran (accepted receipts); with `results`, fetch and check every result. Ctrl-C ends
    the wait, not the report: what ran so far is reported (and its results written); the flag says it came."""
    from edgepoc.chain.abci.client import fetch_results, wait_executed
    from edgepoc.files import write_atomic

    done: dict[str, dict] = {}
    interrupted = False
    try:
        done, todo = wait_executed(client, ids, timeout, found=done)
    except KeyboardInterrupt:
        interrupted, todo = True, [i for i in ids if i not in done]
    measured = sorted(d["measured_latency"] for d in done.values() if d.get("measured_latency") is not None)
    simulated = sorted(d["simulated_latency"] for d in done.values() if d.get("simulated_latency") is not None)

    def q(xs: list[float], f: float) -> float | None:
        return round(xs[min(len(xs) - 1, int(f * len(xs)))], 4) if xs else None

    typer.echo(f"executed {len(done)}/{len(ids)} tasks; measured latency p50 {q(measured, 0.5)} s, p95 "
               f"{q(measured, 0.95)} s (simulated p50 {q(simulated, 0.5)} s)", err=True)
    out = {"executed": len(done), "not_executed": len(todo), "measured_latency_p50": q(measured, 0.5),
           "measured_latency_p95": q(measured, 0.95), "simulated_latency_p50": q(simulated, 0.5)}
    if results is None:
        return out, interrupted
    urls: dict[str, str] = {}
    if dir is not None or (DEFAULT_DIR / "network.json").exists():
        try:
            urls = {n["name"]: n["api"] for n in _net(dir).load_network(dir or DEFAULT_DIR)["nodes"]}
        except EdgepocError:
            urls = {}
    check = fetch_results(done, urls, client)
    results.mkdir(parents=True, exist_ok=True)
    for tid, d in done.items():
        write_atomic(results / f"{tid}.json", json.dumps({
            "id": tid, "result": d.get("result"), "status": d.get("exec_status"), "provider": d.get("provider_name"),
            "measured_latency": d.get("measured_latency"), "simulated_latency": d.get("simulated_latency"),
            "fuel_used": d.get("fuel_used"), "result_hash": d.get("result_hash"), "verified": tid in check.verified,
            **({"error": check.failed[tid]} if tid in check.failed else {}),
            **({"unverified": check.unverified[tid]} if tid in check.unverified else {})}, indent=1) + "\n", sync=False)
    for tid, why in list(check.failed.items())[:5]:
        typer.echo(f"  result of {tid}: {why}", err=True)
    if check.unverified:
        first = next(iter(check.unverified.values()))
        typer.echo(f"  {len(check.unverified)} results could not be compared with their provider's copy, e.g. {first}; "
                   "each is the one its provider signed in the receipt on chain", err=True)
    typer.echo(f"results: {len(check.verified)} verified against their receipts, {len(check.failed)} failed, "
               f"{len(check.unverified)} unverified (provider's copy not served); in {results}/", err=True)
    return ({**out, "verified": len(check.verified), "failed": len(check.failed), "unverified": len(check.unverified)},
            interrupted)


MAX_SUBMIT_COUNT = 1_000_000  # tasks one `submit` signs up front (~18 s and ~250 MB on one core)
MODULE_READ_LIMIT = 64 << 20  # bytes of a module file `module add` reads (genesis' max_module_bytes: 256 KiB)


def module_add(
    file: Path = typer.Argument(..., help="A WebAssembly module: .wat text or .wasm binary."),
    node: Optional[list[str]] = typer.Option(None, metavar="URL", help="Node API URL (repeatable; default: the nodes of --dir)."),
    dir: Optional[Path] = typer.Option(None, "--dir", help="Network folder (node URLs and client key)."),
    key: Optional[Path] = typer.Option(None, help="Client key (default: <dir>/client_key.json, else a fresh key)."),
    timeout: float = typer.Option(60.0, help="Seconds to wait until the module is on chain."),
) -> None:
    """Put a WebAssembly module on chain (every node compiles and checks it); prints {"module": HASH, "height": h}."""
    from edgepoc.chain.abci.wire import ModuleTx
    from edgepoc.chain.crypto import SigningKey
    from edgepoc.execution import compile_module

    if not file.is_file():
        raise InputError(f"FILE: {file} " + ("is a directory" if file.is_dir() else "does not exist"))
    size = file.stat().st_size
    if size > MODULE_READ_LIMIT:  # not read into memory: no network takes a module near this size
        raise InputError(f"FILE: {file} is {size} bytes, over the {MODULE_READ_LIMIT >> 20} MiB this command reads")
    check_number("--timeout", timeout)
    client = _client(node, dir)
    st = client.status()
    info = compile_module(file.read_bytes(), max_bytes=MODULE_READ_LIMIT)  # every node checks the chain's own bound
    if key is None and (dir or DEFAULT_DIR).joinpath("client_key.json").exists():
        key = (dir or DEFAULT_DIR) / "client_key.json"
    signer = SigningKey.load(key) if key else SigningKey.generate()
    m = ModuleTx(st["chain_id"], signer.public_hex, info.wasm).signed(signer)
    body = {"type": "module", "chain_id": m.chain_id, "client": m.client,
            "wasm": m.body()["wasm"], "sig": m.sig}
    ans = client.post("/modules", {"module": body})
    if not ans.get("accepted"):
        raise InputError(f"module refused: {ans.get('error')}")
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            doc = client.get(f"/modules/{m.hash}")
            typer.echo(f"module {m.hash[:16]} on chain at height {doc['height']}; functions: "
                       + ", ".join(f"{k}({len(v['params'])} args)" for k, v in sorted(doc["functions"].items())), err=True)
            print_json({"module": m.hash, "height": doc["height"], "functions": doc["functions"]})
            return
        except EdgepocError:
            time.sleep(0.2)
    raise EdgepocError(f"module {m.hash[:16]} not on chain within {timeout:.0f} s")


def verify_cmd(home: Path = typer.Option(..., "--home", help="A node's home folder.")) -> None:
    """Re-check every hash, signature, commit and re-simulated latency from the store alone."""
    from edgepoc.chain.abci.verify import verify_app_chain

    rep = verify_app_chain(home)
    print_json({"ok": rep.ok, "height": rep.height, "blocks": rep.blocks, "tasks": rep.tasks, "evidence": rep.evidence,
                "signatures": rep.signatures, "problems": rep.problems})
    if not rep.ok:
        raise EdgepocError(f"chain verify failed at {rep.problems[0]}")


def contributions_cmd(
    node: Optional[str] = typer.Option(None, help="Node API URL (default: node0 of --dir)."),
    dir: Optional[Path] = typer.Option(None, "--dir", help="Network folder."),
    home: Optional[Path] = typer.Option(None, "--home", help="Read a node's store directly instead of its API."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The contribution table: scores, rewards, penalties, who may propose."""
    if home is not None:  # a node's application store (works while the network is down)
        from edgepoc.chain import consensus as rules
        from edgepoc.chain.abci.app import voting_powers
        from edgepoc.chain.abci.node import load_genesis
        from edgepoc.chain.abci.store import AppStore

        g = load_genesis(home)
        store = AppStore(home / "data" / "app.sqlite", readonly=True)
        state = store.state() or rules.initial_state(g)
        store.close()
        q, powers = rules.qualified(g, state), voting_powers(g.params, state.scores)
        doc = {"height": state.height, "validators": [
            {"name": v.name, "address": v.address, "score": state.scores[i] / rules.MICRO, "balance": state.balances[i] / rules.MICRO,
             "penalties": state.penalties[i], "qualified": q[i], "proposer_share": powers[i] / sum(powers),
             "power": powers[i]} for i, v in enumerate(g.validators)]}
    else:
        from edgepoc.client import NodeUnreachable

        try:
            doc = _client([node] if node else None, dir).get("/contributions")
        except NodeUnreachable as exc:
            raise EdgepocError(f"{exc}{_stopped_hint(dir, 'contributions')}") from None
    if as_json:
        print_json(doc)
        return
    table = Table("validator", "address", "score", "reward balance", "penalties", "qualified", "proposer share",
                  title=f"contributions at height {doc['height']}")
    for r in doc["validators"]:
        table.add_row(r["name"], r["address"][:12], f"{r['score']:.4g}", f"{r['balance']:.4f}", str(r["penalties"]),
                      "yes" if r["qualified"] else "no", f"{100 * r['proposer_share']:.1f}%")
    stdout_console().print(table)


def _when(t: Optional[float]) -> str:
    import datetime as dt

    if t is None:
        return "-"
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def _read(nodes: Optional[list[str]], dir: Optional[Path], path: str, what: str):
    from edgepoc.client import NodeUnreachable

    try:
        return _client(nodes, dir).get(path)
    except NodeUnreachable as exc:
        raise EdgepocError(f"{exc}{_stopped_hint(dir, what) if what else ''}") from None


def show_cmd(
    ref: str = typer.Argument("latest", help="Block height, or `latest`."),
    node: Optional[list[str]] = typer.Option(None, metavar="URL", help="Node API URL (repeatable; default: the nodes of --dir)."),
    dir: Optional[Path] = typer.Option(None, "--dir", help="Network folder."),
    limit: int = typer.Option(20, help="Tasks to list (the rest are summarised per provider)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """One block: proposer, time, its tasks and where they ran, claimed latency, contributions."""
    if ref != "latest" and not ref.isdigit():
        raise InputError(f"HEIGHT: expected a block height or `latest`, got {ref!r}")
    doc = _read(node, dir, f"/blocks/{ref}", "")
    if as_json:
        print_json(doc)
        return
    b = doc["block"]
    alloc = b.get("allocation") or {}
    providers = alloc.get("providers") or [str(p) for p in b.get("assignment", [])]
    latencies = alloc.get("latencies") or []
    tasks = b.get("tasks") or []
    console = stdout_console()
    arb = b.get("arbitration")
    console.print(f"[bold]block {doc.get('height', b.get('height'))}[/]  hash {doc['hash'][:16]}  {_when(b.get('time'))}")
    console.print(f"proposer {b.get('proposer_name') or str(b.get('proposer'))[:12]}, round {b.get('round', '-')}, "
                  f"{len(tasks)} tasks, claimed total latency {alloc.get('claimed_latency', b.get('claimed_latency', 0)):.4g}"
                  f"{', arbitrated (' + str(arb.get('method') or 'arbiter') + ')' if isinstance(arb, dict) else ''}"
                  f", {len(b.get('evidence') or [])} evidence")
    if tasks:
        table = Table("task", "arrival", "demand", "provider", "latency", title=f"tasks (first {min(limit, len(tasks))})")
        for i, t in enumerate(tasks[:limit]):
            table.add_row(str(t.get("id", "-"))[:16], f"{t.get('arrival', 0):.3f}",
                          ",".join(f"{x:.3g}" for x in t.get("demand", [])), providers[i] if i < len(providers) else "-",
                          f"{latencies[i]:.4g}" if i < len(latencies) else "-")
        console.print(table)
        per = Table("provider", "tasks", "mean latency", title="per provider")
        shapley = alloc.get("shapley") or b.get("contributions") or []
        names = sorted(set(providers))
        for name in names:
            idx = [i for i, p in enumerate(providers) if p == name]
            lat = [latencies[i] for i in idx if i < len(latencies)]
            per.add_row(name, str(len(idx)), f"{sum(lat) / len(lat):.4g}" if lat else "-")
        console.print(per)
        if shapley:
            console.print("shapley value per validator (genesis order): " + ", ".join(f"{x:.4g}" for x in shapley))


def task_cmd(
    task_id: str = typer.Argument(..., help="Task id (as `submit` prints it)."),
    node: Optional[list[str]] = typer.Option(None, metavar="URL", help="Node API URL (repeatable; default: the nodes of --dir)."),
    dir: Optional[Path] = typer.Option(None, "--dir", help="Network folder."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Where one task stands: committed (block, provider, latency), pending, rejected (why) or unknown."""
    if not task_id or len(task_id) > 256:
        raise InputError("TASK_ID: expected a task id of at most 256 characters")
    if "/" in task_id or not task_id.isprintable():  # one path segment of the API's URL
        raise InputError(f"TASK_ID: expected a task id as `submit` prints it (32 hex characters), got {task_id[:40]!r}")
    from edgepoc.client import task_path

    doc = _task_doc(_read(node, dir, task_path(task_id), ""))
    if as_json:
        print_json(doc)
        return
    _task_table(task_id, doc)
    print_json(doc)  # the last line, for scripts (SPEC §7b)
    if doc.get("status", "unknown") == "unknown":
        raise EdgepocError(f"task {task_id}: unknown to this node (never submitted, or not yet gossiped to it)")


def _task_doc(doc: dict) -> dict:
    """The API's task record as `task` prints it: `provider` is the provider's name, as in `submit`'s counts and
    its `--results` files (SPEC §7b), so one task reads the same in both; the API's index stays as
    `provider_index`."""
    if doc.get("provider_name") is not None:
        doc = dict(doc)
        doc["provider_index"] = doc.get("provider")
        doc["provider"] = doc.pop("provider_name")
    return doc


def _task_table(task_id: str, doc: dict) -> None:
    table = Table(show_header=False, title=f"task {task_id}")
    status = doc.get("status", "unknown")
    table.add_row("status", status)
    if status == "committed":
        table.add_row("block", str(doc.get("height")))
        table.add_row("provider", str(doc.get("provider")))
        table.add_row("latency", f"{doc['latency']:.4g} s" if isinstance(doc.get("latency"), (int, float)) else "-")
        if doc.get("arrival") is not None:
            table.add_row("arrival", f"{doc['arrival']:.3f} s on the chain clock")
        table.add_row("committed at", _when(doc.get("committed_at") or doc.get("block_time")))
    elif status in ("assigned", "reassigned", "executed"):
        table.add_row("block", str(doc.get("height")))
        table.add_row("provider", str(doc.get("provider")))
        table.add_row("runs", f"{doc.get('function')}({', '.join(map(str, doc.get('args') or []))}) of "
                              f"{str(doc.get('module'))[:16]}")
        if status == "executed":
            table.add_row("result", f"{doc.get('result')} ({doc.get('exec_status')}, fuel {doc.get('fuel_used')})")
            table.add_row("latency", f"measured {doc.get('measured_latency'):.4g} s, simulated "
                                     f"{doc.get('simulated_latency'):.4g} s")
            if doc.get("audit"):
                table.add_row("audit", json.dumps(doc["audit"]))
        if doc.get("reassigned"):
            table.add_row("reassigned", f"{doc['reassigned']} time(s)")
    elif doc.get("reason"):
        table.add_row("reason", str(doc["reason"]))
    Console(stderr=True).print(table)


def register(app: typer.Typer) -> None:
    app.command("node")(node_cmd)
    app.command("arbiter")(arbiter_cmd)
    network_app.command("init")(network_init)
    network_app.command("up")(network_up)
    network_app.command("down")(network_down)
    network_app.command("status")(network_status)
    network_app.command("stop")(network_stop)
    network_app.command("start")(network_start)
    network_app.command("keygen")(network_keygen)
    network_app.command("genesis")(network_genesis)
    network_app.command("join")(network_join)
    network_app.command("service")(network_service)
    provider_app = typer.Typer(help="One provider's side of a multi-machine network (docs/multihost.md).",
                               no_args_is_help=True)
    provider_app.command("init", help="Make this provider's keys on this machine and print its public part "
                                      "(the same as `network keygen`).")(network_keygen)
    app.add_typer(provider_app, name="provider")
    app.add_typer(network_app, name="network")
    app.command("submit")(submit_cmd)
    chain_app.command("verify")(verify_cmd)
    chain_app.command("show")(show_cmd)
    app.command("task")(task_cmd)
    module_app = typer.Typer(help="WebAssembly modules on chain (the code tasks run).", no_args_is_help=True)
    module_app.command("add")(module_add)
    app.add_typer(module_app, name="module")
    app.add_typer(chain_app, name="chain")
    app.command("contributions")(contributions_cmd)
