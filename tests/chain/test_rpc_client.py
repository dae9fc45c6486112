"""The node's CometBFT RPC client against a real HTTP server on a socket."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from edgepoc.chain.abci import node
from edgepoc.errors import EdgepocError


def serve(answers: list[dict]) -> tuple[ThreadingHTTPServer, list[str]]:
    """An RPC endpoint that answers the queued documents in order (the last one repeats)."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"])))["method"])
            doc = answers.pop(0) if len(answers) > 1 else answers[0]
            body = json.dumps({"jsonrpc": "2.0", "id": 1, **doc}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, seen


CATCHING_UP = {"error": {"code": -32603, "message": "Internal error",
                         "data": "endpoint is closed while node is catching up"}}


def test_broadcast_waits_out_a_mempool_still_closed_after_block_sync():
    srv, seen = serve([CATCHING_UP, CATCHING_UP, {"result": {"code": 0, "hash": "AB"}}])
    try:
        res = node.RpcClient("127.0.0.1", srv.server_address[1]).broadcast("eA==")
    finally:
        srv.shutdown()
    assert res["code"] == 0
    assert seen == ["broadcast_tx_sync"] * 3


def test_broadcast_gives_up_after_its_deadline_and_does_not_retry_other_errors(monkeypatch):
    monkeypatch.setattr(node, "CATCHING_UP_RETRY_S", 0.3)
    srv, seen = serve([CATCHING_UP])
    try:
        with pytest.raises(EdgepocError, match="catching up"):
            node.RpcClient("127.0.0.1", srv.server_address[1]).broadcast("eA==")
        assert 2 <= len(seen) <= 4
        seen.clear()
        srv2, seen2 = serve([{"error": {"code": -32603, "message": "Internal error", "data": "tx too large"}}])
        try:
            with pytest.raises(EdgepocError, match="tx too large"):
                node.RpcClient("127.0.0.1", srv2.server_address[1]).broadcast("eA==")
        finally:
            srv2.shutdown()
        assert seen2 == ["broadcast_tx_sync"]
    finally:
        srv.shutdown()
