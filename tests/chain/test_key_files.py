"""Key and genesis files: private from the moment they exist, and never half written."""

from __future__ import annotations

import os
import stat

import pytest

from edgepoc.chain import crypto
from edgepoc.chain.crypto import SigningKey
from edgepoc.files import write_atomic


def test_a_key_file_is_private_before_it_gets_its_name(tmp_path, monkeypatch):
    """The key was written world-readable and chmod-ed after: for that moment another user could read it. Now the
    file is 0600 while it is still the temporary one, before the rename gives it the key's name."""
    path = tmp_path / "keys" / "client_key.json"
    seen = []
    real_replace = os.replace

    def replace(src, dst):
        seen.append(stat.S_IMODE(os.stat(src).st_mode))
        real_replace(src, dst)

    monkeypatch.setattr(crypto.os, "replace", replace)
    key = SigningKey.generate()
    key.save(path)
    assert seen == [0o600]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert SigningKey.load(path).public_hex == key.public_hex
    assert os.listdir(path.parent) == ["client_key.json"]  # no temporary file left


def test_a_save_that_fails_leaves_the_old_key_whole(tmp_path, monkeypatch):
    path = tmp_path / "arbiter_key.json"
    old = SigningKey.generate()
    old.save(path)

    def disk_full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(crypto.os, "replace", disk_full)
    with pytest.raises(OSError):
        SigningKey.generate().save(path)
    assert SigningKey.load(path).public_hex == old.public_hex
    assert os.listdir(tmp_path) == ["arbiter_key.json"]


def test_a_public_file_is_readable_by_others_and_replaces_the_old_one(tmp_path):
    path = tmp_path / "genesis.json"
    path.write_text("old\n")
    os.chmod(path, 0o600)
    mask = os.umask(0o022)  # the usual umask; the user's own is honoured (tests/test_files.py)
    try:
        write_atomic(path, "new\n")
    finally:
        os.umask(mask)
    assert path.read_text() == "new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
