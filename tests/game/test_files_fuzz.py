"""Instance and allocation files from other tools (SPEC §2), mutated at random: each is read, or refused with a
one-line `InputError`, never another exception; what is read round-trips and simulates to a finite delay."""

from __future__ import annotations

import copy
import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgepoc.errors import InputError
from edgepoc.game.files import allocation_from_dict, instance_from_dict, instance_to_dict
from edgepoc.game.kernel import greedy_assignment, simulate

BASE = {"format": "edgepoc-instance/1", "name": "fuzz",
        "providers": [{"id": "p0", "capacity": [1.2, 0.8], "delay": 0.05},
                      {"id": "p1", "capacity": [0.5, 2.0], "delay": 0.0},
                      {"id": "p2", "capacity": [1.0, 1.0], "delay": 0.3}],
        "tasks": [{"id": "t0", "arrival": 0.0, "demand": [0.31, 0.72]},
                  {"id": "t1", "arrival": 0.2, "demand": [0.5, 0.1], "delays": [0.1, 0.2, 0.0]},
                  {"id": "t2", "arrival": 0.2, "demand": [1.0, 0.9]},
                  {"id": "t3", "arrival": 1.5, "demand": [0.05, 0.4]}]}

HOSTILE = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([0.0, -0.0, 1e-320, 1e308, -1e308, 5e-324]),
    st.text(max_size=5), st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), max_size=4),
    st.lists(st.integers(-3, 3), max_size=4), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.just([[1.0]]), st.just({"capacity": [1.0, 1.0], "delay": 0.0}),
)


def _paths(doc, prefix=()):
    """Every place in the document: (path to the container, key or index)."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield prefix, key
            yield from _paths(value, prefix + (key,))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield prefix, i
            yield from _paths(value, prefix + (i,))


def _mutated(draw_ops) -> dict:
    doc = copy.deepcopy(BASE)
    for choice, value, op in draw_ops:
        value = copy.deepcopy(value)  # a drawn list must not end up inside itself
        places = list(_paths(doc))
        if not places:
            break
        path, key = places[choice % len(places)]
        parent = doc
        for step in path:
            parent = parent[step]
        if op == "set":
            parent[key] = value
        elif op == "delete":
            del parent[key]
        elif op == "append" and isinstance(parent[key], list):
            parent[key].append(value)
    return doc


OPS = st.lists(st.tuples(st.integers(0, 10**6), HOSTILE, st.sampled_from(["set", "delete", "append"])),
               min_size=1, max_size=3)


def _one_line(exc: InputError) -> None:
    text = str(exc)
    assert text and "\n" not in text and len(text) < 400, text


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_a_mutated_instance_is_read_or_refused_in_one_line(ops):
    doc = _mutated(ops)
    try:
        inst = instance_from_dict(json.loads(json.dumps(doc)))
    except InputError as exc:
        _one_line(exc)
        return
    # read: it must be a game the kernel can play, and the file form must hold it exactly
    assert inst.n_providers >= 1 and inst.n_tasks >= 0
    for arr in (inst.arrival, inst.ready, inst.processing):
        assert np.all(np.isfinite(arr))
    assert np.all(inst.processing > 0) and np.all(np.diff(inst.arrival) >= 0)
    x, total = greedy_assignment(inst)
    assert np.isfinite(total) and total == simulate(inst, x)
    again = instance_from_dict(json.loads(json.dumps(instance_to_dict(inst))))
    assert np.array_equal(again.arrival, inst.arrival) and np.array_equal(again.processing, inst.processing)
    assert np.array_equal(again.ready, inst.ready)


ALLOCATION = {"format": "edgepoc-allocation/1", "instance": "fuzz", "method": "ga", "assignment": [0, 2, 1, 0],
              "total_latency": 3.0, "seconds": 0.1}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(list(ALLOCATION) + ["assignment0", "assignment2"]), HOSTILE,
                          st.sampled_from(["set", "delete"])), min_size=1, max_size=3))
def test_a_mutated_allocation_is_read_or_refused_in_one_line(ops):
    inst = instance_from_dict(BASE)
    doc = copy.deepcopy(ALLOCATION)
    for key, value, op in ops:
        value = copy.deepcopy(value)
        if key.startswith("assignment") and key != "assignment":
            if isinstance(doc.get("assignment"), list) and len(doc["assignment"]) > int(key[-1]):
                doc["assignment"][int(key[-1])] = value
        elif op == "set":
            doc[key] = value
        else:
            doc.pop(key, None)
    try:
        x = allocation_from_dict(json.loads(json.dumps(doc)), inst)
    except InputError as exc:
        _one_line(exc)
        return
    assert x.shape == (inst.n_tasks,) and np.all((x >= 0) & (x < inst.n_providers))
    assert np.isfinite(simulate(inst, x))
