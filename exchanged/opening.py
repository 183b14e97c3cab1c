"""Incoming files copied off a partner's channel and opened, one by one or many at once.

A file is never decrypted where the partner can reach it: it is first copied, opened
with O_NOFOLLOW, into our private work folder, and what is hashed is what is
decrypted, whatever the partner's account does to the channel meanwhile (a symlink
swapped in would otherwise make us read a file of ours).

When several messages wait on a channel (a burst, or the backlog after an outage) the
service asks for them to be *prepared*: copied and opened in one gpg run, which costs
a fraction of one run per message. Preparing has no effect outside the work folder;
the receiver then takes each file exactly as it would otherwise, journal first, and
only the gpg run it would have made is replaced by the prepared verdict for that very
copy. Anything not taken by the end of the pass is deleted.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from exchanged.adapters.files import atomic_writer
from exchanged.adapters.gpg import Gpg, Opened
from exchanged.errors import LocalSystemError

__all__ = ["Copy", "NotARegularFile", "Opener"]


class NotARegularFile(Exception):
    """A symlink, folder or device on a partner's channel: never opened."""


@dataclass(frozen=True, slots=True)
class Copy:
    """Our private copy of one incoming file."""

    path: Path
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class _Prepared:
    copy: Copy
    identity: tuple[int, int, int]  # inode, size, mtime of the file on the channel
    opened: Opened
    plaintext: Path  # where gpg put it; exists only when ``opened`` succeeded


class Opener:
    def __init__(self, work: Path, gpg: Gpg) -> None:
        self._work = work
        self._gpg = gpg
        self._prepared: dict[str, _Prepared] = {}

    def copy(self, path: Path, wire_id: str) -> Copy:
        """The prepared copy of ``wire_id`` if the file on the channel is still the one
        that was copied, else a fresh copy."""
        prepared = self._prepared.get(wire_id)
        if prepared is not None:
            try:
                if _identity(os.lstat(path)) == prepared.identity:
                    return prepared.copy
            except OSError:
                pass  # the fresh copy below reports it
            self._discard(wire_id)
        copy, _ = self._snapshot(path, self._work / f"{wire_id}.pgp")
        return copy

    def open(self, wire_id: str, copy: Copy, plaintext: Path) -> Opened:
        """Decrypt and verify ``copy`` into ``plaintext`` (see ``Gpg.open``)."""
        prepared = self._prepared.pop(wire_id, None)
        if prepared is None:  # ``copy`` dropped a prepared copy that was out of date
            return self._gpg.open(copy.path, plaintext)
        if prepared.opened.failure is None:
            prepared.plaintext.replace(plaintext)
        return prepared.opened

    def prepare(self, files: Sequence[tuple[Path, str]]) -> int:
        """Copy and open ``(path, wire_id)`` files in as few gpg runs as may be; returns
        how many were prepared. A file that cannot be copied is left to be taken (and
        reported) on its own."""
        self.release()
        copies: list[tuple[str, Copy, tuple[int, int, int]]] = []
        for path, wire_id in files:
            try:
                # A name of its own, so a copy taken the usual way cannot collide.
                copy, identity = self._snapshot(path, self._work / f"{wire_id}.b.pgp")
            except (NotARegularFile, LocalSystemError, OSError):
                continue
            copies.append((wire_id, copy, identity))
        pairs = [(copy.path, copy.path.with_suffix(".json")) for _, copy, _ in copies]
        try:
            verdicts = self._gpg.open_many(pairs)
        except BaseException as exc:
            # Plaintexts of a batch may already be in place: nothing stays behind.
            for ciphertext, plaintext in pairs:
                ciphertext.unlink(missing_ok=True)
                plaintext.unlink(missing_ok=True)
            if isinstance(exc, (LocalSystemError, OSError)):
                return 0  # each file's own attempt will say what is wrong
            raise
        for (wire_id, copy, identity), (_, plaintext), opened in zip(
            copies, pairs, verdicts, strict=True
        ):
            self._prepared[wire_id] = _Prepared(copy, identity, opened, plaintext)
        return len(copies)

    def release(self) -> None:
        """Delete whatever was prepared and not taken."""
        for wire_id in list(self._prepared):
            self._discard(wire_id)

    def _discard(self, wire_id: str) -> None:
        prepared = self._prepared.pop(wire_id)
        prepared.copy.path.unlink(missing_ok=True)
        prepared.plaintext.unlink(missing_ok=True)

    def _snapshot(self, path: Path, target: Path) -> tuple[Copy, tuple[int, int, int]]:
        self._work.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise NotARegularFile from None
            raise LocalSystemError(f"cannot open an incoming file: {exc.strerror}") from None
        digest = hashlib.sha256()
        size = 0
        with os.fdopen(fd, "rb") as source:
            info = os.fstat(source.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise NotARegularFile
            # A working copy: the original stays on the channel until answered, so
            # there is nothing to fsync.
            with atomic_writer(target, durable=False) as sink:
                while chunk := source.read(1 << 20):
                    digest.update(chunk)
                    size += len(chunk)
                    sink.write(chunk)
        return Copy(target, digest.hexdigest(), size), _identity(info)


def _identity(info: os.stat_result) -> tuple[int, int, int]:
    return info.st_ino, info.st_size, info.st_mtime_ns
