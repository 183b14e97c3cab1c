"""The disclosure register on the real journal file: what it records, terminations,
purge, and that no plain BSN ever reaches the database file."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchanged.adapters.disclosures import DisclosureRegister, ensure_schema
from exchanged.adapters.journal import Journal
from exchanged.core.disclosure import bsn_hash
from exchanged.core.model import MessageId
from exchanged.subject_cmd import subject_main
from exchanged.testing.synthetic import generate_bsn

KEY = b"test-only-key-0123456789abcdef"
T0 = 1_740_000_000.0  # 2025-02-19, a fixed clock
DAY = 86400.0


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "state" / "journal.sqlite")
    ensure_schema(j.connection)
    ensure_schema(j.connection)  # idempotent: called on every start
    yield j
    j.close()


@pytest.fixture
def reg(journal: Journal) -> DisclosureRegister:
    return DisclosureRegister(journal.connection, lock=journal.lock)


def _bsns(n: int, seed: int = 3) -> list[str]:
    rng = random.Random(seed)  # noqa: S311 -- synthetic data
    found: list[str] = []
    while len(found) < n:
        bsn = generate_bsn(rng)
        if bsn not in found:
            found.append(bsn)
    return found


def _h(bsn: str) -> str:
    return bsn_hash(KEY, bsn)


def test_record_subject_partners_and_idempotence(reg: DisclosureRegister) -> None:
    a, b = _bsns(2)
    m1, m2, m3 = (MessageId.new().value for _ in range(3))
    assert reg.record("sent", "passendwijs", "absoluut-verzuim", m1, [_h(a), _h(b)], T0) == 2
    assert reg.record("sent", "passendwijs", "absoluut-verzuim", m1, [_h(a), _h(b)], T0) == 0
    reg.record("sent", "deliemers", "langdurig-verzuim", m2, [_h(a)], T0 + 10)
    reg.record("received", "passendwijs", "absoluut-verzuim", m3, [_h(a)], T0 + 20)
    report = reg.subject(_h(a))
    assert [(d.direction, d.partner, d.category, d.message_id) for d in report.disclosures] == [
        ("sent", "passendwijs", "absoluut-verzuim", m1),
        ("sent", "deliemers", "langdurig-verzuim", m2),
        ("received", "passendwijs", "absoluut-verzuim", m3),
    ]
    assert reg.partners_for(_h(a)) == {"passendwijs", "deliemers"}
    assert reg.partners_for(_h(b)) == {"passendwijs"}
    assert reg.messages_for(_h(a), "sent") == {m1, m2}
    assert not reg.subject(_h(_bsns(3)[2])).known


def _rows_in(journal: Journal, table: str) -> int:
    return int(journal.connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])  # noqa: S608


def test_settling_moves_the_recent_rows_and_readers_see_the_same_before_and_after(
    journal: Journal, reg: DisclosureRegister
) -> None:
    """Rows are appended first and moved into the subject index when the daemon is
    quiet; nothing a reader asks changes with the move, and a replay adds nothing on
    either side of it."""
    a, b, c = _bsns(3)
    m1, m2, m3 = (MessageId.new().value for _ in range(3))
    reg.record("sent", "passendwijs", "absoluut-verzuim", m1, [_h(a), _h(b)], T0)
    reg.record("sent", "deliemers", "langdurig-verzuim", m2, [_h(a)], T0 + 10)

    def seen() -> tuple[object, ...]:
        return (
            reg.subject(_h(a)),
            reg.subject(_h(b)),
            reg.partners_for(_h(a)),
            reg.messages_for(_h(a), "sent"),
            reg.counts(),
        )

    before = seen()
    assert reg.waiting() == 3
    assert reg.settle() == 3
    assert reg.waiting() == 0
    assert (_rows_in(journal, "disclosures"), _rows_in(journal, "disclosures_recent")) == (3, 0)
    assert seen() == before
    # A replay of a settled message, and of one still recent, adds nothing.
    assert reg.record("sent", "passendwijs", "absoluut-verzuim", m1, [_h(a), _h(b)], T0) == 0
    assert reg.record("received", "passendwijs", None, m3, [_h(c)], T0 + 20) == 1
    assert reg.record("received", "passendwijs", None, m3, [_h(c)], T0 + 20) == 0
    assert reg.counts()["disclosures"] == 4
    assert reg.settle() == 1
    assert reg.settle() == 0
    assert reg.counts()["disclosures"] == 4
    assert reg.subject(_h(c)).disclosures[0].message_id == m3


def test_settling_moves_the_oldest_rows_a_bounded_number_at_a_time(
    journal: Journal, reg: DisclosureRegister
) -> None:
    a, b, c = _bsns(3)
    first, second = MessageId.new().value, MessageId.new().value
    reg.record("sent", "passendwijs", "absoluut-verzuim", first, [_h(a), _h(b)], T0)
    reg.record("sent", "passendwijs", "absoluut-verzuim", second, [_h(c)], T0 + 1)
    before = reg.counts()
    assert reg.settle(limit=2) == 2
    assert (_rows_in(journal, "disclosures"), _rows_in(journal, "disclosures_recent")) == (2, 1)
    assert reg.messages_for(_h(a), "sent") == {first}  # the oldest moved first
    assert reg.messages_for(_h(c), "sent") == {second}  # the rest still seen
    assert reg.counts() == before
    assert reg.settle(limit=2) == 1
    assert reg.waiting() == 0


def test_a_message_split_by_a_bounded_move_is_still_known_whole(
    journal: Journal, reg: DisclosureRegister
) -> None:
    a, b = _bsns(2)
    mid = MessageId.new().value
    assert reg.record("sent", "passendwijs", "absoluut-verzuim", mid, [_h(a), _h(b)], T0) == 2
    assert reg.settle(limit=1) == 1  # one row of the message moved, one still recent
    assert (_rows_in(journal, "disclosures"), _rows_in(journal, "disclosures_recent")) == (1, 1)
    assert reg.record("sent", "passendwijs", "absoluut-verzuim", mid, [_h(a), _h(b)], T0) == 0
    assert reg.settle() == 1
    assert reg.counts()["disclosures"] == 2


def test_rows_of_the_same_moment_keep_their_order_across_a_move(reg: DisclosureRegister) -> None:
    a, b = _bsns(2)
    first, second = MessageId.new().value, MessageId.new().value
    reg.record("sent", "passendwijs", "absoluut-verzuim", MessageId.new().value, [_h(b)], T0)
    reg.record("sent", "passendwijs", "absoluut-verzuim", first, [_h(a)], T0)
    reg.settle()  # ``first`` is the second settled row; the recent table's ids restart
    reg.record("sent", "deliemers", "absoluut-verzuim", second, [_h(a)], T0)  # same time
    before = [d.message_id for d in reg.subject(_h(a)).disclosures]
    reg.settle()
    assert before == [d.message_id for d in reg.subject(_h(a)).disclosures] == [first, second]


def test_settling_until_nothing_moves_empties_the_recent_table_even_past_a_known_row(
    journal: Journal, reg: DisclosureRegister
) -> None:
    """A row the indexed table already has (never written so by the register itself,
    but a journal is a file others can touch) still leaves, and counts as moved, so a
    caller that settles until 0 does not stop before the rows after it."""
    a, b = _bsns(2)
    first = MessageId.new().value
    reg.record("sent", "passendwijs", "absoluut-verzuim", first, [_h(a)], T0)
    reg.settle()
    journal.connection.execute(  # the same row once more, recent
        "INSERT INTO disclosures_recent (bsn_hash, partner, direction, kind, category,"
        " message_id, at) SELECT bsn_hash, partner, direction, kind, category, message_id,"
        " at FROM disclosures"
    )
    reg.record("sent", "passendwijs", "absoluut-verzuim", MessageId.new().value, [_h(b)], T0)
    while reg.settle(limit=1):
        pass
    assert reg.waiting() == 0
    assert _rows_in(journal, "disclosures") == 2


def test_purge_reaches_rows_not_yet_settled(reg: DisclosureRegister) -> None:
    a, b = _bsns(2)
    reg.record("sent", "passendwijs", "absoluut-verzuim", MessageId.new().value, [_h(a)], T0)
    reg.settle()
    reg.record("sent", "passendwijs", "absoluut-verzuim", MessageId.new().value, [_h(b)], T0)
    assert reg.purge_before(T0 + DAY, dry_run=True) == 2
    assert reg.purge_before(T0 + DAY) == 2
    assert reg.counts()["disclosures"] == 0
    assert not reg.subject(_h(a)).known and not reg.subject(_h(b)).known


def test_the_register_refuses_anything_but_a_digest(reg: DisclosureRegister) -> None:
    (a,) = _bsns(1)
    with pytest.raises(ValueError, match="digests only"):
        reg.record("sent", "passendwijs", "absoluut-verzuim", MessageId.new().value, [a], T0)
    with pytest.raises(ValueError, match="direction"):
        reg.record("forwarded", "x", None, MessageId.new().value, [_h(a)], T0)


def test_end_reopen_and_ended_among(reg: DisclosureRegister) -> None:
    a, b = _bsns(2)
    assert not reg.is_ended(_h(a))
    assert reg.end_processing(_h(a), "terug-naar-school", T0)
    assert not reg.end_processing(_h(a), "overleden", T0 + 1)  # the first ground stands
    assert reg.is_ended(_h(a)) and not reg.is_ended(_h(b))
    assert reg.ended_among([_h(a), _h(b), _h(a)]) == {_h(a)}
    ended = reg.subject(_h(a)).ended
    assert ended is not None and ended.ground == "terug-naar-school"
    assert ended.ended_by == "local"
    assert reg.reopen(_h(a), T0 + 5)
    assert not reg.reopen(_h(a), T0 + 6)
    assert not reg.is_ended(_h(a))
    assert reg.end_processing(_h(a), "bezwaar", T0 + 7, ended_by="passendwijs")
    report = reg.subject(_h(a))
    assert [t.ground for t in report.terminations] == ["terug-naar-school", "bezwaar"]
    assert report.ended is not None and report.ended.ended_by == "passendwijs"


def test_a_write_joins_the_callers_transaction(journal: Journal, reg: DisclosureRegister) -> None:
    (a,) = _bsns(1)
    mid = MessageId.new().value
    with pytest.raises(RuntimeError), journal.transaction():
        journal.add_outgoing(mid, "passendwijs", kind="export", state="detected", now=T0)
        reg.record("sent", "passendwijs", "absoluut-verzuim", mid, [_h(a)], T0)
        raise RuntimeError("crash before commit")
    assert journal.outgoing(mid) is None
    assert not reg.subject(_h(a)).known  # rolled back together with the journal row


def test_a_failed_write_inside_the_callers_transaction_adds_nothing(
    journal: Journal, reg: DisclosureRegister
) -> None:
    a, b, c = _bsns(3)
    earlier, mid = MessageId.new().value, MessageId.new().value
    reg.record("sent", "passendwijs", "absoluut-verzuim", earlier, [_h(a)], T0)
    with journal.transaction():
        journal.add_outgoing(mid, "passendwijs", kind="export", state="detected", now=T0)
        with pytest.raises(ValueError, match="digests only"):
            # The third value is refused after two rows went in: both must go again.
            reg.record("sent", "passendwijs", "absoluut-verzuim", mid, [_h(b), _h(c), a], T0)
        # The caller carries on: its own write and the earlier entries stand, and the
        # same message can still be registered whole.
        assert reg.counts()["disclosures"] == 1
        assert reg.record("sent", "passendwijs", "absoluut-verzuim", mid, [_h(b), _h(c)], T0) == 2
    assert journal.outgoing(mid) is not None
    assert reg.messages_for(_h(a), "sent") == {earlier}
    assert reg.messages_for(_h(b), "sent") == {mid} == reg.messages_for(_h(c), "sent")
    assert reg.counts()["disclosures"] == 3


def test_purge_before_keeps_terminations_in_force(reg: DisclosureRegister) -> None:
    a, b, c = _bsns(3)
    reg.record("sent", "passendwijs", "absoluut-verzuim", MessageId.new().value, [_h(a)], T0)
    reg.record(
        "sent", "passendwijs", "absoluut-verzuim", MessageId.new().value, [_h(b)], T0 + 9 * DAY
    )
    reg.end_processing(_h(a), "overleden", T0)
    reg.end_processing(_h(c), "bezwaar", T0)
    reg.reopen(_h(c), T0 + DAY)
    cutoff = T0 + 5 * DAY
    assert reg.purge_before(cutoff, dry_run=True) == 2
    assert reg.counts() == {"disclosures": 2, "ended": 1}
    assert reg.purge_before(cutoff) == 2
    assert not reg.subject(_h(a)).disclosures and reg.is_ended(_h(a))
    assert reg.subject(_h(b)).disclosures
    assert not reg.subject(_h(c)).known


def test_no_plain_bsn_in_the_database_file(
    journal: Journal, reg: DisclosureRegister, tmp_path: Path
) -> None:
    bsns = _bsns(200, seed=11)
    for start in range(0, 200, 50):
        hashes = [_h(b) for b in bsns[start : start + 50]]
        reg.record("sent", "passendwijs", "langdurig-verzuim", MessageId.new().value, hashes, T0)
        reg.record(
            "received", "passendwijs", "langdurig-verzuim", MessageId.new().value, hashes, T0
        )
    for bsn in bsns[:20]:
        reg.end_processing(_h(bsn), "startkwalificatie", T0)
    journal.connection.execute("PRAGMA wal_checkpoint(FULL)")
    files = list((tmp_path / "state").glob("journal.sqlite*"))
    data = b"".join(p.read_bytes() for p in files)
    assert len(data) > 10_000
    leaked = [b for b in bsns if b.encode() in data or b.encode("utf-16-le") in data]
    assert leaked == []
    # The hashes are there, so the scan looked at the right bytes.
    assert _h(bsns[0]).encode() in data


def _config(tmp_path: Path) -> Path:
    for folder in ("gnupg", "outbox"):
        (tmp_path / folder).mkdir(mode=0o700, exist_ok=True)
    key_file = tmp_path / "id_ed25519"
    key_file.write_text("not a real key\n")
    key_file.chmod(0o600)
    path = tmp_path / "exchanged.toml"
    path.write_text(
        f"""party = "rbl"
