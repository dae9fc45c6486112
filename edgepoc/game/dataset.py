"""Labelled data sets: many instances, each with a label allocation from a solver (SPEC §3).

On disk a data set is a folder:

    manifest.json          {"format": "edgepoc-dataset/1", "count": N, "meta": {...}, "shards": [...]}
    shard-00000.npz        columnar arrays of a batch of instances (see `_pack`)
    shard-00001.npz        ...

A shard concatenates the instances' arrays (arrivals, demands, delays, labels) into a few flat columns;
each instance's slice follows from its sizes `(n, K, R)`, so 10 000 instances of 1000 tasks are a few
dozen files rather than 20 000 JSON documents. Floats are stored as float64, so every number
round-trips bit for bit, also through the JSON forms (`export_json` / `import_json`).

Writes are crash-safe: a shard is written to a temporary name and renamed, then the manifest is
replaced atomically; a shard that a crash left outside the manifest is ignored and overwritten on the
next append. `append` is how resumable jobs add work; items that carry `meta["index"]` are tracked so a
job can skip what is already done (`done_indices`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

import numpy as np

from edgepoc.files import atomic_path, write_atomic
from edgepoc.errors import InputError
from edgepoc.game.instance import Instance

_T = TypeVar("_T")

DATASET_FORMAT = "edgepoc-dataset/1"
MANIFEST = "manifest.json"


@dataclass
class LabelledInstance:
    """An instance and its label: the allocation a solver found, its total delay and how."""

    instance: Instance
    assignment: np.ndarray | None = None  # (n,) int64, the label x*
    total_latency: float | None = None  # f(x*)
    meta: dict[str, Any] = field(default_factory=dict)  # method, settings, seed, seconds


# -- columnar packing -----------------------------------------------------------------------------


def _default_ids(ids: list[str], prefix: str) -> bool:
    return all(s == f"{prefix}{j}" for j, s in enumerate(ids))


def _pack(items: list[LabelledInstance]) -> dict[str, np.ndarray]:
    """Concatenate the items' arrays into flat columns; sizes per item say where each slice lies."""
    insts = [it.instance for it in items]
    n = np.array([i.n_tasks for i in insts], dtype=np.int64)
    k = np.array([i.n_providers for i in insts], dtype=np.int64)
    r = np.array([i.n_resources for i in insts], dtype=np.int64)
    has_delays = np.array([i.task_delays is not None for i in insts], dtype=bool)
    has_label = np.array([it.assignment is not None for it in items], dtype=bool)
    cat = lambda arrays, dtype: (np.concatenate([np.ravel(a) for a in arrays]).astype(dtype)  # noqa: E731
                                 if arrays else np.empty(0, dtype))
    extra_ids = {}
    for j, inst in enumerate(insts):  # ids are stored only when they are not the default p0.., t0..
        if not _default_ids(inst.provider_ids, "p") or not _default_ids(inst.task_ids, "t"):
            extra_ids[str(j)] = {"providers": inst.provider_ids, "tasks": inst.task_ids}
    labels = []
    for it in items:
        if it.assignment is not None:
            a = np.asarray(it.assignment)
            if a.shape != (it.instance.n_tasks,):
                raise InputError(f"dataset: label of {it.instance.name!r} has shape {a.shape}, "
                                 f"expected ({it.instance.n_tasks},)")
            labels.append(a)
    return {
        "name": np.array([i.name for i in insts], dtype=str),
        "n_tasks": n, "n_providers": k, "n_resources": r,
        "has_task_delays": has_delays, "has_label": has_label,
        "capacity": cat([i.capacity for i in insts], np.float64),
        "provider_delay": cat([i.provider_delay for i in insts], np.float64),
        "arrival": cat([i.arrival for i in insts], np.float64),
        "demand": cat([i.demand for i in insts], np.float64),
        "task_delays": cat([i.task_delays for i in insts if i.task_delays is not None], np.float64),
        "assignment": cat(labels, np.int16),
        "total_latency": np.array([np.nan if it.total_latency is None else float(it.total_latency)
                                   for it in items], dtype=np.float64),
        "meta": np.array(json.dumps([it.meta for it in items], allow_nan=False)),
        "ids": np.array(json.dumps(extra_ids)),
    }


