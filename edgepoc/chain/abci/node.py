"""One provider's node on CometBFT: the edgepoc app process and the cometbft process beside it.

`edgepoc node --home H` serves ABCI over gRPC (service `cometbft.abci.v1.ABCIService`) to CometBFT,
starts `cometbft start --home H/cometbft` as its child (same process group: `network stop --kill`
takes both down, as a machine crash would), and serves the client HTTP API (FastAPI, `chain.api`)
until SIGTERM. Submission goes through CometBFT's RPC (`broadcast_tx_sync`), so every task enters
the chain through the replicated mempool and CheckTx.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from edgepoc.chain.abci.app import PocApplication, byzantine_modes, make_application, voting_powers
from edgepoc.chain.abci.store import AppStore
from edgepoc.chain.consensus import MICRO
from edgepoc.chain.crypto import address_of
from edgepoc.chain.genesis import Genesis
from edgepoc.errors import EdgepocError, InputError

if TYPE_CHECKING:
    import grpc

log = logging.getLogger("edgepoc.node")
_FATAL: list[str] = []  # why this node stopped itself, if it did (run_node then ends with that error)


# cometbft logs every block at its default level: about 70 MiB a day per node on an idle 4-node chain (measured),
# and a damaged database made it log a stack trace per RPC call, 233 MB in 2 minutes. Its output therefore goes
# through this node into cometbft.log, rotated by size (cometbft.log.1 .. .3, the stdlib's RotatingFileHandler),
# so a node never fills its disk with its own log.
COMETBFT_LOG_MAX_BYTES = 64 << 20
COMETBFT_LOG_BACKUPS = 3


# A damaged CometBFT database (pebble: a bad table or manifest). With a bad manifest cometbft exits at once; with a
# table that fails its checksum it keeps running, cannot serve its RPC and logs a panic with a stack trace for
# every call (measured: 233 MB of log in 2 minutes), so a start waited its whole timeout and then suggested a
# longer wait. `network start` watches cometbft.log for these lines and stops the start with the way out; a node
# started otherwise (systemd, `edgepoc node`) says it in /status (`cometbft_error`).
# pebble's own words only: a bare "checksum mismatch" could come from elsewhere, and a match stops a start
DAMAGED_DB = re.compile(r"failed to initialize database"
                        r"|pebble(?:/\w+)?: (?:could not open table|invalid table|invalid chunk|corrupt)")
# ... but not a database cometbft could not open for another reason (a lock held, a read-only disk, permissions,
# a full disk): moving it aside would be the wrong advice there
_NOT_DAMAGE = re.compile(r"resource temporarily unavailable|/LOCK\b|lock held|read-only file system|permission denied"
                         r"|no space left")  # Go's words for these errnos


def damaged_db(line: str) -> bool:
    """Whether a cometbft log line says its database is damaged."""
    return DAMAGED_DB.search(line) is not None and _NOT_DAMAGE.search(line) is None


DAMAGED_DB_HINT = (
    "cometbft's database is damaged: restore the node's cometbft/data from a backup, or move its blockstore.db, "
    "state.db, evidence.db and cs.wal aside (keep priv_validator_state.json, the guard against signing twice) "
    "together with data/app.sqlite*, and start it again: the node then syncs both from its peers")


def cometbft_said(line: str) -> str:
    """A cometbft log line as one short reason: its err="..." if it has one, else the line without its time and level."""
    quoted = re.search(r'err="([^"]*)"', line)
    said = quoted.group(1) if quoted else re.sub(
        r"^(?:\d{4}/\d\d/\d\d [\d:.]+ |[DIWE]\[[^\]]*\]\s*)(?:background error: )?", "", line.strip())
    return said[:300]


def relay_log(stream: Any, path: Path, max_bytes: int = COMETBFT_LOG_MAX_BYTES,
              backups: int = COMETBFT_LOG_BACKUPS, on_line: Callable[[str], None] | None = None) -> threading.Thread:
    """Copy a child's output (a binary pipe) line by line into `path`, rotated at `max_bytes` with `backups` old
    files, until the pipe closes; returns the running thread. `on_line` sees each line first. It never stops
    reading: a line that cannot be written (a full disk) is dropped, since a child blocked on a full pipe would
    stop consensus."""
    import logging.handlers

    handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups,
                                                   encoding="utf-8", errors="replace")
    handler.terminator = ""  # the child's lines keep their own newlines
    handler.handleError = lambda record: None  # type: ignore[method-assign]

    def run() -> None:
        try:
            for raw in stream:
                line = raw.decode("utf-8", "replace")
                if on_line is not None:
                    try:
                        on_line(line)
                    except Exception:  # a watcher's bug must not stop the relay (and with it cometbft)
                        pass
                handler.emit(logging.makeLogRecord({"msg": line}))
        finally:
            handler.close()
    thread = threading.Thread(target=run, name=f"log {path.name}", daemon=True)
    thread.start()
    return thread


def stop_node(reason: str) -> None:
    """Stop this node the way the operator's SIGTERM does, but remember why: it ends with a non-zero exit."""
    _FATAL.append(reason)
    os.kill(os.getpid(), signal.SIGTERM)


class Stopped(BaseException):
    """SIGTERM in the node's main thread. Its default action killed the process where it stood: uvicorn handles
    the signal while it serves, then raises it again after restoring the previous handler, so run_node's cleanup
    never ran and a node stopped by a failure looked to a supervisor like one the operator stopped. Raised
    instead, it unwinds through that cleanup to `run_node`, which then ends with an error if `stop_node` recorded
    a failure (the command exits 2) and returns if not (exit 0)."""


