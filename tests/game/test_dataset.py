"""The data-set folder: exact round trips (columnar and JSON), appends, crash safety, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgepoc.errors import InputError
from edgepoc.game.dataset import (LabelledInstance, append, create_dataset, dataset_info, digest, done_indices,
                                  export_json, import_json, read_dataset, write_dataset)
from edgepoc.game.generators import generate
from edgepoc.game.instance import Instance
from edgepoc.game.kernel import greedy_assignment
from tests.conftest import random_instance, run_cli


def mixed_items() -> list[LabelledInstance]:
    """Different sizes, with and without per-task delays, custom ids, an unlabelled item."""
    items = []
    for j, inst in enumerate(generate("varied", seed=4, count=3)):
        x, f = greedy_assignment(inst)
        items.append(LabelledInstance(inst, x, f, {"index": j, "method": "greedy", "seconds": 0.25}))
    rng = np.random.default_rng(0)
    odd = random_instance(rng, 7, 2, task_delays=True)
    odd = Instance.create(odd.capacity, odd.provider_delay, odd.arrival, odd.demand, odd.task_delays,
                          name="odd one", provider_ids=["east", "west"], task_ids=[f"job-{i}" for i in range(7)])
    items.append(LabelledInstance(odd, np.array([0, 1, 1, 0, 1, 0, 0]), 3.25, {"method": "hand", "note": [1, 2]}))
    items.append(LabelledInstance(random_instance(rng, 5, 3), None, None, {}))
    return items


def assert_same(a: list[LabelledInstance], b: list[LabelledInstance]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for key in ("capacity", "provider_delay", "arrival", "demand"):
            assert np.array_equal(getattr(x.instance, key), getattr(y.instance, key))
        assert (x.instance.task_delays is None) == (y.instance.task_delays is None)
        if x.instance.task_delays is not None:
            assert np.array_equal(x.instance.task_delays, y.instance.task_delays)
        assert x.instance.name == y.instance.name
        assert x.instance.provider_ids == y.instance.provider_ids and x.instance.task_ids == y.instance.task_ids
        assert (x.assignment is None) == (y.assignment is None)
        if x.assignment is not None:
            assert np.array_equal(x.assignment, y.assignment) and x.total_latency == y.total_latency
        assert x.meta == y.meta
    assert digest(a) == digest(b)


def test_columnar_round_trip_is_exact(tmp_path):
    items = mixed_items()
    assert write_dataset(tmp_path / "ds", items, meta={"about": "test"}, shard_size=2) == 5
    back = read_dataset(tmp_path / "ds")
    assert_same(items, back)
    info = dataset_info(tmp_path / "ds")
    assert info["count"] == 5 and info["labelled"] == 4 and info["shards"] == 3 and info["meta"] == {"about": "test"}
    assert done_indices(tmp_path / "ds") == {0, 1, 2}


def test_json_round_trip_is_exact(tmp_path):
    items = mixed_items()
    write_dataset(tmp_path / "ds", items, meta={"about": "x"})
    assert export_json(tmp_path / "ds", tmp_path / "json") == 5
    alloc = json.loads((tmp_path / "json" / "allocations" / "odd one.json").read_text())
    assert alloc["format"] == "edgepoc-allocation/1" and alloc["assignment"] == [0, 1, 1, 0, 1, 0, 0]
    import_json(tmp_path / "json", tmp_path / "again")
    assert_same(items, read_dataset(tmp_path / "again"))
    assert dataset_info(tmp_path / "again")["meta"] == {"about": "x"}


def test_append_and_crash_leftovers(tmp_path):
    items = mixed_items()
    d = tmp_path / "ds"
    create_dataset(d, {})
    append(d, items[:2])
    # a crash after writing a shard but before the manifest: the shard is not part of the data set
    np.savez(d / "shard-00001.npz", junk=np.arange(3))
    (d / ".shard-00001.npz.tmp.npz").write_bytes(b"half a file")
    assert len(read_dataset(d)) == 2
    append(d, items[2:])
    assert_same(items, read_dataset(d))


def test_bad_folders(tmp_path):
    with pytest.raises(InputError, match="not a data set"):
        read_dataset(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": "other/1"}')
    with pytest.raises(InputError, match="format"):
        read_dataset(tmp_path)
    write_dataset(tmp_path / "ds", mixed_items()[:1])
    with pytest.raises(InputError, match="already holds"):
        write_dataset(tmp_path / "ds", mixed_items()[:1])
    (tmp_path / "ds" / "shard-00000.npz").unlink()
    with pytest.raises(InputError, match="missing"):
        read_dataset(tmp_path / "ds")


def test_dataset_cli(tmp_path):
    write_dataset(tmp_path / "ds", mixed_items())
    info = run_cli("dataset", "info", str(tmp_path / "ds"))
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["digest"] == digest(mixed_items())
    assert run_cli("dataset", "export", str(tmp_path / "ds"), str(tmp_path / "j")).returncode == 0
    assert run_cli("dataset", "import", str(tmp_path / "j"), str(tmp_path / "ds2")).returncode == 0
    assert_same(mixed_items(), read_dataset(tmp_path / "ds2"))
    bad = run_cli("dataset", "info", str(tmp_path / "nowhere"))
    assert bad.returncode == 2 and "not a data set" in bad.stderr


def test_an_import_that_fails_half_way_leaves_nothing_and_names_the_file(tmp_path):
    from edgepoc.game.dataset import import_json
    from edgepoc.game.files import instance_to_dict, write_json
    from edgepoc.game.generators import generate

    src = tmp_path / "src" / "instances"
    for inst in generate("paper", seed=1, count=3, n_tasks=20):
        write_json(src / f"{inst.name}.json", instance_to_dict(inst))
    bad = instance_to_dict(generate("paper", seed=2, count=1, n_tasks=20)[0])
    bad["tasks"][3]["arrival"] = -1.0
    write_json(src / "zz-bad.json", bad)
    with pytest.raises(InputError, match=r"zz-bad\.json: tasks\[3\]\.arrival"):
        import_json(tmp_path / "src", tmp_path / "ds", shard_size=1)
    assert not (tmp_path / "ds").exists() and not list(tmp_path.glob(".ds.partial-*"))
    (src / "zz-bad.json").unlink()
    assert import_json(tmp_path / "src", tmp_path / "ds") == 3  # the rerun is not blocked


def test_a_damaged_shard_or_manifest_is_a_one_line_error(tmp_path):
    from edgepoc.game.dataset import read_dataset, write_dataset

    write_dataset(tmp_path / "ds", [LabelledInstance(random_instance(np.random.default_rng(0), 6, 2))])
    shard = tmp_path / "ds" / "shard-00000.npz"
    good = shard.read_bytes()
    shard.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(InputError, match="shard-00000.npz .* is damaged"):
        read_dataset(tmp_path / "ds")
    shard.write_bytes(good)
    manifest = tmp_path / "ds" / "manifest.json"
    doc = json.loads(manifest.read_text())
    for bad in ({**doc, "count": "x"}, {**doc, "shards": 5}, {**doc, "shards": [{"file": "../../etc/passwd", "count": 1}]}):
        manifest.write_text(json.dumps(bad))
        with pytest.raises(InputError, match="manifest.json is damaged"):
            read_dataset(tmp_path / "ds")
