"""Ed25519 keys and the canonical JSON encoding that every hash and signature is taken over.

Canonical JSON: keys sorted, no whitespace, UTF-8, no NaN/Infinity. Python's float repr is the
shortest string that round-trips, so a float hashed on one node decodes to the same bits on another.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from edgepoc.errors import EdgepocError
from edgepoc.files import write_atomic


def canonical(obj: Any) -> bytes:
    """The one byte encoding of a JSON value that hashes and signatures are taken over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def address_of(public_key_hex: str) -> str:
    """A validator's or client's address: the first 20 bytes of the SHA-256 of its public key."""
    return sha256_hex(bytes.fromhex(public_key_hex))[:40]


@lru_cache(maxsize=4096)
def _public(public_key_hex: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex))


def verify(public_key_hex: str, message: bytes, signature_hex: str) -> bool:
    """True when `signature_hex` is a valid signature of `message`; never raises on garbage."""
    try:
        _public(public_key_hex).verify(bytes.fromhex(signature_hex), message)
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False


@dataclass
class SigningKey:
    """An Ed25519 private key with its public key and address precomputed."""

    private: Ed25519PrivateKey
    public_hex: str
    address: str

    @classmethod
    def from_seed(cls, seed: bytes) -> "SigningKey":
        priv = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed).digest())
        return cls._wrap(priv)

    @classmethod
    def generate(cls) -> "SigningKey":
        return cls._wrap(Ed25519PrivateKey.from_private_bytes(os.urandom(32)))

    @classmethod
    def _wrap(cls, priv: Ed25519PrivateKey) -> "SigningKey":
        pub = priv.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
        return cls(priv, pub, address_of(pub))

    def sign(self, message: bytes) -> str:
        return self.private.sign(message).hex()

    def private_hex(self) -> str:
        return self.private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()).hex()

    def save(self, path: Path) -> None:
        doc = {"type": "ed25519", "private_key": self.private_hex(), "public_key": self.public_hex,
               "address": self.address}
        write_atomic(path, json.dumps(doc, indent=2) + "\n", private=True)

    @classmethod
    def load(cls, path: Path) -> "SigningKey":
        try:
            doc = json.loads(Path(path).read_text())
            return cls._wrap(Ed25519PrivateKey.from_private_bytes(bytes.fromhex(doc["private_key"])))
        except FileNotFoundError:
            raise EdgepocError(f"key: {path} does not exist") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise EdgepocError(f"key: {path} is not an ed25519 key file ({exc})") from None
