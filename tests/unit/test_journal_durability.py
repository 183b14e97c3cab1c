"""A light transaction (``durable=False``) skips only its own flush: every other
commit, before and after it, still waits for the disk, also when it fails."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from exchanged.adapters.journal import Journal
from exchanged.core.machine import OutState

_FULL, _NORMAL = 2, 1


def _synchronous(journal: Journal) -> int:
    return int(journal.connection.execute("PRAGMA synchronous").fetchone()[0])


def test_a_light_transaction_commits_and_leaves_the_next_one_durable(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.sqlite")
    assert _synchronous(journal) == _FULL
    with journal.transaction(durable=False):
        assert _synchronous(journal) == _NORMAL
    assert _synchronous(journal) == _FULL
    journal.add_outgoing("m-1", "passendwijs", kind="export", state=OutState.DETECTED,
                         now=1.0, durable=False)  # fmt: skip
    assert _synchronous(journal) == _FULL
    journal.close()
    reopened = Journal(tmp_path / "journal.sqlite")
    row = reopened.outgoing("m-1")
    assert row is not None and row["state"] == OutState.DETECTED


def test_a_failed_light_transaction_rolls_back_and_leaves_the_next_one_durable(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path / "journal.sqlite")
    with pytest.raises(RuntimeError), journal.transaction(durable=False) as db:
        db.execute(
            "INSERT INTO events (at, direction, message_id, state) VALUES (1, 'out', 'm', 's')"
        )
        raise RuntimeError
    assert _synchronous(journal) == _FULL
    assert journal.connection.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 0


def test_inside_a_durable_transaction_a_light_one_is_durable_with_it(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.sqlite")
    with journal.transaction():
        with journal.transaction(durable=False):
            assert _synchronous(journal) == _FULL
        assert _synchronous(journal) == _FULL


def test_a_commit_that_fails_ends_the_transaction_and_leaves_the_next_one_durable(
    tmp_path: Path,
) -> None:
    """A constraint checked only at COMMIT (a deferred foreign key) makes the commit
    itself fail and SQLite keep the transaction open: the journal must end it."""
    journal = Journal(tmp_path / "journal.sqlite")
    with journal.transaction() as db:
        db.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        db.execute(
            "CREATE TABLE child (parent REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
        )
    with pytest.raises(sqlite3.IntegrityError), journal.transaction(durable=False) as db:
        db.execute("INSERT INTO child VALUES (99)")
    assert not journal.connection.in_transaction
    assert _synchronous(journal) == _FULL
    with journal.transaction() as db:  # the next one begins and commits
        db.execute("INSERT INTO parent VALUES (1)")
    assert journal.connection.execute("SELECT COUNT(*) FROM child").fetchone()[0] == 0
