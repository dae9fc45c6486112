"""`edgepoc node`, `arbiter`, `network ...`, `submit`, `chain verify`, `contributions`: the PoC chain."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from edgepoc.cli.common import parse_params, print_json
from edgepoc.errors import EdgepocError, InputError

network_app = typer.Typer(help="A local testnet of provider nodes on loopback.", no_args_is_help=True)
chain_app = typer.Typer(help="Inspect and verify a node's chain.", no_args_is_help=True)
DEFAULT_DIR = Path("testnet")


def node_cmd(
    home: Path = typer.Option(..., "--home", help="The node's home folder (from `network init`)."),
    byzantine: Optional[str] = typer.Option(None, help="Test only: misbehave (grab-all, equivocate; comma-separated)."),
) -> None:
    """Run one provider's node (consensus, store, peer transport, client API) until killed."""
    from edgepoc.chain.node import run_node

    run_node(home, [m for m in byzantine.split(",") if m] if byzantine else None)


def arbiter_cmd(
    home: Path = typer.Option(..., "--home", help="The arbiter's home folder (network/arbiter)."),
    method: str = typer.Option("auto", help="Allocation method: auto (teacher, else GA), or any solver name."),
) -> None:
    """Run the resource management centre's arbiter (teacher allocations, signed) until killed."""
    import asyncio
    import logging

    from edgepoc.chain.arbiter import run_arbiter

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        cfg = json.loads((home / "config.json").read_text())
    except FileNotFoundError:
        raise EdgepocError(f"arbiter: {home}/config.json does not exist (run `edgepoc network init`)") from None
    asyncio.run(run_arbiter(home, cfg["host"], int(cfg["port"]), method, cfg.get("model")))


def network_init(
    nodes: int = typer.Option(4, help="Number of provider nodes."),
    base_port: int = typer.Option(26600, help="First port (node i: peer base+2i, API base+2i+1; arbiter after); 0 = free ports."),
    dir: Path = typer.Option(DEFAULT_DIR, "--dir", help="Folder for the network."),
    seed: int = typer.Option(0, help="Seed for keys and provider capacities."),
    chain_id: str = typer.Option("edgepoc-local", help="Chain id."),
    param: Optional[list[str]] = typer.Option(None, "--param", "-p", help="Consensus parameter key=value (repeatable)."),
    student: Optional[Path] = typer.Option(None, help="Student checkpoint every node allocates with (default: bundled, else greedy)."),
    teacher: Optional[Path] = typer.Option(None, help="Teacher checkpoint for the arbiter (default: bundled, else GA)."),
) -> None:
    """Write keys, genesis and configs for a local testnet."""
    from edgepoc.chain.network import init_network

    for name, path in (("--student", student), ("--teacher", teacher)):
        if path is not None and not path.is_file():
            raise InputError(f"{name}: {path} does not exist")
    doc = init_network(dir, nodes, base_port, seed, parse_params(param), chain_id, student=student, teacher=teacher)
    typer.echo(f"initialised {nodes} nodes in {dir}/ (chain {chain_id}); start them with `edgepoc network up --dir {dir}`",
               err=True)
    for n in doc["nodes"]:
        typer.echo(f"  {n['name']}  {n['address'][:12]}  api {n['api']}  peer :{n['peer_port']}", err=True)


def network_up(dir: Path = typer.Option(DEFAULT_DIR, "--dir"), wait: float = typer.Option(60.0, help="Seconds to wait for the nodes' APIs.")) -> None:
    """Start every node and the arbiter as separate processes."""
    from edgepoc.chain.network import up, wait_ready

    pids = up(dir)
    wait_ready(dir, wait)
    typer.echo("up: " + ", ".join(f"{k} (pid {v})" for k, v in pids.items()), err=True)


def network_down(dir: Path = typer.Option(DEFAULT_DIR, "--dir")) -> None:
    """Stop every node and the arbiter."""
    from edgepoc.chain.network import down

    stopped = down(dir)
    typer.echo(f"stopped: {', '.join(stopped) or 'nothing was running'}", err=True)


