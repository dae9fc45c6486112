"""The labelling job: deterministic per seed, parallel = serial, resumes after a real kill, Ray."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from edgepoc.errors import InputError
from edgepoc.game.dataset import digest, done_indices, read_dataset
from edgepoc.game.kernel import simulate
from edgepoc.solvers.labelling import LabelJob, run_labelling

SMALL = {"n_tasks": 60}


def job(**kw) -> LabelJob:
    base = dict(preset="paper", seed=3, count=6, label="ga", generations=3, instance_params=SMALL)
    base.update(kw)
    return LabelJob(**base)


def test_labels_are_valid_and_deterministic_across_workers(tmp_path):
    run_labelling(tmp_path / "a", job(), workers=1, progress=False)
    run_labelling(tmp_path / "b", job(), workers=2, shard_size=4, progress=False)
    a, b = read_dataset(tmp_path / "a"), read_dataset(tmp_path / "b")
    assert digest(a) == digest(b) and len(a) == 6
    assert [it.meta["index"] for it in b] == list(range(6))
    for it in a:
        assert it.total_latency == simulate(it.instance, it.assignment)
        assert it.total_latency <= it.meta["greedy_latency"]
        assert it.meta["method"] == "ga" and it.meta["generations"] == 3 and it.meta["deterministic"]
        assert it.meta["settings"]["population"] > 0 and "seconds" in it.meta and "seed" in it.meta
    run_labelling(tmp_path / "c", job(seed=4), workers=1, progress=False)
    assert digest(read_dataset(tmp_path / "c")) != digest(a)


def test_extending_and_refusing_another_job(tmp_path):
    run_labelling(tmp_path / "d", job(count=3), workers=1, progress=False)
    summary = run_labelling(tmp_path / "d", job(count=6), workers=1, progress=False)
    assert summary["skipped"] == 3 and summary["written"] == 3
    run_labelling(tmp_path / "full", job(), workers=1, progress=False)
    assert digest(read_dataset(tmp_path / "d")) == digest(read_dataset(tmp_path / "full"))
    with pytest.raises(InputError, match="different data set"):
        run_labelling(tmp_path / "d", job(generations=4), workers=1, progress=False)
    with pytest.raises(InputError, match="labeller"):
        run_labelling(tmp_path / "e", job(label="magic"), workers=1, progress=False)


@pytest.mark.parametrize("after", ["shard", "manifest"])
def test_a_ctrl_c_inside_a_flush_stores_each_item_once_and_counts_what_is_kept(tmp_path, monkeypatch, after):
    """CI caught `generate --label` saying "1 of 30 labelled instances are kept" of a folder holding 2: the Ctrl-C
    landed inside a flush, after its shard reached the manifest, and the interrupted run stored the same item
    again. A Ctrl-C is injected here right after the shard file (`shard`) or the manifest (`manifest`) is written."""
    from edgepoc.errors import Interrupted
    from edgepoc.game import dataset
    from edgepoc.solvers import labelling

    real_append, real_manifest, calls = labelling.append, dataset._write_manifest, []

    def manifest_then_ctrl_c(path, doc):
        real_manifest(path, doc)
        if after == "manifest" and len(calls) == 2:
            raise KeyboardInterrupt

    def append_with_ctrl_c(directory, items):
        calls.append(1)
        if after == "shard" and len(calls) == 2:  # the shard written, the manifest not yet
            items = list(items)
            real_append(tmp_path / "scratch", items)  # the file lands, as the real write does, elsewhere
            raise KeyboardInterrupt
        return real_append(directory, items)

    dataset.create_dataset(tmp_path / "scratch", {})
    monkeypatch.setattr(dataset, "_write_manifest", manifest_then_ctrl_c)
    monkeypatch.setattr(labelling, "append", append_with_ctrl_c)
    with pytest.raises(Interrupted, match=r"^2 of 6 labelled instances are kept"):
        run_labelling(tmp_path / "x", job(), workers=1, shard_size=1, progress=False)
    monkeypatch.undo()
    items = read_dataset(tmp_path / "x")
    assert [it.meta["index"] for it in items] == [0, 1]
    run_labelling(tmp_path / "x", job(), workers=1, shard_size=1, progress=False)  # the same command resumes
    run_labelling(tmp_path / "clean", job(), workers=1, progress=False)
    assert digest(read_dataset(tmp_path / "x")) == digest(read_dataset(tmp_path / "clean"))


def test_killed_generation_resumes_without_duplicates(tmp_path):
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "edgepoc", "generate", "--preset", "paper", "--n-tasks", "100", "--count", "60",
            "--seed", "9", "--label", "ga", "--generations", "5", "--workers", "1", "--shard-size", "1",
            "--out", str(out)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # kill it once a few shards are on disk, mid-run
            manifest = out / "manifest.json"
            if manifest.exists() and json.loads(manifest.read_text())["count"] >= 3:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be interrupted"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    stored = len(read_dataset(out))
    assert 3 <= stored < 60
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"({stored} already there)" in done.stderr
    items = read_dataset(out)
    indices = [it.meta["index"] for it in items]
    assert sorted(indices) == list(range(60)) and len(set(indices)) == 60
    assert done_indices(out) == set(range(60))
    fresh = tmp_path / "fresh"
    run_labelling(fresh, LabelJob(preset="paper", seed=9, count=60, label="ga", generations=5,
                                  instance_params={"n_tasks": 100}), workers=2, progress=False)
    assert digest(items) == digest(read_dataset(fresh))


def test_ray_local_cluster(tmp_path):
    pytest.importorskip("ray")
    run_labelling(tmp_path / "ray", job(count=4), ray_address="local", workers=2, progress=False)
    run_labelling(tmp_path / "pool", job(count=4), workers=1, progress=False)
    ray_items = read_dataset(tmp_path / "ray")
    assert digest(ray_items) == digest(read_dataset(tmp_path / "pool"))
    assert np.all([it.meta["index"] == j for j, it in enumerate(ray_items)])
