"""`EdgepocClient`: talk to a provider network through any of its nodes, and keep a receipt.

Transport and bookkeeping only: the signed objects come from `edgepoc.chain.abci.wire` (`TaskBatch`,
`ModuleTx`; each has `to_dict()` and its task id as `id`, or `ids` for a client-signed batch). A request goes to the node
that answered last; if it cannot be reached, the next node is tried. Resubmitting is harmless: a task
id names a (client, nonce) pair, a node accepts a pending task again and refuses a committed one as a
replay, which the client then looks up.

A replay refusal counts as "already there" only for a task this client may have sent before (a
request that failed over, or a task in the receipt of a run being resumed); otherwise the nonce was
used by another task and the refusal stands.

The receipt is a JSON-lines file, appended and flushed as things happen, one record per event:
    {"id", "state": "planned", "task": {...}}           the signed task, written before it is sent
    {"id", "state": "accepted", "node": URL}
    {"id", "state": "committed", "height", "provider", "latency"[, "provider_was_down": true]}
    {"id", "state": "rejected", "reason"}
`Receipt.load` folds them (the last state wins); `EdgepocClient.submit` skips tasks already committed
or rejected and resends the rest, so an interrupted `edgepoc submit --receipt FILE` resumes.
"""

from __future__ import annotations

import fcntl
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence
from urllib.parse import quote

import requests

from edgepoc.errors import EdgepocError, InputError, Unreachable

FINAL = ("committed", "rejected")
MAX_ANSWER = 256 << 20  # bytes a node's answer may have (the largest block as JSON is far below)
STATUS_CHUNK = 1000
PROBE_PATIENCE = 4.0  # seconds a node that did not answer a status probe in time gets before it counts as down
LOST_AFTER = 3.0  # seconds a task may be unknown to an answering node (mempool gossip lags) before it is sent again


def is_busy(reason: str) -> bool:
    """The chain's admission control said "busy, retry after N s": a refusal for now, not of the task."""
    return str(reason).startswith("busy")


def task_path(task_id: str) -> str:
    """The API path of one task: the id percent-encoded as one path segment, whatever it holds."""
    return f"/tasks/{quote(task_id, safe='')}"


def item_ids(item: Any) -> list[str]:
    """The task id(s) a signed item carries: `ids` (a batch) or `id` (one task)."""
    if isinstance(item, dict):
        ids = item.get("ids") or ([item["id"]] if "id" in item else None)
    else:
        ids = getattr(item, "ids", None) or [item.id]
    if not ids:
        raise InputError("submit: an item without a task id")
    return list(ids)


ON_CHAIN = ("committed", "assigned", "reassigned", "executed")  # a task in a committed block, run or not yet


class NodeUnreachable(Unreachable):
    """No node answered (each one tried once)."""


class ReceiptUnwritable(EdgepocError):
    """The receipt could not be written (a full disk, a device gone): `why` is the system's reason."""

    def __init__(self, message: str, why: str):
        super().__init__(message)
        self.why = why


