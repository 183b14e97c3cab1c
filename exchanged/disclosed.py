"""The keyed BSN hashes one message being written discloses, each with the row of the
operator's file it came from: for the disclosure register once the message is sealed,
and for the rejection report when a subject's processing has ended.

Held in memory while they are few (a usual export: no file made, none deleted); past
``memory_limit`` they go on to a spool file, so memory stays flat however large the
export. The file holds keyed hashes only, never a BSN.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Final

from exchanged.errors import LocalSystemError

__all__ = ["DisclosedHashes"]

# ~100 bytes of memory each: a message of up to this many records never makes a file.
_MEMORY_LIMIT: Final = 10_000


class DisclosedHashes:
    __slots__ = ("_file", "_handle", "_limit", "_lines", "_spilled")

    def __init__(self, spill_to: Path, *, memory_limit: int = _MEMORY_LIMIT) -> None:
        self._file = spill_to
        self._limit = memory_limit
        self._lines: list[str] = []
        self._handle: IO[str] | None = None
        self._spilled = False

    def add(self, digest: str, row: int) -> None:
        line = f"{digest} {row}\n"
        if self._handle is not None:
            self._handle.write(line)
            return
        self._lines.append(line)
        if len(self._lines) > self._limit:
            self._spill()

    def close(self) -> None:
        """No more hashes: complete the file, if there is one, before it is read."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __iter__(self) -> Iterator[tuple[str, int]]:
        """(keyed BSN hash, row number) pairs in the order they were added, streamed."""
        lines: Iterator[str] = iter(self._lines)
        if self._spilled:
            lines = self._read_file()
        for line in lines:
            digest, _, row = line.partition(" ")
            yield digest, int(row)

    def discard(self) -> None:
        self.close()
        self._lines.clear()
        self._file.unlink(missing_ok=True)

    def _spill(self) -> None:
        fd = os.open(self._file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        handle = os.fdopen(fd, "w", encoding="ascii")
        handle.writelines(self._lines)
        self._lines.clear()
        self._handle = handle
        self._spilled = True

    def _read_file(self) -> Iterator[str]:
        if not self._file.exists():
            # Never register "no disclosures" for a message that carried records.
            raise LocalSystemError(
                f"the disclosure list {self._file.name} of a sealed message is gone"
            )
        with self._file.open(encoding="ascii") as handle:
            yield from handle