state_dir = "{tmp_path / "state"}"
inbox = "{tmp_path / "inbox"}"
[gpg]
home = "{tmp_path / "gnupg"}"
fingerprint = "{"A" * 40}"
[[outbox]]
path = "{tmp_path / "outbox"}"
partner = "passendwijs"
category = "subfolder"
[[partner]]
id = "passendwijs"
name = "Passend Wijs"
fingerprint = "{"B" * 40}"
remote_dir = "incoming"
receive = "poll"
poll_dir = "outgoing"
[partner.sftp]
host = "127.0.0.1"
user = "rbl"
key_file = "{key_file}"
host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample"
""",
        encoding="utf-8",
    )
    return path


def test_subject_command_shows_one_person_only(
    reg: DisclosureRegister, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path)
    key_file = tmp_path / "hash.key"
    key_file.write_bytes(KEY + b"\n")
    key_file.chmod(0o600)
    a, b = _bsns(2)
    mid, other = MessageId.new().value, MessageId.new().value
    reg.record("sent", "passendwijs", "vrijstelling-5a", mid, [_h(a)], T0)
    reg.record("sent", "passendwijs", "absoluut-verzuim", other, [_h(b)], T0)
    reg.end_processing(_h(a), "verhuisd-buiten-regio", T0 + DAY)
    argv = ["--bsn", a, "-c", str(config), "--hash-key-file", str(key_file)]
    assert subject_main(argv) == 0
    text = capsys.readouterr().out
    assert "passendwijs" in text and "vrijstelling-5a" in text and mid in text
    assert "ended" in text and "verhuisd-buiten-regio" in text
    assert other not in text and "absoluut-verzuim" not in text and a not in text
    assert subject_main([*argv, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["message_id"] for d in data["disclosures"]] == [mid]
    assert data["processing"]["ground"] == "verhuisd-buiten-regio"


def test_subject_command_refuses_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path)
    assert subject_main(["--bsn", "123456789", "-c", str(config)]) == 2
    assert "not a valid BSN" in capsys.readouterr().err
    key_file = tmp_path / "hash.key"
    key_file.write_bytes(KEY)
    key_file.chmod(0o644)
    (a,) = _bsns(1)
    assert subject_main(["--bsn", a, "-c", str(config), "--hash-key-file", str(key_file)]) == 2
    err = capsys.readouterr().err
    assert "0600" in err and a not in err


def test_the_bsn_can_come_from_standard_input_and_never_on_the_command_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io

    from exchanged.commandline import read_bsn
    from exchanged.errors import OperatorInputError

    monkeypatch.setattr("sys.stdin", io.StringIO("123456782\n"))
    assert read_bsn("-") == "123456782"
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal: no prompt
    with pytest.raises(OperatorInputError, match="--bsn -"):
        read_bsn(None)
    with pytest.raises(OperatorInputError) as refused:
        read_bsn("123456789")  # fails the elfproef
    assert "123456789" not in refused.value.message  # never echoed back
