"""Retention purge with a fake clock: a dry run removes nothing; a real run removes
exactly what the windows say, and nothing else."""

from __future__ import annotations

import os
import random
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from exchanged.adapters.disclosures import DisclosureRegister, ensure_schema
from exchanged.adapters.incident_register import ensure_schema as ensure_incident_schema
from exchanged.adapters.journal import Journal
from exchanged.config import Retention
from exchanged.core.disclosure import bsn_hash
from exchanged.core.model import MessageId
from exchanged.purge import PurgeCounts, purge, purge_main, purge_subject
from exchanged.testing.synthetic import generate_bsn

DAY = 86400.0
NOW = 1_800_000_000.0  # the fake clock
KEY = b"test-only-key-0123456789abcdef"


def _ago(days: float) -> float:
    return NOW - days * DAY


def _file(path: Path, days_old: float, text: str = "x") -> Path:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    os.utime(path, (_ago(days_old), _ago(days_old)))
    return path


def _inbox_name(what: str = "absoluut-verzuim", ext: str = "csv") -> str:
    return f"passendwijs_{what}_20250301T100000Z_{MessageId.new().value}.{ext}"


def _out(
    journal: Journal, spool: Path | None, state: str, days: float, kind: str = "export"
) -> str:
    mid = MessageId.new().value
    journal.add_outgoing(mid, "passendwijs", kind=kind, state="sealed", now=_ago(days + 1))
    stamps = {"receipted_at": _ago(days)} if state == "receipted" else {}
    if state in ("uploaded", "receipted"):
        stamps["uploaded_at"] = _ago(days)
    journal.update_outgoing(mid, now=_ago(days), state=state, **stamps)
    if spool is not None:
        _file(spool / f"{mid}.pgp", days + 1)
    return mid


def _in(journal: Journal, state: str, days: float) -> str:
    mid = MessageId.new().value
    journal.add_incoming(mid, "passendwijs", state="received", received_sha256="0" * 64,
                         now=_ago(days + 1))  # fmt: skip
    journal.update_incoming(mid, now=_ago(days), state=state)
    return mid


def _incident(db: sqlite3.Connection, status: str, days: float) -> None:
    at = datetime.fromtimestamp(_ago(days), UTC)
    db.execute(
        "INSERT INTO incident_history (incident_id, at, actor, action, changed, status, kind,"
        " partner, last_seen, state) VALUES (?, ?, 'test', 'x', '[]', ?, 'k', 'p', ?, '{}')",
        (f"inc-{status}-{days}", at.isoformat(), status, at.isoformat()),
    )


