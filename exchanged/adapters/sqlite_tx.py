"""One write transaction on a shared SQLite connection, for the registers that keep
their tables in the journal.

On its own it is ``BEGIN IMMEDIATE`` (the write lock up front, so it never fails half
way on a lock upgrade with another process); inside a caller's transaction it is a
savepoint, so a register entry commits together with the journal state it belongs to.
SQLite's own errors (disk full, read-only folder) become LocalSystemError: this
machine's fault, retried by the daemon rather than fatal.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from exchanged.errors import LocalSystemError

__all__ = ["write_transaction"]


@contextmanager
def write_transaction(conn: sqlite3.Connection, savepoint: str) -> Iterator[None]:
    try:
        if conn.in_transaction:
            conn.execute(f"SAVEPOINT {savepoint}")
            try:
                yield
            except BaseException:
                conn.execute(f"ROLLBACK TO {savepoint}")
                conn.execute(f"RELEASE {savepoint}")
                raise
            conn.execute(f"RELEASE {savepoint}")
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        raise LocalSystemError(f"the journal cannot be written: {exc}") from exc