def _raise_stopped(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: a second one must not cut the cleanup short
    raise Stopped()


MAX_SUBMIT_ITEMS = 5000


def cometbft_binary() -> str:
    """The pinned CometBFT build (`make install` puts it beside the venv's python)."""
    here = Path(sys.executable).parent / "cometbft"
    path = str(here) if here.exists() else shutil.which("cometbft")
    if path is None:
        raise EdgepocError("cometbft is not installed (run `make install`)")
    return path


@dataclass
class AppConfig:
    """`app.json` in a node's home: its name, ports and allocator."""

    name: str
    host: str
    abci_port: int
    api_port: int
    rpc_port: int
    p2p_port: int
    arbiter_url: str | None = None
    model: str | None = None
    byzantine: list[str] = field(default_factory=list)
    worker_fault: str | None = None  # test builds: slow:<s>, wrong, fake (edgepoc.chain.abci.worker)
    worker: bool = True  # run the provider's worker beside cometbft
    # a worker whose heartbeat is still this long is killed and restarted (WorkerSupervisor); a task in progress
    # beats, so this bounds a hang, not a task's length
    worker_stall_seconds: float = 60.0
    allowed_peers: list[str] = field(default_factory=list)  # node ids kept as peers (edgepoc.chain.abci.peers)
    allowed_hosts: list[str] = field(default_factory=list)  # more IPs they may connect from

    @classmethod
    def load(cls, home: Path) -> "AppConfig":
        try:
            config = cls(**json.loads((Path(home) / "app.json").read_text()))
        except FileNotFoundError:
            raise EdgepocError(f"node: {missing_file(Path(home), Path(home) / 'app.json')}") from None
        except (TypeError, json.JSONDecodeError) as exc:
            raise InputError(f"{home}/app.json: malformed ({exc})") from None
        stall = config.worker_stall_seconds
        if isinstance(stall, bool) or not isinstance(stall, (int, float)) or not 1.0 <= stall < float("inf"):
            raise InputError(f"{home}/app.json: worker_stall_seconds must be a number of seconds >= 1, got {stall!r}")
        return config


def disk_free(home: Path) -> int | None:
    """Free bytes on the fuller of the disks holding a node's home, its store and its cometbft data (they may be
    mounted apart); None if none can be read."""
    free = []
    for d in (home, home / "data", home / "cometbft" / "data"):
        try:
            free.append(shutil.disk_usage(d).free)
        except OSError:
            pass
    return min(free) if free else None


def missing_file(home: Path, path: Path) -> str:
    """What to say of a home's missing file. It said "run `edgepoc network init`", which makes a new network with
    new keys: wrong for a node whose disk is not mounted or whose file was lost."""
    if not home.exists():
        return f"{home} does not exist (a disk not mounted, a folder moved? `edgepoc network init` makes a network's homes)"
    if home.is_dir() and not any(home.iterdir()):
        return f"{home} is empty (a disk not mounted?), not a home `edgepoc network init` made"
    return f"{path} does not exist: restore it from a backup (`edgepoc network init` would make a new network, with new keys)"


def unwritable(home: Path) -> str | None:
    """Why a node's home, its store or its cometbft data cannot be written, with what to do; None if they can.
    Started there, a node failed on its first write with the bare OSError (a log file: "Read-only file system"),
    or, past that, cometbft and the store failed one after the other."""
    import errno
    import tempfile

    for d in (home, home / "data", home / "cometbft" / "data"):
        if not d.is_dir():
            continue
        try:
            fd, name = tempfile.mkstemp(prefix=".write-check-", dir=d)
        except OSError as exc:
            why = {errno.EROFS: "a read-only file system (a disk error remounts one read-only: see `dmesg`, repair "
                                "the disk or remount it read-write)",
                   errno.EACCES: "permission denied (made by another user? start the node as that user, or chown "
                                 "the home to this one)",
                   errno.ENOSPC: "no space left on the device (free some space)"}.get(exc.errno, exc.strerror)
            return f"cannot write to {d}: {why}"
        os.close(fd)
        os.unlink(name)
    return None


def load_genesis(home: Path) -> Genesis:
    """The application's genesis: the `app_state` of CometBFT's genesis.json (one file for both)."""
    path = Path(home) / "cometbft" / "config" / "genesis.json"
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise EdgepocError(missing_file(Path(home), path)) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not JSON ({exc})") from None
    return Genesis.from_dict(doc.get("app_state") or {})


def validator_address(home: Path) -> str:
    doc = json.loads((Path(home) / "cometbft" / "config" / "priv_validator_key.json").read_text())
    return doc["address"].lower()


def checktx_log(message: str) -> str:
    """The CheckTx reason inside CometBFT's broadcast error (v1 answers an invalid tx with an RPC error)."""
    m = re.search(r"log='(.*)', codespace", message)
    return m.group(1) if m else message


# CometBFT keeps its mempool endpoint closed for a moment after block sync hands over to consensus
# (status already says catching_up=false): a submission in that window is retried, not rejected.
CATCHING_UP_RETRY_S = 10.0


class RpcClient:
    """CometBFT's JSON-RPC over HTTP, one kept-alive connection per thread."""

    def __init__(self, host: str, port: int, timeout: float = 10.0):
        self.host, self.port, self.timeout = host, port, timeout
        self._local = threading.local()

    def broadcast(self, tx: str) -> dict:
        """broadcast_tx_sync, retried while the node's mempool is still closed for catching up."""
        deadline = time.monotonic() + CATCHING_UP_RETRY_S
        while True:
            try:
                return self.call("broadcast_tx_sync", {"tx": tx})
            except EdgepocError as exc:
                if "catching up" not in str(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(0.2)

    def call(self, method: str, params: dict | None = None, timeout: float | None = None) -> dict:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}})
        for attempt in range(2):
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout or self.timeout)
            try:
                conn.request("POST", "/", body=body, headers={"Content-Type": "application/json"})
                doc = json.loads(conn.getresponse().read())
                if "error" in doc:
                    err = doc["error"]
                    raise EdgepocError(f"{err.get('message', '')} {err.get('data', '')}".strip())
                return doc["result"]
            except (OSError, http.client.HTTPException, ValueError) as exc:
                conn.close()
                self._local.conn = None
                if attempt:
                    raise EdgepocError(f"cometbft rpc {self.host}:{self.port} unreachable ({exc})") from None
        raise AssertionError("unreachable")


