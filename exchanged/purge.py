"""Retention: ``exchanged purge [--dry-run] [-c CONFIG]``, and a subject's purge when its
processing ends.

Each class of stored data has its own window (``Retention``); ``purge`` removes what
is older and reports counts per class. ``--dry-run`` counts the same things and
removes nothing: journal changes run in a transaction that is rolled back, files are
only counted. Logs and output carry counts only.

Order inside one run matters: spool ciphertext goes before the journal rows that
describe it, so no ``.pgp`` is ever left without the row that says what it is.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import re
import sqlite3
import stat
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from exchanged.config import Retention
from exchanged.core.model import MESSAGE_ID_PATTERN
from exchanged.errors import EXIT_OK
from exchanged.inbox import INBOX_NAME

if TYPE_CHECKING:
    pass

__all__ = ["PurgeCounts", "SubjectPurge", "purge", "purge_main", "purge_subject"]

_PROG = "exchanged purge"
_DAY: Final = 86400.0
_WIRE_NAME: Final = re.compile(rf"^{MESSAGE_ID_PATTERN}$")


@dataclass(frozen=True, slots=True)
class PurgeCounts:
    inbox_files: int = 0
    sent_files: int = 0
    spool_files: int = 0
    journal_rows: int = 0
    disclosure_rows: int = 0
    incidents_eligible: int = 0  # closed incidents past the window (see note below)


@dataclass(frozen=True, slots=True)
class SubjectPurge:
    inbox_rows: int = 0
    inbox_files_rewritten: int = 0
    inbox_files_removed: int = 0
    spool_files: int = 0


# -- files --------------------------------------------------------------------------


def _old_files(folder: Path, cutoff: float, pattern: re.Pattern[str] | None) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file()
        and not p.is_symlink()
        and not p.name.startswith(".")  # temp files of a write in progress
        and (pattern is None or pattern.match(p.name))
        and p.stat().st_mtime < cutoff
    )


def _remove(paths: Iterable[Path], dry_run: bool) -> int:
    count = 0
    for path in paths:
        if not dry_run:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        count += 1
    return count


def _spool_victims(db: sqlite3.Connection, spool: Path, cutoff: float) -> list[Path]:
    """Ciphertext whose message is finished: receipted or refused before ``cutoff``,
    our receipts uploaded before it, and orphans (no journal row) older than it."""
    victims: list[Path] = []
    for path in sorted(spool.glob("*.pgp")) if spool.is_dir() else ():
        if not _WIRE_NAME.match(path.stem):
            continue
        row = db.execute(
            "SELECT kind, state, receipted_at, uploaded_at, updated_at FROM outgoing"
            " WHERE message_id = ?",
            (path.stem,),
        ).fetchone()
        if row is None:
            done = path.stat().st_mtime
        elif row[1] == "receipted":
            done = row[2] or row[4]
        elif row[1] == "refused":
            done = row[4]
        elif row[0] == "receipt" and row[1] == "uploaded":
            done = row[3] or row[4]
        else:
            continue  # still our responsibility: it may have to be sent again
        if done < cutoff:
            victims.append(path)
    return victims


# -- journal ------------------------------------------------------------------------


def _purge_journal(
    db: sqlite3.Connection, spool: Path, cutoff: float, gone: frozenset[str] = frozenset()
) -> int:
    """Finished messages older than ``cutoff`` whose ciphertext is gone (or in
    ``gone``: a dry run's spool files that a real run would have removed first), and
    their events. Runs inside the caller's transaction."""
    removed = 0
    rows = db.execute(
        "SELECT message_id FROM outgoing WHERE updated_at < ? AND (state IN"
        " ('receipted', 'refused', 'rejected') OR (kind = 'receipt' AND state = 'uploaded'))",
        (cutoff,),
    ).fetchall()
    done = [r[0] for r in rows if r[0] in gone or not (spool / f"{r[0]}.pgp").exists()]
    for message_id in done:
        removed += db.execute("DELETE FROM outgoing WHERE message_id = ?", (message_id,)).rowcount
    removed += db.execute(
        "DELETE FROM incoming WHERE state = 'answered' AND updated_at < ?", (cutoff,)
    ).rowcount
    removed += db.execute(
        "DELETE FROM events WHERE at < ? AND message_id NOT IN (SELECT message_id FROM outgoing)"
        " AND message_id NOT IN (SELECT message_id FROM incoming)",
        (cutoff,),
    ).rowcount
    return removed


def _closed_incidents_before(db: sqlite3.Connection, cutoff: float) -> int:
    try:
        rows = db.execute(
            "SELECT h.status, h.at FROM incident_history h WHERE h.seq ="
            " (SELECT MAX(seq) FROM incident_history WHERE incident_id = h.incident_id)"
        ).fetchall()
    except sqlite3.OperationalError:
        return 0  # no incident register in this journal yet
    return sum(
        1
        for status, at in rows
        if status == "closed" and datetime.fromisoformat(at).timestamp() < cutoff
    )


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection, *, commit: bool) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT" if commit else "ROLLBACK")


# -- the whole run --------------------------------------------------------------------


