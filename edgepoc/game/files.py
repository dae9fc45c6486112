"""Instance and allocation JSON (SPEC §2): read, validate, write.

Every problem raises `InputError` with a one-line message naming the field; the CLI turns it
into `error: ...` on stderr and a non-zero exit.
"""

from __future__ import annotations

import json
import math
import stat
import sys
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from edgepoc.files import write_atomic
from edgepoc.errors import InputError
from edgepoc.game.instance import Instance
from edgepoc.game.validate import check_time_resolution, validate_assignment

INSTANCE_FORMAT = "edgepoc-instance/1"
ALLOCATION_FORMAT = "edgepoc-allocation/1"


def _reject_constant(token: str):
    raise InputError(f"JSON contains {token}, which is not a number here")


def _object_without_repeats(pairs: list[tuple[str, Any]]) -> dict:
    """A JSON object; a key given twice is refused by name (Python would keep the last silently, so a file with two
    "tasks" lists would be read as whichever came second)."""
    doc = dict(pairs)
    if len(doc) != len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise InputError(f"JSON has the key {json.dumps(twice)[:60]} twice in one object; which one counts is not "
                         "defined: keep one")
    return doc


MAX_JSON_BYTES = 2 * 2**30  # an instance of MAX_TASKS tasks is about 1 GB of JSON


def load_json(path: str | Path) -> Any:
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise InputError(f"{p}: no such file") from None
    except OSError as exc:  # a symbolic link loop, a folder on the way that is not one, permissions
        raise InputError(f"{p}: cannot read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{p}: is a directory, expected a JSON file")
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISSOCK(st.st_mode):
        # /dev/zero would be read until memory ran out; a pipe or FIFO (`<(...)`) is fine and read below, capped
        raise InputError(f"{p}: is a device or socket, expected a JSON file")

    def too_large(size: str) -> InputError:  # parsed whole, at about 8.5 times its size in memory
        return InputError(f"{p}: {size} GiB; JSON files are read whole, at most {MAX_JSON_BYTES / 2**30:g} GiB "
                          "(about 10 million tasks): split the trace into windows")
    if st.st_size > MAX_JSON_BYTES:  # refused before a byte is read
        raise too_large(f"{st.st_size / 2**30:.1f}")
    try:
        with open(p, "rb") as fh:
            raw = fh.read(MAX_JSON_BYTES + 1)  # a pipe has no size to check beforehand
        if len(raw) > MAX_JSON_BYTES:
            raise too_large(f"more than {MAX_JSON_BYTES / 2**30:g}")
        text = raw.decode("utf-8-sig")  # a byte-order mark (some Windows editors write one) is not content
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read ({exc})") from None
    try:
        # NaN/Infinity are not JSON; Python would accept them silently, so refuse them by name.
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_object_without_repeats)
    except json.JSONDecodeError as exc:
        raise InputError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except InputError as exc:  # a NaN, a repeated key: named with the file
        raise InputError(f"{p}: {exc}") from None
    except ValueError:  # an integer of thousands of digits: Python's limit on converting it
        raise InputError(f"{p}: not valid JSON here (a number of more than {sys.get_int_max_str_digits()} digits)") from None
    except RecursionError:
        raise InputError(f"{p}: not valid JSON here (nested too deeply)") from None


def _require(obj: dict, key: str, where: str) -> Any:
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected an object, got {type(obj).__name__}")
    if key not in obj:
        raise InputError(f"{where}.{key}: missing field" if where else f"{key}: missing field")
    return obj[key]


