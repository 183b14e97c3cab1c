"""Durable delivery, one behaviour per test, with real daemons, sshd and gpg."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from exchanged.adapters.gpg import Gpg
from exchanged.core import envelope
from exchanged.core.model import MessageId, Record
from exchanged.demo import drop_export
from exchanged.testing.keys import run_gpg
from exchanged.testing.sandbox import mount_namespaces_available
from exchanged.testing.synthetic import seeded_rng, synthetic_rows
from exchanged.testing.workspace import Party, Workspace, build_workspace

pytestmark = pytest.mark.integration

CATEGORY = "absoluut-verzuim"
needs_mount_namespace = pytest.mark.skipif(
    not mount_namespaces_available(), reason="needs root and private mount namespaces (unshare)"
)


def _events(party: Party) -> list[dict[str, object]]:
    if not party.log_path.exists():
        return []
    return [json.loads(line) for line in party.log_path.read_text().splitlines() if line]


def _wait(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def _inbox_records(party: Party) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for path in sorted(party.inbox.glob("*.csv")) if party.inbox.exists() else []:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            rows.extend(csv.DictReader(handle, delimiter=";"))
    return rows


def _export(workspace: Workspace, sender: str, receiver: str, n: int, seed: int) -> Path:
    header, rows = synthetic_rows(seeded_rng(seed), CATEGORY, n)
    folder = workspace[sender].outbox(receiver, CATEGORY)
    return drop_export(folder, f"export-{seed}.csv", header, rows)


def _journal(party: Party, query: str, params: tuple[str, ...] = ()) -> list[tuple[object, ...]]:
    """Read the party's journal the way `exchanged status` does: read-only, never
    creating it (the daemon may still be starting)."""
    path = party.state_dir / "journal.sqlite"
    if not path.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        try:
            return db.execute(query, params).fetchall()
        except sqlite3.OperationalError:  # created, but its tables not yet
            return []


def test_a_file_present_before_start_up_is_sent(workspace: Workspace) -> None:
    rbl, pw = workspace["rbl"], workspace["passendwijs"]
    _export(workspace, "rbl", "passendwijs", 4, seed=1)  # dropped while nothing runs
    workspace.start_daemon(pw)
    workspace.start_daemon(rbl)
    assert workspace.wait_for({"rbl": 1}, timeout=30)
    assert len(_inbox_records(pw)) == 4
    assert len(list((rbl.outbox("passendwijs") / "sent").iterdir())) == 1


def test_a_symlink_in_the_outbox_is_refused_and_its_target_never_read(
    workspace: Workspace, short_tmp: Path
) -> None:
    rbl, pw = workspace["rbl"], workspace["passendwijs"]
    target = short_tmp / "elsewhere.csv"
    header, rows = synthetic_rows(seeded_rng(2), CATEGORY, 3)
    drop_export(short_tmp, "elsewhere.csv", header, rows)
    past = time.time() - 3600
    os.utime(target, (past - 3600, past))  # atime < mtime: any read would update atime
    atime_before = target.stat().st_atime
    link = rbl.outbox("passendwijs", CATEGORY) / "looks-like-an-export.csv"
    link.symlink_to(target)
    workspace.start_daemon(pw)
    workspace.start_daemon(rbl)

    assert _wait(lambda: any(e.get("event") == "outbox_file_refused" for e in _events(rbl)))
    refused = next(e for e in _events(rbl) if e.get("event") == "outbox_file_refused")
    assert refused["reason"] == "symlink"
    # The incident is logged just after the refusal: wait for it rather than race it.
    assert _wait(lambda: any(e.get("event") == "security_incident" for e in _events(rbl)))
    incidents = [e for e in _events(rbl) if e.get("event") == "security_incident"]
    assert [e["kind"] for e in incidents] == ["outbox-unsafe-file"]
    time.sleep(1.0)  # several more passes over the outbox: still refused once, never read
    assert [e["kind"] for e in _events(rbl) if e.get("event") == "security_incident"] == [
        "outbox-unsafe-file"
    ]
    assert target.stat().st_atime == atime_before
    assert link.is_symlink()  # left in place for inspection
    assert workspace.outgoing_states(rbl) == {}
    assert _inbox_records(pw) == []


def test_a_file_written_slowly_is_not_taken_half_written(workspace: Workspace) -> None:
    rbl, pw = workspace["rbl"], workspace["passendwijs"]
    workspace.start_daemon(pw)
    workspace.start_daemon(rbl)
    header, rows = synthetic_rows(seeded_rng(3), CATEGORY, 12)
    path = rbl.outbox("passendwijs", CATEGORY) / "slow.csv"  # no temp name: written in place
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=";")
        writer.writerow(header)
        for row in rows:  # a row every 0.1 s: always changing within the 0.2 s settle time
            handle.flush()
            time.sleep(0.1)
            writer.writerow(row)
    assert workspace.wait_for({"rbl": 1}, timeout=30)
    time.sleep(0.5)
    assert workspace.outgoing_states(rbl) == {"receipted": 1}  # one message, not a fragment
    assert len(_inbox_records(pw)) == 12


def test_a_replayed_message_is_not_delivered_twice_and_gets_the_original_receipt(
    workspace: Workspace,
) -> None:
    rbl, pw = workspace["rbl"], workspace["passendwijs"]
    workspace.start_daemon(pw)
    workspace.start_daemon(rbl)
    _export(workspace, "rbl", "passendwijs", 5, seed=4)
    assert workspace.wait_for({"rbl": 1}, timeout=30)
    ((message_id, receipt_id),) = _journal(
        pw, "SELECT message_id, receipt_id FROM incoming WHERE kind = 'export'"
    )
    spooled = rbl.state_dir / "spool" / f"{message_id}.pgp"
    replay = pw.incoming / f".{message_id}.pgp.part"
    shutil.copyfile(spooled, replay)
    replay.rename(pw.incoming / f"{message_id}.pgp")  # the same ciphertext, once more

    assert _wait(lambda: any(e.get("event") == "message_duplicate" for e in _events(pw)))
    # rbl receives the original receipt again and recognises it as one it already has.
    assert _wait(
        lambda: any(
            e.get("event") == "message_duplicate" and e.get("message_id") == receipt_id
            for e in _events(rbl)
        )
    )
    assert len(_inbox_records(pw)) == 5  # delivered once
    uploads = [
        e for e in _events(pw) if e.get("event") == "message_uploaded" and e["kind"] == "receipt"
    ]
    assert [e["message_id"] for e in uploads] == [receipt_id, receipt_id]  # the same receipt


def _sealed_export(
    sender: Party, recipient: Party, created_at: datetime, out: Path, message_id: MessageId
) -> None:
    header = envelope.Header("export", message_id, sender.id, recipient.id, created_at)
    record = Record(CATEGORY, {"bsn": "111222333", "achternaam": "Jansen"})
    plaintext = out.with_suffix(".json")
    plaintext.write_text("".join(envelope.export_chunks(header, CATEGORY, [record])))
    Gpg(sender.gpg_home, sender.fingerprint).seal(plaintext, out, recipient.fingerprint)
    plaintext.unlink()


@pytest.mark.parametrize("age", [timedelta(days=8), timedelta(minutes=-10)])
def test_an_expired_or_future_dated_message_is_refused(
    workspace: Workspace, short_tmp: Path, age: timedelta
) -> None:
    rbl, pw = workspace["rbl"], workspace["passendwijs"]
    workspace.start_daemon(pw)
    message_id = MessageId.new()
    staged = short_tmp / message_id.wire_name
    _sealed_export(rbl, pw, datetime.now(UTC) - age, staged, message_id)
    staged.rename(pw.incoming / message_id.wire_name)

    assert _wait(lambda: any(e.get("event") == "message_refused" for e in _events(pw)))
    refused = next(e for e in _events(pw) if e.get("event") == "message_refused")
    assert refused["disposition"] == "failed/expired"
    assert [e["kind"] for e in _events(pw) if e.get("event") == "security_incident"] == ["expired"]
    assert _inbox_records(pw) == []


@pytest.fixture
def three_parties(short_tmp: Path) -> Iterator[Workspace]:
    ws = build_workspace(
        short_tmp,
        (("rbl", "RBL Midden-Gelre"), ("passendwijs", "Passend Wijs"),
         ("deverbinding", "De Verbinding")),
        settle_seconds=0.2,
    )  # fmt: skip
    try:
        yield ws
    finally:
        ws.close()


def test_a_partner_down_is_caught_up_while_another_keeps_flowing(
    three_parties: Workspace,
) -> None:
    ws = three_parties
    rbl, pw, dv = ws["rbl"], ws["passendwijs"], ws["deverbinding"]
    dv.sshd.stop()  # De Verbinding's server is down
    for party in (rbl, pw, dv):
        ws.start_daemon(party)
    for seed in range(3):
        _export(ws, "rbl", "deverbinding", 2, seed=10 + seed)
    for seed in range(3):
        _export(ws, "rbl", "passendwijs", 2, seed=20 + seed)

    def receipted_to(partner: str) -> int:
        rows = _journal(
            rbl,
            "SELECT message_id FROM outgoing WHERE kind = 'export' AND partner = ?"
            " AND state = 'receipted'",
            (partner,),
        )
        return len(rows)

    assert _wait(lambda: receipted_to("passendwijs") == 3, timeout=30)
    assert receipted_to("deverbinding") == 0  # still queued, not lost
    assert any(
        e.get("event") == "link_failed" and e.get("partner") == "deverbinding" for e in _events(rbl)
    )
    dv.sshd.start()
    assert _wait(lambda: receipted_to("deverbinding") == 3, timeout=30)
    assert len(_inbox_records(dv)) == 6


@needs_mount_namespace
def test_a_read_only_state_folder_leaves_the_file_and_the_daemon_alive(
    workspace: Workspace,
) -> None:
    rbl, pw = workspace["rbl"], workspace["passendwijs"]
    workspace.start_daemon(pw)
    workspace.start_daemon(rbl, private_mounts=True)
    assert _wait(lambda: any(e.get("event") == "service_ready" for e in _events(rbl)))
    workspace.make_read_only(rbl, rbl.state_dir)
    dropped = _export(workspace, "rbl", "passendwijs", 3, seed=5)

    assert _wait(lambda: any(e.get("event") == "local_failure" for e in _events(rbl)))
    failure = next(e for e in _events(rbl) if e.get("event") == "local_failure")
    assert "Read-only file system" in str(failure["error"]) or "journal" in str(failure["error"])
    time.sleep(1.0)
    assert dropped.exists()  # still in the outbox, to be retried
    assert rbl.process is not None and rbl.process.poll() is None  # alive
    assert _inbox_records(pw) == []
    assert workspace.stop_daemon(rbl) == 0  # and stops cleanly


def test_dropping_the_same_export_again_sends_it_again(workspace: Workspace) -> None:
    """An operator asked to resend a list drops the same file once more: a new export,
    not silently archived as already sent."""
    rbl, pw = workspace["rbl"], workspace["passendwijs"]
    workspace.start_daemon(pw)
    workspace.start_daemon(rbl)
    header, rows = synthetic_rows(seeded_rng(6), CATEGORY, 3)
    folder = rbl.outbox("passendwijs", CATEGORY)
    drop_export(folder, "lijst.csv", header, rows)
    assert workspace.wait_for({"rbl": 1}, timeout=30)
    drop_export(folder, "lijst.csv", header, rows)  # byte for byte the same
    assert workspace.wait_for({"rbl": 2}, timeout=30)
    assert len(list(pw.inbox.glob("*.csv"))) == 2
    assert sorted(p.name for p in (rbl.outbox("passendwijs") / "sent").iterdir()) == [
        "lijst.1.csv",
        "lijst.csv",
    ]


def test_a_message_that_cannot_be_sent_does_not_block_the_others(workspace: Workspace) -> None:
    rbl, pw = workspace["rbl"], workspace["passendwijs"]
    pw.sshd.stop()
    workspace.start_daemon(pw)
    workspace.start_daemon(rbl)
    _export(workspace, "rbl", "passendwijs", 2, seed=7)
    assert _wait(lambda: workspace.outgoing_states(rbl) == {"sealed": 1})
    _export(workspace, "rbl", "passendwijs", 2, seed=8)
    assert _wait(lambda: workspace.outgoing_states(rbl) == {"sealed": 2})
    first = _journal(rbl, "SELECT message_id FROM outgoing WHERE kind = 'export' "
                          "ORDER BY created_at LIMIT 1")[0][0]  # fmt: skip
    (rbl.state_dir / "spool" / f"{first}.pgp").unlink()  # lost from the spool
    pw.sshd.start()

    assert workspace.wait_for({"rbl": 1}, timeout=30)  # the second went through
    assert _wait(
        lambda: any(
            e.get("event") == "ciphertext_missing" and e.get("message_id") == first
            for e in _events(rbl)
        )
    )
    assert len(_inbox_records(pw)) == 2


def test_a_sealed_file_no_row_owns_is_swept_and_nothing_owned_is_touched(
    workspace: Workspace,
) -> None:
    """The row that begins an export is not flushed on its own (``sealed`` flushes it).
    After a power failure between the two, the spool may hold a sealed file no row
    knows, while the export is still in the outbox: at start-up that file goes, and a
    sealed message still waiting for its upload stays and is delivered."""
    rbl, pw = workspace["rbl"], workspace["passendwijs"]
    pw.sshd.stop()
    workspace.start_daemon(rbl)
    _export(workspace, "rbl", "passendwijs", 2, seed=12)
    assert _wait(lambda: workspace.outgoing_states(rbl) == {"sealed": 1})
    workspace.stop_daemon(rbl)
    spool = rbl.state_dir / "spool"
    (waiting,) = spool.glob("*.pgp")  # sealed, not yet uploaded: owned by its row
    orphan = spool / f"{MessageId.new().value}.pgp"
    orphan.write_bytes(b"ciphertext of the lost attempt")
    _export(workspace, "rbl", "passendwijs", 3, seed=13)
    pw.sshd.start()
    workspace.start_daemon(pw)
    workspace.start_daemon(rbl)

    assert workspace.wait_for({"rbl": 2}, timeout=30)
    assert not orphan.exists()
    assert len(_inbox_records(pw)) == 5  # the waiting message and the new export
    assert waiting.exists()  # kept as the copy of what was sent, like every sealed file
    assert any(e.get("event") == "leftovers_removed" for e in _events(rbl))


def test_the_register_rows_move_into_the_subject_index_once_the_daemons_are_quiet(
    workspace: Workspace,
) -> None:
    rbl, pw = workspace["rbl"], workspace["passendwijs"]
    workspace.start_daemon(pw)
    workspace.start_daemon(rbl)
    _export(workspace, "rbl", "passendwijs", 4, seed=13)
    assert workspace.wait_for({"rbl": 1}, timeout=30)

    def settled(party: Party) -> bool:
        counts = _journal(party, "SELECT (SELECT COUNT(*) FROM disclosures),"
                                 " (SELECT COUNT(*) FROM disclosures_recent)")  # fmt: skip
        return bool(counts) and counts[0] == (4, 0)

    assert _wait(lambda: settled(rbl) and settled(pw), timeout=10)


def test_a_clean_stop_leaves_the_register_rows_in_the_subject_index(
    workspace: Workspace,
) -> None:
    """So that the stopped daemon's journal reads the same to any tool, and to an older
    version reinstalled over it, which knows no recent table."""
    rbl, pw = workspace["rbl"], workspace["passendwijs"]
    workspace.start_daemon(pw)
    workspace.start_daemon(rbl)
    _export(workspace, "rbl", "passendwijs", 4, seed=14)
    assert workspace.wait_for({"rbl": 1}, timeout=30)
    workspace.stop_daemon(rbl)  # at once: the quiet second has not come yet
    counts = _journal(rbl, "SELECT (SELECT COUNT(*) FROM disclosures),"
                           " (SELECT COUNT(*) FROM disclosures_recent)")  # fmt: skip
    assert counts == [(4, 0)]


def test_a_withdrawal_of_a_child_never_shared_is_refused(
    workspace: Workspace, short_tmp: Path
) -> None:
    """A partner may end only what it exchanged with us; anything else would stop our
    processing (and purge our copies) of a child it has nothing to do with."""
    from exchanged.core.disclosure import withdrawal_body
    from exchanged.testing.synthetic import generate_bsn

    rbl, pw = workspace["rbl"], workspace["passendwijs"]
    workspace.start_daemon(pw)
    message_id = MessageId.new()
    header = envelope.Header("withdrawal", message_id, rbl.id, pw.id, datetime.now(UTC))
    body = withdrawal_body(generate_bsn(seeded_rng(9)), "overleden", datetime.now(UTC).date())
    plaintext = short_tmp / "w.json"
    plaintext.write_bytes(envelope.encode_message(header, body))
    staged = short_tmp / message_id.wire_name
    Gpg(rbl.gpg_home, rbl.fingerprint).seal(plaintext, staged, pw.fingerprint)
    staged.rename(pw.incoming / message_id.wire_name)

    assert _wait(lambda: any(e.get("event") == "message_refused" for e in _events(pw)))
    refused = next(e for e in _events(pw) if e.get("event") == "message_refused")
    assert refused["disposition"] == "failed/policy-violation"
    kinds = [e["kind"] for e in _events(pw) if e.get("event") == "security_incident"]
    assert kinds == ["partner-policy-violation"]
    assert not pw.inbox.exists() or not list(pw.inbox.iterdir())  # no notice delivered


def test_a_symlink_on_a_partners_channel_is_quarantined_unread(
    workspace: Workspace, short_tmp: Path
) -> None:
    """The partner's SFTP account can create symlinks; one pointing at a file of ours
    must never be read (and so never hashed into a receipt)."""
    pw = workspace["passendwijs"]
    secret = short_tmp / "secret.txt"
    secret.write_text("not for partners\n")
    past = time.time() - 3600
    os.utime(secret, (past - 3600, past))
    atime_before = secret.stat().st_atime
    link = pw.incoming / f"{MessageId.new().value}.pgp"
    link.symlink_to(secret)
    workspace.start_daemon(pw)

    assert _wait(lambda: any(e.get("event") == "incoming_quarantined" for e in _events(pw)))
    assert not link.is_symlink()
    assert secret.stat().st_atime == atime_before
    assert not any(e.get("event") == "message_uploaded" for e in _events(pw))  # no receipt


def test_a_partner_that_over_discloses_is_refused_with_policy_violation(
    workspace: Workspace, short_tmp: Path
) -> None:
    """The receiver re-checks every record: a field outside the category's allow-list
    (here a phone number and a diagnosis) refuses the whole message, delivers nothing,
    and the sender learns it from a failed/policy-violation receipt."""
    rbl, pw = workspace["rbl"], workspace["passendwijs"]
    workspace.start_daemon(pw)
    message_id = MessageId.new()
    header = envelope.Header("export", message_id, rbl.id, pw.id, datetime.now(UTC))
    record = Record(CATEGORY, {"bsn": "111222333", "achternaam": "Jansen",
                               "telefoon": "0612345678", "diagnose": "ADHD"})  # fmt: skip
    plaintext = short_tmp / "over.json"
    plaintext.write_text("".join(envelope.export_chunks(header, CATEGORY, [record])))
    staged = short_tmp / message_id.wire_name
    Gpg(rbl.gpg_home, rbl.fingerprint).seal(plaintext, staged, pw.fingerprint)
    staged.rename(pw.incoming / message_id.wire_name)

    assert _wait(lambda: any(e.get("event") == "message_refused" for e in _events(pw)))
    refused = next(e for e in _events(pw) if e.get("event") == "message_refused")
    assert refused["disposition"] == "failed/policy-violation"
    kinds = [e["kind"] for e in _events(pw) if e.get("event") == "security_incident"]
    assert kinds == ["partner-policy-violation"]
    assert not pw.inbox.exists() or not list(pw.inbox.iterdir())  # nothing delivered
    # The refusal travels back as a signed receipt like any other answer.
    assert _wait(
        lambda: any(
            e.get("event") == "message_uploaded" and e.get("kind") == "receipt" for e in _events(pw)
        )
    )


def test_a_backlog_is_opened_and_answered_together_each_message_judged_alone(
    workspace: Workspace,
) -> None:
    rbl, pw = workspace["rbl"], workspace["passendwijs"]
    workspace.start_daemon(rbl)  # passendwijs's daemon is down, its sshd is up
    for seed in range(4):
        _export(workspace, "rbl", "passendwijs", 3, seed=40 + seed)
    assert _wait(lambda: len(_journal(rbl, "SELECT 1 FROM outgoing WHERE state = 'uploaded'")) == 4)
    # A damaged message among them, under a wire name of its own.
    (one, *_) = sorted(pw.incoming.glob("*.pgp"))
    damaged = bytearray(one.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01
    damaged_id = MessageId.new().value
    (pw.incoming / f"{damaged_id}.pgp").write_bytes(bytes(damaged))

    workspace.start_daemon(pw)

    assert workspace.wait_for({"rbl": 4}, timeout=30)
    assert len(_inbox_records(pw)) == 12
    assert _wait(
        lambda: (
            _journal(pw, "SELECT disposition FROM incoming WHERE message_id = ?", (damaged_id,))
            == [("failed/decryption-failed",)]
        )
    )
    together = [e for e in _events(pw) if e.get("event") == "incoming_opened_together"]
    assert together and together[0]["count"] == 5
    # All five are answered by one receipt; rbl judges each answer on its own.
    sent = [
        str(r[0]) for r in _journal(rbl, "SELECT message_id FROM outgoing WHERE kind = 'export'")
    ]
    answered_by = _journal(
        pw, "SELECT DISTINCT receipt_id FROM incoming WHERE message_id IN (?, ?, ?, ?, ?)",
        (*sent, damaged_id),
    )  # fmt: skip
    assert len(sent) == 4
    assert len(answered_by) == 1
    # No copy or plaintext left over. Later traffic (the receipt for the notice about
    # the damaged message) passes through the same folder, so wait for it to settle.
    assert _wait(lambda: not list((pw.state_dir / "work").iterdir()))


def test_an_exports_plaintext_never_reaches_the_senders_disk(workspace: Workspace) -> None:
    """The records stream from the policy engine into gpg: the spool only ever holds
    ciphertext (and, for a very large export, keyed hashes), never a child's data."""
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    rbl, pw = workspace["rbl"], workspace["passendwijs"]
    spool = rbl.state_dir / "spool"
    spool.mkdir(mode=0o700, parents=True, exist_ok=True)
    made: list[str] = []

    class Seen(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            if event.event_type in ("created", "moved", "modified") and not event.is_directory:
                made.append(Path(str(getattr(event, "dest_path", "") or event.src_path)).name)

    observer = Observer()
    observer.schedule(Seen(), str(spool), recursive=True)
    observer.start()
    try:
        workspace.start_daemon(pw)
        workspace.start_daemon(rbl)
        _export(workspace, "rbl", "passendwijs", 2000, seed=77)
        assert workspace.wait_for({"rbl": 1}, timeout=60)
        assert len(_inbox_records(pw)) == 2000
    finally:
        observer.stop()
        observer.join(timeout=5)
    assert made  # the watch saw the ciphertext being written
    assert all(name.endswith((".pgp", ".tmp")) and ".pgp" in name for name in made), made


def test_an_export_that_cannot_be_sealed_stays_while_the_next_goes(
    three_parties: Workspace,
) -> None:
    ws = three_parties
    rbl, pw, dv = ws["rbl"], ws["passendwijs"], ws["deverbinding"]
    # rbl lost De Verbinding's public key: gpg fails on that export only, after the
    # export begun next to it has been read and minimised (sealing runs alongside).
    run_gpg(rbl.gpg_home, "--yes", "--delete-keys", dv.fingerprint)
    ws.start_daemon(pw)
    ws.start_daemon(rbl)
    stuck = _export(ws, "rbl", "deverbinding", 2, seed=50)
    _export(ws, "rbl", "passendwijs", 2, seed=51)

    assert ws.wait_for({"rbl": 1}, timeout=30)
    assert _wait(
        lambda: any(
            e.get("event") == "local_failure" and "is not in the keyring" in str(e.get("error"))
            for e in _events(rbl)
        )
    )
    assert stuck.exists()  # left in the outbox for the retry, not archived
    assert _journal(rbl, "SELECT state FROM outgoing WHERE partner = 'deverbinding'") in (
        [],
        [("detected",)],
    )
    assert not list((rbl.state_dir / "spool").glob("*.json"))  # no stray plaintext
