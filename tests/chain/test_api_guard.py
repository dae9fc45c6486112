"""The guard in front of every edgepoc HTTP server (node API, arbiter): connections that never finish a request are
closed, and one client address cannot hold the connections every other client needs. A real uvicorn in a child
process, the deadline shortened to keep the test quick; clients on other loopback addresses (127.0.0.2, ...)."""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from edgepoc.chain.api import serve

DEADLINE = 1.0

SERVER = textwrap.dedent("""
    import asyncio, sys
    from fastapi import FastAPI, Request, Response
    from starlette.requests import ClientDisconnect
    from edgepoc.chain.api import serve
    serve.REQUEST_DEADLINE = float(sys.argv[2])
    app = FastAPI()

    @app.get("/ping")
    def ping():
        return {"ok": True}

    served = []

    @app.post("/count")
    def count():  # how many requests reached the server: a client that sends one twice shows here
        served.append(1)
        return {"n": len(served)}

    @app.get("/slow")
    async def slow():
        await asyncio.sleep(float(sys.argv[2]) * 2)  # a handler slower than the deadline is not cut off
        return {"ok": True}

    @app.post("/echo")
    async def echo(request: Request):
        try:
            return {"bytes": len(await request.body())}
        except ClientDisconnect:  # the body cut at the deadline
            return Response(status_code=400)

    import uvicorn
    uvicorn.Server(serve.guarded_config(app, "127.0.0.1", int(sys.argv[1]))).run()
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def port():
    p = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(p), str(DEADLINE)])
    try:
        for _ in range(200):
            try:
                if get(p, "/ping")[0] == 200:
                    break
            except OSError:
                time.sleep(0.05)
        else:
            pytest.fail("the guarded server did not start")
        yield p
    finally:
        proc.terminate()
        proc.wait(10)


def get(port: int, path: str, source: str = "127.0.0.1") -> tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5, source_address=(source, 0))
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def half_requests(port: int, n: int, source: str) -> list[socket.socket]:
    """n connections that send the start of a request and never end its headers (a "slowloris")."""
    out = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=2, source_address=(source, 0))
        s.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n")
        out.append(s)
    return out


def still_open(socks: list[socket.socket]) -> int:
    n = 0
    for s in socks:
        s.setblocking(False)
        try:
            n += bool(s.recv(1))  # data would be an answer; b"" is the server's close
        except BlockingIOError:
            n += 1
        except OSError:
            pass
    return n


def test_one_address_holding_connections_leaves_the_server_to_everyone_else(port):
    held = half_requests(port, 3 * serve.MAX_PER_CLIENT, "127.0.0.3")
    try:
        time.sleep(0.3)
        assert still_open(held) == serve.MAX_PER_CLIENT  # the rest closed unread
        t0 = time.monotonic()
        assert get(port, "/ping", source="127.0.0.2") == (200, b'{"ok":true}')
        assert time.monotonic() - t0 < 0.5
    finally:
        for s in held:
            s.close()


def test_a_request_that_never_arrives_in_full_is_closed_at_the_deadline(port):
    held = half_requests(port, 5, "127.0.0.4")
    trickle = socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.4", 0))
    body = socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.4", 0))
    body.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")  # the body never comes
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < DEADLINE * 0.8:  # a byte at a time: each would have cancelled a keep-alive
            trickle.sendall(b"G" if time.monotonic() - t0 < 0.05 else b"E")
            time.sleep(0.1)
        assert still_open(held + [trickle, body]) == 7
        time.sleep(DEADLINE * 0.5 + 0.3)
        assert still_open(held + [trickle, body]) == 0
    finally:
        for s in held + [trickle, body]:
            s.close()


def test_slow_handlers_and_idle_kept_alive_connections_are_not_cut(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=("127.0.0.5", 0))
    try:
        t0 = time.monotonic()
        c.request("GET", "/slow")
        assert c.getresponse().read() == b'{"ok":true}'
        assert time.monotonic() - t0 >= DEADLINE * 2
        time.sleep(DEADLINE * 1.5)  # idle between requests: uvicorn's keep-alive (30 s) applies, not the deadline
        sock = c.sock
        c.request("POST", "/echo", body=b"x" * 5000)
        assert c.getresponse().read() == b'{"bytes":5000}'
        assert c.sock is sock  # the same connection, kept alive
    finally:
        c.close()


def test_the_cli_client_sends_each_request_once_on_a_kept_alive_connection(port):
    """`HttpClient` on a server that keeps connections alive (every edgepoc server): each request reaches the
    server once, over one connection. A body read that did not mark the answer done had every request after the
    first refused locally as "response not ready" and sent again on a new connection: twice. An arbiter then
    refused the second as a replay of its nonce, and a POST that is not idempotent would have run twice."""
    from edgepoc.chain.httpapi import HttpClient

    c = HttpClient(f"http://127.0.0.1:{port}", timeout=5)
    try:
        first = c.post("/count", {})["n"]
        sock = c.conn.sock
        assert [c.post("/count", {})["n"] for _ in range(3)] == [first + 1, first + 2, first + 3]
        assert c.conn.sock is sock
    finally:
        c.close()