def _number(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InputError(f"{where}: expected a number, got {json.dumps(v)[:40]}")
    try:
        f = float(v)
    except OverflowError:  # an integer of hundreds of digits: no float holds it
        raise InputError(f"{where}: must be finite, got an integer of {len(str(abs(v)))} digits") from None
    if not math.isfinite(f):
        raise InputError(f"{where}: must be finite, got {v}")
    return f


def _text(v: Any, where: str) -> str:
    """A name or id: a string that can be written back out as UTF-8 (JSON's \\ud800 escape reads as a lone
    surrogate, which no output can print)."""
    if not isinstance(v, str):
        raise InputError(f"{where}: expected a string, got {json.dumps(v)[:40]}")
    if not v.isascii():
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(f"{where}: not valid Unicode (a lone surrogate escape such as \\ud800)") from None
    return v


def _id(obj: dict, default: str, where: str) -> str:
    """An optional id: a string, or an integer written as one (other tools number their tasks); null or absent is
    `default`."""
    v = obj.get("id")
    if v is None:
        return default
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    return _text(v, f"{where}.id")


def _vector(v: Any, where: str, length: int | None = None) -> list[float]:
    if not isinstance(v, list):
        raise InputError(f"{where}: expected a list of numbers, got {json.dumps(v)[:40]}")
    if length is not None and len(v) != length:
        raise InputError(f"{where}: expected {length} values, got {len(v)}")
    return [_number(e, f"{where}[{j}]") for j, e in enumerate(v)]


def _check_format(doc: Any, expected: str, source: str) -> None:
    if not isinstance(doc, dict):
        raise InputError(f"{source}: expected a JSON object with \"format\": \"{expected}\"")
    fmt = doc.get("format")
    if fmt is None:
        raise InputError(f"{source}: format: missing field (expected \"{expected}\")")
    if fmt != expected:
        raise InputError(f"{source}: format: unknown format {fmt!r} (expected \"{expected}\")")


def instance_from_dict(doc: Any, source: str = "instance") -> Instance:
    _check_format(doc, INSTANCE_FORMAT, source)
    providers = _require(doc, "providers", "")
    tasks = _require(doc, "tasks", "")
    if not isinstance(providers, list) or not providers:
        raise InputError("providers: expected a non-empty list")
    if not isinstance(tasks, list):
        raise InputError("tasks: expected a list")
    first_cap = _require(providers[0], "capacity", "providers[0]")
    r = len(first_cap) if isinstance(first_cap, list) else None
    if not r:
        raise InputError("providers[0].capacity: expected a non-empty list of numbers")
    k = len(providers)
    capacity, delay, pids = [], [], []
    for j, p in enumerate(providers):
        capacity.append(_vector(_require(p, "capacity", f"providers[{j}]"), f"providers[{j}].capacity", r))
        delay.append(_number(_require(p, "delay", f"providers[{j}]"), f"providers[{j}].delay"))
        pids.append(_id(p, f"p{j}", f"providers[{j}]"))
    arrival, demand, tids, delays = [], [], [], []
    has_delays = any(isinstance(t, dict) and "delays" in t for t in tasks)
    for i, t in enumerate(tasks):
        arrival.append(_number(_require(t, "arrival", f"tasks[{i}]"), f"tasks[{i}].arrival"))
        demand.append(_vector(_require(t, "demand", f"tasks[{i}]"), f"tasks[{i}].demand", r))
        tids.append(_id(t, f"t{i}", f"tasks[{i}]"))
        if has_delays:  # optional per task: a task without its own delays has its providers' (SPEC 1)
            own = t.get("delays")
            delays.append(delay if own is None else _vector(own, f"tasks[{i}].delays", k))
    # absent: the file's stem, whose undecodable bytes (the file system's, not the file's) are replaced
    name = _text(doc["name"], "name") if "name" in doc else source.encode("utf-8", "replace").decode("utf-8")
    inst = Instance.create(
        capacity=np.array(capacity, dtype=np.float64).reshape(k, r),
        provider_delay=np.array(delay),
        arrival=np.array(arrival, dtype=np.float64),
        demand=np.array(demand, dtype=np.float64).reshape(len(tasks), r),
        task_delays=np.array(delays, dtype=np.float64).reshape(len(tasks), k) if has_delays else None,
        name=name,
        provider_ids=pids,
        task_ids=tids,
    )
    check_time_resolution(inst)
    return inst


def instance_to_dict(instance: Instance) -> dict:
    tasks = []
    for i in range(instance.n_tasks):
        t = {"id": instance.task_ids[i], "arrival": float(instance.arrival[i]),
             "demand": [float(v) for v in instance.demand[i]]}
        if instance.task_delays is not None:
            t["delays"] = [float(v) for v in instance.task_delays[i]]
        tasks.append(t)
    return {
        "format": INSTANCE_FORMAT,
        "name": instance.name,
        "providers": [
            {"id": instance.provider_ids[j], "capacity": [float(v) for v in instance.capacity[j]],
             "delay": float(instance.provider_delay[j])}
            for j in range(instance.n_providers)
        ],
        "tasks": tasks,
    }


def read_instance(path: str | Path) -> Instance:
    return instance_from_dict(load_json(path), source=Path(path).stem)


def write_json(path: str | Path, doc: dict) -> None:
    """Write crash-safe (`edgepoc.files.write_atomic`); a folder that cannot take the file is an `InputError`."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{p}: is a directory, expected a file name to write")
    try:
        write_atomic(p, json.dumps(doc, allow_nan=False) + "\n")
    except OSError as exc:
        raise InputError(f"{p}: cannot write ({exc.strerror or exc})") from None


def write_instance(path: str | Path, instance: Instance) -> None:
    write_json(path, instance_to_dict(instance))


def allocation_to_dict(instance: Instance, assignment: Iterable[int], method: str, total_latency: float,
                       seconds: float, **extra: Any) -> dict:
    doc = {
        "format": ALLOCATION_FORMAT,
        "instance": instance.name,
        "method": method,
        "assignment": [int(v) for v in assignment],
        "total_latency": float(total_latency),
        "seconds": float(seconds),
    }
    doc.update(extra)
    return doc


def allocation_from_dict(doc: Any, instance: Instance, source: str = "allocation",
                         check_name: bool = False) -> np.ndarray:
    """The assignment of an allocation document, checked against `instance` (and its name, if asked)."""
    _check_format(doc, ALLOCATION_FORMAT, source)
    named = doc.get("instance")
    if check_name and named is not None and named != instance.name:
        raise InputError(f"allocation: {source} is for instance {named!r}, not {instance.name!r} "
                         "(--force evaluates it anyway)")
    if doc.get("total_latency") is not None:  # a claim `evaluate` checks: a number, or absent
        _number(doc["total_latency"], "total_latency")
    x = _require(doc, "assignment", "")
    if not isinstance(x, list):
        raise InputError("assignment: expected a list of provider indices")
    for i, v in enumerate(x):
        # JSON has one number type: 2.0 (what tools writing float arrays produce) is provider 2, 2.5 is no provider
        if isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, float) and v.is_integer())):
            raise InputError(f"assignment[{i}]: provider index must be an integer, got {json.dumps(v)[:40]}")
    return validate_assignment([int(v) for v in x], instance.n_tasks, instance.n_providers)


def read_allocation(path: str | Path, instance: Instance, check_name: bool = False) -> tuple[np.ndarray, dict]:
    """The checked assignment of an allocation file, and the document it came from (its claims: method, delay)."""
    doc = load_json(path)
    return allocation_from_dict(doc, instance, source=Path(path).name, check_name=check_name), doc
