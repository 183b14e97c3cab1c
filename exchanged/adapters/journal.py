"""The journal: durable delivery state in SQLite (WAL, synchronous=FULL, one writer).

The service commits the next state here *before* it performs the state's effects, so
after a crash the journal says exactly what to replay. One connection is shared by the
daemon's threads behind a lock; every write is an explicit transaction. A transaction
may be light (``durable=False``): not flushed on its own, but on disk before any later
durable one is (see ``Journal.transaction``).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from exchanged.errors import LocalSystemError

__all__ = ["Journal"]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS outgoing (
    message_id   TEXT PRIMARY KEY,
    partner      TEXT NOT NULL,
    kind         TEXT NOT NULL DEFAULT 'export',
    category     TEXT,
    state        TEXT NOT NULL,
    source_key   TEXT,              -- digest of the operator's file, never its name
    source_path  TEXT,              -- where the file lies now (local only; never logged)
    record_count INTEGER,
    sha256       TEXT,              -- of the ciphertext as uploaded
    size         INTEGER,
    in_reply_to  TEXT,              -- for receipts: the message answered
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL,
    uploaded_at  REAL,
    receipted_at REAL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0,
    last_error   TEXT
);
CREATE INDEX IF NOT EXISTS outgoing_state ON outgoing(state, partner);
CREATE INDEX IF NOT EXISTS outgoing_source ON outgoing(source_key);
CREATE TABLE IF NOT EXISTS incoming (
    message_id      TEXT PRIMARY KEY,  -- the UUID of the wire name
    partner         TEXT NOT NULL,
    kind            TEXT,
    category        TEXT,
    state           TEXT NOT NULL,
    received_sha256 TEXT NOT NULL,
    disposition     TEXT,
    record_count    INTEGER,
    receipt_id      TEXT,              -- the outgoing receipt that answers it
    received_at     REAL NOT NULL,
    updated_at      REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id         INTEGER PRIMARY KEY,
    at         REAL NOT NULL,
    direction  TEXT NOT NULL,
    message_id TEXT NOT NULL,
    state      TEXT NOT NULL
);
"""

_OUT_COLUMNS: Final = frozenset(
    {
        "category", "state", "source_key", "source_path", "record_count", "sha256", "size",
        "uploaded_at", "receipted_at", "attempts", "next_attempt", "last_error",
    }
)  # fmt: skip
_IN_COLUMNS: Final = frozenset(
    {"kind", "category", "state", "disposition", "record_count", "receipt_id"}
)
# UPDATE statements by (table, columns in call order), checked and built once: callers
# use a handful of combinations, and the same text also hits sqlite3's statement cache.
_UPDATES: Final[dict[tuple[str, tuple[str, ...]], str]] = {}