class World:
    """A state folder with exactly one item on each side of every window."""

    def __init__(self, root: Path) -> None:
        self.state = root / "state"
        self.inbox = root / "inbox"
        self.sent = root / "outbox" / "sent"
        spool = self.state / "spool"
        self.journal = Journal(self.state / "journal.sqlite")
        db = self.journal.connection
        ensure_schema(db)
        ensure_incident_schema(db)
        self.gone: set[Path] = set()
        self.gone.add(_file(self.inbox / _inbox_name(), 101))
        self.gone.add(_file(self.inbox / _inbox_name("withdrawal", "json"), 150))
        _file(self.inbox / _inbox_name(), 99)
        _file(self.inbox / "notities-van-de-operator.txt", 500)  # not ours: never touched
        _file(self.inbox / f".{_inbox_name()}.tmp", 500)  # a write in progress
        self.gone.add(_file(self.sent / "export-oud.xlsx", 101))
        _file(self.sent / "export-nieuw.xlsx", 99)
        # Spool: finished 31 days ago goes, 29 days stays, unreceipted stays whatever its age.
        self.receipted_old = _out(self.journal, spool, "receipted", 31)
        self.receipted_new = _out(self.journal, spool, "receipted", 29)
        self.awaiting = _out(self.journal, spool, "uploaded", 400)
        self.receipt_old = _out(self.journal, spool, "uploaded", 31, kind="receipt")
        self.refused_old = _out(self.journal, spool, "refused", 40)
        self.gone |= {spool / f"{m}.pgp" for m in (self.receipted_old, self.receipt_old,
                                                   self.refused_old)}  # fmt: skip
        self.gone.add(_file(spool / f"{MessageId.new().value}.pgp", 31))  # orphan
        _file(spool / f"{MessageId.new().value}.pgp", 29)  # young orphan
        # Journal: a year-old finished message whose ciphertext this run removes first.
        self.ancient = _out(self.journal, spool, "receipted", 366)
        self.gone.add(spool / f"{self.ancient}.pgp")
        self.rejected = _out(self.journal, None, "rejected", 400)
        self.answered_old = _in(self.journal, "answered", 366)
        self.answered_new = _in(self.journal, "answered", 364)
        self.delivered_old = _in(self.journal, "delivered", 400)
        # Register and incidents.
        rng = random.Random(9)  # noqa: S311 -- synthetic data
        reg = DisclosureRegister(db)
        h = [bsn_hash(KEY, generate_bsn(rng)) for _ in range(4)]
        reg.record(
            "sent", "passendwijs", "absoluut-verzuim", MessageId.new().value, [h[0]], _ago(731)
        )
        reg.record(
            "sent", "passendwijs", "absoluut-verzuim", MessageId.new().value, [h[1]], _ago(729)
        )
        reg.end_processing(h[2], "overleden", _ago(900))  # in force: kept
        reg.end_processing(h[3], "bezwaar", _ago(900))
        reg.reopen(h[3], _ago(800))
        with self.journal.transaction():
            _incident(db, "closed", 1826)
            _incident(db, "closed", 1000)
            _incident(db, "open", 2000)

    def run(self, *, dry_run: bool) -> PurgeCounts:
        with self.journal.lock:
            return purge(
                db=self.journal.connection, state_dir=self.state, inbox=self.inbox,
                sent_dirs=[self.sent], retention=Retention(), now=NOW, dry_run=dry_run,
            )  # fmt: skip

    def snapshot(self) -> tuple[set[Path], list[tuple[object, ...]]]:
        root = self.state.parent
        files = {p for p in root.rglob("*") if p.is_file() and "journal.sqlite" not in p.name}
        db = self.journal.connection
        rows: list[tuple[object, ...]] = []
        for table in ("outgoing", "incoming", "events", "disclosures_all", "terminations",
                      "incident_history"):  # fmt: skip
            rows += [(table, *r) for r in db.execute(f"SELECT * FROM {table} ORDER BY 1")]  # noqa: S608
        return files, rows


EXPECTED = PurgeCounts(
    inbox_files=2, sent_files=1, spool_files=5, journal_rows=9, disclosure_rows=2,
    incidents_eligible=1,
)  # fmt: skip


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_dry_run_counts_and_removes_nothing(world: World) -> None:
    before = world.snapshot()
    assert world.run(dry_run=True) == EXPECTED
    assert world.snapshot() == before


def test_purge_removes_exactly_what_the_windows_say(world: World) -> None:
    files_before, rows_before = world.snapshot()
    assert world.run(dry_run=False) == EXPECTED
    files_after, rows_after = world.snapshot()
    assert files_before - files_after == world.gone
    assert files_after <= files_before
    db = world.journal.connection
    outgoing = {r[0] for r in db.execute("SELECT message_id FROM outgoing")}
    assert world.ancient not in outgoing and world.rejected not in outgoing
    assert {world.receipted_old, world.receipted_new, world.awaiting, world.receipt_old,
            world.refused_old} <= outgoing  # fmt: skip
    incoming = {r[0] for r in db.execute("SELECT message_id FROM incoming")}
    assert incoming == {world.answered_new, world.delivered_old}
    events = {r[0] for r in db.execute("SELECT DISTINCT message_id FROM events")}
    assert events == outgoing | incoming  # no event outlives its message, none lost
    assert len(rows_before) - len(rows_after) == 9 + 2
    assert db.execute("SELECT COUNT(*) FROM incident_history").fetchone()[0] == 3
    # Idempotent: a second run finds nothing left to do.
    assert world.run(dry_run=False) == PurgeCounts(incidents_eligible=1)