class Receipt:
    """The append-only JSON-lines receipt (see the module docstring)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.records: dict[str, dict] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # unbuffered: each record is one write, so a full disk is reported by the record that hit it (a buffer
        # would report it later, and again at exit) and at most that record is left cut
        self._fh = self.path.open("ab", buffering=0)
        try:  # one run per receipt: a second one (another terminal resuming the same run) would resend its tasks
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._fh.close()
            raise InputError(f"receipt {self.path}: in use by another run (a submit with the same --receipt is still "
                             "going); wait for it, or stop it first") from None
        self._load()

    def _load(self) -> None:
        text = self.path.read_text(encoding="utf-8")  # "" for a new receipt
        lines = text.splitlines()
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                tid = rec["id"]
            except (json.JSONDecodeError, KeyError, TypeError):
                if n == len(lines):
                    # a line cut off by a crash or a full disk mid-write: the event is redone. Cut it off the file
                    # too, or the next record would be appended to it and the receipt unreadable from then on.
                    self._truncate_to(len(text[:text.rstrip("\n").rfind("\n") + 1].encode("utf-8")))
                    continue
                raise InputError(f"{self.path}:{n}: not a receipt record") from None
            if n == len(lines) and not text.endswith("\n"):
                with self.path.open("ab") as fh:  # whole, but its newline was not written
                    fh.write(b"\n")
            merged = {**self.records.get(tid, {}), **rec}
            if rec.get("state") != "committed":
                merged.pop("provider_was_down", None)
            self.records[tid] = merged

    def _truncate_to(self, size: int) -> None:
        with self.path.open("r+b") as fh:
            fh.truncate(size)

    def size(self) -> int:
        """Bytes written so far (a mark `truncate` can take the receipt back to)."""
        return self._fh.seek(0, 2)

    def truncate(self, size: int) -> None:
        """Take back every record written after the mark `size`, in the file and in memory."""
        self._fh.truncate(size)
        self._fh.seek(size)
        self.records = {}
        self._load()

    def record(self, task_id: str, state: str, **fields: Any) -> None:
        rec = {"id": task_id, "state": state, **fields}
        self.records[task_id] = {**self.records.get(task_id, {}), **rec}
        line = memoryview((json.dumps(rec, allow_nan=False) + "\n").encode("utf-8"))
        try:
            while line:
                line = line[self._fh.write(line):]
        except OSError as exc:
            raise self._write_error(exc) from None

    def _write_error(self, exc: OSError) -> ReceiptUnwritable:
        why = exc.strerror or str(exc)
        return ReceiptUnwritable(f"receipt {self.path}: cannot write ({why}); what it holds is kept, and tasks sent "
                                 "before this stay valid: make room and run the same command to resume", why)

    def plan(self, body: dict, ids: list[str]) -> None:
        """Record a signed request (its wire dict) and its task ids as planned: what a resumed run sends."""
        self.record(ids[0], "planned", task=body, ids=ids)
        for t in ids[1:]:
            self.record(t, "planned")

    def flush(self) -> None:
        """Nothing is held back (the file is unbuffered); kept so callers mark where a batch's records end."""

    def close(self) -> None:
        self._fh.close()

    def state(self, task_id: str) -> str | None:
        return self.records.get(task_id, {}).get("state")

    def planned_items(self) -> list[tuple[dict, list[str]]]:
        """(signed wire dict, its task ids) as recorded by an earlier run, in the order they were planned."""
        return [(r["task"], r.get("ids") or [r["id"]]) for r in self.records.values() if "task" in r]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.records.values():
            out[r["state"]] = out.get(r["state"], 0) + 1
        return out


@dataclass
class SubmitResult:
    accepted: list[str] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)  # {"id"?, "index"?, "reason"}
    skipped: int = 0  # tasks already final in the receipt (not sent again)
    failed: str | None = None  # why submission stopped early (every node unreachable past the outage deadline)
    unsent: list[str] = field(default_factory=list)
    busy_seconds: float = 0.0  # time spent waiting because the chain answered "busy, retry after"
    outage_seconds: float = 0.0  # time spent waiting for a node to answer again (every node unreachable)
    bodies: dict[str, dict] = field(default_factory=dict)  # accepted task id -> the signed request carrying it
    interrupted: bool = False  # Ctrl-C: `accepted` is what went before it (the request in flight may have too)


@dataclass
class WaitResult:
    committed: dict[str, dict] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    seconds: float = 0.0
    down_seen: dict[str, float] = field(default_factory=dict)  # node name -> first time seen unreachable
    flagged: dict[str, str] = field(default_factory=dict)  # task id -> provider that was down at the time
    resent: int = 0  # tasks sent again (at least once) because the nodes had lost them (unknown to an answering node)
    interrupted: bool = False  # Ctrl-C: `missing` are the tasks not yet seen committed, not tasks known lost


