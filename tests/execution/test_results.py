"""ResultStore: content-addressed, crash-safe, pruned by age."""

from __future__ import annotations

import os
import time

import pytest

from edgepoc.errors import InputError
from edgepoc.execution import ExecResult, ResultStore, compile_module, load_workload, run_task


def test_round_trip(tmp_path):
    info = compile_module(load_workload("primes"), max_bytes=1 << 20)
    res = run_task(info, "count_and_largest", [100], fuel=10**7, memory_bytes=0)
    store = ResultStore(tmp_path / "node0")
    digest = store.put("t-1", res)
    assert digest == res.result_hash
    assert store.put("t-1", res) == digest  # idempotent
    got = store.get("t-1", digest)
    assert got["result"] == [25, 97] and got["status"] == "ok" and got["fuel_used"] == res.fuel_used
    assert got["task"] == "t-1" and store.get("t-1") == got
    assert store.get("t-2") is None and store.get("t-1", "0" * 64) is None
    assert not [p for p in (tmp_path / "node0" / "t-1").iterdir() if p.name.startswith(".tmp-")]


def test_dict_input_and_newest_wins(tmp_path):
    store = ResultStore(tmp_path)
    old = store.put("t", {"status": "trap", "result": None, "fuel_used": 3, "error": "x"})
    path = tmp_path / "t" / f"{old}.json"
    os.utime(path, (time.time() - 100, time.time() - 100))
    new = store.put("t", ExecResult("ok", 7, 9))
    assert store.get("t")["result_hash"] == new and store.get("t", old)["status"] == "trap"


def test_corrupt_file_never_served(tmp_path):
    store = ResultStore(tmp_path)
    digest = store.put("t", ExecResult("ok", 1, 1))
    (tmp_path / "t" / f"{digest}.json").write_text('{"status":"ok","result":2,"result_hash":"%s"}' % digest)
    assert store.get("t", digest) is None
    (tmp_path / "t" / f"{digest}.json").write_text("{trunc")
    assert store.get("t") is None


def test_prune_by_age(tmp_path):
    store = ResultStore(tmp_path)
    now = time.time()
    a = store.put("old", ExecResult("ok", 1, 1))
    store.put("new", ExecResult("ok", 2, 1))
    os.utime(tmp_path / "old" / f"{a}.json", (now - 3600, now - 3600))
    (tmp_path / "new" / ".tmp-stale.json").write_text("partial")
    os.utime(tmp_path / "new" / ".tmp-stale.json", (now - 3600, now - 3600))
    assert store.prune(600, now=now) == 1
    assert store.get("old") is None and not (tmp_path / "old").exists()
    assert store.get("new")["result"] == 2 and not (tmp_path / "new" / ".tmp-stale.json").exists()
    assert store.prune(0, now=now + 1) == 1 and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", ["", "..", "a/b", "x" * 129, "../etc"])
def test_task_ids_cannot_escape(tmp_path, bad):
    with pytest.raises(InputError, match="task id"):
        ResultStore(tmp_path).put(bad, ExecResult("ok", 1, 1))


def test_bad_status_and_hash(tmp_path):
    store = ResultStore(tmp_path)
    with pytest.raises(InputError, match="status"):
        store.put("t", {"status": "done", "result": 1})
    with pytest.raises(InputError, match="hash"):
        store.get("t", "../x")
