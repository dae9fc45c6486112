"""A node's results, content-addressed on disk: `<root>/<task id>/<result hash>.json`.

The file name is the result hash, so a reader checks what it reads against its name (a torn or
tampered file is never served); writes go to a temporary file and are renamed into place, so a crash
leaves either the old state or the new one. Retention is by age (`prune`), set by genesis.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from edgepoc.files import write_atomic
from edgepoc.errors import InputError
from edgepoc.execution.wasm import STATUSES, ExecResult, result_hash

_TASK_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_HASH = re.compile(r"^[0-9a-f]{64}$")


def _task_dir_name(task_id: str) -> str:
    if not isinstance(task_id, str) or not _TASK_ID.match(task_id) or task_id in (".", ".."):
        raise InputError(f"task id must be 1-128 characters of [A-Za-z0-9_.-], got {task_id!r}")
    return task_id


class ResultStore:
    """Results of the tasks this node ran, keyed by task id and result hash."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def put(self, task_id: str, result: ExecResult | dict) -> str:
        """Store one result and return its hash; storing the same result twice is a no-op."""
        rec = result.to_dict() if isinstance(result, ExecResult) else dict(result)
        if rec.get("status") not in STATUSES:
            raise InputError(f"result status must be one of {', '.join(STATUSES)}, got {rec.get('status')!r}")
        digest = result_hash(rec["status"], rec.get("result"))
        rec = {"task": task_id, "status": rec["status"], "result": rec.get("result"),
               "fuel_used": int(rec.get("fuel_used", 0)), "error": rec.get("error"), "result_hash": digest}
        folder = self.root / _task_dir_name(task_id)
        folder.mkdir(exist_ok=True)
        final = folder / f"{digest}.json"
        write_atomic(final, json.dumps(rec, sort_keys=True, separators=(",", ":")))
        return digest

    def get(self, task_id: str, digest: str | None = None) -> dict | None:
        """The stored result (the one with this hash, or the newest for the task); None if absent or corrupt."""
        folder = self.root / _task_dir_name(task_id)
        if digest is not None:
            if not _HASH.match(digest):
                raise InputError(f"result hash must be 64 lowercase hex characters, got {digest!r}")
            candidates = [folder / f"{digest}.json"]
        else:
            try:
                candidates = sorted((p for p in folder.iterdir() if _HASH.match(p.stem) and p.suffix == ".json"),
                                    key=lambda p: p.stat().st_mtime, reverse=True)
            except FileNotFoundError:
                return None
        for path in candidates:
            try:
                rec = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(rec, dict) and rec.get("result_hash") == path.stem \
                    and result_hash(rec.get("status"), rec.get("result")) == path.stem:
                return rec
        return None

    def prune(self, older_than_seconds: float, *, now: float | None = None) -> int:
        """Delete results (and stray temporary files) older than the retention time; returns how many results."""
        cutoff = (time.time() if now is None else now) - older_than_seconds
        removed = 0
        for folder in list(self.root.iterdir()):
            if not folder.is_dir():
                continue
            for path in list(folder.iterdir()):
                try:
                    if path.stat().st_mtime < cutoff:
                        path.unlink()
                        removed += not path.name.startswith(".tmp-")
                except FileNotFoundError:
                    continue
            try:
                folder.rmdir()  # only succeeds once empty
            except OSError:
                pass
        return removed
