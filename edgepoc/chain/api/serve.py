"""Run the API with uvicorn: `serve_api` blocks in the calling thread (an engine's app process);
`serve_api_async` runs inside an event loop the caller already owns, on a socket it bound first."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import uvicorn

from edgepoc.chain.api.app import make_api
from edgepoc.chain.api.metrics import ChainMetrics
from edgepoc.chain.api.view import NodeView
from edgepoc.errors import EdgepocError

log = logging.getLogger("edgepoc.api")


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket, or a one-line error naming the address (port 0: a free one)."""
    try:
        sock = socket.create_server((host, port), reuse_port=False, backlog=256)
    except OSError as exc:
        raise EdgepocError(f"api: cannot listen on {host}:{port} ({exc.strerror})") from None
    sock.set_inheritable(True)
    return sock


def _config(view: NodeView, metrics: ChainMetrics, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(make_api(view, metrics), host=host, port=port, log_level="warning", access_log=False,
                          lifespan="off", timeout_keep_alive=30, limit_concurrency=256, backlog=256,
                          h11_max_incomplete_event_size=64 * 1024, server_header=False)


class _EmbeddedServer(uvicorn.Server):
    """Leaves the host process's signal handling alone (the engine decides how it stops)."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[override]
        yield


def serve_api(view: NodeView, metrics: ChainMetrics, host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn's own handling); raises EdgepocError if the port is taken."""
    sock = bind(host, port)
    uvicorn.Server(_config(view, metrics, host, port)).run(sockets=[sock])


async def serve_api_async(view: NodeView, metrics: ChainMetrics, sock: socket.socket) -> None:
    """Serve on `sock` inside the running loop until cancelled."""
    host, port = sock.getsockname()[:2]
    server = _EmbeddedServer(_config(view, metrics, host, port))
    try:
        await server.serve(sockets=[sock])
    except asyncio.CancelledError:
        server.should_exit = True
        raise
