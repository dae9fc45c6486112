"""A node's embedded store: SQLite in WAL mode with synchronous=FULL (fsync on every commit).

Tables: blocks and their commits, the state after every height, the task index, pending tasks (the
mempool survives a crash, so no accepted task is lost), evidence, and the votes this node signed.
`sign_vote_once` is the double-sign guard: the vote is written (and fsynced) before it is sent, and a second request for one height/round/type gets the stored vote back, never a new one.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Callable, Iterable

from edgepoc.chain.consensus import ChainState
from edgepoc.chain.types import Block, Commit, Evidence, TaskRequest, Vote

SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (height INTEGER PRIMARY KEY, hash TEXT NOT NULL UNIQUE, body TEXT NOT NULL,
                                   commit_body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS states (height INTEGER PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (id TEXT PRIMARY KEY, height INTEGER NOT NULL, position INTEGER NOT NULL,
                                  provider INTEGER NOT NULL, latency REAL NOT NULL);
CREATE TABLE IF NOT EXISTS pending (id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS evidence (id TEXT PRIMARY KEY, body TEXT NOT NULL, height INTEGER);
CREATE TABLE IF NOT EXISTS signed_votes (height INTEGER NOT NULL, round INTEGER NOT NULL, type TEXT NOT NULL,
                                         body TEXT NOT NULL, PRIMARY KEY (height, round, type));
CREATE TABLE IF NOT EXISTS locks (height INTEGER PRIMARY KEY, round INTEGER NOT NULL, block TEXT NOT NULL);
"""