def test_retention_windows_are_checked() -> None:
    with pytest.raises(ValueError, match="at least 1 day"):
        Retention(inbox_days=0)
    with pytest.raises(ValueError, match="max_age_seconds"):
        Retention(journal_days=7, spool_days=1).check(7 * DAY)
    with pytest.raises(ValueError, match="spool_days"):
        Retention(journal_days=20, spool_days=30).check(DAY)
    Retention().check(7 * DAY)


def test_purge_subject_erases_one_child_from_the_inbox_and_spool(tmp_path: Path) -> None:
    rng = random.Random(4)  # noqa: S311
    gone, stays = generate_bsn(rng), generate_bsn(rng)
    inbox, spool = tmp_path / "inbox", tmp_path / "spool"
    shared = _file(inbox / _inbox_name(), 1,
                   f"bsn;achternaam\r\n{gone};Kempers\r\n{stays};Smeenk\r\n")  # fmt: skip
    alone = _file(inbox / _inbox_name("langdurig-verzuim"), 1, f"bsn;achternaam\r\n{gone};K\r\n")
    other = _file(inbox / _inbox_name("vrijstelling-5a"), 1, f"bsn;achternaam\r\n{stays};S\r\n")
    shared.chmod(0o600)  # as the daemon writes it
    carried, kept = MessageId.new().value, MessageId.new().value
    _file(spool / f"{carried}.pgp", 1)
    _file(spool / f"{kept}.pgp", 1)
    result = purge_subject(inbox, spool, gone, [carried])
    assert (result.inbox_rows, result.inbox_files_rewritten, result.inbox_files_removed,
            result.spool_files) == (2, 1, 1, 1)  # fmt: skip
    assert not alone.exists() and not (spool / f"{carried}.pgp").exists()
    assert gone not in shared.read_text(encoding="utf-8-sig")
    assert stays in shared.read_text(encoding="utf-8-sig")
    assert shared.stat().st_mode & 0o777 == 0o600
    assert other.read_bytes() == f"bsn;achternaam\r\n{stays};S\r\n".encode()
    assert (spool / f"{kept}.pgp").exists()


def test_purge_command_dry_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for folder in ("gnupg", "outbox", "state"):
        (tmp_path / folder).mkdir(mode=0o700)
    key_file = tmp_path / "id_ed25519"
    key_file.write_text("not a real key\n")
    key_file.chmod(0o600)
    config = tmp_path / "exchanged.toml"
    config.write_text(
        f'party = "rbl"\nstate_dir = "{tmp_path / "state"}"\ninbox = "{tmp_path / "inbox"}"\n'
        f'[gpg]\nhome = "{tmp_path / "gnupg"}"\nfingerprint = "{"A" * 40}"\n'
        f'[[outbox]]\npath = "{tmp_path / "outbox"}"\npartner = "passendwijs"\n'
        'category = "subfolder"\n'
        f'[[partner]]\nid = "passendwijs"\nname = "Passend Wijs"\nfingerprint = "{"B" * 40}"\n'
        'remote_dir = "incoming"\nreceive = "poll"\npoll_dir = "outgoing"\n'
        f'[partner.sftp]\nhost = "127.0.0.1"\nuser = "rbl"\nkey_file = "{key_file}"\n'
        'host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample"\n',
        encoding="utf-8",
    )
    Journal(tmp_path / "state" / "journal.sqlite").close()
    old = _file(tmp_path / "inbox" / _inbox_name(), 1000)
    assert purge_main(["--dry-run", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert "dry run" in out and "inbox_files: would remove" in out
    assert old.exists()
    assert purge_main(["-c", str(config)]) == 0
    assert "inbox_files: removed 1" in capsys.readouterr().out
    assert not old.exists()