def network_status(dir: Path = typer.Option(DEFAULT_DIR, "--dir"), as_json: bool = typer.Option(False, "--json")) -> None:
    """Each node's height, last commit and peers."""
    from edgepoc.chain.network import status

    rows = status(dir)
    if as_json:
        print_json(rows)
        return
    table = Table("node", "pid", "height", "last commit", "round/step", "mempool", "tasks", "peers up")
    for r in rows:
        if "height" not in r:
            table.add_row(r["name"], str(r["pid"] or "-"), "-", r.get("error", "down"), "", "", "", "")
            continue
        age = r.get("last_commit_age")
        peers = sum(1 for p in r["peers"] if p["connected"])
        table.add_row(r["name"], str(r["pid"]), str(r["height"]), "-" if age is None else f"{age:.1f} s ago",
                      f"{r['round']}/{r['step']}", str(r["mempool"]), str(r["tasks_committed"]),
                      f"{peers}/{len(r['peers'])}")
    Console().print(table)


def network_stop(name: str = typer.Argument(..., help="node<i> or arbiter"), dir: Path = typer.Option(DEFAULT_DIR, "--dir"),
                 kill: bool = typer.Option(False, "--kill", help="SIGKILL (a crash) instead of SIGTERM.")) -> None:
    """Stop one node (for demos and fault tests)."""
    from edgepoc.chain.network import stop_member

    was = stop_member(dir, name, kill=kill)
    typer.echo(f"{name}: {'stopped' if was else 'was not running'}", err=True)


def network_start(name: str = typer.Argument(..., help="node<i> or arbiter"), dir: Path = typer.Option(DEFAULT_DIR, "--dir")) -> None:
    """Start (restart) one node; it recovers from its store and catches up."""
    from edgepoc.chain.network import start_member

    pid = start_member(dir, name)
    typer.echo(f"{name}: running (pid {pid})", err=True)


def _node_url(node: Optional[str], dir: Optional[Path]) -> str:
    if node:
        return node
    from edgepoc.chain.network import load_network

    return load_network(dir or DEFAULT_DIR)["nodes"][0]["api"]


def submit_cmd(
    instance: Optional[Path] = typer.Argument(None, help="Instance JSON whose tasks to submit (else --count generated tasks)."),
    node: Optional[str] = typer.Option(None, help="Node API URL (default: node0 of --dir)."),
    dir: Optional[Path] = typer.Option(None, "--dir", help="Network folder (for the node URL and client key)."),
    key: Optional[Path] = typer.Option(None, help="Client key (default: <dir>/client_key.json, else a fresh key)."),
    count: int = typer.Option(100, help="Generated tasks (without INSTANCE)."),
    rate: float = typer.Option(0.0, help="Tasks per second to send generated tasks at (0: all at once)."),
    seed: int = typer.Option(0, help="Seed for generated demands."),
    nonce: Optional[int] = typer.Option(None, help="First nonce (default: microseconds now, so reruns never replay)."),
    batch: int = typer.Option(500, help="Tasks per request."),
    wait: bool = typer.Option(False, "--wait", help="Block until the tasks are committed."),
    timeout: float = typer.Option(120.0, help="Seconds to wait with --wait."),
) -> None:
    """Sign tasks with a client key and submit them; with --wait, report where they were committed."""
    from edgepoc.chain.client import random_tasks, submit, tasks_from_instance, wait_committed
    from edgepoc.chain.crypto import SigningKey
    from edgepoc.chain.httpapi import HttpClient
    from edgepoc.game.files import read_instance

    if batch < 1 or count < 1 or rate < 0:
        raise InputError("--batch and --count must be >= 1, --rate >= 0")
    url = _node_url(node, dir)
    if key is None and (dir or DEFAULT_DIR).joinpath("client_key.json").exists():
        key = (dir or DEFAULT_DIR) / "client_key.json"
    signer = SigningKey.load(key) if key else SigningKey.generate()
    client = HttpClient(url)
    st = client.get("/status")
    chain_id, clock = st["chain_id"], time.time() - st["genesis_time"]
    nonce0 = nonce if nonce is not None else time.time_ns() // 1000
    t0 = time.monotonic()
    if instance is not None:
        tasks = tasks_from_instance(read_instance(instance), signer, chain_id, clock, nonce0)
        ids, rejected = submit(client, tasks, batch)
    else:
        resources = int(st["resources"])
        ids, rejected = [], []
        step = batch if rate == 0 else max(1, int(rate / 10))
        for i in range(0, count, step):
            if rate > 0:
                time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
            now = time.time() - st["genesis_time"]
            tasks = random_tasks(min(step, count - i), resources, signer, chain_id, now, nonce0 + i, seed + i)
            a, r = submit(client, tasks, batch)
            ids.extend(a)
            rejected.extend(r)
    typer.echo(f"submitted {len(ids)} tasks to {url} ({len(rejected)} rejected)", err=True)
    for r in rejected[:5]:
        typer.echo(f"  rejected #{r['index']}: {r['error']}", err=True)
    if not wait:
        print_json({"submitted": len(ids), "rejected": len(rejected), "ids": ids})
        return
    res = wait_committed(client, ids, timeout)
    heights = sorted({s["height"] for s in res.committed.values()})
    providers = Counter(s.get("provider_name", s["provider"]) for s in res.committed.values())
    where = f"blocks {heights[0]}..{heights[-1]}" if heights else "no block"
    typer.echo(f"committed {len(res.committed)}/{len(ids)} tasks in {where} within {res.seconds:.2f} s; "
               f"providers: {', '.join(f'{k}: {v}' for k, v in sorted(providers.items()))}", err=True)
    print_json({"submitted": len(ids), "rejected": len(rejected), "committed": len(res.committed),
                "missing": len(res.missing), "heights": heights, "providers": dict(providers), "seconds": res.seconds})
    if res.missing:
        raise EdgepocError(f"{len(res.missing)} tasks not committed within {timeout:.0f} s")


