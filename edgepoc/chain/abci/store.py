"""The application's store: SQLite (WAL), one transaction per committed block.

CometBFT keeps the blocks and their commits; this store keeps what they mean: the state after every
height (queues, scores, rewards, penalties), the block records the API serves, the task index and
the evidence punished. `Info` reads the last height and app hash from here, so after a crash CometBFT
replays exactly the blocks the store does not have.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

from edgepoc.chain.consensus import ChainState
from edgepoc.errors import EdgepocError

SCHEMA_VERSION = 4  # 2: raw transactions as bytes (block_txs); 3: modules and work (tasks that really run); 4: indexed block summaries
WORK_COLUMNS = ("id", "task", "kind", "height", "position", "provider", "task_time", "assigned_time", "deadline",
                "module", "function", "args", "fuel", "memory", "status", "result", "result_hash", "fuel_used",
                "receipt_height", "measured_latency", "simulated_latency", "reassigned", "audit", "exec_status")
JSON_COLUMNS = ("args", "result", "audit")
SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (height INTEGER PRIMARY KEY, hash TEXT NOT NULL, time REAL NOT NULL,
                                   n_tasks INTEGER NOT NULL, committed_at REAL NOT NULL, body TEXT NOT NULL,
                                   proposer_name TEXT, claimed_latency REAL, arbitration_method TEXT);
CREATE INDEX IF NOT EXISTS blocks_arbitrated ON blocks (arbitration_method, height);
CREATE TABLE IF NOT EXISTS block_txs (height INTEGER NOT NULL, position INTEGER NOT NULL, tx BLOB NOT NULL,
                                      PRIMARY KEY (height, position));
CREATE TABLE IF NOT EXISTS states (height INTEGER PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (id TEXT PRIMARY KEY, height INTEGER NOT NULL, position INTEGER NOT NULL,
                                  provider INTEGER NOT NULL, latency REAL NOT NULL, arrival REAL NOT NULL);
CREATE TABLE IF NOT EXISTS modules (hash TEXT PRIMARY KEY, height INTEGER NOT NULL, functions TEXT NOT NULL,
                                    wasm BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS work (id TEXT PRIMARY KEY, task TEXT NOT NULL, kind TEXT NOT NULL, height INTEGER NOT NULL,
                                 position INTEGER NOT NULL, provider INTEGER NOT NULL, task_time REAL NOT NULL,
                                 assigned_time REAL NOT NULL, deadline REAL NOT NULL, module TEXT NOT NULL,
                                 function TEXT NOT NULL, args TEXT NOT NULL, fuel INTEGER NOT NULL,
                                 memory INTEGER NOT NULL, status TEXT NOT NULL, result TEXT, result_hash TEXT,
                                 fuel_used INTEGER, receipt_height INTEGER, measured_latency REAL,
                                 simulated_latency REAL, reassigned INTEGER NOT NULL DEFAULT 0, audit TEXT,
                                 exec_status TEXT);
CREATE INDEX IF NOT EXISTS work_open ON work (status, provider, height, position);
CREATE INDEX IF NOT EXISTS work_task ON work (task);
CREATE TABLE IF NOT EXISTS evidence (n INTEGER PRIMARY KEY AUTOINCREMENT, height INTEGER NOT NULL, body TEXT NOT NULL);
"""


