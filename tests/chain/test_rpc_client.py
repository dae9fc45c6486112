"""The node's CometBFT RPC client against a real HTTP server on a socket."""
from __future__ import annotations

from http.server import ThreadingHTTPServer

import pytest

from edgepoc.chain.abci import node
from edgepoc.errors import EdgepocError
from tests.jsonserver import request_body, serve_json


def serve(answers: list[dict]) -> tuple[ThreadingHTTPServer, list[str]]:
    """An RPC endpoint that answers the queued documents in order (the last one repeats)."""
    seen: list[str] = []

    def answer(request):
        seen.append(request_body(request)["method"])
        doc = answers.pop(0) if len(answers) > 1 else answers[0]
        return 200, {"jsonrpc": "2.0", "id": 1, **doc}

    return serve_json(answer), seen


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