class CometNodeView:
    """The NodeView (edgepoc.chain.api.view) of an application and its CometBFT node."""

    def __init__(self, app: PocApplication, config: AppConfig, address: str, node_id: str | None = None):
        self.app = app
        self.config = config
        self.address = address
        self.node_id = node_id  # CometBFT's p2p id of this node (network up/start check who answers)
        self.genesis = app.genesis
        self.names = [v.name for v in self.genesis.validators]
        self.rpc = RpcClient("127.0.0.1", config.rpc_port)  # cometbft's RPC listens on loopback only
        self.started = time.time()
        self.worker: WorkerSupervisor | None = None  # the provider's worker, when this node runs one
        self.home: Path | None = None  # the node's home (its cometbft data too), when run as a node
        self.cometbft_damage: list[str] = []  # what cometbft said of a damaged database, if it did (`relay_log`)

    def _unix(self, clock: float) -> float:
        return self.genesis.genesis_time + clock

    def status(self) -> dict:
        app = self.app
        st = app.state
        rnd = step = None
        catching_up = None
        mempool = len(app.pending)
        reachable: dict[str, bool] = {}
        try:
            catching_up = bool(self.rpc.call("status", timeout=1.0)["sync_info"]["catching_up"])
            cs = self.rpc.call("consensus_state", timeout=1.0)["round_state"]["height/round/step"].split("/")
            rnd, step = int(cs[1]), {"1": "new-height", "2": "new-round", "3": "propose", "4": "prevote",
                                     "5": "prevote-wait", "6": "precommit", "7": "precommit-wait",
                                     "8": "commit"}.get(cs[2], cs[2])
            mempool = int(self.rpc.call("num_unconfirmed_txs", timeout=1.0)["n_txs"])
            peers = self.rpc.call("net_info", timeout=1.0)["peers"]
            up = {p["node_info"]["moniker"] for p in peers}
            reachable = {n: (n in up or n == self.config.name) for n in self.names}
        except (EdgepocError, KeyError, ValueError, IndexError):
            pass
        powers = voting_powers(app.params, st.scores)
        age = None if app.last_commit_time is None else time.time() - app.last_commit_time
        return {"name": self.config.name, "chain_id": self.genesis.chain_id, "address": self.address,
                "engine": "cometbft", "height": st.height, "app_hash": st.hash, "last_block_time": self._unix(st.last_time),
                "last_commit_age": age, "mempool": mempool, "tasks_committed": st.tasks_committed,
                "round": rnd, "step": step, "catching_up": catching_up, "resources": self.genesis.n_resources,
                # the per-task bound CheckTx applies to every demand: a client checks its tasks before signing
                "demand_bounds": [app.params.min_demand, app.params.max_demand],
                # starting: cometbft not answering yet (handshake); catching up: block sync; in consensus: past it
                "state": "starting" if catching_up is None else "catching up" if catching_up else "in consensus",
                "node_id": self.node_id,
                "genesis_time": self.genesis.genesis_time,
                "validators": [{"name": v.name, "address": v.address, "power": powers[i],
                                "reachable": reachable.get(v.name)} for i, v in enumerate(self.genesis.validators)],
                "total_power": sum(powers), "allocator": app.allocator_name, "byzantine": sorted(app.byzantine),
                "pid": os.getpid(), "uptime": time.time() - self.started, "explorer": "/explorer/",
                "abci_seconds": dict(app.profile), "cpu_seconds": time.process_time(), "builds": _builds(),
                "worker": None if self.worker is None else self.worker.describe(),
                # when a disk fills, cometbft stops writing and the node falls behind while this still answers
                "disk_free_bytes": disk_free(self.home if self.home is not None else self.app.store.path.parent),
                # a damaged database: cometbft runs on but serves nothing, so the node looks "starting" for ever
                "cometbft_error": (f"{self.cometbft_damage[-1]} ({DAMAGED_DB_HINT})" if self.cometbft_damage
                                   else None)}

    def block(self, height: int | None) -> dict | None:
        h = self.app.state.height if height is None else height
        rec = self.app.store.block(h)
        if rec is None:
            return None
        rec = {**rec, "time": self._unix(rec["time"]), "clock": rec["time"]}
        return {"height": h, "hash": rec["hash"], "block": rec, "commit": None}

    def blocks(self, before: int | None, limit: int, with_tasks: bool = False) -> list[dict]:
        """Summaries read from indexed columns: cheap at any limit, so the API never parses task lists."""
        return [{k: v for k, v in {**r, "time": self._unix(r["time"]), "rounds": None}.items() if k != "method"}
                for r in self.app.store.summaries(before, limit, with_tasks=with_tasks)]

    def task(self, task_id: str) -> dict:
        """Where a task stands; a task that really runs also has its work: `assigned` (or `reassigned`) to a
        provider, then `executed` with its result, receipt and measured latency beside the simulated one."""
        out = self.tasks([task_id])[task_id]
        got = self.app.pending.get(task_id) if out["status"] == "pending" else None
        if got is not None:  # how many of its client's tasks wait here before it (one pass: this query only)
            accepted, client = got
            out["ahead"] = sum(1 for t, c in list(self.app.pending.values()) if c == client and t < accepted)
        return out

    def tasks(self, ids: list[str]) -> dict[str, dict]:
        """`task` for many ids with a few batched queries."""
        rows = self.app.store.tasks(ids)
        works = self.app.store.work([i for i in ids if i in rows])
        return {i: self._task(i, rows.get(i), works.get(i)) for i in ids}

    def _task(self, task_id: str, row: dict | None, work: dict | None) -> dict:
        if row is None:
            got = self.app.pending.get(task_id)
            if got is None:
                return {"id": task_id, "status": "unknown"}
            st = self.app.state
            # a client's tasks enter blocks in order, and none while its admitted work keeps the network busy more
            # than max_client_backlog ahead (docs/consensus.md, Admission): how long that is now
            busy = max(0.0, st.client_busy.get(got[1], st.last_time) - st.last_time)
            return {"id": task_id, "status": "pending", "client_busy_for": round(busy, 3)}
        row["provider_name"] = self.names[row["provider"]]
        row["simulated_latency"] = row["latency"]
        if work is not None:
            row["status"] = work["status"] if work["status"] != "assigned" or not work["reassigned"] else "reassigned"
            row.update({"provider": work["provider"], "provider_name": self.names[work["provider"]],
                        "receipt_height": work["receipt_height"], "deadline": self._unix(work["deadline"]),
                        "reassigned": work["reassigned"], "module": work["module"], "function": work["function"],
                        "args": work["args"]})
            if work["status"] == "executed":
                row.update({"result": work["result"], "result_hash": work["result_hash"],
                            "exec_status": work["exec_status"], "fuel_used": work["fuel_used"],
                            "measured_latency": work["measured_latency"], "audit": work["audit"]})
        return row

    def result(self, task_id: str) -> dict | None:
        """The result this node's worker computed for a task (content-addressed, kept for result_retention)."""
        from edgepoc.execution import ResultStore

        try:
            return ResultStore(Path(self.app.store.path).parent.parent / "results").get(task_id)
        except (ValueError, EdgepocError):
            return None

    def module(self, digest: str) -> dict | None:
        h = self.app.store.module_heights([digest])
        if not h:
            return None
        funcs, wasm = self.app.store.module(digest)
        return {"module": digest, "height": h[digest], "functions": funcs, "size": len(wasm)}

    def submit_module(self, item: dict) -> dict:
        """A client-signed module transaction, through CheckTx (compiled and admitted there) to the mempool."""
        from edgepoc.chain.abci.wire import ModuleTx

        if not isinstance(item, dict):
            raise InputError("module: expected a signed module transaction")
        m = ModuleTx.from_dict(item)
        limit = self.genesis.params.max_module_bytes
        if len(m.wasm) > limit:  # CheckTx says the same; over the engine's 1 MiB a tx never reaches it
            raise InputError(f"module is too large: {len(m.wasm)} bytes > limit {limit} (genesis max_module_bytes)")
        tx = base64.b64encode(m.tx()).decode()
        try:
            res = self.rpc.broadcast(tx)
        except EdgepocError as exc:
            if "already exists in cache" in str(exc):
                return {"module": m.hash, "accepted": True}
            raise InputError(checktx_log(str(exc))) from None
        if int(res.get("code", 0)) != 0 and "already on chain" not in res.get("log", ""):
            raise InputError(res.get("log", "rejected"))
        return {"module": m.hash, "accepted": True}

    def submit(self, items: list[dict]) -> dict:
        """Each item is a client-signed batch; it goes to CometBFT (broadcast_tx_sync: CheckTx on this node,
        then the replicated mempool). A rejected batch gets one entry per task id, with CheckTx's reason."""
        if not isinstance(items, list) or len(items) > MAX_SUBMIT_ITEMS:
            raise InputError(f"tasks: expected a list of at most {MAX_SUBMIT_ITEMS} signed batches")
        ids: list[str] = []
        rejected: list[dict] = []

        def reject(i: int, batch_ids: list[str], reason: str) -> None:
            rejected.extend({"index": i, "id": t, "error": reason} for t in batch_ids)

        for i, item in enumerate(items):
            try:
                batch = self.app.parse_batch(item)
            except InputError as exc:
                rejected.append({"index": i, "error": str(exc)})
                continue
            done = self.app.store.committed_ids(batch.ids)
            if done:
                reject(i, batch.ids, f"replay: task {sorted(done)[0]} is already committed")
                continue
            tx = base64.b64encode(batch.tx()).decode()
            try:
                res = self.rpc.broadcast(tx)
            except EdgepocError as exc:
                if "already exists in cache" in str(exc):  # a resubmission: harmless, the same ids
                    ids.extend(batch.ids)
                else:
                    reject(i, batch.ids, checktx_log(str(exc)))
                continue
            if int(res.get("code", 0)) == 0:
                ids.extend(batch.ids)
            else:
                reject(i, batch.ids, res.get("log", "rejected"))
        return {"accepted": len(ids), "ids": ids, "rejected": rejected}

    def contributions(self) -> dict:
        from edgepoc.chain import consensus as rules

        st = self.app.state
        q = rules.qualified(self.genesis, st)
        powers = voting_powers(self.app.params, st.scores)
        total = sum(powers)
        p = self.app.params
        avail = self.app.next_available()
        rows = [{"name": v.name, "address": v.address, "score": st.scores[i] / MICRO,
                 "balance": st.balances[i] / MICRO, "score_micro": st.scores[i], "balance_micro": st.balances[i],
                 "penalties": st.penalties[i], "qualified": q[i], "proposer_share": powers[i] / total,
                 "power": powers[i], "available": avail[i], "last_signed": st.last_signed[i],
                 "capacity_factor": st.capacity_factor[i] / MICRO,
                 "capacity_measured": st.receipts[i] >= p.min_receipts, "receipts": st.receipts[i],
                 "overdue": st.overdue[i], "audits_passed": st.audits_passed[i], "audits_failed": st.audits_failed[i],
                 "censorships": st.censorships[i]}
                for i, v in enumerate(self.genesis.validators)]
        return {"height": st.height, "validators": rows}

    def history(self, limit: int) -> list[dict]:
        out = []
        for h, t, proposer, powers, st in reversed(self.app.store.history(limit)):
            out.append({"height": h, "time": self._unix(t), "proposer": proposer,
                        "scores": {n: x / MICRO for n, x in zip(self.names, st.scores)},
                        "powers": dict(zip(self.names, powers)),
                        "rewards": {n: x / MICRO for n, x in zip(self.names, st.balances)},
                        "penalties": dict(zip(self.names, st.penalties)),
                        "backlog": {n: max(0.0, f - t) for n, f in zip(self.names, st.free_times)}})
        return out

    def evidence(self) -> list[dict]:
        return self.app.store.evidence()

    def arbitrations(self, limit: int, before: int | None = None) -> list[dict]:
        """Blocks allocated by the arbiter, newest first, from an index (paginate with `before`)."""
        return [{"height": r["height"], "time": self._unix(r["time"]), "proposer": r["proposer"],
                 "method": r["method"], "n_tasks": r["n_tasks"]}
                for r in self.app.store.summaries(before, limit, arbitrated=True)]


