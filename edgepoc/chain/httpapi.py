"""A small blocking JSON-over-HTTP client (one kept-alive connection) for the CLI, tests and benchmark."""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlsplit

from edgepoc.errors import EdgepocError, Unreachable


class HttpClient:
    """A blocking JSON client over one kept-alive connection (the CLI, tests and the benchmark use it)."""

    def __init__(self, url: str, timeout: float = 10.0):
        parts = urlsplit(url if "://" in url else f"http://{url}")
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.timeout = timeout
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
                raw = resp.read()
                return resp.status, (json.loads(raw) if raw else None)
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
