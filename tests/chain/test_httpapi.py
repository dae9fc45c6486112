"""The CLI's small HTTP client and the result check built on it, against real sockets that answer, refuse or hang."""

from __future__ import annotations

import socket
import time

import pytest

from edgepoc.chain.abci.client import fetch_results
from edgepoc.chain.httpapi import HttpClient
from edgepoc.errors import EdgepocError, Unreachable
from edgepoc.execution import result_hash
from tests.jsonserver import serve_json


def hung_server() -> socket.socket:
    """A port that accepts connections (the kernel's backlog) and never answers: a paused (SIGSTOP) node."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    return s


def test_a_hung_server_costs_one_timeout_and_a_closed_port_none():
    hung = hung_server()
    try:
        c = HttpClient(f"http://127.0.0.1:{hung.getsockname()[1]}", timeout=0.5)
        t0 = time.monotonic()
        with pytest.raises(Unreachable, match=r"no answer within 0.5 s"):
            c.get("/status")
        took = time.monotonic() - t0
        assert 0.45 < took < 0.9, took  # asked once: a second try would cost another full timeout
    finally:
        hung.close()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with pytest.raises(Unreachable, match="cannot reach"):
        HttpClient(f"http://127.0.0.1:{port}", timeout=0.5).get("/status")


def test_a_kept_alive_connection_the_server_closed_is_retried_once():
    served = []

    def answer(request):
        served.append(request.path)
        request.close_connection = True  # the server drops the connection after each answer
        return 200, {"n": len(served)}

    srv = serve_json(answer)
    try:
        c = HttpClient(f"http://127.0.0.1:{srv.server_port}", timeout=2.0)
        assert [c.get("/a")["n"], c.get("/b")["n"], c.get("/c")["n"]] == [1, 2, 3]
        c.close()
    finally:
        srv.shutdown()


def receipt(provider: str, value: int) -> dict:
    return {"provider_name": provider, "exec_status": "ok", "result": value, "result_hash": result_hash("ok", value)}


def test_a_paused_provider_costs_the_result_check_one_timeout_and_its_tasks_stay_unverified():
    """`submit --results` fetches each result from the provider that ran it. A paused provider's tasks are
    unverified (their receipts vouch for them), after one timeout for all of them, not one (or two) per task;
    the other provider's results are compared as usual, and one it no longer serves is unverified alone."""
    def answer(request):
        tid = request.path.rsplit("/", 1)[-1]
        if tid == "gone":
            return 404, {"error": "no result for gone"}
        value = int(tid[1:])
        return 200, {"status": "ok", "result": value, "result_hash": result_hash("ok", value)}

    up = serve_json(answer)
    hung = hung_server()
    try:
        urls = {"up": f"http://127.0.0.1:{up.server_port}", "paused": f"http://127.0.0.1:{hung.getsockname()[1]}"}
        executed = {f"t{i}": receipt("paused" if i % 2 else "up", i) for i in range(10)}
        executed["gone"] = receipt("up", 99)
        t0 = time.monotonic()
        check = fetch_results(executed, urls, any_client=None, timeout=0.5)
        took = time.monotonic() - t0
        assert sorted(check.verified) == ["t0", "t2", "t4", "t6", "t8"] and not check.failed
        assert sorted(check.unverified) == ["gone", "t1", "t3", "t5", "t7", "t9"]
        assert "no answer within 0.5 s" in check.unverified["t9"] and "404" in check.unverified["gone"]
        assert took < 1.2, took  # five tasks on the paused provider: one timeout, not five
    finally:
        up.shutdown()
        hung.close()


def test_network_status_asks_the_nodes_at_once(tmp_path):
    """`network status` on a network with two paused nodes (another host's, known by their API alone) costs one
    timeout, not one per paused node; a node that answers shows its status."""
    import json

    from edgepoc.chain.abci import network

    paused = [hung_server() for _ in range(2)]
    up = serve_json(lambda request: (200, {"name": "node2", "height": 7}))
    try:
        apis = [f"http://127.0.0.1:{s.getsockname()[1]}" for s in paused] + [f"http://127.0.0.1:{up.server_port}"]
        nodes = [{"name": f"node{i}", "api": api, "home": None} for i, api in enumerate(apis)]
        (tmp_path / "network.json").write_text(json.dumps({"nodes": nodes}))
        t0 = time.monotonic()
        rows = network.status(tmp_path, timeout=0.5)
        took = time.monotonic() - t0
        assert [r.get("error", "").startswith("no answer") for r in rows] == [True, True, False]
        assert rows[2]["height"] == 7
        assert took < 0.9, took
    finally:
        for s in paused:
            s.close()
        up.shutdown()


def raw_server(reply) -> socket.socket:
    """A port whose every connection gets `reply(conn)` after the request's headers: a hostile or broken server."""
    import threading

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)

    def serve():
        while True:
            try:
                conn, _ = s.accept()
            except OSError:
                return
            def one(conn=conn):
                try:
                    conn.recv(65536)
                    reply(conn)
                except OSError:
                    pass
                finally:
                    conn.close()
            threading.Thread(target=one, daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return s


def test_answers_without_end_slow_or_not_json_are_one_line_errors(monkeypatch):
    """The client bounds a whole answer, not only each wait: a server streaming without end is cut at
    MAX_ANSWER, one trickling a byte at a time at the answer's deadline, and a 200 that is not JSON (a proxy's
    page) is named as such. Before, the first filled the memory, the second held the caller for as long as it
    trickled and the third was a traceback."""
    from edgepoc.chain import httpapi

    monkeypatch.setattr(httpapi, "MAX_ANSWER", 1 << 20)

    def endless(conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n[")  # no length: until close
        while True:
            conn.sendall(b"1," * 4096)

    def trickle(conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        for _ in range(100):
            conn.sendall(b" ")
            time.sleep(0.1)

    def html(conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 22\r\n\r\n<html>Bad Gateway</html>")

    servers = [raw_server(r) for r in (endless, trickle, html)]
    try:
        url = [f"http://127.0.0.1:{s.getsockname()[1]}" for s in servers]
        with pytest.raises(EdgepocError, match=r"^GET /status: the answer from 127.0.0.1:\d+ is over 1 MiB"):
            HttpClient(url[0], timeout=2).get("/status")
        t0 = time.monotonic()
        with pytest.raises(Unreachable, match=r"did not arrive in full within 1 s"):
            HttpClient(url[1], timeout=0.5, answer_deadline=1.0).get("/status")
        assert time.monotonic() - t0 < 2.0
        with pytest.raises(EdgepocError, match=r"^GET /status: 200 answer from .* is not JSON \(b'<html>Bad"):
            HttpClient(url[2], timeout=2).get("/status")
    finally:
        for s in servers:
            s.close()


def test_a_provider_serving_something_other_than_a_result_fails_its_task():
    up = serve_json(lambda request: (200, ["not", "a", "result"]))
    try:
        check = fetch_results({"t1": receipt("odd", 1)}, {"odd": f"http://127.0.0.1:{up.server_port}"},
                              any_client=None, timeout=1.0)
        assert check.failed == {"t1": "odd served something other than a result (a JSON object)"}
    finally:
        up.shutdown()