def _builds() -> dict[str, str]:
    """The builds this node runs (edgepoc, CometBFT, wasmtime, NumPy, Python), as genesis may pin them."""
    from edgepoc.chain.builds import local_builds

    return local_builds()


def _guarded(name: str, fn, fallback):
    """One ABCI method, timed, with no exception let out to CometBFT (an escaped one stops its consensus
    or mempool connection). Where a safe answer exists (reject the tx, reject the proposal, propose an
    empty block) it is given; FinalizeBlock and Commit have none (their answer is the state), so a failure
    there stops this node cleanly and CometBFT replays the block at restart."""
    def call(self: Any, req: Any, ctx: grpc.ServicerContext) -> Any:
        t0 = time.perf_counter()
        try:
            out = fn(self, req, ctx)
        except Exception as exc:
            log.exception("ABCI %s raised", name)
            if fallback is not None:
                return fallback(exc, req)
            log.critical("ABCI %s cannot answer (%s: %s); stopping this node", name, type(exc).__name__, exc)
            stop_node(f"ABCI {name} cannot answer ({type(exc).__name__}: {exc})")
            ctx.abort(grpc_status("INTERNAL"), f"{name} failed; the node is stopping")
        finally:
            self.app._spent(name, t0)
        if out is None:  # the application never loaded (`_Pending.fail`: stopped while starting); None is no answer
            ctx.abort(grpc_status("UNAVAILABLE"), f"{name}: the application is not running; the node is stopping")
        return out
    return call


