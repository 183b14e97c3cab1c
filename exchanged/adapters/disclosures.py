"""The disclosure register (accountability, AVG art. 5(2), 15 and 19) in the journal.

For every record sent or received: the keyed BSN hash, partner, direction, category,
message id and time. It answers "what did we send to whom about this person" and
"who must hear of a correction or withdrawal" without keeping a plain-text list of
children: the register holds HMAC-SHA-256(key, bsn) only (core/disclosure.py).

Terminations (processing ended, and on what ground) live here too: the send path asks
``is_ended`` before it seals a record, and an operator re-opens a subject explicitly.

The journal owns the database file; this class adds its tables to the connection it
is given. Each write is one transaction, or all-or-nothing inside the caller's.

Rows are written twice, the way a log-structured store does: first appended to
``disclosures_recent`` (no index on the subject, so the rows of one message fill a
page or two at the end), then moved into ``disclosures``, indexed by subject, when the
daemon is quiet (``settle``). Every reader sees both tables through the view
``disclosures_all``. Why: the subject index is keyed on random hashes, so each record
written straight into it touches a page of its own; on the path every message takes
that was ~1 ms and ~450 KB written (WAL and checkpoint) per 50-record message, measured
with registers of up to 45 000 rows, where moving many messages' rows in one
transaction touches each page once. In a register of millions of rows a move still
touches about a page per row; what stays is that the cost is off the message path.
"""

from __future__ import annotations

import itertools
import os
import re
import sqlite3
import stat
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from exchanged.adapters.sqlite_tx import write_transaction
from exchanged.core.disclosure import MIN_KEY_BYTES
from exchanged.credentials import BSN_HASH_CREDENTIAL, read_credential
from exchanged.errors import LocalSystemError, OperatorInputError

__all__ = [
    "Disclosure",
    "DisclosureRegister",
    "SubjectReport",
    "Termination",
    "ensure_schema",
    "load_hash_key",
]

Direction = Literal["sent", "received"]
DIRECTIONS: Final = ("sent", "received")

_COLUMNS: Final = "bsn_hash, partner, direction, kind, category, message_id, at"
# One row per record disclosed; the same in both tables.
_ROW: Final = """
        id         INTEGER PRIMARY KEY,
        bsn_hash   TEXT NOT NULL,
        partner    TEXT NOT NULL,
        direction  TEXT NOT NULL CHECK (direction IN ('sent', 'received')),
        kind       TEXT NOT NULL DEFAULT 'export',
        category   TEXT,
        message_id TEXT NOT NULL,
        at         REAL NOT NULL"""
_SCHEMA: Final = (
    f"CREATE TABLE IF NOT EXISTS disclosures ({_ROW},\n"
    "        UNIQUE (bsn_hash, message_id, direction))",
    # The UNIQUE index leads with bsn_hash and serves every look-up by subject; a
    # second index on bsn_hash alone (made by earlier versions) only doubled the cost
    # of each record written, ~0.5 ms per 50-record message (measured).
    "DROP INDEX IF EXISTS disclosures_subject",
    "CREATE INDEX IF NOT EXISTS disclosures_at ON disclosures (at)",
    # Rows not yet moved into ``disclosures``; indexed by message only, for the check
    # that a replay adds nothing (the rows of one message sit together in it).
    f"CREATE TABLE IF NOT EXISTS disclosures_recent ({_ROW})",
    "CREATE INDEX IF NOT EXISTS disclosures_recent_message"
    " ON disclosures_recent (message_id, direction)",
    # Settled rows first, then the recent ones, each in the order they came: ids
    # alone do not order both (the recent table's start again once it is emptied).
    "DROP VIEW IF EXISTS disclosures_all",
    f"CREATE VIEW disclosures_all AS SELECT 0 AS recent, id, {_COLUMNS} FROM disclosures"  # noqa: S608 -- constants only
    f" UNION ALL SELECT 1, id, {_COLUMNS} FROM disclosures_recent",
    """CREATE TABLE IF NOT EXISTS terminations (
        id          INTEGER PRIMARY KEY,
        bsn_hash    TEXT NOT NULL,
        ground      TEXT NOT NULL,
        at          REAL NOT NULL,
        ended_by    TEXT NOT NULL,
        reopened_at REAL
    )""",
    "CREATE INDEX IF NOT EXISTS terminations_subject ON terminations (bsn_hash)",
)


