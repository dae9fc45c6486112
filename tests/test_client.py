"""The client's receipt file: folding events, a line cut by a crash, resuming, and bad input."""

from __future__ import annotations

import socket

import pytest

from edgepoc.client import EdgepocClient, NodeUnreachable, Receipt, item_ids
from edgepoc.errors import InputError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_receipt_folds_events_and_survives_a_cut_last_line(tmp_path):
    path = tmp_path / "r.jsonl"
    r = Receipt(path)
    r.record("a", "planned", task={"x": 1}, ids=["a", "b"])
    r.record("b", "planned")
    r.record("a", "accepted", node="http://n0")
    r.record("a", "committed", height=7, provider="node1", latency=0.5)
    r.record("b", "rejected", reason="replay")
    r.close()
    with path.open("a") as fh:
        fh.write('{"id": "a", "state": "acc')  # the process died mid-write
    again = Receipt(path)
    assert again.state("a") == "committed" and again.records["a"]["height"] == 7
    assert again.records["a"]["task"] == {"x": 1}  # the signed body is kept for a resume
    assert again.state("b") == "rejected"
    assert again.planned_items() == [({"x": 1}, ["a", "b"])]
    assert again.counts() == {"committed": 1, "rejected": 1}
    again.close()


def test_a_resume_after_a_cut_last_line_keeps_the_receipt_readable(tmp_path):
    """The cut line is taken off the file when it is read again; before, the resumed run appended its first
    record to it, that record was lost, and the run after it found "not a receipt record" in the middle."""
    path = tmp_path / "r.jsonl"
    r = Receipt(path)
    r.record("a", "planned", task={"x": 1}, ids=["a"])
    r.close()
    with path.open("a") as fh:
        fh.write('{"id": "a", "state": "acc')
    resumed = Receipt(path)
    resumed.record("a", "accepted", node="http://n0")
    resumed.close()
    again = Receipt(path)
    assert again.records["a"]["state"] == "accepted" and again.records["a"]["node"] == "http://n0"
    again.record("a", "committed", height=3)
    again.close()
    assert Receipt(path).state("a") == "committed"
    # a last record whole but without its newline is kept, and the next one starts on a line of its own
    path.write_text('{"id": "b", "state": "planned", "task": {"y": 2}}')
    r = Receipt(path)
    r.record("b", "accepted", node="n")
    r.close()
    assert Receipt(path).records["b"] == {"id": "b", "state": "accepted", "task": {"y": 2}, "node": "n"}