def grpc_status(name: str) -> grpc.StatusCode:
    import grpc

    return getattr(grpc.StatusCode, name)


def _empty_proposal(app: PocApplication, req):
    """The last resort of PrepareProposal: its reports only, else nothing (never an exception)."""
    from edgepoc.chain.abci.proto import pb

    try:
        return app.empty_proposal(req)
    except Exception:
        log.exception("even the empty proposal failed at height %d", req.height)
        return pb.PrepareProposalResponse(txs=[])


def _servicer(app: PocApplication):
    """The gRPC ABCI service over `app`, every method behind `_guarded` (the safe answer, if any)."""
    from edgepoc.chain.abci.app import BAD_TX, REJECT
    from edgepoc.chain.abci.proto import grpc_pb, pb

    class Servicer(grpc_pb.ABCIServiceServicer):
        def Echo(self, req: pb.EchoRequest, ctx: grpc.ServicerContext) -> pb.EchoResponse:
            return pb.EchoResponse(message=req.message)

        def Flush(self, req: pb.FlushRequest, ctx: grpc.ServicerContext) -> pb.FlushResponse:
            return pb.FlushResponse()

        def Info(self, req: pb.InfoRequest, ctx: grpc.ServicerContext) -> pb.InfoResponse:
            return app.info(req)

        def CheckTx(self, req: pb.CheckTxRequest, ctx: grpc.ServicerContext) -> pb.CheckTxResponse:
            return app.check_tx(req)

        def Query(self, req: pb.QueryRequest, ctx: grpc.ServicerContext) -> pb.QueryResponse:
            return app.query(req)

        def Commit(self, req: pb.CommitRequest, ctx: grpc.ServicerContext) -> pb.CommitResponse:
            return app.commit(req)

        def InitChain(self, req: pb.InitChainRequest, ctx: grpc.ServicerContext) -> pb.InitChainResponse:
            return app.init_chain(req)

        def ListSnapshots(self, req: pb.ListSnapshotsRequest, ctx: grpc.ServicerContext) -> pb.ListSnapshotsResponse:
            return pb.ListSnapshotsResponse()

        def OfferSnapshot(self, req: pb.OfferSnapshotRequest, ctx: grpc.ServicerContext) -> pb.OfferSnapshotResponse:
            return pb.OfferSnapshotResponse(result=pb.OFFER_SNAPSHOT_RESULT_REJECT)

        def LoadSnapshotChunk(self, req: pb.LoadSnapshotChunkRequest,
                              ctx: grpc.ServicerContext) -> pb.LoadSnapshotChunkResponse:
            return pb.LoadSnapshotChunkResponse()

        def ApplySnapshotChunk(self, req: pb.ApplySnapshotChunkRequest,
                               ctx: grpc.ServicerContext) -> pb.ApplySnapshotChunkResponse:
            return pb.ApplySnapshotChunkResponse(result=pb.APPLY_SNAPSHOT_CHUNK_RESULT_ABORT)

        def PrepareProposal(self, req: pb.PrepareProposalRequest,
                            ctx: grpc.ServicerContext) -> pb.PrepareProposalResponse:
            return app.prepare_proposal(req)

        def ProcessProposal(self, req: pb.ProcessProposalRequest,
                            ctx: grpc.ServicerContext) -> pb.ProcessProposalResponse:
            return app.process_proposal(req)

        def ExtendVote(self, req: pb.ExtendVoteRequest, ctx: grpc.ServicerContext) -> pb.ExtendVoteResponse:
            return app.extend_vote(req)

        def VerifyVoteExtension(self, req: pb.VerifyVoteExtensionRequest,
                                ctx: grpc.ServicerContext) -> pb.VerifyVoteExtensionResponse:
            return app.verify_vote_extension(req)

        def FinalizeBlock(self, req: pb.FinalizeBlockRequest, ctx: grpc.ServicerContext) -> pb.FinalizeBlockResponse:
            return app.finalize_block(req)

    fallbacks = {
        "CheckTx": lambda exc, req: pb.CheckTxResponse(code=BAD_TX, log=f"internal: {type(exc).__name__}"),
        "Query": lambda exc, req: pb.QueryResponse(code=1, log=f"internal: {type(exc).__name__}"),
        "PrepareProposal": lambda exc, req: _empty_proposal(app, req),
        # no report: our precommit may not count this height, but the vote is cast and the node goes on
        "ExtendVote": lambda exc, req: pb.ExtendVoteResponse(),
        "VerifyVoteExtension": lambda exc, req: pb.VerifyVoteExtensionResponse(status=pb.VERIFY_VOTE_EXTENSION_STATUS_REJECT),
        "ProcessProposal": lambda exc, req: pb.ProcessProposalResponse(status=REJECT),
        "Info": None, "InitChain": None, "FinalizeBlock": None, "Commit": None,
    }
    for name, fallback in fallbacks.items():
        setattr(Servicer, name, _guarded(name, getattr(Servicer, name), fallback))
    Servicer.app = app
    return Servicer()


