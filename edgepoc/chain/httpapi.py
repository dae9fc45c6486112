"""A small blocking JSON-over-HTTP client (one kept-alive connection) for the CLI, tests and benchmark."""

from __future__ import annotations

import http.client
import json
import time
from typing import Any
from urllib.parse import urlsplit

from edgepoc.errors import EdgepocError, Unreachable


MAX_ANSWER = 256 << 20  # bytes; far above any answer of the node API (a block of the largest size, as JSON)


class HttpClient:
    """A blocking JSON client over one kept-alive connection (the CLI, tests and the benchmark use it).
    `timeout` bounds each wait for the server; `answer_deadline` (default 6 x timeout, at least 30 s) the whole
    answer's arrival."""

    def __init__(self, url: str, timeout: float = 10.0, answer_deadline: float | None = None):
        parts = urlsplit(url if "://" in url else f"http://{url}")
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.timeout = timeout
        self.answer_deadline = answer_deadline if answer_deadline is not None else max(30.0, 6 * timeout)
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        for attempt in range(2):
            reused = self.conn is not None
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
                resp = self.conn.getresponse()
                raw = self._read_bounded(resp, method, path)
            except TimeoutError:
                # a server that accepts but does not answer (paused, overloaded): asking again costs another
                # full timeout for the same answer
                self.close()
                raise Unreachable(f"cannot reach {self.host}:{self.port} (no answer within {self.timeout:g} s)") \
                    from None
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                self.close()
                # one retry, and only on a kept-alive connection the server may have closed since its last use;
                # a fresh connection that fails would fail again
                if not reused or attempt == 1:
                    raise Unreachable(f"cannot reach {self.host}:{self.port} ({exc})") from None
                continue
            try:
                return resp.status, (json.loads(raw) if raw else None)
            except (ValueError, RecursionError):  # a proxy's HTML page, a hostile or broken server
                raise EdgepocError(f"{method} {path}: {resp.status} answer from {self.host}:{self.port} is not JSON "
                                   f"({raw[:60]!r})") from None
        raise AssertionError("unreachable")

    def _read_bounded(self, resp: http.client.HTTPResponse, method: str, path: str) -> bytes:
        """The answer's body, at most MAX_ANSWER bytes, arriving within `answer_deadline` seconds: the socket
        timeout bounds each wait for bytes, not their sum, so a server trickling a byte now and then (or sending
        without end) would otherwise hold the caller for ever, or fill its memory."""
        deadline = time.monotonic() + self.answer_deadline
        parts, size = [], 0
        while chunk := resp.read1(1 << 16):
            parts.append(chunk)
            size += len(chunk)
            if size > MAX_ANSWER:
                self.close()
                raise EdgepocError(f"{method} {path}: the answer from {self.host}:{self.port} is over "
                                   f"{MAX_ANSWER >> 20} MiB; not read further")
            if time.monotonic() > deadline:
                self.close()
                raise Unreachable(f"cannot reach {self.host}:{self.port} (the answer did not arrive in full "
                                  f"within {self.answer_deadline:g} s)")
        # read1 stops at the end of the body without marking the answer done; read() does (b"" here), or the kept
        # connection's next request would be sent, refused as "response not ready", and sent again (twice!)
        parts.append(resp.read())
        return b"".join(parts)

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
