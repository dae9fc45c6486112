"""Instance and allocation files: round trips, and every bad input named in one line."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from edgepoc.errors import InputError
from edgepoc.game.files import (
    allocation_to_dict,
    instance_to_dict,
    read_allocation,
    read_instance,
    write_instance,
    write_json,
)
from tests.conftest import random_instance


def test_instance_round_trip(tmp_path):
    inst = random_instance(np.random.default_rng(2), 20, 3, task_delays=True)
    write_instance(tmp_path / "i.json", inst)
    back = read_instance(tmp_path / "i.json")
    for attr in ("capacity", "provider_delay", "arrival", "demand", "task_delays"):
        assert np.array_equal(getattr(back, attr), getattr(inst, attr))
    assert back.task_ids == inst.task_ids and back.provider_ids == inst.provider_ids


def test_task_delays_are_optional_per_task(tmp_path):
    """SPEC 1: a task MAY carry `delays`; a task without them is served with its providers' delays."""
    doc = _doc()
    doc["tasks"][1]["delays"] = [0.5, 0.25]
    path = tmp_path / "some.json"
    path.write_text(json.dumps(doc))
    inst = read_instance(path)
    assert inst.delays[1].tolist() == [0.5, 0.25]
    for i in (0, 2, 3):
        assert inst.delays[i].tolist() == [p["delay"] for p in doc["providers"]]
    back = read_instance(write_instance(tmp_path / "back.json", inst) or tmp_path / "back.json")
    assert np.array_equal(back.delays, inst.delays)


def _doc():
    return instance_to_dict(random_instance(np.random.default_rng(5), 4, 2))


def _write(path, doc):
    path.write_text(json.dumps(doc))
    return path


def _bad(mutate):
    doc = _doc()
    mutate(doc)
    return doc


BAD_INSTANCES = {
    "unknown format": (lambda d: d.update(format="edgepoc-instance/9"), "format"),
    "missing format": (lambda d: d.pop("format"), "format"),
    "missing providers": (lambda d: d.pop("providers"), "providers"),
    "missing arrival": (lambda d: d["tasks"][1].pop("arrival"), "tasks[1].arrival"),
    "missing capacity": (lambda d: d["providers"][1].pop("capacity"), "providers[1].capacity"),
    "wrong demand length": (lambda d: d["tasks"][2].update(demand=[0.1]), "tasks[2].demand"),
    "wrong delays length": (lambda d: d["tasks"][0].update(delays=[0.1]), "tasks[0].delays"),
    "negative arrival": (lambda d: d["tasks"][0].update(arrival=-1.0), "tasks[0].arrival"),
    "unsorted arrival": (lambda d: d["tasks"][3].update(arrival=0.0) or d["tasks"][2].update(arrival=5.0), "tasks[3].arrival"),
    "zero capacity": (lambda d: d["providers"][0].update(capacity=[0.0, 1.0]), "providers[0].capacity"),
    "negative capacity": (lambda d: d["providers"][1].update(capacity=[1.0, -2.0]), "providers[1].capacity"),
    "string demand": (lambda d: d["tasks"][0].update(demand=["a", 1]), "tasks[0].demand[0]"),
    "zero demand": (lambda d: d["tasks"][1].update(demand=[0.0, 0.5]), "tasks[1].demand"),
    "negative delay": (lambda d: d["providers"][0].update(delay=-0.1), "providers[0].delay"),
    "negative task delay": (lambda d: d["tasks"][2].update(delays=[0.1, -0.1]), "delays"),
    "string task delays": (lambda d: d["tasks"][2].update(delays="0.1"), "tasks[2].delays"),
    # finite inputs whose processing time or total latency is not finite in float64
    "demand over a tiny capacity": (lambda d: d["providers"][1].update(capacity=[1e-320, 1.0]), "providers[1]"),
    "huge demand": (lambda d: d["tasks"][2].update(demand=[1e308, 1e308]), "tasks[2].demand"),
    "huge arrivals and delays": (lambda d: [t.update(arrival=1.5e308) for t in d["tasks"]]
                                 + [p.update(delay=1e308) for p in d["providers"]], "overflow"),
    # finite, no overflow, but every processing time vanishes at the arrivals' magnitude (all latencies 0)
    "arrivals float64 cannot resolve": (lambda d: [t.update(arrival=1e300) for t in d["tasks"]], "shift the arrivals"),
    "delays float64 cannot resolve": (lambda d: d["providers"][0].update(delay=1e300), "providers[].delay"),
    "processing times float64 cannot resolve": (lambda d: [p.update(capacity=[1e300, 1e300]) for p in d["providers"]],
                                                "tasks[].demand"),
    # JSON's \\ud800 escape reads as a lone surrogate, which no output can print: it failed at the summary line
    "lone surrogate in the name": (lambda d: d.update(name="\ud800"), "name: not valid Unicode"),
    "lone surrogate in a task id": (lambda d: d["tasks"][1].update(id="t\udc00"), "tasks[1].id: not valid Unicode"),
    "a list as a provider id": (lambda d: d["providers"][1].update(id=[1]), "providers[1].id: expected a string"),
}