def open_app(home: Path, config: AppConfig, metrics: Any = None) -> tuple[PocApplication, str, Callable[[], None]]:
    """The application without its allocator, enough for cometbft's handshake and block replay; and the call
    that loads the allocator into it (the student, numba's compiled kernels: seconds on a busy host), which a
    node makes while cometbft connects to its peers. The allocator is used only by PrepareProposal."""
    genesis = load_genesis(home)
    address = validator_address(home)
    if genesis.index_of(address) is None:
        raise EdgepocError(f"{home}: this node's validator key is not in genesis")
    p = genesis.params
    store = AppStore(Path(home) / "data" / "app.sqlite")
    app = make_application(genesis, store, None, p.allocator, address, config.byzantine or byzantine_modes(), metrics)
    from edgepoc.chain.abci.arbiter import validator_key

    app.signer = validator_key(home)  # signs this validator's vote extensions (mempool reports)

    def load_allocator() -> None:  # the allocator and the arbiter's client: PrepareProposal's only
        from edgepoc.chain.allocator import make_allocator, probe_instance
        from edgepoc.chain.abci.arbiter import arbiter_client

        arbiter = arbiter_client(home, config.arbiter_url, genesis) if config.arbiter_url else None
        allocate, name = make_allocator(p.allocator, model=config.model, seconds=p.allocator_seconds,
                                        probe=probe_instance(genesis.capacity, genesis.delays),
                                        decode=p.allocator_decode)
        with app.lock:
            app.allocate, app.allocator_name, app.arbiter = allocate, name, arbiter
    return app, address, load_allocator


def build_app(home: Path, config: AppConfig, metrics: Any = None) -> tuple[PocApplication, str]:
    """The application with its allocator loaded."""
    app, address, load_allocator = open_app(home, config, metrics)
    load_allocator()
    return app, address


# Run in a fresh `python -S` before exec'ing the real program: PR_SET_PDEATHSIG (the kernel sends the signal
# when the parent dies, SIGKILL included) set without a `preexec_fn`, which forks this multi-threaded
# process and runs Python in the child; gRPC's fork handlers then abort the child at random (seen: cometbft
# exiting with -6 at start).
_TIE = ("import ctypes, os, sys\n"
        "ctypes.CDLL(None, use_errno=True).prctl(1, int(sys.argv[2]))\n"  # 1 = PR_SET_PDEATHSIG
        "if os.getppid() != int(sys.argv[1]): sys.exit(1)\n"  # the parent died before the prctl
        "os.execv(sys.argv[3], sys.argv[3:])\n")


def _tied(argv: list[str], sig: int = signal.SIGTERM) -> list[str]:
    """`argv` as a child that gets `sig` when this process dies, however it dies, so nothing is left orphaned
    holding the node's ports. Call from the main thread: the signal follows the thread that spawned it.

    cometbft is tied with SIGKILL: its parent died without stopping it (a clean stop terminates it first, and
    kills it after 10 s), and its own graceful stop can hang once its application is gone (seen under load:
    "Stopping TimeoutTicker service", then a minute of "Peer filter timed out" while it held its ports). Its
    store and consensus WAL are crash-safe, so a kill loses nothing a crash would not."""
    return [sys.executable, "-S", "-c", _TIE, str(os.getpid()), str(int(sig)), *argv]


class WorkerSupervisor:
    """The provider's worker process, restarted when it dies (killed, out of memory, a crash) or hangs (its
    heartbeat, `worker.Heartbeat`, still for `stall_seconds`: a deadlock, a stopped process): it follows the
    committed ledger, so a new one resumes the open work. After `MAX_RESTARTS` deaths within a minute it is
    left down and the reason logged: a worker that cannot start is an operator's problem, not a loop's."""

    MAX_RESTARTS = 5

    def __init__(self, home: Path, stall_seconds: float = 60.0):
        self.home = home
        self.stall_seconds = stall_seconds
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # no spawn after stop
        self.restarts = 0
        self.stalls = 0  # hung workers killed
        self.left_down = False
        self.proc = self._spawn()
        # the thread that spawns a tied child must outlive it (the death signal follows the spawning thread),
        # so the restarts are spawned by the watching thread, which lives as long as this process
        threading.Thread(target=self._watch, daemon=True, name="worker-supervisor").start()

    def _spawn(self) -> subprocess.Popen:
        # progress is a CHANGE of the heartbeat's mtime seen on the monotonic clock, so an old file left by the
        # worker before, or a wall-clock step, is no sign of life and no false alarm
        self._beat_seen, self._progress_at = self._heartbeat_mtime(), time.monotonic()
        with open(self.home / "worker.log", "ab") as wlog:
            return subprocess.Popen(_tied([sys.executable, "-m", "edgepoc.chain.abci.worker", "--home", str(self.home)]),
                                    stdout=wlog, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)  # see run_node: signals to the node are the node's

    def _heartbeat_mtime(self) -> int | None:
        from edgepoc.chain.abci.worker import HEARTBEAT_FILE

        try:
            return (self.home / HEARTBEAT_FILE).stat().st_mtime_ns
        except OSError:
            return None

    def _quiet_for(self) -> float:
        """Seconds since this worker's heartbeat last moved (since its start if it never did)."""
        seen = self._heartbeat_mtime()
        if seen != self._beat_seen:
            self._beat_seen, self._progress_at = seen, time.monotonic()
        return time.monotonic() - self._progress_at

    def _watch(self) -> None:
        deaths: list[float] = []
        while True:
            try:
                code = self.proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                quiet = self._quiet_for()
                if quiet > self.stall_seconds and not self._stopping.is_set():
                    log.error("the worker (pid %d) has made no progress for %.0f s (hung or stopped); killing it",
                              self.proc.pid, quiet)
                    self.stalls += 1
                    self.proc.kill()  # SIGKILL ends a stopped process too; its exit is a death below
                continue
            if self._stopping.is_set():
                return
            now = time.monotonic()
            deaths = [t for t in deaths if now - t < 60.0] + [now]
            if len(deaths) > self.MAX_RESTARTS:
                log.error("the worker exited %d times within a minute (last code %s); left down: see worker.log",
                          len(deaths), code)
                self.left_down = True
                self._stopping.wait()  # keep this thread (and so nothing it spawned) until the node stops
                return
            log.warning("the worker exited with code %s; restarting it", code)
            if self._stopping.wait(1.0):
                return
            with self._lock:
                if self._stopping.is_set():
                    return
                self.proc = self._spawn()
                self.restarts += 1

    def describe(self) -> dict:
        """For /status: is it running, its pid, how often it was restarted (and of those, killed as hung), whether
        it was left down, and how long its heartbeat has been still."""
        running = self.proc.poll() is None
        return {"running": running, "pid": self.proc.pid if running else None, "restarts": self.restarts,
                "stalls": self.stalls, "left_down": self.left_down,
                "quiet_seconds": round(self._quiet_for(), 1) if running else None}

    def stop(self, wait: float = 5.0) -> None:
        with self._lock:
            self._stopping.set()
            if self.proc.poll() is None:
                self.proc.terminate()
        try:
            self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class _Pending:
    """The application while it loads: the ABCI service is served, and cometbft started, before it exists.
    An attribute read waits until `set` (PrepareProposal until `complete`: the allocator is loaded); after
    `fail` (it never loaded) it gets a no-op answer."""

    def __init__(self):
        self._app: PocApplication | None = None
        self._ready = threading.Event()
        self._complete = threading.Event()

    def set(self, app: PocApplication) -> None:
        self._app = app
        self._ready.set()

    def complete(self) -> None:
        self._complete.set()

    def fail(self) -> None:
        self._ready.set()
        self._complete.set()

    def __getattr__(self, name: str):
        (self._complete if name == "prepare_proposal" else self._ready).wait()
        if self._app is None:
            return lambda *args, **kwargs: None
        return getattr(self._app, name)