def test_a_full_disk_names_the_receipt_and_keeps_what_it_holds(tmp_path):
    """A receipt on a real device that fills up (a 64 KiB tmpfs; needs root): one line naming the file and
    what to do, and a resume once there is room finds every record written before (the one cut by the full
    disk is redone). Measured before: `submit --receipt` said only "error: No space left on device"."""
    import os
    import subprocess

    from edgepoc.errors import EdgepocError

    if os.geteuid() != 0:
        pytest.skip("needs root (mounts a tmpfs)")
    disk = tmp_path / "disk"
    disk.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
    try:
        path = disk / "r.jsonl"
        receipt = Receipt(path)
        written = 0
        with pytest.raises(EdgepocError, match=r"^receipt .*r.jsonl: cannot write \(No space left on device\); "
                                               r"what it holds is kept.*run the same command to resume$"):
            while True:
                receipt.record(f"t{written}", "planned", task={"pad": "x" * 300}, ids=[f"t{written}"])
                written += 1
        receipt.close()
        assert written > 50
        subprocess.run(["mount", "-o", "remount,size=1m", str(disk)], check=True)  # room made
        again = Receipt(path)
        assert len(again.planned_items()) == written  # every record before the full disk; the cut one dropped
        again.record(f"t{written}", "planned", task={"pad": "y"}, ids=[f"t{written}"])
        again.close()
        assert len(Receipt(path).planned_items()) == written + 1
        # a run whose plan does not fit is taken back whole before anything is sent: resumed, a plan cut short
        # would pass for the whole run (measured: 400 of 2,000 tasks sent, and the resume said it was done)
        before = path.read_bytes()
        receipt = Receipt(path)
        items = [({"pad": "z" * 300, "n": i}, [f"u{i}"]) for i in range(5000)]
        nobody = EdgepocClient([f"http://127.0.0.1:{free_port()}"], timeout=0.5)
        with pytest.raises(EdgepocError, match=r"while planning the run; nothing was sent and the receipt is as it "
                                               r"was: make room"):
            nobody.submit(items, receipt=receipt)
        assert path.read_bytes() == before and len(receipt.planned_items()) == written + 1
        receipt.record("v", "planned", task={"pad": "w"}, ids=["v"])  # and it still appends where it should
        receipt.close()
        assert len(Receipt(path).planned_items()) == written + 2
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_receipt_with_garbage_in_the_middle_is_a_one_line_error(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('not json\n{"id": "a", "state": "accepted"}\n')
    with pytest.raises(InputError, match=r"r.jsonl:1: not a receipt record"):
        Receipt(path)


def test_every_node_down_stops_submission_and_keeps_the_plan(tmp_path):
    urls = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    client = EdgepocClient(urls, timeout=1.0)
    rec = Receipt(tmp_path / "r.jsonl")
    res = client.submit([({"t": i}, [f"id{i}"]) for i in range(4)], rec, batch=2)
    assert res.failed and "cannot reach any node" in res.failed and res.unsent == ["id0", "id1", "id2", "id3"]
    assert not res.accepted and len(client.failures) == 2
    assert [body for body, _ in rec.planned_items()] == [{"t": i} for i in range(4)]
    with pytest.raises(NodeUnreachable):
        client.status()
    rec.close()


def test_item_ids_and_bad_arguments():
    class Batch:
        ids = ["x", "y"]
    assert item_ids(Batch()) == ["x", "y"] and item_ids({"id": "z"}) == ["z"]
    with pytest.raises(InputError):
        item_ids({})
    with pytest.raises(InputError):
        EdgepocClient([])


def test_a_slow_node_is_not_down_but_a_closed_or_hung_one_is():
    """`probe` (down-node reports, quorum) asks a node that let the first timeout pass once more: a busy node
    (a proposer computing a large block) is slow, not down; a refused connection or a hung node is down."""
    import time

    from tests.jsonserver import serve_json

    def server(delay: float):
        def answer(request):
            time.sleep(delay)
            return 200, {"name": f"slow{delay}"}

        return serve_json(answer)

    slow, hung = server(0.6), server(5.0)
    closed = f"http://127.0.0.1:{free_port()}"
    try:
        urls = [f"http://127.0.0.1:{slow.server_port}", f"http://127.0.0.1:{hung.server_port}", closed]
        t0 = time.monotonic()
        got = EdgepocClient(urls, timeout=1.0).probe(timeout=0.3, patience=1.5)
        took = time.monotonic() - t0
        assert got[urls[0]] == {"name": "slow0.6"}  # answered within the patience: up
        assert got[urls[1]] is None and got[closed] is None
        assert took < 0.6 + 0.3 + 1.5 + 0.3 + 1.0, took  # the closed port cost no second wait
    finally:
        slow.shutdown()
        hung.shutdown()


def test_paused_nodes_are_probed_at_once_and_one_found_down_is_not_given_patience_again():
    """A `wait` probes the nodes every poll: two paused nodes (they accept connections and never answer) cost one
    probe the patience once, together, and later probes only the short timeout; a node that answers is up."""
    import time

    from tests.jsonserver import serve_json

    paused = []
    for _ in range(2):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        paused.append(s)
    up = serve_json(lambda request: (200, {"name": "up"}))
    try:
        urls = [f"http://127.0.0.1:{s.getsockname()[1]}" for s in paused] + [f"http://127.0.0.1:{up.server_port}"]
        client = EdgepocClient(urls)
        took = []
        for _ in range(2):
            t0 = time.monotonic()
            got = client.probe(timeout=0.3, patience=1.0)
            took.append(time.monotonic() - t0)
            assert got[urls[0]] is None and got[urls[1]] is None and got[urls[2]] == {"name": "up"}
        assert 1.25 < took[0] < 2.2, took  # 0.3 + 1.0 for both paused nodes together, not one after the other
        assert took[1] < 0.8, took  # found down: the short timeout alone
    finally:
        for s in paused:
            s.close()
        up.shutdown()


def test_submit_reports_its_progress_request_by_request():
    """The hook behind `submit`'s bar: tasks sent so far out of all, after each request."""
    from tests.jsonserver import request_body, serve_json

    def answer(req):
        if req.command == "POST":
            body = request_body(req)
            return 200, {"ids": [t["id"] for t in body["tasks"]], "rejected": []}
        return 200, {"name": "n0"}

    srv = serve_json(answer)
    try:
        client = EdgepocClient([f"http://127.0.0.1:{srv.server_address[1]}"], timeout=5.0)
        seen = []
        res = client.submit([({"id": f"id{i}"}, [f"id{i}"]) for i in range(5)], None, batch=2,
                            progress=lambda done, total: seen.append((done, total)))
    finally:
        srv.shutdown()
    assert res.accepted == [f"id{i}" for i in range(5)]
    assert seen == [(2, 5), (4, 5), (5, 5)]


def test_a_busy_chain_is_retried_until_the_submit_deadline_and_the_tasks_stay_resendable(tmp_path):
    """`submit --wait --timeout S` ends by about S: resending what a busy chain refused stops at the client's
    deadline (before: up to 300 s per request, so a heavy-tailed 2,000-task instance ran past 400 s with
    --timeout 60). The refused tasks are not final in the receipt: a resumed run sends them."""
    import time

    from tests.jsonserver import serve_json

    def answer(req):
        if req.command == "POST":
            return 200, {"ids": [], "rejected": [{"index": 0, "reason": "busy: retry after 0.5 s"}]}
        return 200, {"name": "n0"}

    srv = serve_json(answer)
    receipt = Receipt(tmp_path / "r.jsonl")
    try:
        client = EdgepocClient([f"http://127.0.0.1:{srv.server_address[1]}"], timeout=5.0)
        client.submit_deadline = time.monotonic() + 1.5
        t0 = time.monotonic()
        res = client.submit([({"id": "a"}, ["a"])], receipt, batch=1)
        took = time.monotonic() - t0
    finally:
        srv.shutdown()
    assert 1.0 < took < 3.0, took  # two or three retries, then the deadline
    assert res.busy_seconds > 0.9 and [r["reason"] for r in res.rejected] == ["busy: retry after 0.5 s"]
    assert receipt.state("a") == "planned" and receipt.planned_items() == [({"id": "a"}, ["a"])]
    receipt.close()


def test_a_moment_when_no_node_answers_is_waited_out_until_the_outage_deadline():
    """Every node restarting at once (a host reboot, `network up` after a crash): a submit keeps sending the
    request it was on until a node answers again, within its deadline, and says so once, instead of giving up
    at the first refused connection."""
    import time

    from tests.jsonserver import request_body, serve_json

    port = free_port()
    posts = []

    def answer(req):
        if req.command == "POST":
            body = request_body(req)
            posts.append(body)
            return 200, {"ids": [t["id"] for t in body["tasks"]], "rejected": []}
        return 200, {"name": "n0"}

    holder = {}
    starter = __import__("threading").Timer(1.2, lambda: holder.setdefault("srv", serve_json(answer, port=port)))
    starter.start()
    told = []
    try:
        client = EdgepocClient([f"http://127.0.0.1:{port}"], timeout=1.0)
        client.outage_deadline = time.monotonic() + 20
        client.on_outage = told.append
        res = client.submit([({"id": f"id{i}"}, [f"id{i}"]) for i in range(3)], None, batch=2)
    finally:
        starter.join()
        holder["srv"].shutdown()
    assert res.failed is None and res.accepted == ["id0", "id1", "id2"]
    assert res.outage_seconds >= 0.5 and len(told) == 1 and "no node answers" in told[0]
    assert res.bodies["id2"] == {"id": "id2"} and len(posts) == 2


def test_tasks_the_nodes_lost_are_sent_again_while_waiting_and_pending_ones_are_not():
    """A mempool does not survive a crash: a task accepted just before every node went down is unknown when they
    are back. `wait` sends its signed request again once an answering node has not known it for LOST_AFTER
    seconds; a pending task is left alone."""
    import threading

    from edgepoc import client as client_mod
    from tests.jsonserver import request_body, serve_json

    lock = threading.Lock()
    received: list[str] = []

    def answer(req):
        body = request_body(req) if req.command == "POST" else {}
        with lock:
            if req.path == "/tasks":
                received.extend(t["id"] for t in body["tasks"])
                return 200, {"ids": [t["id"] for t in body["tasks"]], "rejected": []}
            if req.path == "/tasks/status":
                out = {}
                for tid in body["ids"]:
                    if tid == "lost":
                        out[tid] = ({"status": "committed", "height": 9, "provider_name": "n0"} if "lost" in received
                                    else {"status": "unknown"})
                    else:
                        out[tid] = {"status": "pending"}
                return 200, {"tasks": out}
        return 200, {"name": "n0"}

    srv = serve_json(answer)
    old = client_mod.LOST_AFTER
    client_mod.LOST_AFTER = 0.5
    try:
        c = EdgepocClient([f"http://127.0.0.1:{srv.server_address[1]}"], timeout=2.0)
        w = c.wait(["lost", "slow"], timeout=3.0, poll=0.1, watch_nodes=False,
                   bodies={"lost": {"id": "lost"}, "slow": {"id": "slow"}})
    finally:
        client_mod.LOST_AFTER = old
        srv.shutdown()
    assert "lost" in w.committed and w.missing == ["slow"]
    assert w.resent == 1 and received == ["lost"]


def test_a_submit_that_gives_up_on_an_outage_ends_with_the_contracts_keys_unknown(tmp_path):
    """Every node gone for longer than --timeout: `submit --wait` stops (exit 2) after waiting the outage out, and
    its last JSON line still has `committed` and `missing` (SPEC §7), null since no node can say, beside `unsent`."""
    import json
    import subprocess
    import sys
    import threading

    from tests.jsonserver import request_body, serve_json

    posts = []

    def answer(req):
        if req.command == "POST":
            body = request_body(req)
            posts.append(len(body["tasks"]))
            def die():  # the node dies after its first answer: its port refuses connections from then on
                srv.shutdown()
                srv.server_close()

            threading.Thread(target=die, daemon=True).start()
            return 200, {"ids": [], "rejected": []}
        return 200, {"name": "n0", "chain_id": "test-chain", "resources": 2}

    srv = serve_json(answer)
    url = f"http://127.0.0.1:{srv.server_address[1]}"
    r = subprocess.run([sys.executable, "-m", "edgepoc", "submit", "--node", url, "--count", "100", "--rate", "200",
                        "--wait", "--timeout", "3"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "no node answers" in r.stderr and "stopped after" in r.stderr and "no node answered for" in r.stderr
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    assert doc["committed"] is None and doc["missing"] is None and doc["unsent"] > 0 and len(posts) == 1


def test_a_node_answering_without_end_fails_over_to_the_next(monkeypatch):
    """A node whose answer never ends (a hostile or broken one) is cut at MAX_ANSWER and counts as a failed
    node: the request goes to the next node, and the client's memory stays bounded."""
    import threading

    from edgepoc import client as client_module
    from tests.jsonserver import serve_json

    monkeypatch.setattr(client_module, "MAX_ANSWER", 1 << 20)
    endless = socket.socket()
    endless.bind(("127.0.0.1", 0))
    endless.listen(4)

    def flood():
        conn, _ = endless.accept()
        try:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n[")
            while True:
                conn.sendall(b"1," * 4096)
        except OSError:
            pass
        finally:
            conn.close()

    threading.Thread(target=flood, daemon=True).start()
    good = serve_json(lambda request: (200, {"height": 9}))
    try:
        c = EdgepocClient([f"http://127.0.0.1:{endless.getsockname()[1]}", f"http://127.0.0.1:{good.server_port}"],
                          timeout=2.0)
        assert c.get("/status") == {"height": 9}
        assert c.last_failovers == 1 and c.failures[0][2] == "answer over 1 MiB"
        assert c.get("/status") == {"height": 9}  # the answering node is asked first from now on
    finally:
        endless.close()
        good.shutdown()


def test_a_receipt_in_use_by_another_run_is_refused_in_one_line(tmp_path):
    """Two submits with the same --receipt (a second terminal resuming a run still going) would both resend its
    tasks and interleave their records: the second is refused while the first holds the file, and takes it
    once the first has ended."""
    import subprocess
    import sys
    import time

    path = tmp_path / "r.jsonl"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from edgepoc.client import Receipt; "
                               f"r = Receipt({str(path)!r}); print('held', flush=True); time.sleep(30)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(InputError, match=r"^receipt .*r.jsonl: in use by another run \(a submit with the same "
                                             r"--receipt is still going\); wait for it, or stop it first$"):
            Receipt(path)
    finally:
        holder.kill()
        holder.wait()
    t0 = time.monotonic()
    Receipt(path).close()  # the lock went with the process
    assert time.monotonic() - t0 < 1.0