def test_epoch_second_arrivals_and_a_byte_order_mark_are_read(tmp_path):
    """Times as a trace writes them (seconds since 1970) resolve sub-millisecond processing times; a UTF-8
    byte-order mark is not content. Both give the same delays as the plain file."""
    doc = _doc()
    plain = read_instance(_write(tmp_path / "plain.json", doc))
    for t in doc["tasks"]:
        t["arrival"] += 1.7e9
    epoch = read_instance(_write(tmp_path / "epoch.json", doc))
    x = np.zeros(plain.n_tasks, dtype=np.int64)
    from edgepoc.game.kernel import simulate
    assert simulate(epoch, x) == pytest.approx(simulate(plain, x), rel=1e-6)
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + (tmp_path / "plain.json").read_bytes())
    assert np.array_equal(read_instance(tmp_path / "bom.json").processing, plain.processing)


def test_integral_floats_are_provider_indices(tmp_path):
    """JSON has one number type: tools that write float arrays write 1.0, which is provider 1."""
    inst = random_instance(np.random.default_rng(5), 4, 2)
    doc = allocation_to_dict(inst, [0, 0, 0, 0], "x", 0.0, 0.0)
    doc["assignment"] = [0.0, 1.0, 1, 0]
    write_json(tmp_path / "a.json", doc)
    assert read_allocation(tmp_path / "a.json", inst)[0].tolist() == [0, 1, 1, 0]


@pytest.mark.parametrize("case", list(BAD_INSTANCES))
def test_bad_instances_name_the_field(tmp_path, case):
    mutate, field = BAD_INSTANCES[case]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_bad(mutate)))
    with pytest.raises(InputError) as err:
        read_instance(path)
    assert field in str(err.value)
    assert "\n" not in str(err.value)


def test_writing_to_a_directory_or_an_unwritable_place_is_a_one_line_error(tmp_path):
    from edgepoc.game.files import write_json
    with pytest.raises(InputError, match="is a directory"):
        write_json(tmp_path, {"a": 1})
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="cannot write"):
        write_json(tmp_path / "file" / "under-a-file.json", {"a": 1})
    assert (tmp_path / "file").read_text() == "x"


def test_ids_may_be_integers_or_left_out_and_null_is_left_out(tmp_path):
    """Before, `"id": null` became the id "None" and a list became "[1]"."""
    doc = _doc()
    doc["tasks"][0]["id"], doc["tasks"][1]["id"] = None, 7
    doc["providers"][1].pop("id")
    inst = read_instance(_write(tmp_path / "ids.json", doc))
    assert inst.task_ids[:2] == ["t0", "7"] and inst.provider_ids[1] == "p1"


def test_a_claimed_total_latency_is_a_number_or_absent(tmp_path):
    """`evaluate` compares the claim with the re-simulated delay: an integer of 401 digits was an internal error
    (OverflowError), a string was ignored silently. null means no claim."""
    inst = random_instance(np.random.default_rng(5), 4, 2)
    for claim, message in ((int("1" + "0" * 400), "total_latency: must be finite, got an integer of 401 digits"),
                           ("2.35", 'total_latency: expected a number, got "2.35"'),
                           (True, "total_latency: expected a number, got true")):
        doc = allocation_to_dict(inst, [0, 0, 0, 0], "x", 0.0, 0.0)
        doc["total_latency"] = claim
        (tmp_path / "a.json").write_text(json.dumps(doc))
        with pytest.raises(InputError, match=f"^{re.escape(message)}$"):
            read_allocation(tmp_path / "a.json", inst)
    doc["total_latency"] = None
    (tmp_path / "a.json").write_text(json.dumps(doc))
    assert read_allocation(tmp_path / "a.json", inst)[0].tolist() == [0, 0, 0, 0]


