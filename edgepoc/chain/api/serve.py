"""Run the API with uvicorn in the calling thread (an engine's app process calls `serve_api`)."""

from __future__ import annotations

import socket

import uvicorn

from edgepoc.chain.api.app import make_api
from edgepoc.chain.api.metrics import ChainMetrics
from edgepoc.chain.api.view import NodeView
from edgepoc.errors import EdgepocError


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket, or a one-line error naming the address (port 0: a free one)."""
    try:
        return socket.create_server((host, port), backlog=256)
    except OSError as exc:
        raise EdgepocError(f"api: cannot listen on {host}:{port} ({exc.strerror})") from None


def serve_api(view: NodeView, metrics: ChainMetrics, host: str, port: int, sock: socket.socket | None = None) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn's own handling); raises EdgepocError if the port is taken.
    `sock`: a socket already listening on host:port (a node's start-up server hands its socket over).

    Bounded: at most 256 connections at once (more get 503), 64 KiB of headers, idle keep-alive
    connections closed after 30 s; bodies are capped by `make_api`."""
    sock = sock if sock is not None else bind(host, port)
    config = uvicorn.Config(make_api(view, metrics), host=host, port=port, log_level="warning", access_log=False,
                            lifespan="off", timeout_keep_alive=30, limit_concurrency=256, backlog=256,
                            h11_max_incomplete_event_size=64 * 1024, server_header=False)
    uvicorn.Server(config).run(sockets=[sock])