@dataclass(frozen=True, slots=True)
class Disclosure:
    direction: str
    partner: str
    kind: str
    category: str | None
    message_id: str
    at: float


@dataclass(frozen=True, slots=True)
class Termination:
    ground: str
    at: float
    ended_by: str  # "local", or the partner id whose withdrawal ended it
    reopened_at: float | None


@dataclass(frozen=True, slots=True)
class SubjectReport:
    """Everything the register knows about one subject, oldest first."""

    disclosures: tuple[Disclosure, ...]
    terminations: tuple[Termination, ...]

    @property
    def ended(self) -> Termination | None:
        """The termination in force, if processing has ended and not been re-opened."""
        return next((t for t in reversed(self.terminations) if t.reopened_at is None), None)

    @property
    def known(self) -> bool:
        return bool(self.disclosures or self.terminations)


def ensure_schema(conn: sqlite3.Connection) -> None:
    with _transaction(conn):
        for statement in _SCHEMA:
            conn.execute(statement)


def _transaction(conn: sqlite3.Connection) -> AbstractContextManager[None]:
    return write_transaction(conn, "disclosure_register")


def _insert(conn: sqlite3.Connection, rows: Iterator[tuple[Any, ...]]) -> int:
    """Append the rows of one message, unless it is in the register already (a replay:
    all rows of a message are written in one call, so its first row tells)."""
    first = next(rows, None)
    if first is None:
        return 0
    bsn_hash, _partner, direction, _kind, _category, message_id, _at = first
    known = conn.execute(
        "SELECT 1 FROM disclosures WHERE bsn_hash = ? AND message_id = ? AND direction = ?"
        " UNION ALL SELECT 1 FROM disclosures_recent WHERE message_id = ? AND direction = ?"
        " LIMIT 1",
        (bsn_hash, message_id, direction, message_id, direction),
    ).fetchone()
    if known is not None:
        return 0
    before = conn.total_changes
    conn.executemany(
        f"INSERT INTO disclosures_recent ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",  # noqa: S608 -- constant
        itertools.chain((first,), rows),
    )
    return conn.total_changes - before


