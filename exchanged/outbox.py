"""Which files in a watched folder are ready to be taken, and which must be left alone.

Operators (and their software) write exports under a temporary or dot-name and rename
them, or copy them slowly into place. A file is taken only when it is a regular file
(never through a symlink), its name is not a temporary one, and its size and mtime have
stayed the same for ``settle_seconds``.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["ARCHIVE_FOLDERS", "Candidate", "SettleTracker", "is_ignored_name", "list_candidates"]

ARCHIVE_FOLDERS: Final = frozenset({"sent", "rejected"})
_IGNORED: Final = ("*.part", "*.tmp", "~$*", "*.rejected.txt")


def is_ignored_name(name: str) -> bool:
    """Dot-files, partial downloads, temp files and Excel lock files are never taken."""
    return name.startswith(".") or any(fnmatch.fnmatch(name, p) for p in _IGNORED)


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
        info = entry.stat(follow_symlinks=False)
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

    def observe(self, candidate: Candidate, now: float) -> bool:
        key = (candidate.size, candidate.mtime_ns)
        previous = self._seen.get(candidate.path)
        if previous is None or previous[:2] != key:
            self._seen[candidate.path] = (*key, now)
            return self._settle <= 0
        return now - previous[2] >= self._settle

    def forget(self, path: Path) -> None:
        self._seen.pop(path, None)

    def pending(self) -> int:
        return len(self._seen)

    def prune(self, present: set[Path]) -> None:
        for path in list(self._seen):
            if path not in present:
                del self._seen[path]