class Journal:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a transaction
        # takes the write lock up front and never fails half-way on an upgrade.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        path.chmod(0o600)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self.lock = threading.RLock()
        self._depth = 0
        with self.lock:
            self._db.executescript(_SCHEMA)

    @property
    def connection(self) -> sqlite3.Connection:
        """For modules that keep their own tables in the journal (incident register);
        use it only inside ``transaction()``."""
        return self._db

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One atomic unit of work. Nested calls join the outer transaction, so a caller
        can group several journal writes (e.g. a receipt and the message it answers).

        ``durable=False`` commits without waiting for the disk: the transaction is in
        the log before anything after it, and on disk with the next durable commit (or
        checkpoint), since the log is written in order. A power failure (not a killed
        daemon: the log is in the page cache) may lose it and later light ones, never
        an earlier commit. For rows whose loss means the work is done again from the
        start (a message begun, not yet sealed), this saves one flush per message on the
        path every message takes."""
        with self.lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self._db
                finally:
                    self._depth -= 1
                return
            try:
                if not durable:
                    self._db.execute("PRAGMA synchronous=NORMAL")
                try:
                    self._db.execute("BEGIN IMMEDIATE")
                    self._depth = 1
                    try:
                        yield self._db
                    except BaseException:
                        if self._db.in_transaction:
                            self._db.execute("ROLLBACK")
                        raise
                    else:
                        try:
                            self._db.execute("COMMIT")
                        except BaseException:
                            # A commit that failed (busy, disk full) may leave the
                            # transaction open: end it, or nothing after could begin.
                            if self._db.in_transaction:
                                self._db.execute("ROLLBACK")
                            raise
                    finally:
                        self._depth = 0
                finally:
                    if not durable:  # outside any transaction here, where it can be set
                        self._db.execute("PRAGMA synchronous=FULL")
            except sqlite3.OperationalError as exc:
                # Disk full, read-only state folder, I/O error: this machine's fault. The
                # caller leaves the work where it is and retries later.
                raise LocalSystemError(f"the journal cannot be written: {exc}") from exc

    def close(self) -> None:
        with self.lock:
            self._db.close()

    # -- outgoing -------------------------------------------------------------------

    def add_outgoing(
        self,
        message_id: str,
        partner: str,
        *,
        kind: str,
        state: str,
        now: float,
        category: str | None = None,
        source_key: str | None = None,
        source_path: str | None = None,
        in_reply_to: str | None = None,
        durable: bool = True,
    ) -> None:
        with self.transaction(durable=durable) as db:
            db.execute(
                "INSERT INTO outgoing (message_id, partner, kind, category, state, source_key,"
                " source_path, in_reply_to, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (message_id, partner, kind, category, state, source_key, source_path,
                 in_reply_to, now, now),
            )  # fmt: skip
            self._event(db, now, "out", message_id, state)

    def update_outgoing(self, message_id: str, *, now: float, **fields: Any) -> None:
        self._update("outgoing", _OUT_COLUMNS, message_id, now=now, direction="out", fields=fields)

    def forget_outgoing(self, message_id: str) -> None:
        """Drop a message that never got past minimising (an attempt cut short by a
        crash); nothing of it left this machine, so there is nothing to account for."""
        with self.transaction() as db:
            db.execute(
                "DELETE FROM outgoing WHERE message_id = ? AND state IN ('detected', 'minimised')",
                (message_id,),
            )

    def outgoing(self, message_id: str) -> sqlite3.Row | None:
        return self._row("SELECT * FROM outgoing WHERE message_id = ?", (message_id,))

    def outgoing_by_source(self, source_key: str) -> list[sqlite3.Row]:
        return self._rows("SELECT * FROM outgoing WHERE source_key = ?", (source_key,))

    def outgoing_in(self, states: Sequence[str], *, kind: str | None = None) -> list[sqlite3.Row]:
        marks = ",".join("?" * len(states))
        query = f"SELECT * FROM outgoing WHERE state IN ({marks})"  # noqa: S608 -- marks only
        params: list[Any] = list(states)
        if kind is not None:
            query += " AND kind = ?"
            params.append(kind)
        return self._rows(query + " ORDER BY created_at", params)

    # -- incoming -------------------------------------------------------------------

    def add_incoming(
        self,
        message_id: str,
        partner: str,
        *,
        state: str,
        received_sha256: str,
        now: float,
        durable: bool = True,
    ) -> None:
        with self.transaction(durable=durable) as db:
            db.execute(
                "INSERT INTO incoming (message_id, partner, state, received_sha256, received_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                (message_id, partner, state, received_sha256, now, now),
            )
            self._event(db, now, "in", message_id, state)

    def update_incoming(self, message_id: str, *, now: float, **fields: Any) -> None:
        self._update("incoming", _IN_COLUMNS, message_id, now=now, direction="in", fields=fields)

    def incoming(self, message_id: str) -> sqlite3.Row | None:
        return self._row("SELECT * FROM incoming WHERE message_id = ?", (message_id,))

    def incoming_in(self, states: Sequence[str]) -> list[sqlite3.Row]:
        marks = ",".join("?" * len(states))
        return self._rows(
            f"SELECT * FROM incoming WHERE state IN ({marks}) ORDER BY received_at",  # noqa: S608 -- placeholders only
            list(states),
        )

    # -- summaries ------------------------------------------------------------------

    def counts(self) -> dict[str, dict[str, dict[str, int]]]:
        """{direction: {partner: {state: n}}} for status and the demo."""
        result: dict[str, dict[str, dict[str, int]]] = {"out": {}, "in": {}}
        for direction, table in (("out", "outgoing"), ("in", "incoming")):
            for row in self._rows(
                f"SELECT partner, state, COUNT(*) FROM {table}"  # noqa: S608 -- fixed names
                " WHERE kind IS NOT 'receipt' GROUP BY partner, state",
                (),
            ):
                result[direction].setdefault(row[0], {})[row[1]] = row[2]
        return result

    # -- internals ------------------------------------------------------------------

    def _rows(self, query: str, params: Sequence[Any]) -> list[sqlite3.Row]:
        try:
            with self.lock:
                return self._db.execute(query, params).fetchall()
        except sqlite3.OperationalError as exc:
            raise LocalSystemError(f"the journal cannot be read: {exc}") from exc

    def _row(self, query: str, params: Sequence[Any]) -> sqlite3.Row | None:
        try:
            with self.lock:
                row: sqlite3.Row | None = self._db.execute(query, params).fetchone()
                return row
        except sqlite3.OperationalError as exc:
            raise LocalSystemError(f"the journal cannot be read: {exc}") from exc

    def _update(
        self,
        table: str,
        allowed: frozenset[str],
        message_id: str,
        *,
        now: float,
        direction: str,
        fields: dict[str, Any],
    ) -> None:
        names = tuple(fields)
        query = _UPDATES.get((table, names))
        if query is None:
            unknown = set(names) - allowed
            if unknown:
                raise ValueError(f"not a {table} column: {sorted(unknown)}")
            assignments = "".join(f"{name} = ?, " for name in names)
            query = f"UPDATE {table} SET {assignments}updated_at = ? WHERE message_id = ?"  # noqa: S608 -- names from allow-list
            _UPDATES[(table, names)] = query
        with self.transaction() as db:
            cursor = db.execute(query, (*fields.values(), now, message_id))
            if cursor.rowcount != 1:
                raise KeyError(f"{table}: no message {message_id}")
            if "state" in fields:
                self._event(db, now, direction, message_id, fields["state"])

    @staticmethod
    def _event(db: sqlite3.Connection, now: float, direction: str, mid: str, state: str) -> None:
        db.execute(
            "INSERT INTO events (at, direction, message_id, state) VALUES (?, ?, ?, ?)",
            (now, direction, mid, state),
        )