class DisclosureRegister:
    """``lock``: the journal's lock when the connection is shared between threads
    (the daemon); a CLI process with its own connection needs none."""

    def __init__(
        self, conn: sqlite3.Connection, *, lock: AbstractContextManager[Any] | None = None
    ) -> None:
        self._conn = conn
        self._lock: AbstractContextManager[Any] = lock if lock is not None else nullcontext()

    # -- writing ----------------------------------------------------------------------

    def record(  # noqa: PLR0917 -- the order reads as the register's columns
        self,
        direction: str,
        partner: str,
        category: str | None,
        message_id: str,
        bsn_hashes: Iterable[str],
        at: float,
        *,
        kind: str = "export",
    ) -> int:
        """Add one row per hash; a replay of the same message adds nothing (idempotent
        like every effect). Returns the number of rows added."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}")
        # A generator, not a list: executemany streams it, so a message of a million
        # records is registered without holding a million rows in memory.
        rows = (
            (_checked_hash(h), partner, direction, kind, category, message_id, at)
            for h in bsn_hashes
        )
        conn = self._conn
        with self._lock:
            if not conn.in_transaction:
                with _transaction(conn):
                    return _insert(conn, rows)
            # Inside the caller's transaction, all of it or none of it without a
            # savepoint, which would copy every page the inserts touch to a temp file.
            # The rows added are exactly those above the largest id before (ids are
            # max + 1, and the transaction keeps other writers out), so a failure
            # removes them instead.
            try:
                last = conn.execute(
                    "SELECT coalesce(max(id), 0) FROM disclosures_recent"
                ).fetchone()[0]
                try:
                    return _insert(conn, rows)
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("DELETE FROM disclosures_recent WHERE id > ?", (last,))
                    raise
            except sqlite3.OperationalError as exc:
                raise LocalSystemError(f"the journal cannot be written: {exc}") from exc

    def waiting(self) -> int:
        """About how many rows wait to be moved into the indexed table (``settle``):
        at least as many as there are, in two look-ups of the id index."""
        with self._lock:
            # Two sub-selects: SQLite answers a lone min() or max() from the index, but
            # reads the whole table for both in one select.
            row = self._conn.execute(
                "SELECT coalesce((SELECT max(id) FROM disclosures_recent)"
                " - (SELECT min(id) FROM disclosures_recent) + 1, 0)"
            ).fetchone()
        return int(row[0])

    def settle(self, limit: int = 20_000) -> int:
        """Move up to ``limit`` of the oldest recent rows into the indexed table, in the
        order they came, in one transaction; returns how many left the recent table
        (0: none wait). Readers see the same rows before and after. Bounded, so the
        daemon's loop (and its watchdog ping) is never held long: a message of a
        million records settles in steps."""
        with self._lock, _transaction(self._conn):
            (last,) = self._conn.execute(
                "SELECT max(id) FROM (SELECT id FROM disclosures_recent ORDER BY id LIMIT ?)",
                (limit,),
            ).fetchone()
            if last is None:
                return 0
            self._conn.execute(
                f"INSERT OR IGNORE INTO disclosures ({_COLUMNS})"  # noqa: S608 -- constant
                f" SELECT {_COLUMNS} FROM disclosures_recent WHERE id <= ? ORDER BY id",
                (last,),
            )
            # Counted as they leave, not as they arrive: a row the indexed table already
            # had still leaves, and a caller looping until 0 must not stop early.
            return int(
                self._conn.execute("DELETE FROM disclosures_recent WHERE id <= ?", (last,)).rowcount
            )

    def end_processing(
        self, bsn_hash: str, ground: str, at: float, *, ended_by: str = "local"
    ) -> bool:
        """Mark processing ended; False when it already was (the first ground stands)."""
        with self._lock, _transaction(self._conn):
            if self._active(bsn_hash) is not None:
                return False
            self._conn.execute(
                "INSERT INTO terminations (bsn_hash, ground, at, ended_by) VALUES (?, ?, ?, ?)",
                (_checked_hash(bsn_hash), ground, at, ended_by),
            )
            return True

    def reopen(self, bsn_hash: str, at: float) -> bool:
        """An operator's decision to process the subject again; the history stays."""
        with self._lock, _transaction(self._conn):
            cursor = self._conn.execute(
                "UPDATE terminations SET reopened_at = ? WHERE bsn_hash = ?"
                " AND reopened_at IS NULL",
                (at, bsn_hash),
            )
            return cursor.rowcount > 0

    def purge_before(self, cutoff: float, *, dry_run: bool = False) -> int:
        """Remove disclosures older than ``cutoff`` and terminations re-opened before it.

        A termination still in force is kept whatever its age: it is what stops the
        subject from being sent again, and it holds only a hash and a ground.
        """
        old = (
            "FROM disclosures WHERE at < ?",
            "FROM disclosures_recent WHERE at < ?",
            "FROM terminations WHERE reopened_at IS NOT NULL AND reopened_at < ?",
        )
        with self._lock, _transaction(self._conn):
            if dry_run:
                found = 0
                for where in old:
                    found += self._conn.execute("SELECT COUNT(*) " + where, (cutoff,)).fetchone()[0]
                return found
            removed = 0
            for where in old:
                removed += self._conn.execute("DELETE " + where, (cutoff,)).rowcount
            return removed

    # -- reading ----------------------------------------------------------------------

    def is_ended(self, bsn_hash: str) -> bool:
        with self._lock:
            return self._active(bsn_hash) is not None

    def ended_among(self, bsn_hashes: Iterable[str]) -> set[str]:
        """The hashes whose processing has ended (the send path's check, one query
        per batch instead of one per record)."""
        wanted = list(dict.fromkeys(bsn_hashes))
        found: set[str] = set()
        with self._lock:
            for start in range(0, len(wanted), 500):  # SQLite's host-parameter limit
                batch = wanted[start : start + 500]
                marks = ",".join("?" * len(batch))
                found.update(
                    row[0]
                    for row in self._conn.execute(
                        f"SELECT DISTINCT bsn_hash FROM terminations"  # noqa: S608 -- marks only
                        f" WHERE reopened_at IS NULL AND bsn_hash IN ({marks})",
                        batch,
                    )
                )
        return found

    def partners_for(self, bsn_hash: str) -> set[str]:
        """Who received this subject from us: whom a correction or withdrawal must reach."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT DISTINCT partner FROM disclosures_all"
                " WHERE bsn_hash = ? AND direction = 'sent'",
                (bsn_hash,),
            ).fetchall()
        return {row[0] for row in rows}

    def messages_for(self, bsn_hash: str, direction: str) -> set[str]:
        """Message ids that carried this subject (to purge their stored copies)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT DISTINCT message_id FROM disclosures_all"
                " WHERE bsn_hash = ? AND direction = ?",
                (bsn_hash, direction),
            ).fetchall()
        return {row[0] for row in rows}

    def subject(self, bsn_hash: str) -> SubjectReport:
        with self._lock:
            disclosures = self._conn.execute(
                "SELECT direction, partner, kind, category, message_id, at FROM disclosures_all"
                " WHERE bsn_hash = ? ORDER BY at, recent, id",
                (bsn_hash,),
            ).fetchall()
            terminations = self._conn.execute(
                "SELECT ground, at, ended_by, reopened_at FROM terminations"
                " WHERE bsn_hash = ? ORDER BY at, id",
                (bsn_hash,),
            ).fetchall()
        return SubjectReport(
            disclosures=tuple(Disclosure(*tuple(row)) for row in disclosures),
            terminations=tuple(Termination(*tuple(row)) for row in terminations),
        )

    def counts(self) -> dict[str, int]:
        """Row counts for status output and logs (no hashes, no partners)."""
        with self._lock:
            d = self._conn.execute("SELECT COUNT(*) FROM disclosures_all").fetchone()[0]
            t = self._conn.execute(
                "SELECT COUNT(*) FROM terminations WHERE reopened_at IS NULL"
            ).fetchone()[0]
        return {"disclosures": int(d), "ended": int(t)}

    def _active(self, bsn_hash: str) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._conn.execute(
            "SELECT id FROM terminations WHERE bsn_hash = ? AND reopened_at IS NULL LIMIT 1",
            (bsn_hash,),
        ).fetchone()
        return row