def _age() -> float:
    """Seconds since this process started (its start-up profile is logged against it)."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        return float(Path("/proc/uptime").read_text().split()[0]) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.process_time()


def check_stores_agree(home: Path, name: str) -> None:
    """Refuse to start a node whose cometbft data was reset (`cometbft unsafe-reset-all`, a deleted data folder)
    while its application store was kept: cometbft would replay from genesis into an application already at a
    later height and panic on an app hash mismatch, a message that does not say what to do."""
    store_path = home / "data" / "app.sqlite"
    blocks = home / "cometbft" / "data" / "blockstore.db"
    if not store_path.exists() or store_path.stat().st_size == 0 or (blocks.is_dir() and any(blocks.iterdir())):
        return
    try:
        store = AppStore(store_path, readonly=True)
    except EdgepocError:
        return  # a damaged store is named by the application's own check, with its advice
    try:
        height = store.height()
    finally:
        store.close()
    if height > 0:
        raise EdgepocError(f"node {name}: cometbft's block store is gone but the application's store is at height "
                           f"{height}: they must be reset together. Move {store_path} aside too (the node then "
                           "syncs both from its peers), or restore cometbft's data folder from the same backup")


def _ed25519_key(path: Path, role: str, lost: str) -> tuple[dict, bytes]:
    """`(document, 64-byte private key)` of a CometBFT key file, whose private half must give its public half;
    EdgepocError naming the file, what it is (`role`) and what a new key would cost (`lost`)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from edgepoc.game.files import load_json

    advice = f"it is {role}: restore it from a backup ({lost})"
    if not path.exists():
        raise EdgepocError(f"{path}: missing; {advice}")
    try:
        doc = load_json(path)
    except InputError as exc:
        raise EdgepocError(f"{exc}; {advice}") from None
    try:
        priv = doc["priv_key"]
        if priv.get("type") != "tendermint/PrivKeyEd25519":
            raise ValueError(f"priv_key.type is {priv.get('type')!r}, expected 'tendermint/PrivKeyEd25519'")
        raw = base64.b64decode(priv["value"], validate=True)
        if len(raw) != 64:
            raise ValueError(f"priv_key.value holds {len(raw)} bytes, expected 64")
        public = Ed25519PrivateKey.from_private_bytes(raw[:32]).public_key().public_bytes(Encoding.Raw,
                                                                                          PublicFormat.Raw)
        if public != raw[32:]:
            raise ValueError("priv_key.value's two halves are not one key")
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        reason = f"no {exc}" if isinstance(exc, KeyError) else str(exc)
        raise EdgepocError(f"{path}: damaged ({reason}); {advice}") from None
    return doc, raw


def check_keys(home: Path, config: AppConfig) -> None:
    """Refuse to start on a missing or damaged key file before cometbft reads it: on a damaged validator key
    cometbft dies with a Go stack trace, and without a node key it makes a new one, a node id that no peer
    accepts, so the node never catches up and no message says why."""
    folder = home / "cometbft" / "config"
    path = folder / "priv_validator_key.json"
    doc, raw = _ed25519_key(path, "this validator's signing key, its identity in genesis",
                            "a new key is a different validator, with no voting power")
    address = address_of(raw[32:].hex())
    try:
        public = base64.b64decode(doc["pub_key"]["value"], validate=True)
        named = str(doc["address"]).lower()
    except (KeyError, TypeError, ValueError) as exc:
        raise EdgepocError(f"{path}: damaged (pub_key or address unreadable: {exc}); restore it from a backup") from None
    if public != raw[32:] or named != address:
        raise EdgepocError(f"{path}: damaged (its address or public key is not its private key's); restore it "
                           "from a backup")
    path = folder / "node_key.json"
    _, raw = _ed25519_key(path, "this node's p2p identity, which its peers know",
                          "cometbft would make a new one, a node id its peers do not accept")
    node = address_of(raw[32:].hex())  # CometBFT's node id is the same hash of the node key's public half
    if config.allowed_peers and node not in {str(x).lower() for x in config.allowed_peers}:
        raise EdgepocError(f"{path}: node id {node} is not one this network's nodes know (app.json allowed_peers); "
                           "restore this node's own node_key.json from a backup")