class EdgepocClient:
    """A JSON client for several nodes of one network, failing over between them."""

    def __init__(self, urls: Sequence[str], timeout: float = 10.0, names: Sequence[str] | None = None):
        if not urls:
            raise InputError("client: no node URL given")
        self.urls = [u if "://" in u else f"http://{u}" for u in urls]
        self.urls = [u.rstrip("/") for u in self.urls]
        self.names = list(names) if names else [None] * len(self.urls)
        self.timeout = timeout
        self.current = 0
        self.session = requests.Session()
        self._probed_down: set[str] = set()  # URLs the last `probe` found down (asked without patience next time)
        self.failures: list[tuple[float, str, str]] = []  # (time, url, why)
        self.last_failovers = 0  # nodes that failed before the last request got an answer
        self.busy_wait = 300.0  # seconds a submit keeps resending batches the chain answered "busy"
        # a time.monotonic() by which busy resending stops whatever busy_wait says (`submit --wait --timeout`)
        self.submit_deadline: float | None = None
        # a time.monotonic() until which a submit waits for a node to answer again when none does (nodes
        # restarting, a network blip); None: it stops at the first request no node takes
        self.outage_deadline: float | None = None
        self.on_outage: Callable[[str], None] | None = None  # told once per outage, e.g. to print a line

    # ---- transport
    def request(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> tuple[int, Any, str]:
        """(status, JSON document, URL of the node that answered); raises NodeUnreachable if none did."""
        errors = []
        self.last_failovers = 0
        for k in range(len(self.urls)):
            i = (self.current + k) % len(self.urls)
            url = self.urls[i]
            try:
                r = self.session.request(method, url + path, json=body, timeout=timeout or self.timeout, stream=True)
                content = _bounded_content(r, max(30.0, 6 * (timeout or self.timeout)))
            except (requests.RequestException, _AnswerTooBig) as exc:
                why = str(exc) if isinstance(exc, _AnswerTooBig) else type(exc).__name__
                self.failures.append((time.time(), url, why))
                errors.append(f"{url} ({why})")
                self.last_failovers += 1
                continue
            if r.status_code == 503:  # a node still starting (or catching up): as good as unreachable, move on
                self.failures.append((time.time(), url, "starting"))
                errors.append(f"{url} (starting)")
                self.last_failovers += 1
                continue
            self.current = i
            try:
                doc = json.loads(content) if content else None
            except (ValueError, RecursionError):
                doc = {"error": content[:200].decode(errors="replace")}
            return r.status_code, doc, url
        raise NodeUnreachable(f"cannot reach any node: {', '.join(errors)}")

    def get(self, path: str) -> Any:
        status, doc, url = self.request("GET", path)
        if status != 200:
            raise EdgepocError(f"GET {path} at {url}: {status} {_reason(doc)}")
        return doc

    def post(self, path: str, body: Any) -> Any:
        status, doc, url = self.request("POST", path, body)
        if status != 200:
            raise EdgepocError(f"POST {path} at {url}: {status} {_reason(doc)}")
        return doc

    def close(self) -> None:
        self.session.close()

    # ---- reads
    def status(self) -> dict:
        return self.get("/status")

    def block(self, ref: int | str = "latest") -> dict:
        return self.get(f"/blocks/{ref}")

    def task(self, task_id: str) -> dict:
        return self.get(task_path(task_id))

    def tasks(self, ids: Sequence[str]) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for i in range(0, len(ids), STATUS_CHUNK):
            out.update(self.post("/tasks/status", {"ids": list(ids[i:i + STATUS_CHUNK])})["tasks"])
        return out

    def probe(self, timeout: float = 1.0, patience: float = PROBE_PATIENCE) -> dict[str, dict | None]:
        """Each node's /status (None where it does not answer), keyed by URL: for quorum and down-node reports.

        A node that lets `timeout` pass is asked once more, with `patience` seconds, before it counts as down:
        a busy node is slow, not down (on a loaded machine the proposer of a large block holds its process for
        a second or more, and "down while waiting" would then name a node that signed every block). A refused
        connection or an error answer counts at once, and a node the last probe found down gets `timeout` alone
        until it answers again. The nodes are asked at once, so a probe costs the slowest node's wait, not the
        sum (a `wait` probes every poll: two paused nodes would otherwise hold each poll for 10 s)."""
        def ask(url: str) -> dict | None:
            for wait_s in (timeout,) if url in self._probed_down else (timeout, patience):
                try:
                    r = requests.get(url + "/status", timeout=wait_s)
                    return r.json() if r.status_code == 200 else None
                except requests.Timeout:
                    continue
                except (requests.RequestException, ValueError):
                    return None
            return None

        with ThreadPoolExecutor(max_workers=min(16, len(self.urls))) as pool:
            out = dict(zip(self.urls, pool.map(ask, self.urls)))
        self._probed_down = {url for url, st in out.items() if st is None}
        return out

    # ---- submit and wait
    def submit(self, items: Sequence[Any], receipt: Receipt | None = None, batch: int = 500,
               pace: Iterable[float] | None = None, progress: Callable[[int, int], None] | None = None) -> SubmitResult:
        """Send signed items in batches, skipping those the receipt already has as committed or rejected.

        `items` are signed objects (`to_dict()` and `id` or `ids`) or `(wire dict, [ids])` pairs (what
        `Receipt.planned_items` gives back). `pace`, if given, yields the monotonic time at which each
        batch may go (rate-limited submits). Stops at the first batch no node takes and says so in
        `failed`: everything before it is in `accepted` (and in the receipt). `progress(tasks sent, tasks to
        send)` after each request.
        """
        if batch < 1:
            raise InputError("--batch: must be >= 1")
        res = SubmitResult()
        sent_before = set(receipt.records) if receipt is not None else set()  # a run we resume may have sent these
        todo: list[tuple[dict, list[str]]] = []
        planned_from = receipt.size() if receipt is not None else 0
        try:
            for item in items:
                body, ids = item if isinstance(item, tuple) else (item.to_dict(), item_ids(item))
                if receipt is not None and all(receipt.state(t) in FINAL for t in ids):
                    res.skipped += len(ids)
                    continue
                if receipt is not None and receipt.state(ids[0]) is None:
                    receipt.plan(body, ids)
                todo.append((body, ids))
        except ReceiptUnwritable as exc:
            # a plan cut short would be resumed as if it were the whole run (400 tasks of 2,000, say): take it back,
            # nothing has been sent yet
            receipt.truncate(planned_from)
            raise ReceiptUnwritable(f"receipt {receipt.path}: cannot write ({exc.why}) while planning the run; "
                                    "nothing was sent and the receipt is as it was: make room and run the same "
                                    "command again", exc.why) from None
        if receipt is not None:
            receipt.flush()
        times = iter(pace) if pace is not None else None
        total, sent = sum(len(ids) for _, ids in todo), 0
        try:
            for start in range(0, len(todo), batch):
                chunk = todo[start:start + batch]
                at = next(times, None) if times is not None else None
                if at is not None:
                    time.sleep(max(0.0, at - time.monotonic()))
                try:
                    status, doc, url, outage = self._post_through_outage("/tasks", {"tasks": [b for b, _ in chunk]},
                                                                         res)
                except NodeUnreachable as exc:
                    res.failed = str(exc)
                    res.unsent = [t for _, ids in todo[start:] for t in ids]
                    break
                if status != 200:
                    raise EdgepocError(f"POST /tasks at {url}: {status} {_reason(doc)}")
                doc = self._retry_busy(chunk, doc, res)
                accepted = list(doc.get("ids", []))
                rejected, replays = [], []
                # a request that failed over, or was retried after an outage, may have reached a node before: a replay
                # refusal of its tasks is then our own earlier send
                maybe_sent = sent_before | ({t for _, ids in chunk for t in ids}
                                            if self.last_failovers or outage else set())
                for r in doc.get("rejected", []):
                    reason = str(r.get("reason") or r.get("error") or "rejected")
                    index = r.get("index") if isinstance(r.get("index"), int) else None
                    tids = r.get("ids") or ([r["id"]] if r.get("id") else [])
                    if not tids and index is not None and 0 <= index < len(chunk):
                        tids = chunk[index][1]
                    for tid in tids or [None]:
                        if tid is not None and reason.startswith("replay") and tid in maybe_sent:
                            replays.append(tid)  # our own earlier send (a failover, or a run we resume): look it up
                        else:
                            rejected.append({"id": tid, "index": None if index is None else start + index,
                                             "reason": reason})
                if replays:
                    known = self.tasks(replays)
                    for tid in replays:
                        if known.get(tid, {}).get("status") in ("committed", "pending"):
                            accepted.append(tid)
                        else:
                            rejected.append({"id": tid,
                                             "reason": "replay: this (client, nonce) was used by another task"})
                res.accepted.extend(accepted)
                res.rejected.extend(rejected)
                by_id = {t: body for body, ids in chunk for t in ids}
                res.bodies.update((t, by_id[t]) for t in accepted if t in by_id)
                if receipt is not None:
                    for tid in accepted:
                        if receipt.state(tid) != "committed":
                            receipt.record(tid, "accepted", node=url)
                    for r in rejected:
                        if r["id"] and not is_busy(r["reason"]):  # busy: not final, a resumed run resends it
                            receipt.record(r["id"], "rejected", reason=r["reason"])
                    receipt.flush()
                sent += sum(len(ids) for _, ids in chunk)
                if progress is not None:
                    progress(sent, total)
        except KeyboardInterrupt:  # the caller says what went and what did not; the receipt keeps it
            res.interrupted = True
            done = set(res.accepted) | {r["id"] for r in res.rejected if r.get("id")}
            res.unsent = [t for _, ids in todo for t in ids if t not in done]
            if receipt is not None:
                receipt.flush()
        return res

    def _post_through_outage(self, path: str, body: Any, res: SubmitResult) -> tuple[int, Any, str, bool]:
        """`request("POST", ...)`, sent again while no node answers and `outage_deadline` is ahead (nodes restarting
        come back in seconds); (status, document, URL, whether an outage was waited out). NodeUnreachable once the
        deadline has passed. `res.outage_seconds` grows by the time from the first failed try to the answer (or to
        giving up)."""
        pause, since = 0.5, None
        while True:
            tried = time.monotonic()
            try:
                status, doc, url = self.request("POST", path, body)
            except NodeUnreachable as exc:
                since = tried if since is None else since
                left = (self.outage_deadline - time.monotonic()) if self.outage_deadline is not None else 0.0
                if left <= 0:
                    res.outage_seconds += time.monotonic() - since
                    raise
                if since == tried and self.on_outage is not None:
                    self.on_outage(f"no node answers ({exc}); sending again for up to {left:.0f} s")
                time.sleep(min(pause, left))
                pause = min(2 * pause, 4.0)
                continue
            if since is not None:
                res.outage_seconds += time.monotonic() - since
            return status, doc, url, since is not None

    def _retry_busy(self, chunk: list[tuple[dict, list[str]]], doc: dict, res: SubmitResult) -> dict:
        """Resend the batches the chain answered "busy, retry after N s" once it said they may come back, while
        `busy_wait` seconds last: admission control slows a client down, it does not lose its tasks."""
        deadline = time.monotonic() + self.busy_wait
        if self.submit_deadline is not None:
            deadline = min(deadline, self.submit_deadline)
        while True:
            busy = sorted({r["index"] for r in doc.get("rejected", []) if isinstance(r.get("index"), int)
                           and is_busy(r.get("reason") or r.get("error") or "")})
            if not busy or time.monotonic() >= deadline:
                return doc
            why = next(str(r.get("reason") or r.get("error")) for r in doc["rejected"] if r.get("index") in busy)
            m = re.search(r"retry after ([0-9.]+) s", why)
            pause = min(5.0, max(0.25, float(m.group(1)) if m else 1.0), max(0.0, deadline - time.monotonic()))
            time.sleep(pause)
            res.busy_seconds += pause
            try:
                status, again, _ = self.request("POST", "/tasks", {"tasks": [chunk[i][0] for i in busy]})
            except NodeUnreachable:
                return doc
            if status != 200:
                return doc
            keep = [r for r in doc.get("rejected", []) if r.get("index") not in busy]
            for r in again.get("rejected", []):
                if isinstance(r.get("index"), int):
                    r = {**r, "index": busy[r["index"]]}
                keep.append(r)
            doc = {**doc, "ids": list(doc.get("ids", [])) + list(again.get("ids", [])), "rejected": keep}

    def wait(self, ids: Sequence[str], timeout: float = 60.0, poll: float = 0.25, receipt: Receipt | None = None,
             watch_nodes: bool = True, progress: Callable[[int, int], None] | None = None,
             bodies: dict[str, dict] | None = None) -> WaitResult:
        """Poll until every id is committed or `timeout` passes; notes which nodes were down meanwhile and
        flags the committed tasks whose provider was one of them. `progress(committed, total)` after each poll.

        With `bodies` (task id -> its signed request, `SubmitResult.bodies`), a task an answering node has not
        known for LOST_AFTER seconds is sent again: a mempool is not kept across a crash, so tasks accepted just
        before every node went down are gone when they come back. Sending again is harmless (a task in a mempool
        is taken again, a committed one refused as a replay)."""
        t0 = time.monotonic()
        res = WaitResult()
        todo = list(ids)
        down_windows: dict[str, list[float]] = {}  # provider name -> wall times it was seen down
        unknown_since: dict[str, float] = {}
        resent_ids: set[str] = set()  # sent again at least once (one still lost 3 s later goes again)
        last_resend = -1e9
        try:
            while True:
                if watch_nodes:
                    for name in self._down_names():
                        down_windows.setdefault(name, []).append(time.time())
                        res.down_seen.setdefault(name, time.time())
                try:
                    known = self.tasks(todo) if todo else {}
                except EdgepocError:
                    known = {}
                if bodies:
                    now = time.monotonic()
                    for tid in todo:
                        if known.get(tid, {}).get("status") == "unknown":
                            unknown_since.setdefault(tid, now)
                        else:
                            unknown_since.pop(tid, None)
                    lost = [t for t, since in unknown_since.items() if now - since >= LOST_AFTER and t in bodies]
                    if lost and now - last_resend >= LOST_AFTER:
                        resent_ids.update(self._send_again(lost, bodies))
                        res.resent = len(resent_ids)
                        last_resend = now
                still = []
                for tid in todo:
                    st = known.get(tid, {})
                    if st.get("status") in ON_CHAIN:
                        res.committed[tid] = st
                        provider = st.get("provider_name", str(st.get("provider")))
                        if provider in down_windows:
                            res.flagged[tid] = provider
                        if receipt is not None:
                            extra = {"provider_was_down": True} if tid in res.flagged else {}
                            receipt.record(tid, "committed", height=st.get("height"), provider=provider,
                                           latency=st.get("latency"), **extra)
                    elif st.get("status") == "rejected":
                        if receipt is not None:
                            receipt.record(tid, "rejected", reason=st.get("reason", "rejected"))
                        still.append(tid)
                    else:
                        still.append(tid)
                if receipt is not None:
                    receipt.flush()
                todo = [t for t in still if known.get(t, {}).get("status") != "rejected"]
                res.missing = todo
                if progress is not None:
                    progress(len(res.committed), len(ids))
                if not todo or time.monotonic() - t0 >= timeout:
                    break
                time.sleep(poll)
        except KeyboardInterrupt:
            res.interrupted = True
            res.missing = [t for t in ids if t not in res.committed]
            if receipt is not None:
                receipt.flush()
        res.seconds = time.monotonic() - t0
        return res

    def _send_again(self, lost: list[str], bodies: dict[str, dict]) -> list[str]:
        """POST the signed requests carrying the `lost` tasks once more (each request once); the lost tasks that
        went out."""
        carried: dict[int, tuple[dict, list[str]]] = {}  # request (by identity) -> (its body, the lost tasks in it)
        for tid in lost:
            carried.setdefault(id(bodies[tid]), (bodies[tid], []))[1].append(tid)
        groups = list(carried.values())
        sent: list[str] = []
        for i in range(0, len(groups), 50):
            part = groups[i:i + 50]
            try:
                self.request("POST", "/tasks", {"tasks": [body for body, _ in part]})
            except EdgepocError:
                break
            sent += [t for _, tids in part for t in tids]
        return sent

    def _down_names(self) -> list[str]:
        """Validators unreachable now: nodes of ours that do not answer, and those an answering node reports."""
        down: set[str] = set()
        seen_up: set[str] = set()
        for i, (url, st) in enumerate(self.probe().items()):
            if st is None:
                if self.names[i]:
                    down.add(self.names[i])
            else:
                seen_up.add(st.get("name", ""))
                for v in st.get("validators", []) or []:
                    if v.get("reachable") is False:
                        down.add(v.get("name", ""))
        return sorted(down - seen_up - {""})

    def quorum(self) -> dict | None:
        """{"up", "total", "needed", "down": [names], "lost": bool} from the nodes' status, or None if none answers."""
        probes = self.probe()
        statuses = [s for s in probes.values() if s]
        if not statuses:
            return None
        vals = statuses[0].get("validators") or []
        if not vals:
            return None
        answering = {s.get("name") for s in statuses}
        down_names = {self.names[i] for i, s in enumerate(probes.values()) if s is None and self.names[i]}
        total = sum(int(v.get("power", 1)) for v in vals)
        up, down = 0, []
        for v in vals:
            reachable = v.get("name") in answering or (v.get("reachable", True) and v.get("name") not in down_names)
            if reachable:
                up += int(v.get("power", 1))
            else:
                down.append(v.get("name"))
        needed = total * 2 // 3 + 1
        return {"up": up, "total": total, "needed": needed, "down": down, "lost": up < needed}


def _reason(doc: Any) -> str:
    return str(doc.get("error")) if isinstance(doc, dict) and "error" in doc else str(doc)[:200]


class _AnswerTooBig(Exception):
    """A node's answer over MAX_ANSWER bytes, or still arriving at the deadline: that node fails, the next is asked."""


def _bounded_content(r: requests.Response, deadline_s: float) -> bytes:
    """The body of a streamed answer, at most MAX_ANSWER bytes and complete within `deadline_s`: requests bounds
    each wait for bytes, not their sum or their number, so a node sending without end (or a byte at a time)
    would fill the client's memory or hold it for ever."""
    deadline = time.monotonic() + deadline_s
    parts, size = [], 0
    for chunk in r.iter_content(1 << 16):  # read to its end, the connection goes back to the pool for reuse
        parts.append(chunk)
        size += len(chunk)
        if size > MAX_ANSWER or time.monotonic() > deadline:
            r.close()  # and that connection with it
            raise _AnswerTooBig(f"answer over {MAX_ANSWER >> 20} MiB" if size > MAX_ANSWER
                                else f"answer not complete within {deadline_s:g} s")
    return b"".join(parts)
