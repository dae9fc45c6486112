"""Frames and the HTTP server reject bad input with a reason and keep serving."""

from __future__ import annotations

import asyncio
import json

import pytest

from edgepoc.chain.crypto import SigningKey
from edgepoc.chain.httpapi import HttpServer, Response
from edgepoc.chain.store import BlockStore
from edgepoc.chain.transport import FrameError, decode_frame, encode_frame
from edgepoc.chain.types import PRECOMMIT, Vote
from tests.chain.test_rules import KEYS, make_genesis, propose
from edgepoc.chain import consensus as rules


def test_frames_round_trip_and_every_bad_frame_has_a_reason():
    g = make_genesis()
    frame = encode_frame(KEYS[1], g.chain_id, "status", {"height": 3})[4:]
    assert decode_frame(g, frame) == ("status", KEYS[1].address, {"height": 3})
    tampered = bytearray(frame)
    tampered[-2] ^= 1
    cases = {
        "wrong chain id": encode_frame(KEYS[1], "other", "status", {})[4:],
        "unknown sender": encode_frame(SigningKey.from_seed(b"stranger"), g.chain_id, "status", {})[4:],
        "does not match": bytes(tampered),
        "no header": b"garbage without newline",
        "header is not JSON": b"{nope\n{}",
        "malformed header": b'{"chain_id": 1}\n{}',
    }
    for reason, payload in cases.items():
        with pytest.raises(FrameError, match=reason):
            decode_frame(g, payload)
    # a valid signature by one validator, relabelled as another, fails
    head, _, body = frame.partition(b"\n")
    doc = json.loads(head)
    doc["sender"] = KEYS[2].address
    with pytest.raises(FrameError, match="bad signature"):
        decode_frame(g, json.dumps(doc).encode() + b"\n" + body)


def test_http_server_survives_bad_requests():
    async def handler(method, path, body):
        if path == "/boom":
            raise RuntimeError("bug")
        return Response(200, {"echo": body})

    async def main():
        server = HttpServer(handler, max_body=1000)
        port = await server.start("127.0.0.1", 0)

        async def raw(data: bytes) -> bytes:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(data)
            await w.drain()
            out = await asyncio.wait_for(r.read(), 5)
            w.close()
            return out

        out = [await raw(b"NONSENSE\r\n\r\n"),
               await raw(b"POST /x HTTP/1.1\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n"),
               await raw(b"POST /x HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\n{x}"),
               await raw(b"GET /boom HTTP/1.1\r\nConnection: close\r\n\r\n"),
               await raw(b"POST /x HTTP/1.1\r\nContent-Length: 7\r\nConnection: close\r\n\r\n[1,2,3]")]
        server.server.close()
        return out

    out = asyncio.run(main())
    assert out[0].startswith(b"HTTP/1.1 400") and out[1].startswith(b"HTTP/1.1 413")
    assert out[2].startswith(b"HTTP/1.1 400") and out[3].startswith(b"HTTP/1.1 500")
    assert out[4].startswith(b"HTTP/1.1 200") and out[4].endswith(b'{"echo": [1, 2, 3]}')


def test_the_lock_survives_a_restart(tmp_path):
    g = make_genesis()
    block = propose(g, rules.initial_state(g), [])
    store = BlockStore(tmp_path / "c.sqlite")
    store.sign_vote_once(Vote(g.chain_id, 1, 2, PRECOMMIT, block.hash, KEYS[0].address), KEYS[0].sign, lock=block)
    store.close()
    store = BlockStore(tmp_path / "c.sqlite")
    rnd, locked = store.lock(1)
    assert rnd == 2 and locked.hash == block.hash
    assert [v.block_hash for v in store.signed_votes(1)] == [block.hash]
