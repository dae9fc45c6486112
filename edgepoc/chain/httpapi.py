"""A small HTTP/1.1 JSON server on asyncio streams (keep-alive, bounded bodies) and a matching client.

The stdlib has no asyncio HTTP server; this one does only what the client API needs: a request line,
headers, a Content-Length body of JSON, a JSON response. Anything else gets a 400 and a log line.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

from edgepoc.errors import EdgepocError, InputError

log = logging.getLogger("edgepoc.http")


@dataclass
class Response:
    status: int
    body: Any


Handler = Callable[[str, str, Any], Awaitable[Response]]
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 409: "Conflict", 413: "Payload Too Large",
           500: "Internal Server Error", 503: "Service Unavailable"}


class HttpServer:
    def __init__(self, handler: Handler, max_body: int = 8 * 1024 * 1024, idle_timeout: float = 30.0):
        self.handler = handler
        self.max_body = max_body
        self.idle_timeout = idle_timeout
        self.server: asyncio.base_events.Server | None = None

    async def start(self, host: str, port: int) -> int:
        self.server = await asyncio.start_server(self._serve, host, port, limit=65536)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await asyncio.wait_for(reader.readline(), self.idle_timeout)
                except (asyncio.TimeoutError, asyncio.LimitOverrunError, ValueError):
                    return
                if not line:
                    return
                parts = line.decode("latin-1").split()
                if len(parts) != 3:
                    await self._send(writer, Response(400, {"error": "malformed request line"}), False)
                    return
                method, target, _ = parts
                headers: dict[str, str] = {}
                for _ in range(100):
                    h = await asyncio.wait_for(reader.readline(), self.idle_timeout)
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                try:
                    length = int(headers.get("content-length", "0"))
                except ValueError:
                    length = -1
                if length < 0 or length > self.max_body:
                    log.warning("http: dropped request with body length %s", headers.get("content-length"))
                    await self._send(writer, Response(413, {"error": "body too large or bad length"}), False)
                    return
                raw = await asyncio.wait_for(reader.readexactly(length), self.idle_timeout) if length else b""
                keep = headers.get("connection", "keep-alive").lower() != "close"
                body = None
                if raw:
                    try:
                        body = json.loads(raw)
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        log.warning("http: dropped malformed JSON body on %s %s", method, target)
                        await self._send(writer, Response(400, {"error": "body is not JSON"}), keep)
                        if not keep:
                            return
                        continue
                try:
                    resp = await self.handler(method, urlsplit(target).path, body)
                except InputError as exc:
                    resp = Response(400, {"error": str(exc)})
                except EdgepocError as exc:
                    resp = Response(409, {"error": str(exc)})
                except Exception as exc:  # a bug must not take the node down
                    log.exception("http: handler failed on %s %s", method, target)
                    resp = Response(500, {"error": f"{type(exc).__name__}: {exc}"})
                await self._send(writer, resp, keep)
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError, asyncio.CancelledError):
            return
        finally:
            writer.close()

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, resp: Response, keep: bool) -> None:
        data = json.dumps(resp.body, allow_nan=False).encode()
        head = (f"HTTP/1.1 {resp.status} {REASONS.get(resp.status, 'Status')}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\nConnection: {'keep-alive' if keep else 'close'}\r\n\r\n")
        writer.write(head.encode() + data)
        await writer.drain()


class HttpClient:
    """A blocking JSON client over one kept-alive connection (the CLI, tests and the benchmark use it)."""

    def __init__(self, url: str, timeout: float = 10.0):
        parts = urlsplit(url if "://" in url else f"http://{url}")
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        for attempt in range(2):  # one retry on a stale kept-alive connection
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
                resp = self.conn.getresponse()
                raw = resp.read()
                return resp.status, (json.loads(raw) if raw else None)
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                self.close()
                if attempt == 1:
                    raise EdgepocError(f"cannot reach {self.host}:{self.port} ({exc})") from None
        raise AssertionError("unreachable")

    def get(self, path: str) -> Any:
        status, doc = self.request("GET", path)
        if status != 200:
            raise EdgepocError(f"GET {path}: {status} {doc.get('error') if isinstance(doc, dict) else doc}")
        return doc

    def post(self, path: str, body: Any) -> Any:
        status, doc = self.request("POST", path, body)
        if status != 200:
            raise EdgepocError(f"POST {path}: {status} {doc.get('error') if isinstance(doc, dict) else doc}")
        return doc

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
