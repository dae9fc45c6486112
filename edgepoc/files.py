"""Crash-safe file writes, the one way the package replaces a file: a crash, a full disk or a Ctrl-C leaves the old
file or the new one, never half of either, and no temporary file behind.

Everything that rewrites a file a user or a node relies on (keys, genesis, instances, allocations, data sets,
checkpoints, stored results, training logs) goes through `write_atomic` or, for writers that want a path
(`torch.save`, `np.savez`, `zipfile`), `atomic_path`. A symbolic link is followed (the file it names is replaced, the
link stays); a device or FIFO (`/dev/null`, a named pipe) is written into, not replaced."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def _public_mode() -> int:
    """The mode `open()` would give a new file: 0666 less the process's umask (read without changing it where
    Linux tells; else set and restored at once)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable: the directory entry is data too. Some file systems refuse; the rename stands anyway."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path, private: bool = False, sync: bool = True, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path in `path`'s folder to write to; when the block ends without error it is synced and renamed
    over `path`, on any error (Ctrl-C included) it is removed and the old file stands.

    `private`: readable by the owner only from the moment it exists (mkstemp creates it 0600), for keys; otherwise
    it gets the mode a plain `open()` would give it (0644 under the usual umask 022). `sync=False` skips the
    fsyncs (many small files: the rename still never shows half a file, though a power cut may lose the newest).
    `suffix`: for writers that add their own (`np.savez` adds `.npz` to any other name)."""
    path = Path(path)
    if path.is_symlink():  # written where the link points, as the shell's `>` writes: a rename would cut the link
        path = Path(os.path.realpath(path))
    if _special(path):
        yield from _through(path, suffix)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if not private:
            os.chmod(tmp, _public_mode())
        if sync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync:
        _fsync_dir(path.parent)


def _special(path: Path) -> bool:
    """A device or FIFO (`--out /dev/null`, `/dev/stdout`, a named pipe): written into, never renamed over."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _through(path: Path, suffix: str) -> Iterator[Path]:
    """`atomic_path` for a device or FIFO: the writer gets a temporary file (writers such as `np.savez` want a
    path to a file), whose bytes are then copied into `path`; a crash leaves nothing to half-replace."""
    fd, name = tempfile.mkstemp(prefix=".edgepoc-", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb") as src, open(path, "wb") as dst:
            shutil.copyfileobj(src, dst)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | Path, data: str | bytes, private: bool = False, sync: bool = True) -> None:
    """Replace `path` with `data` (text is written as UTF-8), crash-safe as `atomic_path` says."""
    with atomic_path(path, private=private, sync=sync) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