def _unpack(cols: dict[str, np.ndarray]) -> list[LabelledInstance]:
    n, k, r = cols["n_tasks"], cols["n_providers"], cols["n_resources"]
    has_delays, has_label = cols["has_task_delays"], cols["has_label"]
    metas = json.loads(str(cols["meta"]))
    extra_ids = json.loads(str(cols["ids"]))
    off = dict.fromkeys(("cap", "pd", "arr", "dem", "td", "lab"), 0)
    out = []
    for j in range(n.shape[0]):
        nj, kj, rj = int(n[j]), int(k[j]), int(r[j])

        def take(key: str, column: str, size: int) -> np.ndarray:
            a = cols[column][off[key]: off[key] + size]
            off[key] += size
            return a

        capacity = take("cap", "capacity", kj * rj).reshape(kj, rj)
        provider_delay = take("pd", "provider_delay", kj)
        arrival = take("arr", "arrival", nj)
        demand = take("dem", "demand", nj * rj).reshape(nj, rj)
        task_delays = take("td", "task_delays", nj * kj).reshape(nj, kj) if has_delays[j] else None
        ids = extra_ids.get(str(j), {})
        inst = Instance.create(capacity, provider_delay, arrival, demand, task_delays, name=str(cols["name"][j]),
                               provider_ids=ids.get("providers"), task_ids=ids.get("tasks"))
        label = take("lab", "assignment", nj).astype(np.int64) if has_label[j] else None
        total = float(cols["total_latency"][j])
        out.append(LabelledInstance(inst, label, None if np.isnan(total) else total, metas[j]))
    return out


# -- the folder -----------------------------------------------------------------------------------


def _write_manifest(path: Path, doc: dict) -> None:
    write_atomic(path, json.dumps(doc, allow_nan=False) + "\n")