class BlockStore:
    """All of one node's durable data, in one SQLite file."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    # -- blocks and state
    def height(self) -> int:
        row = self.db.execute("SELECT MAX(height) FROM blocks").fetchone()
        return int(row[0] or 0)

    def save_block(self, block: Block, commit: Commit, state: ChainState, latencies: Iterable[float]) -> None:
        """The block, its commit, the new state and the task index, atomically (one fsync)."""
        with self._tx():
            self.db.execute("INSERT INTO blocks VALUES (?,?,?,?)",
                            (block.height, block.hash, json.dumps(block.to_dict()), json.dumps(commit.to_dict())))
            self.db.execute("INSERT INTO states VALUES (?,?)", (block.height, json.dumps(state.to_dict())))
            self.db.executemany("INSERT INTO tasks VALUES (?,?,?,?,?)",
                                [(t.id, block.height, i, int(block.assignment[i]), float(lat))
                                 for i, (t, lat) in enumerate(zip(block.tasks, latencies))])
            self.db.executemany("DELETE FROM pending WHERE id=?", [(t.id,) for t in block.tasks])
            for ev in block.evidence:
                self.db.execute("INSERT OR REPLACE INTO evidence VALUES (?,?,?)",
                                (ev.id, json.dumps(ev.to_dict()), block.height))
            self.db.execute("DELETE FROM signed_votes WHERE height < ?", (block.height - 10,))
            self.db.execute("DELETE FROM locks WHERE height <= ?", (block.height,))

    def block(self, height: int) -> Block | None:
        row = self.db.execute("SELECT body FROM blocks WHERE height=?", (height,)).fetchone()
        return Block.from_dict(json.loads(row[0])) if row else None

    def block_raw(self, height: int) -> tuple[dict, dict] | None:
        row = self.db.execute("SELECT body, commit_body FROM blocks WHERE height=?", (height,)).fetchone()
        return (json.loads(row[0]), json.loads(row[1])) if row else None

    def commit(self, height: int) -> Commit | None:
        row = self.db.execute("SELECT commit_body FROM blocks WHERE height=?", (height,)).fetchone()
        return Commit.from_dict(json.loads(row[0])) if row else None

    def block_hash(self, height: int) -> str | None:
        row = self.db.execute("SELECT hash FROM blocks WHERE height=?", (height,)).fetchone()
        return row[0] if row else None

    def state(self, height: int | None = None) -> ChainState | None:
        if height is None:
            row = self.db.execute("SELECT body FROM states ORDER BY height DESC LIMIT 1").fetchone()
        else:
            row = self.db.execute("SELECT body FROM states WHERE height=?", (height,)).fetchone()
        return ChainState.from_dict(json.loads(row[0])) if row else None

    # -- tasks
    def task(self, task_id: str) -> dict | None:
        row = self.db.execute("SELECT height, position, provider, latency FROM tasks WHERE id=?", (task_id,)).fetchone()
        if row:
            return {"id": task_id, "status": "committed", "height": row[0], "position": row[1], "provider": row[2],
                    "latency": row[3]}
        if self.db.execute("SELECT 1 FROM pending WHERE id=?", (task_id,)).fetchone():
            return {"id": task_id, "status": "pending"}
        return None

    def committed_ids(self, ids: list[str]) -> set[str]:
        out: set[str] = set()
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            rows = self.db.execute(f"SELECT id FROM tasks WHERE id IN ({','.join('?' * len(chunk))})", chunk)
            out.update(r[0] for r in rows)
        return out

    def is_committed(self, task_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM tasks WHERE id=?", (task_id,)).fetchone() is not None

    def add_pending(self, tasks: list[TaskRequest]) -> None:
        with self._tx():
            self.db.executemany("INSERT OR IGNORE INTO pending VALUES (?,?)",
                                [(t.id, json.dumps(t.to_dict())) for t in tasks])

    def pending(self) -> list[TaskRequest]:
        return [TaskRequest.from_dict(json.loads(r[0])) for r in self.db.execute("SELECT body FROM pending")]

    # -- evidence
    def evidence_committed(self, ev_id: str) -> bool:
        row = self.db.execute("SELECT height FROM evidence WHERE id=?", (ev_id,)).fetchone()
        return row is not None and row[0] is not None

    def add_evidence(self, ev: Evidence) -> None:
        self.db.execute("INSERT OR IGNORE INTO evidence VALUES (?,?,NULL)", (ev.id, json.dumps(ev.to_dict())))

    def pending_evidence(self) -> list[Evidence]:
        rows = self.db.execute("SELECT body FROM evidence WHERE height IS NULL")
        return [Evidence.from_dict(json.loads(r[0])) for r in rows]

    def all_evidence(self) -> list[dict]:
        return [{**json.loads(r[0]), "committed_height": r[1]}
                for r in self.db.execute("SELECT body, height FROM evidence ORDER BY height")]

    # -- the double-sign guard
    def sign_vote_once(self, vote: Vote, sign: Callable[[bytes], str], lock: Block | None = None) -> Vote:
        """Sign `vote` unless this node already signed one for its height/round/type: then return that one.

        The vote (and, for a precommit of a block, the lock on that block) is fsynced before the
        caller can send it, so a crash between signing and sending cannot lead to a second vote.
        """
        row = self.db.execute("SELECT body FROM signed_votes WHERE height=? AND round=? AND type=?",
                              (vote.height, vote.round, vote.type)).fetchone()
        if row:
            return Vote.from_dict(json.loads(row[0]))
        vote.sig = sign(vote.sign_bytes())
        with self._tx():
            self.db.execute("INSERT INTO signed_votes VALUES (?,?,?,?)",
                            (vote.height, vote.round, vote.type, json.dumps(vote.to_dict())))
            if lock is not None:
                self.db.execute("INSERT OR REPLACE INTO locks VALUES (?,?,?)",
                                (vote.height, vote.round, json.dumps(lock.to_dict())))
        return vote

    def lock(self, height: int) -> tuple[int, Block] | None:
        """The block this node precommitted last at `height` (its Tendermint lock), after a restart."""
        row = self.db.execute("SELECT round, block FROM locks WHERE height=?", (height,)).fetchone()
        return (row[0], Block.from_dict(json.loads(row[1]))) if row else None

    def signed_votes(self, height: int) -> list[Vote]:
        rows = self.db.execute("SELECT body FROM signed_votes WHERE height=? ORDER BY round", (height,))
        return [Vote.from_dict(json.loads(r[0])) for r in rows]

    def _tx(self):
        return _Transaction(self.db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb):
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        return False
