"""A JSON endpoint on a real socket, for tests that need a node, an RPC server or an impostor to answer."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve_json(answer: Callable[[BaseHTTPRequestHandler], tuple[int, dict]], host: str = "127.0.0.1",
               port: int = 0) -> ThreadingHTTPServer:
    """Answer every GET and POST with `answer(request) -> (status, document)` as JSON, in a daemon thread (the
    caller calls `shutdown()`). `answer` may read the request (`request.path`, `request_body(request)`) and may
    sleep to play a slow node."""

    class Handler(BaseHTTPRequestHandler):
        def _reply(self):
            status, doc = answer(self)
            body = json.dumps(doc).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (a timeout test): nothing to answer

        do_GET = do_POST = _reply  # noqa: N815 (http.server's names)

        def log_message(self, *args):
            pass

    srv = ThreadingHTTPServer((host, port), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def request_body(request: BaseHTTPRequestHandler) -> dict:
    """The JSON body of a POST."""
    return json.loads(request.rfile.read(int(request.headers["Content-Length"])))