def load_manifest(directory: str | Path) -> dict:
    """The manifest of a data-set folder; a clear `InputError` if it is not one."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise InputError(f"dataset: {str(directory)!r} is not a data set (no {MANIFEST})")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"dataset: {path} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != DATASET_FORMAT:
        raise InputError(f"dataset: {path} has format {doc.get('format') if isinstance(doc, dict) else None!r}, "
                         f"expected {DATASET_FORMAT!r}")
    shards = doc.get("shards")
    if (not isinstance(doc.get("count"), int) or not isinstance(shards, list)
            or not all(isinstance(sh, dict) and isinstance(sh.get("file"), str) and "/" not in sh["file"]
                       and isinstance(sh.get("count"), int) for sh in shards)):
        raise InputError(f"dataset: {path} is damaged (expected an integer count and a list of shards with file "
                         "names and counts)")
    return doc


def create_dataset(directory: str | Path, meta: dict[str, Any] | None = None, overwrite: bool = False) -> dict:
    """Start an empty data set (a manifest with no shards) and return its manifest."""
    d = Path(directory)
    if (d / MANIFEST).exists() and not overwrite:
        raise InputError(f"dataset: {str(d)!r} already holds a data set (append to it, or choose another folder)")
    d.mkdir(parents=True, exist_ok=True)
    if overwrite:
        for old in d.glob("shard-*.npz"):
            old.unlink()
    manifest = {"format": DATASET_FORMAT, "count": 0, "meta": dict(meta or {}), "shards": []}
    _write_manifest(d / MANIFEST, manifest)
    return manifest


def append(directory: str | Path, items: Iterable[LabelledInstance]) -> int:
    """Add `items` as one new shard (crash-safe); returns how many were added."""
    items = list(items)
    if not items:
        return 0
    d = Path(directory)
    manifest = load_manifest(d)
    number = len(manifest["shards"])
    name = f"shard-{number:05d}.npz"
    with atomic_path(d / name, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **_pack(items))
    indices = [it.meta.get("index") for it in items]
    manifest["shards"].append({"file": name, "count": len(items),
                               "indices": _ranges([i for i in indices if isinstance(i, int)])})
    manifest["count"] = int(manifest["count"]) + len(items)
    _write_manifest(d / MANIFEST, manifest)
    return len(items)


def _append_in_shards(directory: str | Path, items: Iterable[LabelledInstance], shard_size: int) -> int:
    """Append `items` to the data set in `directory`, a shard per `shard_size` of them; returns how many."""
    batch, total = [], 0
    for it in items:
        batch.append(it)
        if len(batch) == shard_size:
            total += append(directory, batch)
            batch = []
    return total + append(directory, batch)


def write_dataset(directory: str | Path, items: Iterable[LabelledInstance], meta: dict[str, Any] | None = None,
                  shard_size: int = 256, overwrite: bool = False, atomic: bool = True) -> int:
    """Write a new data set of `items` in shards of `shard_size`; returns the item count. `atomic=False`
    writes in place, shard by shard, so a long job stopped half-way keeps the shards it finished."""
    if shard_size < 1:
        raise InputError(f"dataset: shard_size must be >= 1, got {shard_size}")
    if not atomic:
        create_dataset(directory, meta, overwrite=overwrite)
        return _append_in_shards(directory, items, shard_size)
    final = Path(directory)
    if (final / MANIFEST).exists() and not overwrite:
        raise InputError(f"dataset: {str(final)!r} already holds a data set (append to it, or choose another folder)")
    # built beside the target and moved into place whole: a bad item (or a crash) half-way leaves neither a
    # half-made data set that blocks the rerun nor, with overwrite, the old one lost
    work = final.with_name(f".{final.name}.partial-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    try:
        create_dataset(work, meta)
        total = _append_in_shards(work, items, shard_size)
        if final.exists():
            if overwrite:
                for old in list(final.glob("shard-*.npz")) + [final / MANIFEST]:
                    old.unlink(missing_ok=True)
            for f in work.iterdir():
                os.replace(f, final / f.name)
            work.rmdir()
        else:
            os.replace(work, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return total


def read_dataset(directory: str | Path) -> list[LabelledInstance]:
    """Every item of a data set, in the order written."""
    d = Path(directory)
    manifest = load_manifest(d)
    out: list[LabelledInstance] = []
    for shard in manifest["shards"]:
        path = d / shard["file"]
        if not path.is_file():
            raise InputError(f"dataset: shard {shard['file']} listed in the manifest is missing from {str(d)!r}")
        try:
            with np.load(path, allow_pickle=False) as z:
                items = _unpack({key: z[key] for key in z.files})
        except InputError as exc:
            raise InputError(f"dataset: shard {shard['file']} in {str(d)!r} holds a bad instance ({exc})") from None
        except Exception as exc:  # not an npz, truncated, a column missing or of the wrong shape: all one fault
            raise InputError(f"dataset: shard {shard['file']} in {str(d)!r} is damaged ({type(exc).__name__}: "
                             f"{str(exc)[:120]}); restore it, or export what is readable and re-import") from None
        if len(items) != shard["count"]:
            raise InputError(f"dataset: shard {shard['file']} holds {len(items)} items, manifest says {shard['count']}")
        out.extend(items)
    return out


def _ranges(indices: list[int]) -> list[list[int]]:
    """`[0, 1, 2, 5, 6]` -> `[[0, 3], [5, 7]]` (half-open runs): the manifest stays small."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and runs[-1][1] == i:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1])
    return runs


def done_indices(directory: str | Path) -> set[int]:
    """Generator indices already stored (items written with `meta["index"]`)."""
    return {i for shard in load_manifest(directory)["shards"] for a, b in shard.get("indices", []) for i in range(a, b)}


def digest(items: Iterable[LabelledInstance]) -> str:
    """SHA-256 of the items' content (instances, labels, delays; not timings): same data set, same digest."""
    h = hashlib.sha256()
    for it in items:
        inst = it.instance
        h.update(inst.name.encode())
        for a in (inst.capacity, inst.provider_delay, inst.arrival, inst.demand,
                  inst.task_delays if inst.task_delays is not None else np.empty(0)):
            h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
        h.update(json.dumps([inst.provider_ids, inst.task_ids]).encode())
        h.update(b"-" if it.assignment is None else np.asarray(it.assignment, dtype=np.int64).tobytes())
        h.update(np.float64(np.nan if it.total_latency is None else it.total_latency).tobytes())
    return h.hexdigest()


