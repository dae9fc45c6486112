"""Peer transport: length-prefixed, signed frames over TCP (asyncio streams).

Frame: 4-byte big-endian length, then `header JSON` + b"\\n" + `body JSON`. The header carries the
chain id, message type, sender address, the SHA-256 of the body bytes and the sender's Ed25519
signature over the canonical header fields, so a receiver checks the exact bytes it got without
re-encoding the body. Frames over the size limit, wrong chain ids, unknown senders, bad signatures
and malformed bodies are dropped with one log line; a connection that sends an oversized or
unreadable frame is closed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import struct
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from edgepoc.chain.crypto import SigningKey, canonical, verify
from edgepoc.chain.genesis import Genesis

log = logging.getLogger("edgepoc.transport")

MessageHandler = Callable[[str, str, Any], Awaitable[None] | None]


def encode_frame(key: SigningKey, chain_id: str, msg_type: str, body: Any) -> bytes:
    raw = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
    header = {"chain_id": chain_id, "type": msg_type, "sender": key.address, "body_sha256": hashlib.sha256(raw).hexdigest()}
    header["sig"] = key.sign(canonical(header))
    payload = json.dumps(header, separators=(",", ":")).encode() + b"\n" + raw
    return struct.pack(">I", len(payload)) + payload


class FrameError(ValueError):
    pass


def decode_frame(genesis: Genesis, payload: bytes) -> tuple[str, str, Any]:
    """`(type, sender address, body)` of a verified frame, or FrameError saying why it was dropped."""
    head_raw, sep, raw = payload.partition(b"\n")
    if not sep:
        raise FrameError("no header")
    try:
        header = json.loads(head_raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise FrameError("header is not JSON") from None
    if not isinstance(header, dict) or not all(isinstance(header.get(k), str)
                                               for k in ("chain_id", "type", "sender", "body_sha256", "sig")):
        raise FrameError("malformed header")
    if header["chain_id"] != genesis.chain_id:
        raise FrameError(f"wrong chain id {header['chain_id']!r:.40}")
    i = genesis.index_of(header["sender"])
    if i is None:
        raise FrameError(f"unknown sender {header['sender']!r:.42}")
    sig = header.pop("sig")
    if hashlib.sha256(raw).hexdigest() != header["body_sha256"]:
        raise FrameError("body does not match its hash")
    if not verify(genesis.validators[i].public_key, canonical(header), sig):
        raise FrameError(f"bad signature (claimed sender {header['sender'][:8]})")
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise FrameError("body is not JSON") from None
    return header["type"], header["sender"], body


async def read_frames(reader: asyncio.StreamReader, genesis: Genesis, max_bytes: int, on_message: MessageHandler,
                      peer: str) -> None:
    """Read frames until EOF; hand verified ones to `on_message`; close on oversize or a broken stream."""
    while True:
        try:
            head = await reader.readexactly(4)
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        (length,) = struct.unpack(">I", head)
        if length > max_bytes:
            log.warning("dropped frame from %s: %d bytes is over the %d limit; closing", peer, length, max_bytes)
            return
        try:
            payload = await reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        try:
            msg_type, sender, body = decode_frame(genesis, payload)
        except FrameError as exc:
            log.warning("dropped frame from %s: %s", peer, exc)
            continue
        try:
            result = on_message(msg_type, sender, body)
            if asyncio.iscoroutine(result):
                await result
        except Exception as exc:  # never let one message take the node down
            log.warning("dropped %s from %s: %s: %s", msg_type, sender[:8], type(exc).__name__, str(exc)[:200])


@dataclass
class PeerLink:
    """The outbound side of one peer: a queue drained into a (re)connecting stream."""

    address: str
    host: str
    port: int
    max_queue: int = 20000

    def __post_init__(self):
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(self.max_queue)
        self.connected = False
        self.task: asyncio.Task | None = None
        self.on_connect: Callable[[], None] | None = None
        self.dropped = 0

    def send(self, frame: bytes) -> None:
        """Queue a frame; while the peer is unreachable frames are dropped (on reconnect the node
        re-sends what still matters: its status, its votes and proposal of the current height)."""
        if not self.connected:
            self.dropped += 1
            return
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.warning("send queue to %s full; dropping frames (%d so far)", self.address[:8], self.dropped)

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 2.0)
            except (OSError, asyncio.TimeoutError):
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            backoff = 0.05
            self.connected = True
            if self.on_connect:
                self.on_connect()
            try:
                while True:
                    frame = await self.queue.get()
                    writer.write(frame)
                    while not self.queue.empty() and writer.transport.get_write_buffer_size() < 1 << 20:
                        writer.write(self.queue.get_nowait())
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                self.connected = False
                while not self.queue.empty():  # stale by the time we reconnect
                    self.queue.get_nowait()
                writer.close()
