"""A node's first second: its API port answers /status ("starting") before the application is loaded.

`python -m edgepoc.chain.abci.boot --home H` (what `network up` and `network start` run) binds the node's
API port with the standard library only, then imports the application (NumPy, numba, gRPC, FastAPI: a few
seconds on a busy host) and runs `run_node`, which hands the listening socket to the real API once the
application is built. The port is never closed in between, and /status tells where the node is:

    state "starting"      this server: 503, with the process's pid, name, validator address, node id and
                          the phase ("loading the application", ...); every other path: 503 with a reason
    state "catching up"   the real API: cometbft is replaying, block-syncing or not yet answering
    state "in consensus"  the real API: cometbft past block sync

Nothing here imports more than the standard library, so that the answer comes within a fraction of a
second of the process starting, whatever the load.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from edgepoc.errors import EdgepocError

STARTING = "starting"
CATCHING_UP = "catching up"
IN_CONSENSUS = "in consensus"


def node_id(cmt_home: Path) -> str:
    """CometBFT's node id: the first 20 bytes of SHA-256 of the node key's public half, in hex."""
    doc = json.loads((Path(cmt_home) / "config" / "node_key.json").read_text())
    pub = base64.b64decode(doc["priv_key"]["value"])[32:]
    return hashlib.sha256(pub).hexdigest()[:40]


def identity(home: Path) -> dict:
    """Who this node is, from its own files: name, chain id, validator address, CometBFT node id."""
    home = Path(home)
    out: dict = {"engine": "cometbft"}
    try:
        out["name"] = json.loads((home / "app.json").read_text()).get("name")
        out["address"] = json.loads((home / "cometbft" / "config" / "priv_validator_key.json").read_text())[
            "address"].lower()
        out["node_id"] = node_id(home / "cometbft")
        with open(home / "cometbft" / "config" / "genesis.json", "rb") as f:  # chain_id is near the top
            head = f.read(4096).decode(errors="replace")
        i = head.find('"chain_id"')
        if i >= 0:
            out["chain_id"] = head[i:].split('"')[3]
    except (OSError, ValueError, KeyError, IndexError):
        pass  # the node itself reports what is wrong with its files when it loads them
    return out


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket (as the API's `serve.bind`), or a one-line error naming the address."""
    try:
        return socket.create_server((host, port), backlog=256)
    except OSError as exc:
        raise EdgepocError(f"api: cannot listen on {host}:{port} ({exc.strerror})") from None


class EarlyApi:
    """The node's API port, answered with the standard library until `handover()` gives it to the real API."""

    def __init__(self, home: Path, host: str, port: int):
        self.sock = bind(host, port)
        self.who = identity(home)
        self.phase = "loading the application"
        self.t0 = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="early-api", daemon=True)
        self._thread.start()

    def status(self) -> dict:
        return {**self.who, "state": STARTING, "phase": self.phase, "pid": os.getpid(),
                "uptime": time.time() - self.t0, "catching_up": None}

    def _serve(self) -> None:
        self.sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, addr = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(2.0)
            threading.Thread(target=self._answer, args=(conn, addr), daemon=True).start()

    def _answer(self, conn: socket.socket, addr) -> None:
        early = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one answer per connection

            def _reply(self) -> None:
                if self.path.split("?")[0].rstrip("/") == "/status":
                    doc = early.status()
                else:
                    doc = {"error": f"{early.who.get('name', 'this node')} is starting ({early.phase}, "
                                    f"{time.time() - early.t0:.1f} s); retry in a moment or ask another node"}
                body = json.dumps(doc).encode()
                self.send_response(503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Retry-After", "1")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _reply

            def log_message(self, *args) -> None:
                pass

        try:
            Handler(conn, addr, None)
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def handover(self) -> socket.socket:
        """Stop answering and give back the listening socket (connections meanwhile wait in its backlog)."""
        self._stop.set()
        self._thread.join()
        self.sock.settimeout(None)
        return self.sock

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "--home":
        print("usage: python -m edgepoc.chain.abci.boot --home HOME", file=sys.stderr)
        sys.exit(2)
    home = Path(args[1]).resolve()
    from edgepoc.shutdown import freeze_at_exit

    freeze_at_exit()
    try:
        try:
            cfg = json.loads((home / "app.json").read_text())
            host, port = cfg["host"], int(cfg["api_port"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise EdgepocError(f"node: {home}/app.json: unreadable ({exc}); run `edgepoc network init`") from None
        early = EarlyApi(home, host, port)
        from edgepoc.chain.abci.node import run_node

        run_node(home, early=early)
    except EdgepocError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # as the CLI: one line, the traceback only on request
        if os.environ.get("EDGEPOC_DEBUG"):
            raise
        print(f"error: internal error: {type(exc).__name__}: {exc} (set EDGEPOC_DEBUG=1 for a traceback)",
              file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
