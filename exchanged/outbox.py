"""Which files in a watched folder are ready to be taken, and which must be left alone.

Operators (and their software) write exports under a temporary or dot-name and rename
them, or copy them slowly into place. A file is taken only when it is a regular file
(never through a symlink), its name is not a temporary one, and its size and mtime have
stayed the same for ``settle_seconds``.
"""

from __future__ import annotations

import errno
import grp
import hashlib
import os
import pwd
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from exchanged.errors import LocalSystemError, OperatorInputError

__all__ = [
    "ARCHIVE_FOLDERS",
    "Candidate",
    "SettleTracker",
    "UnsafeOutboxFile",
    "is_ignored_name",
    "list_candidates",
    "opened_export",
]

ARCHIVE_FOLDERS: Final = frozenset({"sent", "rejected"})
# Names never taken: "*.part", "*.tmp", "*.rejected.txt", "~$*" and dot-files. Plain
# prefix and suffix tests, not fnmatch: every pass of the service lists every folder.
_IGNORED_PREFIXES: Final = (".", "~$")
_IGNORED_SUFFIXES: Final = (".part", ".tmp", ".rejected.txt")


def is_ignored_name(name: str) -> bool:
    """Dot-files, partial downloads, temp files and Excel lock files are never taken."""
    return name.startswith(_IGNORED_PREFIXES) or name.endswith(_IGNORED_SUFFIXES)


@dataclass(frozen=True, slots=True)
class Candidate:
    path: Path
    size: int
    mtime_ns: int
    symlink: bool


def list_candidates(folder: Path) -> list[Candidate]:
    """Entries of ``folder`` that might be exports (not recursing, not following links)."""
    found: list[Candidate] = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return found
    for entry in entries:
        if is_ignored_name(entry.name):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # gone since the listing (taken and archived, removed by an operator)
        if stat.S_ISLNK(info.st_mode):
            found.append(Candidate(Path(entry.path), 0, info.st_mtime_ns, symlink=True))
        elif stat.S_ISREG(info.st_mode):
            found.append(Candidate(Path(entry.path), info.st_size, info.st_mtime_ns, False))
    return found


class SettleTracker:
    """Remembers when each file last changed; says which have been still long enough.

    Pure bookkeeping over observations (the caller supplies the clock), so it is easy
    to reason about: a file is ready when the same (size, mtime) has been observed
    continuously for ``settle_seconds``.
    """

    def __init__(self, settle_seconds: float) -> None:
        self._settle = settle_seconds
        self._seen: dict[Path, tuple[int, int, float]] = {}
        self._settling: set[Path] = set()

    def observe(self, candidate: Candidate, now: float) -> bool:
        key = (candidate.size, candidate.mtime_ns)
        previous = self._seen.get(candidate.path)
        if previous is None or previous[:2] != key:
            self._seen[candidate.path] = (*key, now)
            previous = self._seen[candidate.path]
        ready = now - previous[2] >= self._settle
        if ready:
            self._settling.discard(candidate.path)
        else:
            self._settling.add(candidate.path)
        return ready

    def forget(self, path: Path) -> None:
        self._seen.pop(path, None)
        self._settling.discard(path)

    def pending(self) -> int:
        """Files still settling: the main loop looks again soon while there are any."""
        return len(self._settling)

    def next_ready_in(self, now: float) -> float | None:
        """Seconds until the first settling file has been still long enough, if it does
        not change meanwhile; None when no file is settling. The caller looks again
        then, instead of polling at a fixed step."""
        started = [self._seen[path][2] for path in self._settling if path in self._seen]
        if not started:
            return None
        return max(0.0, min(started) + self._settle - now)

    def prune(self, present: set[Path]) -> None:
        for path in list(self._seen):
            if path not in present:
                self.forget(path)


class UnsafeOutboxFile(OperatorInputError):
    """A file in an outbox that must not be read: a symlink, a hard link, a special file
    or one owned by someone who may not drop files there. ``reason`` is a short code."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"unsafe file in outbox ({reason}); it was not read and left in place")
        self.reason = reason


def _may_drop(uid: int, folder: os.stat_result) -> bool:
    """The service user, or a member of the outbox folder's group (the operators)."""
    if uid in (os.geteuid(), folder.st_uid):
        return True
    try:
        user = pwd.getpwuid(uid)
        group = grp.getgrgid(folder.st_gid)
    except KeyError:
        return False
    return user.pw_gid == folder.st_gid or user.pw_name in group.gr_mem


@contextmanager
def opened_export(path: Path) -> Iterator[tuple[str, Path]]:
    """Open a settled file safely; yield a key identifying this drop of it and a path
    through which exactly the file that was checked is read.

    The file is opened once with O_NOFOLLOW and judged by fstat of that descriptor, and
    every later read goes through ``/proc/self/fd/N`` (a new read position on the same
    open file), so a symlink or another file swapped in after the check is never read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # the name is a symlink
            raise UnsafeOutboxFile("symlink") from None
        # Never str(exc): it holds the path, and so the operator's file name.
        raise LocalSystemError(
            f"cannot open a file in outbox {path.parent}: {exc.strerror}"
        ) from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeOutboxFile("not-a-regular-file")
        if info.st_nlink > 1:
            raise UnsafeOutboxFile("hard-link")
        if not _may_drop(info.st_uid, path.parent.stat()):
            raise UnsafeOutboxFile("foreign-owner")
        digest = hashlib.sha256()
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
        # The file's identity (device, inode, mtime) is part of the key: after a crash
        # the same file in the same place is recognised and finished, but a new copy with
        # the same content (an operator resending a list) is a new export, not a no-op.
        identity = f"{path.parent}\0{info.st_dev}:{info.st_ino}:{info.st_mtime_ns}"
        key = hashlib.sha256(f"{identity}\0{digest.hexdigest()}".encode()).hexdigest()
        yield key, Path(f"/proc/self/fd/{handle.fileno()}")