def test_devices_are_refused_pipes_are_read_and_a_link_loop_is_named(tmp_path):
    """`solve /dev/zero` read until memory ran out; a FIFO (what `<(...)` gives) is a fine input; a symbolic link
    loop was "no such file"."""
    import os
    import threading
    with pytest.raises(InputError, match="^/dev/zero: is a device or socket, expected a JSON file$"):
        read_instance("/dev/zero")
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    text = json.dumps(_doc())
    writer = threading.Thread(target=fifo.write_text, args=(text,))
    writer.start()
    assert read_instance(fifo).n_tasks == 4
    writer.join()
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(InputError, match="a: cannot read \\(Too many levels of symbolic links\\)$"):
        read_instance(tmp_path / "a")


def test_writing_through_a_link_or_into_a_device_keeps_it(tmp_path):
    """The crash-safe write renames a new file over the target: `--out link.json` replaced the link with a file and
    `--out /dev/full` (as root) replaced the device with a regular file. The link now stays and the file it names
    gets the content; a device is written into (so /dev/full says its disk is full)."""
    import os
    import stat
    target = tmp_path / "real.json"
    target.write_text("old")
    (tmp_path / "link.json").symlink_to(target)
    write_json(tmp_path / "link.json", {"a": 1})
    assert (tmp_path / "link.json").is_symlink() and json.loads(target.read_text()) == {"a": 1}
    write_json("/dev/null", {"a": 1})
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    if os.path.exists("/dev/full"):
        with pytest.raises(InputError, match="^/dev/full: cannot write \\(No space left on device\\)$"):
            write_json("/dev/full", {"a": 1})
        assert stat.S_ISCHR(os.stat("/dev/full").st_mode)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_nan_is_refused(tmp_path):
    path = tmp_path / "nan.json"
    path.write_text(re.sub(r'"arrival": [0-9.e-]+', '"arrival": NaN', json.dumps(_doc()), count=1))
    with pytest.raises(InputError, match="NaN") as err:
        read_instance(path)
    assert str(err.value).startswith(f"{path}: JSON contains NaN")


def test_a_key_given_twice_and_a_number_no_float_holds_are_named(tmp_path):
    """Before: a second "tasks" list silently replaced the first (Python keeps the last key), and an arrival of
    10**400 was an internal error (OverflowError)."""
    twice = tmp_path / "twice.json"
    twice.write_text(json.dumps(_doc())[:-1] + ', "tasks": []}')
    with pytest.raises(InputError) as err:
        read_instance(twice)
    assert str(err.value) == (f'{twice}: JSON has the key "tasks" twice in one object; which one counts is not '
                              "defined: keep one")
    huge = tmp_path / "huge.json"
    huge.write_text(re.sub(r'"arrival": [0-9.e-]+', '"arrival": 1' + "0" * 400, json.dumps(_doc()), count=1))
    with pytest.raises(InputError, match=r"^tasks\[0\]\.arrival: must be finite, got an integer of 401 digits$"):
        read_instance(huge)


def test_not_json_and_missing_file(tmp_path):
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        read_instance(tmp_path / "x.json")
    with pytest.raises(InputError, match="no such file"):
        read_instance(tmp_path / "missing.json")
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)  # Python's parser recurses
    with pytest.raises(InputError, match="nested too deeply"):
        read_instance(tmp_path / "deep.json")
    # Python refuses to convert an integer of more than 4300 digits with a ValueError of its own
    (tmp_path / "long.json").write_text('{"format": "edgepoc-instance/1", "tasks": [' + "1" * 5000 + "]}")
    with pytest.raises(InputError, match=r"long\.json: not valid JSON here \(a number of more than 4300 digits\)$"):
        read_instance(tmp_path / "long.json")


@pytest.mark.parametrize("assignment, field", [
    ([0, 1, 2], "expected 4 entries"),
    ([0, 1, 1, 3], "assignment[3]: provider index 3 out of range"),
    ([0, -1, 0, 0], "assignment[1]"),
    ([0, 1.5, 0, 0], "assignment[1]"),
    ([0, "a", 0, 0], "assignment[1]"),
    ([0, 0, 10**30, 0], "assignment[2]: provider index 1000000000000000000000000000000 out of range"),
    ([0, 0, 0, None], "assignment[3]"),
])
def test_bad_allocations(tmp_path, assignment, field):
    inst = random_instance(np.random.default_rng(5), 4, 2)
    doc = allocation_to_dict(inst, [0, 0, 0, 0], "x", 0.0, 0.0)
    doc["assignment"] = assignment
    write_json(tmp_path / "a.json", doc)
    with pytest.raises(InputError) as err:
        read_allocation(tmp_path / "a.json", inst)
    assert field in str(err.value)


