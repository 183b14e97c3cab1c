"""Atomic, private file operations (the borg way: temp name, fsync, replace, fsync dir).

Every file the daemon writes goes through here: mode 0600 in folders of mode 0700,
never half-written under its final name, never following a symlink it did not make.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "atomic_writer",
    "ensure_private_dir",
    "free_name",
    "fsync_dir",
    "move_into",
    "sha256_file",
    "write_atomic",
]

_CHUNK = 1 << 20


def ensure_private_dir(path: Path, mode: int = 0o700) -> Path:
    """Create ``path`` (and parents) with ``mode`` set explicitly: the service's
    UMask=0077 would otherwise turn a shared 0750 into 0700."""
    if not path.is_dir():
        path.mkdir(mode=mode, parents=True, exist_ok=True)
        path.chmod(mode)
    return path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_writer(path: Path, mode: int = 0o600, *, durable: bool = True) -> Iterator[BinaryIO]:
    """Yield a binary file that appears at ``path`` only if the block succeeds, with
    ``mode`` (0600 unless operators are meant to read it: 0640). ``durable=False``
    skips the fsyncs, for working copies that are remade after a crash anyway."""
    temp = path.with_name(f".{path.name}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fchmod(handle.fileno(), mode)  # explicit: the umask must not decide this
            if durable:
                os.fsync(handle.fileno())
        temp.replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    if durable:
        fsync_dir(path.parent)


def write_atomic(path: Path, chunks: Iterable[bytes], mode: int = 0o600) -> None:
    with atomic_writer(path, mode) as handle:
        for chunk in chunks:
            handle.write(chunk)


def sha256_file(path: Path) -> tuple[str, int]:
    """(hex digest, size) of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def free_name(folder: Path, name: str) -> Path:
    """``folder / name``, or its first numbered variant (``lijst.1.csv``) not taken."""
    target = folder / name
    stem, suffix = target.stem, target.suffix
    counter = 1
    while target.exists():
        target = folder / f"{stem}.{counter}{suffix}"
        counter += 1
    return target


def move_into(source: Path, folder: Path, folder_mode: int = 0o700) -> Path:
    """Move ``source`` into ``folder`` under its own name (or a numbered variant if that
    is taken), durably. Same file system only: a rename, never a copy."""
    ensure_private_dir(folder, folder_mode)
    target = free_name(folder, source.name)
    source.rename(target)
    fsync_dir(folder)
    fsync_dir(source.parent)
    return target
