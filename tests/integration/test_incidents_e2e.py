"""Incidents end to end: two real daemons, real sshd and gpg, a real SMTP server.

(a) a tampered file makes exactly one mail to the configured officers, with the AP
    deadline and without any personal data of the (synthetic) children concerned;
(b) an incident on one side becomes a registered ``partner-notice`` on the other;
(c) a storm of 200 tampered files is one incident with a count of 200 and one mail.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import pytest

from exchanged.core.bsn import is_valid_bsn
from exchanged.core.incident import AP_DEADLINE, MAX_MESSAGE_IDS, Incident, Kind
from exchanged.core.model import MessageId
from exchanged.testing.tamper import (
    Bench,
    Mail,
    export_plaintext,
    inbox_ids,
    incident,
    incidents,
    kinds_for,
    officers,
    open_bench,
    outgoing,
    place,
    query,
    seal,
    synthetic_records,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="xt-"))  # short: gpg-agent socket paths
    path.chmod(0o700)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def bench(root: Path) -> Iterator[Bench]:
    with open_bench(root) as b:
        yield b


def _flipped(bench: Bench, records_n: int = 12) -> tuple[MessageId, bytes, set[str]]:
    """A message the sender really signed and encrypted to the receiver, with one bit
    flipped on the way; and the personal data it carries."""
    records, personal = synthetic_records(bench.rng, records_n)
    mid, plain = export_plaintext(bench.sender.id, bench.receiver.id, records)
    sender = bench.sender
    data = bytearray(
        seal(sender.gpg_home, plain, to=bench.receiver.fingerprint, signer=sender.fingerprint)
    )
    data[len(data) // 2] ^= 0x10
    return mid, bytes(data), personal


def _wait_incident(bench: Bench, party_id: str, message_id: str, kind: str) -> Incident:
    party = bench.workspace[party_id]
    bench.wait(
        f"{kind} at {party_id} for {message_id}",
        lambda: kinds_for(party, message_id).get(kind) is not None,
    )
    found = incident(party, kinds_for(party, message_id)[kind])
    assert found is not None
    return found


def _mails_about(bench: Bench, incident_id: str, *, settle: float = 1.0) -> list[Mail]:
    bench.wait(f"a mail about {incident_id}", lambda: bool(bench.mail.about(incident_id)))
    time.sleep(settle)  # a second mail, if one were sent, would arrive by now
    return bench.mail.about(incident_id)


def _assert_no_personal_data(text: str, personal: set[str]) -> None:
    leaked = sorted(value for value in personal if value in text)
    assert leaked == [], f"personal data in the mail: {leaked}"
    for run in re.findall(r"(?<!\d)\d{9}(?!\d)", text):
        assert not is_valid_bsn(run), "something that passes the elfproef is in the mail"


def test_tampered_file_mails_the_officers_once_without_personal_data(bench: Bench) -> None:
    receiver = bench.receiver
    mid, data, personal = _flipped(bench)
    assert personal  # the test is only meaningful if the message carried personal data
    place(receiver, mid.value, data)
    inc = _wait_incident(bench, receiver.id, mid.value, "decryption-failed")

    mails = _mails_about(bench, inc.id)
    assert len(mails) == 1
    mail = mails[0]
    assert sorted(mail.recipients) == sorted(officers(receiver))
    assert mail.message["From"] == f"exchanged@{receiver.id}.example"
    assert sorted(a.strip() for a in str(mail.message["To"]).split(",")) == sorted(
        officers(receiver)
    )
    deadline = inc.deadline.astimezone(UTC)
    assert (deadline - inc.aware_at).total_seconds() == 72 * 3600
    assert inc.id in mail.subject
    assert "decryption-failed" in mail.subject
    assert f"AP deadline {deadline:%Y-%m-%d %H:%M} UTC" in mail.subject
    body = mail.body
    assert f"Deadline:    {deadline.isoformat()}" in body
    assert mid.value in body  # the message concerned, by its id only
    assert "This mail contains no personal data" in body
    _assert_no_personal_data(mail.subject + "\n" + body, personal)
    assert mid.value not in inbox_ids(receiver)

    # A misaddressed message is decrypted and its records are in the daemon's hands;
    # the mail about it must still carry none of them.
    records, personal = synthetic_records(bench.rng, 12)
    mid2, plain = export_plaintext(bench.sender.id, "liemers", records)
    sender = bench.sender
    place(
        receiver,
        mid2.value,
        seal(sender.gpg_home, plain, to=receiver.fingerprint, signer=sender.fingerprint),
    )
    inc2 = _wait_incident(bench, receiver.id, mid2.value, "misaddressed")
    mails = _mails_about(bench, inc2.id)
    assert len(mails) == 1
    assert sorted(mails[0].recipients) == sorted(officers(receiver))
    _assert_no_personal_data(mails[0].subject + "\n" + mails[0].body, personal)
    for party in bench.workspace.parties.values():
        for event_line in party.log_path.read_text(encoding="utf-8").splitlines():
            _assert_no_personal_data(event_line, personal)


def test_an_incident_on_one_side_is_a_partner_notice_on_the_other(bench: Bench) -> None:
    sender, receiver = bench.sender, bench.receiver
    records, _ = synthetic_records(bench.rng, 4)
    mid, plain = export_plaintext(sender.id, receiver.id, records)
    forged = seal(
        bench.mallory.home, plain, to=receiver.fingerprint, signer=bench.mallory.fingerprint
    )
    place(receiver, mid.value, forged)
    theirs = _wait_incident(bench, receiver.id, mid.value, "unknown-signer")

    notices: list[Incident] = []

    def registered() -> bool:
        notices[:] = [
            i
            for i in incidents(sender)
            if i.kind == Kind.PARTNER_NOTICE and i.notice and i.notice.remote_id == theirs.id
        ]
        return bool(notices)

    bench.wait(f"{sender.id} to register a partner-notice", registered)
    assert len(notices) == 1
    ours = notices[0]
    assert ours.notice is not None
    assert ours.notice.remote_kind == "unknown-signer"
    assert mid.value in ours.notice.message_ids
    assert mid.value in ours.message_ids
    assert ours.partners == (receiver.id,)
    assert "fg@passendwijs.example" in ours.notice.contact_point
    assert ours.deadline == ours.aware_at + AP_DEADLINE  # our own 72-hour clock runs too

    # The partner's daemon mails its own officers about the notice.
    mails = _mails_about(bench, ours.id)
    assert len(mails) == 1
    assert sorted(mails[0].recipients) == sorted(officers(sender))
    assert "partner-notice" in mails[0].subject

    # The notice travelled as a normal, receipted message; the register says so.
    bench.wait(
        "the reporting side to record that the partner was informed",
        lambda: (
            (i := incident(receiver, theirs.id)) is not None and i.partner_informed_at is not None
        ),
    )
    informed = incident(receiver, theirs.id)
    assert informed is not None
    notice_id = informed.partner_informed_how.removeprefix("incident-notice ")
    bench.wait_state(receiver, notice_id, "receipted")
    row = outgoing(receiver, notice_id)
    assert row is not None and row["kind"] == "incident-notice"
    # A partner notice is not itself notified back (no ping-pong between the parties).
    assert not [i for i in incidents(receiver) if i.notice and i.notice.remote_id == ours.id]


def test_a_storm_of_200_tampered_files_is_one_incident_and_one_mail(root: Path) -> None:
    with open_bench(root, start=False) as bench:
        receiver = bench.receiver
        bench.start(receiver)  # the sender's daemon stays down: only the receiver counts
        _, data, _ = _flipped(bench)
        ids = [MessageId.new().value for _ in range(200)]
        started = time.monotonic()
        for mid in ids:
            place(receiver, mid, data)

        def answered() -> int:
            rows = query(receiver, "SELECT COUNT(*) FROM incoming WHERE state = 'answered'")
            return int(rows[0][0]) if rows else 0

        bench.wait("all 200 files to be answered", lambda: answered() >= 200, timeout=120)
        elapsed = time.monotonic() - started
        found = [i for i in incidents(receiver) if i.kind == Kind.DECRYPTION_FAILED]
        assert len(found) == 1, [(i.id, i.count) for i in found]
        storm = found[0]
        assert storm.count == 200
        assert storm.partners == (bench.sender.id,)
        assert len(storm.message_ids) == min(200, MAX_MESSAGE_IDS)
        assert set(storm.message_ids) <= set(ids)
        assert storm.detected_at <= storm.last_seen_at
        assert (storm.last_seen_at - storm.detected_at).total_seconds() <= elapsed + 1
        assert [i.kind for i in incidents(receiver)] == [Kind.DECRYPTION_FAILED]

        time.sleep(1.0)  # late mails would arrive by now
        to_receiver = [m for m in bench.mail.mails if set(m.recipients) & set(officers(receiver))]
        assert len(to_receiver) == 1, [m.subject for m in to_receiver]
        assert storm.id in to_receiver[0].subject
        assert list(receiver.incoming.iterdir()) == []
        assert inbox_ids(receiver) == {}
