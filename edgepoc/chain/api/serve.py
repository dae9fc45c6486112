"""Run the API with uvicorn in the calling thread (an engine's app process calls `serve_api`).

uvicorn bounds the connections it holds (`limit_concurrency`) but gives a client unlimited time to send a
request: a connection whose headers never end stays open, and one host that opens `limit_concurrency` of them
(a "slowloris") has every later request answered 503. Measured before `GuardedH11Protocol`: 3,000 idle sockets
from one process took a node's API down for as long as they were held, minutes included. The guard gives each
request a deadline to arrive in full and each client address a share of the connections.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from edgepoc.chain.api.app import make_api
from edgepoc.chain.api.metrics import ChainMetrics
from edgepoc.chain.api.view import NodeView
from edgepoc.errors import EdgepocError

MAX_CONNECTIONS = 512  # in all; more are answered 503 by uvicorn
MAX_PER_CLIENT = 32  # from one address: a single host cannot hold the rest (the client uses one per node)
REQUEST_DEADLINE = 20.0  # s from connecting (or a request's first byte) until the request, body included, has arrived
IDLE_KEEP_ALIVE = 30  # s a kept-alive connection may wait for its next request


class GuardedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline per request and a cap on connections per client address.

    The deadline starts when the connection opens, and on a kept-alive connection with the first bytes of the
    next request (until then uvicorn's keep-alive timeout applies, which any byte would cancel); it is cancelled
    once h11 has the whole request (headers and body), so a slow handler is never cut off. A connection over the address's share is
    closed before a byte is read."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._counted: str | None = None
        per_client: dict[str, int] = self.server_state.__dict__.setdefault("edgepoc_per_client", {})
        address = self.client[0] if self.client else "?"
        if per_client.get(address, 0) >= MAX_PER_CLIENT:
            transport.abort()
            return
        per_client[address] = per_client.get(address, 0) + 1
        self._counted = address
        self._arm_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        if self._counted is not None:
            per_client: dict[str, int] = self.server_state.__dict__["edgepoc_per_client"]
            left = per_client.get(self._counted, 1) - 1
            if left > 0:
                per_client[self._counted] = left
            else:
                per_client.pop(self._counted, None)
            self._counted = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and self.conn.their_state is h11.IDLE and self.cycle is not None:
            self._arm_deadline()  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)
        if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):  # the request has arrived in full
            self._cancel_deadline()

    def _arm_deadline(self) -> None:
        self._cancel_deadline()
        self._deadline = self.loop.call_later(REQUEST_DEADLINE, self._deadline_passed)

    def _cancel_deadline(self) -> None:
        if getattr(self, "_deadline", None) is not None:
            self._deadline.cancel()
            self._deadline = None

    def _deadline_passed(self) -> None:
        self._deadline = None
        if not self.transport.is_closing() and self.conn.their_state in (h11.IDLE, h11.SEND_BODY):
            self.transport.close()  # a handler waiting for the body sees the client gone, as when it hangs up


def guarded_config(app: Any, host: str, port: int) -> uvicorn.Config:
    """The uvicorn settings every edgepoc HTTP server uses: bounded connections, headers and waits."""
    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off",
                          http=GuardedH11Protocol, timeout_keep_alive=IDLE_KEEP_ALIVE,
                          limit_concurrency=MAX_CONNECTIONS, backlog=256,
                          h11_max_incomplete_event_size=64 * 1024, server_header=False)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket, or a one-line error naming the address (port 0: a free one)."""
    try:
        return socket.create_server((host, port), backlog=256)
    except OSError as exc:
        raise EdgepocError(f"api: cannot listen on {host}:{port} ({exc.strerror})") from None


def serve_api(view: NodeView, metrics: ChainMetrics, host: str, port: int, sock: socket.socket | None = None) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn's own handling); raises EdgepocError if the port is taken.
    `sock`: a socket already listening on host:port (a node's start-up server hands its socket over).

    Bounded: at most MAX_CONNECTIONS connections at once (more get 503) and MAX_PER_CLIENT from one address (more
    are closed unread), 64 KiB of headers, REQUEST_DEADLINE seconds for a request to arrive, idle keep-alive
    connections closed after IDLE_KEEP_ALIVE seconds; bodies are capped by `make_api`."""
    sock = sock if sock is not None else bind(host, port)
    uvicorn.Server(guarded_config(make_api(view, metrics), host, port)).run(sockets=[sock])