def verify_cmd(home: Path = typer.Option(..., "--home", help="A node's home folder.")) -> None:
    """Re-check every hash, signature, commit and re-simulated latency from the store alone."""
    from edgepoc.chain.verify import verify_chain

    rep = verify_chain(home, show_progress=True)
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
    if home is not None:
        from edgepoc.chain import consensus as rules
        from edgepoc.chain.genesis import Genesis
        from edgepoc.chain.store import BlockStore

        g = Genesis.load(home / "genesis.json")
        store = BlockStore(home / "data" / "chain.sqlite")
        state = store.state() or rules.initial_state(g)
        store.close()
        q, w = rules.qualified(g, state), rules.proposer_weights(g, state)
        doc = {"height": state.height, "validators": [
            {"name": v.name, "address": v.address, "score": state.scores[i], "balance": state.balances[i],
             "penalties": state.penalties[i], "qualified": q[i], "proposer_share": w[i] / (sum(w) or 1)}
            for i, v in enumerate(g.validators)]}
    else:
        from edgepoc.chain.httpapi import HttpClient

        doc = HttpClient(_node_url(node, dir)).get("/contributions")
    if as_json:
        print_json(doc)
        return
    table = Table("validator", "address", "score", "reward balance", "penalties", "qualified", "proposer share",
                  title=f"contributions at height {doc['height']}")
    for r in doc["validators"]:
        table.add_row(r["name"], r["address"][:12], f"{r['score']:.4g}", f"{r['balance']:.4f}", str(r["penalties"]),
                      "yes" if r["qualified"] else "no", f"{100 * r['proposer_share']:.1f}%")
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("node")(node_cmd)
    app.command("arbiter")(arbiter_cmd)
    network_app.command("init")(network_init)
    network_app.command("up")(network_up)
    network_app.command("down")(network_down)
    network_app.command("status")(network_status)
    network_app.command("stop")(network_stop)
    network_app.command("start")(network_start)
    app.add_typer(network_app, name="network")
    app.command("submit")(submit_cmd)
    chain_app.command("verify")(verify_cmd)
    app.add_typer(chain_app, name="chain")
    app.command("contributions")(contributions_cmd)