def run_node(home: Path, early: Any = None) -> None:
    """The `edgepoc node` command on a CometBFT home (`_serve_node`) until SIGTERM; EdgepocError naming the
    failure if the node stopped itself (its cometbft died, an ABCI call could not answer), so that the command
    exits non-zero and a supervisor (systemd's Restart=on-failure) restarts it."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_stopped)
    try:
        _serve_node(home, early)
    except Stopped:
        pass
    if _FATAL:
        raise EdgepocError(f"node {AppConfig.load(Path(home)).name} stopped: {_FATAL[0]}")


def _serve_node(home: Path, early: Any) -> None:
    """Serve ABCI, run cometbft, serve the API.

    In the order that brings the node back soonest: the API port answers /status ("starting") first
    (`early`, an `edgepoc.chain.abci.boot.EarlyApi`, if the caller already opened it); then the ABCI
    service and cometbft, which starts while the application loads (its handshake waits for it); then
    the application; then the real API takes the port over ("catching up", then "in consensus")."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    home = Path(home).resolve()
    config = AppConfig.load(home)
    binary = cometbft_binary()
    from edgepoc.chain.builds import check_node

    check_node(home, binary)  # the builds genesis names (if any), before anything starts; one line naming a mismatch
    if (why := unwritable(home)) is not None:
        raise EdgepocError(f"node {config.name}: {why}")
    check_stores_agree(home, config.name)
    check_keys(home, config)
    if early is None:
        from edgepoc.chain.abci.boot import EarlyApi

        early = EarlyApi(home, config.host, config.api_port)
    log.info("start-up: /status answers \"starting\" on %s:%d at %.2f s", config.host, config.api_port, _age())
    import grpc

    from edgepoc.chain.abci.proto import grpc_pb

    pending = _Pending()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                         options=[("grpc.max_receive_message_length", 256 << 20),
                                  ("grpc.max_send_message_length", 256 << 20)])
    grpc_pb.add_ABCIServiceServicer_to_server(_servicer(pending), server)
    if server.add_insecure_port(f"127.0.0.1:{config.abci_port}") == 0:  # cometbft only, on this machine
        early.close()
        raise EdgepocError(f"node {config.name}: cannot listen on 127.0.0.1:{config.abci_port} for ABCI")
    server.start()
    # cometbft (and the worker) in a session of its own: a terminal's Ctrl-C and `network stop`'s SIGTERM to the
    # node's group reach the node alone, which stops them in order as it ends (the finally below). Sent to them too,
    # they exited first, and the node took that for a failure ("cometbft exited with code 0") on every clean stop.
    comet = subprocess.Popen(_tied([binary, "start", "--home", str(home / "cometbft")], signal.SIGKILL),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)
    comet_damage: list[str] = []  # the last line saying cometbft's database is damaged, for /status

    def note_damage(line: str) -> None:
        if damaged_db(line):
            comet_damage[:] = [cometbft_said(line)]
    comet_log = relay_log(comet.stdout, home / "cometbft.log", on_line=note_damage)
    (home / "cometbft.pid").write_text(f"{comet.pid}\n")
    log.info("start-up: ABCI on 127.0.0.1:%d and cometbft (pid %d) at %.2f s", config.abci_port, comet.pid, _age())

    giving_up = threading.Event()  # set when this process ends on its own terms (an error opening the app, a stop)

    def watch() -> None:  # if cometbft dies, the node is down: take the app process with it
        code = comet.wait()
        comet_log.join(5.0)  # its last words are in cometbft.log before anyone reads them there
        if giving_up.is_set():
            return
        log.error("cometbft exited with code %s; stopping", code)
        stop_node(f"cometbft exited with code {code}")
    threading.Thread(target=watch, daemon=True).start()
    worker = None
    try:
        from edgepoc.chain.api.metrics import ChainMetrics

        metrics = ChainMetrics()
        try:
            app, address, load_allocator = open_app(home, config, metrics)
        except Exception as exc:
            # stop cometbft before its handshake gets an empty answer, so the reason logged is this one
            giving_up.set()
            comet.kill()
            log.error("node %s: cannot open its application: %s", config.name, exc)
            raise
        pending.set(app)  # cometbft's handshake and block sync go on while the allocator loads
        log.info("start-up: application open at height %d at %.2f s", app.state.height, _age())
        load_allocator()
        pending.complete()
        log.info("node %s (%s): ABCI gRPC on 127.0.0.1:%d, allocator %s, at height %d%s; application loaded at %.2f s",
                 config.name, address[:8], config.abci_port, app.allocator_name, app.state.height,
                 f"; BYZANTINE {sorted(app.byzantine)}" if app.byzantine else "", _age())
        if config.worker:  # the provider's worker: runs the tasks assigned to it, sends receipts
            worker = WorkerSupervisor(home, config.worker_stall_seconds)
        early.phase = "starting the API"
        from edgepoc.chain.api.serve import serve_api

        view = CometNodeView(app, config, address, early.who.get("node_id"))
        view.worker = worker
        view.home = home
        view.cometbft_damage = comet_damage
        sock = early.handover()
        log.info("start-up: the API takes over at %.2f s", _age())
        serve_api(view, metrics, config.host, config.api_port, sock=sock)
    finally:
        giving_up.set()  # from here on cometbft ending is this node's own doing, not a failure to report
        pending.fail()  # calls still waiting for an application that never loaded get an answer
        early.close()
        if worker is not None:
            worker.stop()
        if comet.poll() is None:
            comet.terminate()
            try:
                comet.wait(10)
            except subprocess.TimeoutExpired:
                comet.kill()
        comet_log.join(5.0)
        # waited out: gRPC's serving thread could still take an RPC while the interpreter's exit shut its thread pool,
        # and printed "Exception in thread ... cannot schedule new futures after shutdown" into node.log
        server.stop(1).wait(5)
        (home / "cometbft.pid").unlink(missing_ok=True)
