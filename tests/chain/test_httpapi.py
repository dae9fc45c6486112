"""The CLI's small HTTP client and the result check built on it, against real sockets that answer, refuse or hang."""

from __future__ import annotations

import socket
import time

import pytest

from edgepoc.chain.abci.client import fetch_results
from edgepoc.chain.httpapi import HttpClient
from edgepoc.errors import Unreachable
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