def test_assignments_from_code_name_the_bad_entry():
    """The same check serves callers that pass arrays: numpy's casts (mixed lists become strings, huge integers
    objects) never hide which entry is wrong, and integer arrays of any width pass."""
    from edgepoc.game.validate import validate_assignment
    assert validate_assignment(np.array([0, 1], dtype=np.uint64), 2, 2).tolist() == [0, 1]
    assert validate_assignment(np.array([0, 1], dtype=object), 2, 2).dtype == np.int64
    for bad, where in (([0, "x"], "assignment[1]"), ([True, False], "assignment[0]"), ([0, 2**64], "assignment[1]"),
                       ([0, 2.5], "assignment[1]: provider index must be an integer, got 2.5"),
                       # numpy reads this list as floats: the message shows the index as given, not -1.0 / 9.2e+18
                       ([0, -1, 2**63], "assignment[1]: provider index -1 out of range"),
                       ([0, 1, 2**63], "assignment[2]: provider index 9223372036854775808 out of range")):
        with pytest.raises(InputError, match=re.escape(where)):
            validate_assignment(bad, len(bad), 2)


def test_allocation_unknown_format(tmp_path):
    inst = random_instance(np.random.default_rng(5), 4, 2)
    doc = allocation_to_dict(inst, [0, 0, 0, 0], "x", 0.0, 0.0)
    doc["format"] = "something-else/1"
    write_json(tmp_path / "a.json", doc)
    with pytest.raises(InputError, match="format"):
        read_allocation(tmp_path / "a.json", inst)


def test_markets_past_an_int8_index_work_with_every_kind_of_method_and_past_1024_are_refused(tmp_path):
    """300 providers crashed the GA, CP-SAT and the bound ("high is out of bounds for int8") and made the models'
    one-pass and search write negative provider indices; then instances were refused past 127. Allocations are
    int16 rows now (`ASSIGNMENT_DTYPE`): 300 providers work with every kind of method, each index in range and
    the claimed delay the simulated one; past 1024 the instance is refused in one line."""
    from edgepoc.game.kernel import simulate
    from edgepoc.solvers.registry import SolveOptions, solve

    rng = np.random.default_rng(11)
    with pytest.raises(InputError, match=r"^providers: at most 1024 providers \(the methods' arrays grow with n x K\), "
                                         r"got 1025$"):
        random_instance(rng, 20, 1025)
    doc = instance_to_dict(random_instance(rng, 40, 300))
    path = tmp_path / "k300.json"
    write_json(path, doc)
    inst = read_instance(path)
    for method, params, seconds in (("greedy", {}, None), ("ga", {"generations": 2}, None), ("search", {}, None),
                                    ("teacher", {}, None), ("student", {"decode": "onepass"}, None),
                                    ("rollout", {}, None), ("cpsat", {}, 2.0), ("bound", {}, 2.0)):
        res = solve(inst, method, SolveOptions(params=params, seconds=seconds))
        assert res.assignment.min() >= 0 and res.assignment.max() < 300, method
        assert np.isclose(simulate(inst, res.assignment), res.total_latency), method
    assert solve(inst, "greedy", SolveOptions()).assignment.max() > 127  # indices past int8 in use


def test_instances_too_large_for_memory_are_refused_in_one_line_before_any_work(tmp_path):
    """Reading a JSON instance peaks near 850 MB per million tasks: `generate --n-tasks 100000000` ran out of
    memory instead of saying so. Sizes past the limits are refused by the generator, by the file reader before it
    parses, and by the arrays' check; sizes at them are not."""
    from edgepoc.game.files import MAX_JSON_BYTES
    from edgepoc.game.generators import generate
    from edgepoc.game.instance import Instance
    from edgepoc.game.validate import MAX_PAIRS, MAX_TASKS, check_size
    from tests.conftest import run_cli

    with pytest.raises(InputError, match=r"^tasks: at most 10,000,000 tasks per instance .* got 100,000,000: split"):
        generate("paper", n_tasks=100_000_000)
    with pytest.raises(InputError, match=r"^tasks: at most 100,000,000 task-provider pairs .* 200,000 x 1,000: split"):
        generate("paper", n_tasks=200_000, providers=1000)
    check_size(MAX_TASKS, MAX_PAIRS // MAX_TASKS)  # at the limits: accepted
    with pytest.raises(InputError, match="task-provider pairs"):
        Instance.create(capacity=np.ones((1000, 1)), provider_delay=np.zeros(1000), arrival=np.zeros(100_001),
                        demand=np.ones((100_001, 1)))
    big = tmp_path / "big.json"
    with big.open("wb") as f:  # sparse: no disk used
        f.truncate(MAX_JSON_BYTES + 1)
    r = run_cli("solve", str(big), "--method", "greedy")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "GiB; JSON files are read whole, at most 2 GiB" in r.stderr
