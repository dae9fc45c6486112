"""A provider's worker: runs the tasks the chain assigned to it and sends signed receipts.

It follows the committed work ledger (the node's own store, read-only), executes its open work in the
committed order (height, position) with wasmtime (edgepoc.execution: fuel-metered, memory-limited, no
imports), keeps every result in a content-addressed store the node API serves (`GET /results/<id>`),
and sends receipts (task, status, result, result hash, fuel used), signed with the validator key, to
its CometBFT node. A receipt not yet accepted after `RESEND` seconds is sent again; the chain ignores
duplicates. The node starts it beside cometbft: `python -m edgepoc.chain.abci.worker --home H`, and
restarts it when it dies or when its heartbeat (`HEARTBEAT_FILE`, `Heartbeat`) stops: a hung worker.

Test builds misbehave with EDGEPOC_WORKER_FAULT (or "worker_fault" in app.json):
`slow:<seconds>` sleeps per task, `wrong` returns wrong results, `fake` sends receipts without running.
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import secrets
import signal
import sys
import threading
import time
from pathlib import Path

from edgepoc.chain.abci import wire
from edgepoc.errors import EdgepocError, InputError

log = logging.getLogger("edgepoc.worker")
RESEND = 3.0  # seconds before an unconfirmed receipt is sent again
FLUSH = 0.05  # seconds between receipt transactions while there is work
FAULTS = ("slow", "wrong", "fake")
HEARTBEAT_FILE = "worker.heartbeat"  # in the node's home; its mtime moves while the worker makes progress
BEAT = 1.0  # seconds between heartbeats


class Heartbeat:
    """The worker's sign of life for its node's supervisor: the mtime of `HEARTBEAT_FILE` moves at most every
    `BEAT` seconds while the main loop goes round (`beat`), and, from a thread, while a task runs (`task`):
    wasmtime releases the GIL, and a task always ends (its fuel is bounded), so a long task is not a hang. A
    loop that deadlocks, or a process that is stopped, stops the beats; the supervisor then kills it."""

    def __init__(self, path: Path):
        self.path = path
        self._last = 0.0
        self._in_task = threading.Event()
        self._lock = threading.Lock()
        threading.Thread(target=self._during_tasks, daemon=True, name="heartbeat").start()

    def beat(self) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last < BEAT:
                return
            self._last = now
            try:
                self.path.touch()  # an existing file's mtime moves to now
            except OSError as exc:
                log.warning("heartbeat %s: %s", self.path, exc)

    def task(self, running: bool) -> None:
        (self._in_task.set if running else self._in_task.clear)()

    def _during_tasks(self) -> None:
        while True:
            self._in_task.wait()
            self.beat()
            time.sleep(BEAT / 4)


class Worker:
    def __init__(self, home: Path, fault: str | None = None):
        from edgepoc.chain.abci.arbiter import validator_key
        from edgepoc.chain.abci.node import AppConfig, RpcClient, load_genesis
        from edgepoc.execution import ResultStore

        self.home = Path(home)
        self.config = AppConfig.load(self.home)
        self.genesis = load_genesis(self.home)
        self.key = validator_key(self.home)
        me = self.genesis.index_of(self.key.address)
        if me is None:
            raise EdgepocError(f"worker: {home}: this node's validator key is not in genesis")
        self.me = me
        self.rpc = RpcClient("127.0.0.1", self.config.rpc_port)
        self.results = ResultStore(self.home / "results")
        self.fault, self.slow = _parse_fault(fault)
        self.store = None
        self.sent: dict[str, float] = {}  # work id -> when its receipt was last sent
        self.done: dict[str, wire.Receipt] = {}  # executed here, receipt not yet accepted on chain
        self.modules: dict[str, object] = {}  # module hash -> admitted ModuleInfo (read and checked once)
        self.heartbeat = Heartbeat(self.home / HEARTBEAT_FILE)

    def _open_store(self):
        from edgepoc.chain.abci.store import AppStore

        path = self.home / "data" / "app.sqlite"
        while self.store is None:
            self.heartbeat.beat()
            try:
                self.store = AppStore(path, readonly=True)
            except EdgepocError:
                time.sleep(0.2)  # the app creates it at start

    def run_once(self) -> int:
        """Execute open work (up to a batch), send due receipts; the number of tasks executed."""
        from edgepoc.execution import ExecResult

        open_work = self.store.open_work(self.me, limit=256)
        still_open = {w["id"] for w in open_work}
        for wid in [w for w in self.done if w not in still_open]:  # accepted (or taken away): forget it
            self.done.pop(wid, None)
            self.sent.pop(wid, None)
        n = 0
        deadline = time.monotonic() + 0.25
        for w in open_work:
            if w["id"] in self.done:
                continue
            if self.fault == "fake":
                res = ExecResult("ok", secrets.randbelow(2**31), w["fuel"] // 2, None)
            else:
                self.heartbeat.task(True)
                try:
                    res = self._run(w)
                finally:
                    self.heartbeat.task(False)
                if res is None:
                    continue  # cannot happen on an honest chain: tasks name committed modules
                if self.fault == "wrong":
                    res = ExecResult(res.status, (res.result if isinstance(res.result, int) else 0) + 1,
                                     res.fuel_used, res.error)
                if self.slow:
                    time.sleep(self.slow)
            digest = self.results.put(w["id"].replace("/", "_"), res)
            self.done[w["id"]] = wire.Receipt(w["id"], res.status, res.result, digest, int(res.fuel_used))
            n += 1
            if time.monotonic() > deadline:
                break
        self._send()
        return n

    def _run(self, w: dict):
        """One task's outcome, or None when its module is not in the store.

        A request the sandbox refuses, or an outcome no receipt can carry (admission should have
        caught both; a chain from before a check may hold such tasks), is the task's `trap`, with the
        reason, not the worker's death nor a receipt refused forever: every provider decides it the
        same way, so the receipt is as deterministic as a run, and one bad task cannot stop a
        provider's work.
        """
        from edgepoc.execution import ExecResult, compile_module, run_task

        p = self.genesis.params
        try:
            info = self.modules.get(w["module"])
            if info is None:
                found = self.store.module(w["module"])
                if found is None:
                    return None
                info = self.modules[w["module"]] = compile_module(found[1], max_bytes=p.max_module_bytes,
                                                                  max_memory_bytes=p.max_task_memory)
            res = run_task(info, w["function"], list(w["args"]), fuel=int(w["fuel"]), memory_bytes=int(w["memory"]))
        except InputError as exc:
            log.warning("task %s refused by the sandbox, reported as a trap: %s", w["id"], exc)
            return ExecResult("trap", None, 0, f"refused: {exc}")
        try:  # the chain's own check: a receipt it refuses would be resent forever, holding up its batch
            wire.Receipt.from_dict(wire.Receipt(w["id"], res.status, res.result, res.result_hash,
                                                int(res.fuel_used)).to_dict(), "receipt")
        except InputError as exc:
            log.warning("task %s: its outcome cannot be reported, reported as a trap: %s", w["id"], exc)
            return ExecResult("trap", None, res.fuel_used, f"outcome not reportable: {exc}")
        return res

    def _send(self) -> None:
        now = time.monotonic()
        due = [r for wid, r in self.done.items() if now - self.sent.get(wid, -1e9) > RESEND]
        max_n = self.genesis.params.max_receipts
        for i in range(0, len(due), max_n):
            chunk = due[i:i + max_n]
            tx = wire.ReceiptBatch(self.genesis.chain_id, self.key.address, chunk).signed(self.key).tx()
            try:
                res = self.rpc.call("broadcast_tx_sync", {"tx": base64.b64encode(tx).decode()})
                if int(res.get("code", 0)) != 0:
                    log.warning("receipts refused: %s", res.get("log"))
            except EdgepocError as exc:  # node restarting, mempool full, or CheckTx refused it (CometBFT v1 reports
                # that as an RPC error): all retried after RESEND, not on the next 50 ms round
                log.warning("receipts not sent (%s); retrying in %.0f s", str(exc)[:200], RESEND)
            for r in chunk:
                self.sent[r.task] = now

    def serve(self) -> None:
        self._open_store()
        log.info("worker of %s (%s) following %s%s", self.config.name, self.key.address[:8], self.store.path,
                 f"; FAULT {self.fault}" if self.fault else "")
        last_prune = time.monotonic()
        stop = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
        while not stop:
            self.heartbeat.beat()
            n = self.run_once()
            if time.monotonic() - last_prune > 60:
                self.results.prune(self.genesis.params.result_retention)
                last_prune = time.monotonic()
            time.sleep(FLUSH if n else 0.05)


def _parse_fault(fault: str | None) -> tuple[str | None, float]:
    if not fault:
        return None, 0.0
    kind, _, arg = fault.partition(":")
    if kind not in FAULTS:
        raise EdgepocError(f"worker fault {fault!r}: known: slow:<seconds>, wrong, fake")
    if kind == "slow":
        try:
            return "slow", float(arg)
        except ValueError:
            raise EdgepocError("worker fault slow:<seconds>: seconds must be a number") from None
    return kind, 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="edgepoc-worker", description=__doc__.splitlines()[0])
    ap.add_argument("--home", required=True, type=Path)
    args = ap.parse_args(argv)
    from edgepoc.shutdown import freeze_at_exit

    freeze_at_exit()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        from edgepoc.chain.abci.node import AppConfig

        fault = os.environ.get("EDGEPOC_WORKER_FAULT") or AppConfig.load(args.home).worker_fault
        Worker(args.home, fault).serve()
    except EdgepocError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