# fullmatch, not match: "$" would also accept a trailing newline.
_DIGEST: Final = re.compile("[0-9a-f]{64}").fullmatch


def _checked_hash(value: str) -> str:
    # The last line of defence against a plain BSN reaching the register: only a
    # 64-digit hex digest is accepted, which a 9-digit BSN can never be.
    if _DIGEST(value) is None:
        raise ValueError("the register stores HMAC-SHA-256 hex digests only")
    return value


def load_hash_key(key_file: Path | None = None) -> bytes:
    """The BSN hashing key: from ``key_file`` (tests, administrators' tools) or the
    systemd credential ``bsn-hash-key``. Same permission rule as credentials: a key
    others can read is a key others have, and then the register can be reversed."""
    if key_file is None:
        text = read_credential(BSN_HASH_CREDENTIAL, required=True)
        assert text is not None  # noqa: S101 -- required=True raises instead
    else:
        try:
            fd = os.open(key_file, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise OperatorInputError(
                f"hash key file {key_file} cannot be opened: {exc.strerror}"
            ) from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_mode & 0o077:
                raise OperatorInputError(
                    f"hash key file {key_file} must be a regular file of mode 0600 or 0400"
                )
            data = os.read(fd, 64 * 1024)
        finally:
            os.close(fd)
        try:
            text = data.decode("utf-8").removesuffix("\n")
        except UnicodeDecodeError:
            raise OperatorInputError(f"hash key file {key_file} is not UTF-8 text") from None
    key = text.encode("utf-8")
    if len(key) < MIN_KEY_BYTES:
        raise OperatorInputError(
            f"the BSN hashing key is shorter than {MIN_KEY_BYTES} bytes; generate one with "
            "`openssl rand -hex 32`"
        )
    return key