class AppStore:
    """One node's application data in one SQLite file; readers get their own connection per thread."""

    def __init__(self, path: Path, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        if not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        existed = self.path.exists() and self.path.stat().st_size > 0
        if readonly and not existed:
            raise EdgepocError(f"store {self.path}: does not exist or is empty")
        try:
            self.db = self._connect()
            self._check(existed)
        except sqlite3.DatabaseError as exc:
            raise EdgepocError(f"store {self.path}: damaged ({exc}); restore it from a backup, or move it aside "
                               "and let CometBFT replay the chain into a fresh one") from None

    def _check(self, existed: bool) -> None:
        """Refuse a damaged or foreign store at start, not at the first Commit (a node that votes and then
        dies is worse than one that never starts)."""
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if existed:
            bad = self.db.execute("PRAGMA quick_check").fetchone()[0]
            if bad != "ok":
                raise sqlite3.DatabaseError(f"integrity check: {bad}")
            if version != SCHEMA_VERSION:
                raise sqlite3.DatabaseError(f"schema version {version}, this edgepoc reads {SCHEMA_VERSION}")
        if not self.readonly:
            self.db.executescript(SCHEMA)
            if not existed:
                self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _connect(self) -> sqlite3.Connection:
        uri = f"file:{self.path}?mode=ro" if self.readonly else f"file:{self.path}"
        db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=30)
        if not self.readonly:
            db.execute("PRAGMA journal_mode=WAL")
            # NORMAL: a block's transaction is atomic, but an OS crash may roll back the last few. That is
            # safe here: CometBFT fsyncs its blocks and WAL, and at restart replays every block above the
            # height Info reports from this store. FULL (an fsync per block) cost Commit ~40 % of the
            # app's time at 10,000 offered tasks/s.
            db.execute("PRAGMA synchronous=NORMAL")
        return db

    @property
    def _r(self) -> sqlite3.Connection:
        """This thread's reading connection (WAL: readers never block the writer)."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._connect()
        return db

    def close(self) -> None:
        self.db.close()

    # -- writing (the ABCI Commit)
    def save_block(self, state: ChainState, record: dict, rows: list[tuple], evidence: list[dict],
                   txs: list[bytes], work: dict[str, dict] | None = None, modules: list[tuple] = ()) -> None:
        """Everything a committed block changes, atomically; `txs` are its raw transactions (for verify)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            alloc, arb = record.get("allocation") or {}, record.get("arbitration")
            self.db.execute("INSERT INTO blocks VALUES (?,?,?,?,?,?,?,?,?)",
                            (state.height, record["hash"], record["time"], len(rows), record["committed_at"],
                             json.dumps(record), record.get("proposer_name") or record.get("proposer"),
                             alloc.get("claimed_latency", 0.0), (arb or {}).get("method") if arb else None))
            self.db.executemany("INSERT INTO block_txs VALUES (?,?,?)",
                                [(state.height, i, bytes(t)) for i, t in enumerate(txs)])
            self.db.execute("INSERT INTO states VALUES (?,?)", (state.height, json.dumps(state.to_dict())))
            self.db.executemany("INSERT INTO tasks VALUES (?,?,?,?,?,?)", rows)
            self.db.executemany("INSERT INTO evidence (height, body) VALUES (?,?)",
                                [(state.height, json.dumps(e)) for e in evidence])
            self.db.executemany("INSERT OR IGNORE INTO modules VALUES (?,?,?,?)", list(modules))
            if work:
                marks = ",".join("?" * len(WORK_COLUMNS))
                self.db.executemany(f"INSERT OR REPLACE INTO work VALUES ({marks})",
                                    [tuple(json.dumps(w.get(c)) if c in JSON_COLUMNS else _sql(w.get(c))
                                           for c in WORK_COLUMNS) for w in work.values()])
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    # -- reading
    def height(self) -> int:
        row = self._r.execute("SELECT MAX(height) FROM states").fetchone()
        return int(row[0] or 0)

    def state(self, height: int | None = None) -> ChainState | None:
        if height is None:
            row = self._r.execute("SELECT body FROM states ORDER BY height DESC LIMIT 1").fetchone()
        else:
            row = self._r.execute("SELECT body FROM states WHERE height=?", (height,)).fetchone()
        return ChainState.from_dict(json.loads(row[0])) if row else None

    def block(self, height: int) -> dict | None:
        row = self._r.execute("SELECT body FROM blocks WHERE height=?", (height,)).fetchone()
        return json.loads(row[0]) if row else None

    def summaries(self, before: int | None, limit: int, with_tasks: bool = False,
                  arbitrated: bool = False) -> list[dict]:
        """Block summaries from indexed columns (no block body is parsed): the explorer's and the API's lists."""
        q = ("SELECT height, hash, time, n_tasks, proposer_name, claimed_latency, arbitration_method FROM blocks "
             "WHERE height < ?" + (" AND n_tasks > 0" if with_tasks else "")
             + (" AND arbitration_method IS NOT NULL" if arbitrated else "") + " ORDER BY height DESC LIMIT ?")
        return [{"height": h, "hash": hh, "time": t, "n_tasks": n, "proposer": p, "total_latency": lat,
                 "arbitrated": m is not None, "method": m}
                for h, hh, t, n, p, lat, m in self._r.execute(q, (before or 2**62, limit))]

    def brief(self, height: int) -> tuple[int, str] | None:
        """(number of tasks, proposer address) of a committed block."""
        row = self._r.execute("SELECT n_tasks, json_extract(body, '$.proposer') FROM blocks WHERE height=?",
                              (height,)).fetchone()
        return (int(row[0]), str(row[1])) if row else None

    def txs(self, height: int) -> list[bytes] | None:
        if self._r.execute("SELECT 1 FROM blocks WHERE height=?", (height,)).fetchone() is None:
            return None
        return [bytes(r[0]) for r in self._r.execute("SELECT tx FROM block_txs WHERE height=? ORDER BY position",
                                                     (height,))]

    def history(self, limit: int) -> list[tuple]:
        """(height, time, proposer name, powers, state) of the last `limit` blocks with tasks, newest first;
        SQLite picks the few fields out of each block body (no task lists through Python)."""
        rows = self._r.execute(
            "SELECT b.height, b.time, json_extract(b.body, '$.proposer_name'), json_extract(b.body, '$.powers'), "
            "s.body FROM blocks b JOIN states s ON s.height = b.height WHERE b.n_tasks > 0 "
            "ORDER BY b.height DESC LIMIT ?", (limit,)).fetchall()
        return [(h, t, name, json.loads(powers), ChainState.from_dict(json.loads(st)))
                for h, t, name, powers, st in rows]

    def committed_ids(self, ids: list[str]) -> set[str]:
        out: set[str] = set()
        for i in range(0, len(ids), 900):
            chunk = ids[i:i + 900]
            q = f"SELECT id FROM tasks WHERE id IN ({','.join('?' * len(chunk))})"
            out.update(r[0] for r in self._r.execute(q, chunk))
        return out

    def tasks(self, ids: list[str]) -> dict[str, dict]:
        """`task` for many ids in a few queries (the client API's status of thousands of tasks at once)."""
        out: dict[str, dict] = {}
        for i in range(0, len(ids), 900):
            chunk = ids[i:i + 900]
            q = ("SELECT t.id, t.height, t.position, t.provider, t.latency, t.arrival, b.committed_at FROM tasks t "
                 f"JOIN blocks b ON b.height = t.height WHERE t.id IN ({','.join('?' * len(chunk))})")
            for tid, h, pos, prov, lat, arr, at in self._r.execute(q, chunk):
                out[tid] = {"id": tid, "status": "committed", "height": h, "position": pos, "provider": prov,
                            "latency": lat, "arrival": arr, "committed_at": at}
        return out

    def task(self, task_id: str) -> dict | None:
        return self.tasks([task_id]).get(task_id)

    def tasks_at(self, height: int) -> list[tuple]:
        return self._r.execute("SELECT id, position, provider, latency, arrival FROM tasks WHERE height=? "
                               "ORDER BY position", (height,)).fetchall()

    # -- work (tasks that really run)
    def module(self, digest: str) -> tuple[dict, bytes] | None:
        """(exported functions, wasm) of a module committed on chain."""
        row = self._r.execute("SELECT functions, wasm FROM modules WHERE hash=?", (digest,)).fetchone()
        return (json.loads(row[0]), bytes(row[1])) if row else None

    def module_heights(self, digests: list[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for i in range(0, len(digests), 900):
            chunk = digests[i:i + 900]
            q = f"SELECT hash, height FROM modules WHERE hash IN ({','.join('?' * len(chunk))})"
            out.update(self._r.execute(q, chunk).fetchall())
        return out

    def work(self, ids: list[str]) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for i in range(0, len(ids), 900):
            chunk = ids[i:i + 900]
            q = f"SELECT * FROM work WHERE id IN ({','.join('?' * len(chunk))})"
            out.update((r[0], _work_row(r)) for r in self._r.execute(q, chunk))
        return out

    def work_of_task(self, task_id: str) -> list[dict]:
        return [_work_row(r) for r in self._r.execute("SELECT * FROM work WHERE task=? ORDER BY id", (task_id,))]

    def open_work(self, provider: int | None = None, limit: int = 1_000_000) -> list[dict]:
        """Assigned work without an accepted receipt, in the committed order (height, position)."""
        if provider is None:
            rows = self._r.execute("SELECT * FROM work WHERE status='assigned' ORDER BY height, position LIMIT ?",
                                   (limit,))
        else:
            rows = self._r.execute("SELECT * FROM work WHERE status='assigned' AND provider=? "
                                   "ORDER BY height, position LIMIT ?", (provider, limit))
        return [_work_row(r) for r in rows]

    def overdue_work(self, clock: float, unavailable: list[int]) -> list[dict]:
        """Open work past its deadline, or held by an unavailable provider, in committed order."""
        q = "SELECT * FROM work WHERE status='assigned' AND (deadline < ?"
        if unavailable:
            q += f" OR provider IN ({','.join(str(int(i)) for i in unavailable)})"
        return [_work_row(r) for r in self._r.execute(q + ") ORDER BY height, position, id", (clock,))]

    def backlog_ids(self, provider: int, assigned_before: float, limit: int = 64) -> list[str]:
        """Open work of a provider assigned before a time (its backlog), oldest first."""
        return [r[0] for r in self._r.execute("SELECT id FROM work WHERE status='assigned' AND provider=? AND "
                                              "assigned_time < ? ORDER BY height, position LIMIT ?",
                                              (provider, assigned_before, limit))]

    def evidence(self) -> list[dict]:
        return [json.loads(r[0]) for r in self._r.execute("SELECT body FROM evidence ORDER BY n")]


def _sql(v):
    return json.dumps(v) if isinstance(v, (list, dict)) else v


def _work_row(r) -> dict:
    d = dict(zip(WORK_COLUMNS, r))
    for k in JSON_COLUMNS:
        if isinstance(d[k], str):
            d[k] = json.loads(d[k])
    return d