def purge(
    *,
    db: sqlite3.Connection,
    state_dir: Path,
    inbox: Path,
    sent_dirs: Iterable[Path],
    retention: Retention,
    now: float,
    dry_run: bool,
) -> PurgeCounts:
    """Apply ``retention`` as of ``now`` (the caller's clock). ``db`` is the journal's
    connection in autocommit mode (``isolation_level=None``), not in a transaction."""
    from exchanged.adapters.disclosures import DisclosureRegister, ensure_schema

    def cutoff(days: int) -> float:
        return now - days * _DAY

    spool = state_dir / "spool"
    inbox_files = _remove(_old_files(inbox, cutoff(retention.inbox_days), INBOX_NAME), dry_run)
    sent_files = sum(
        _remove(_old_files(folder, cutoff(retention.sent_days), None), dry_run)
        for folder in sent_dirs
    )
    victims = _spool_victims(db, spool, cutoff(retention.spool_days))
    spool_files = _remove(victims, dry_run)
    # A dry run leaves the files, so the journal step is told which ones a real run
    # would already have removed.
    gone = frozenset(p.stem for p in victims) if dry_run else frozenset()
    ensure_schema(db)
    with _transaction(db, commit=not dry_run):
        journal_rows = _purge_journal(db, spool, cutoff(retention.journal_days), gone)
        disclosure_rows = DisclosureRegister(db).purge_before(cutoff(retention.disclosures_days))
        incidents = _closed_incidents_before(db, cutoff(retention.incidents_days))
    return PurgeCounts(
        inbox_files=inbox_files,
        sent_files=sent_files,
        spool_files=spool_files,
        journal_rows=journal_rows,
        disclosure_rows=disclosure_rows,
        incidents_eligible=incidents,
    )


# -- one subject (processing ended) ---------------------------------------------------


def _rewrite_without(path: Path, bsn: str) -> tuple[int, bool]:
    """Drop ``bsn``'s rows from one inbox CSV; (rows removed, file removed)."""
    from exchanged.adapters.files import write_atomic

    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle, delimiter=";"))
    if not rows or "bsn" not in rows[0]:
        return 0, False
    column = rows[0].index("bsn")
    kept = [rows[0], *(r for r in rows[1:] if len(r) <= column or r[column] != bsn)]
    removed = len(rows) - len(kept)
    if not removed:
        return 0, False
    if len(kept) == 1:
        path.unlink()
        return removed, True
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=";").writerows(kept)
    # Operators who could read the file (share_with_operators) still can; nobody else.
    mode = 0o640 if path.stat().st_mode & stat.S_IRGRP else 0o600
    write_atomic(path, [buffer.getvalue().encode("utf-8-sig")], mode)
    return removed, False


def purge_subject(inbox: Path, spool: Path, bsn: str, message_ids: Iterable[str]) -> SubjectPurge:
    """Erase one subject's plaintext from the inbox archive, and the ciphertext of
    the finished messages that carried it (``message_ids``: receipted ones only; a
    message still awaiting its receipt stays our responsibility and is kept).

    The withdrawal notice itself stays in the inbox: the operator needs it to act,
    and the inbox window removes it like any delivered file."""
    rows = rewritten = files_removed = 0
    for path in sorted(inbox.glob("*.csv")) if inbox.is_dir() else ():
        if not INBOX_NAME.match(path.name):
            continue
        count, gone = _rewrite_without(path, bsn)
        rows += count
        files_removed += gone
        rewritten += bool(count) and not gone
    spool_files = _remove(
        (p for m in message_ids if (p := spool / f"{m}.pgp").exists()), dry_run=False
    )
    return SubjectPurge(rows, rewritten, files_removed, spool_files)


# -- the command ------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    from exchanged.commandline import DEFAULT_CONFIG, CommandParser

    parser = CommandParser(prog=_PROG, description="Remove data older than its retention window.")
    parser.add_argument("--dry-run", action="store_true", help="count only; remove nothing")
    parser.add_argument(
        "-c", "--config", type=Path, default=DEFAULT_CONFIG, metavar="CONFIG",
        help="configuration file (default: %(default)s)",
    )  # fmt: skip
    return parser


def _run(args: argparse.Namespace) -> int:
    from exchanged.commandline import open_journal
    from exchanged.config import load_config

    config = load_config(args.config)
    retention = config.retention
    retention.check(config.limits.max_age_seconds)
    journal = open_journal(config.state_dir)
    try:
        with journal.lock:
            counts = purge(
                db=journal.connection,
                state_dir=config.state_dir,
                inbox=config.inbox,
                sent_dirs=sorted({o.path / "sent" for o in config.outboxes}),
                retention=retention,
                now=time.time(),
                dry_run=args.dry_run,
            )
    finally:
        journal.close()
    verb = "would remove" if args.dry_run else "removed"
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    print(f"purge {stamp} ({'dry run' if args.dry_run else 'applied'}):")
    for name, value in asdict(counts).items():
        if name == "incidents_eligible":
            print(f"  closed incidents past {retention.incidents_days} days: {value} (kept;"
                  " the incident register is append-only)")  # fmt: skip
        else:
            print(f"  {name}: {verb} {value}")
    return EXIT_OK


def purge_main(argv: list[str]) -> int:
    """Run the purge command; returns the exit code."""
    from exchanged.commandline import run_command

    return run_command(_PROG, _parser(), _run, argv)
