"""The one crash-safe writer: a failed or interrupted write leaves the old file whole and nothing beside it."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from edgepoc.files import atomic_path, write_atomic


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("error", [OSError("No space left on device"), KeyboardInterrupt()])
def test_a_write_that_fails_or_is_interrupted_leaves_the_old_file_and_no_temporary(tmp_path, error):
    path = tmp_path / "log.json"
    write_atomic(path, json.dumps({"epoch": 1}))
    with pytest.raises(type(error)):
        with atomic_path(path) as tmp:
            tmp.write_text('{"epoch": 2, "half')  # half written when the error strikes
            raise error
    assert json.loads(path.read_text()) == {"epoch": 1}
    assert _leftovers(tmp_path) == []


def test_writers_that_want_a_path_write_exactly_the_named_file(tmp_path):
    """`np.savez` adds `.npz` to a name without it: the suffix keeps the temporary's name its own."""
    path = tmp_path / "shard-00000.npz"
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, x=np.arange(3))
    with np.load(path) as z:
        assert z["x"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard-00000.npz"]


def test_text_and_bytes_replace_the_file_and_public_files_are_readable_by_all(tmp_path):
    path = tmp_path / "sub" / "a.bin"
    mask = os.umask(0o022)  # the usual umask
    try:
        write_atomic(path, b"\x00\x01")
        write_atomic(path, "é\n")
    finally:
        os.umask(mask)
    assert path.read_bytes() == "é\n".encode()
    assert path.stat().st_mode & 0o777 == 0o644
    write_atomic(path, "secret", private=True)
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_public_file_gets_the_mode_the_users_umask_gives(tmp_path):
    """Like a plain `open()`: a user whose umask keeps new files to themselves gets 0600 public files too."""
    old = os.umask(0o077)
    try:
        write_atomic(tmp_path / "a.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o600