def dataset_info(directory: str | Path) -> dict[str, Any]:
    """A summary for people: counts, sizes, label delays, the content digest."""
    manifest = load_manifest(directory)
    items = read_dataset(directory)
    labelled = [it for it in items if it.assignment is not None]
    tasks = [it.instance.n_tasks for it in items]
    return {
        "count": len(items),
        "labelled": len(labelled),
        "shards": len(manifest["shards"]),
        "tasks_min": min(tasks, default=0), "tasks_max": max(tasks, default=0),
        "providers": sorted({it.instance.n_providers for it in items}),
        "mean_label_latency": (float(np.mean([it.total_latency for it in labelled])) if labelled else None),
        "bytes": sum((Path(directory) / s["file"]).stat().st_size for s in manifest["shards"]),
        "digest": digest(items),
        "meta": manifest["meta"],
    }


# -- the JSON forms ---------------------------------------------------------------------------------


def export_json(directory: str | Path, out: str | Path) -> int:
    """Write `out/instances/<name>.json`, for labelled items `out/allocations/<name>.json`, and
    `out/order.json` (the item order and the data set's meta, so `import_json` rebuilds it exactly)."""
    from edgepoc.game.files import allocation_to_dict, write_instance, write_json

    out = Path(out)
    items = read_dataset(directory)
    names = [it.instance.name for it in items]
    if len(set(names)) != len(names):
        raise InputError("dataset: instance names are not unique, cannot export one file per instance")
    for it in items:
        write_instance(out / "instances" / f"{it.instance.name}.json", it.instance)
        if it.assignment is not None:
            doc = allocation_to_dict(it.instance, it.assignment, str(it.meta.get("method", "label")),
                                     it.total_latency, float(it.meta.get("seconds", 0.0)), label_meta=it.meta)
            write_json(out / "allocations" / f"{it.instance.name}.json", doc)
    write_json(out / "order.json", {"instances": names, "meta": load_manifest(directory)["meta"]})
    return len(items)


def import_json(source: str | Path, directory: str | Path, meta: dict[str, Any] | None = None,
                shard_size: int = 256, overwrite: bool = False) -> int:
    """Build a data set from `source/instances/*.json` (+ `source/allocations/<same name>.json` if present)."""
    from edgepoc.game.files import allocation_from_dict, instance_from_dict, load_json

    source = Path(source)
    paths = sorted((source / "instances").glob("*.json"))
    if not paths:
        raise InputError(f"dataset: no instance files in {str(source / 'instances')!r}")
    if (source / "order.json").exists():  # written by export_json: the data set's own order and meta
        order = load_json(source / "order.json")
        paths = [source / "instances" / f"{name}.json" for name in order["instances"]]
        meta = order.get("meta", {}) if meta is None else meta

    def named(path: Path, read: Callable[[], _T]) -> _T:
        """`read()`, its input error naming the file (among hundreds, "tasks[3].arrival" alone is no help)."""
        try:
            return read()
        except InputError as exc:
            msg = str(exc)
            raise InputError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None

    def items() -> Iterator[LabelledInstance]:
        for p in paths:
            inst = named(p, lambda: instance_from_dict(load_json(p), source=p.stem))
            alloc_path = source / "allocations" / p.name
            if not alloc_path.exists():
                yield LabelledInstance(inst)
                continue
            doc = named(alloc_path, lambda: load_json(alloc_path))
            x = named(alloc_path, lambda: allocation_from_dict(doc, inst, source=alloc_path.name))
            label_meta = doc.get("label_meta") or {"method": doc.get("method"), "seconds": doc.get("seconds")}
            yield LabelledInstance(inst, x, float(doc["total_latency"]), label_meta)

    return write_dataset(directory, items(), meta=meta, shard_size=shard_size, overwrite=overwrite)
