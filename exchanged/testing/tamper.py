"""The tamper suite: one attack per case against two real daemons (real sshd, real gpg).

Each case crafts what an attacker (or a broken partner) could put on the channel,
places it where the partner's sshd would (under a dot-name, then renamed), and checks
that the receiving daemon

- registered it as the right incident kind (read from its journal, read-only),
- delivered nothing of it (no inbox file, no receipt accepted, nothing sent), and
- notified where the catalogue says: a ``security_incident`` log event, one mail per
  incident to the party's officers (a real SMTP server on loopback), and for kinds with
  ``notify_partner`` an ``incident-notice`` that the partner registers as
  ``partner-notice``.

Messages are crafted with the wire format of :mod:`exchanged.core.envelope` and sealed
with the ``gpg`` binary directly, on the keys of the party being impersonated or of
the outsiders ``mallory`` (whose public key both parties hold) and ``eve`` (whose key
nobody holds). Everything here is test tooling: synthetic data, throw-away keys.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from exchanged.adapters.incident_register import IncidentRegister
from exchanged.core import envelope
from exchanged.core.incident import CATALOGUE, Incident, Kind
from exchanged.core.model import MessageId, Record
from exchanged.core.policy import RecordChecker
from exchanged.demo import drop_export
from exchanged.policyfile import load_policy
from exchanged.testing.keys import export_public, kill_agent, make_party_home, run_gpg
from exchanged.testing.synthetic import generate_bsn, synthetic_rows
from exchanged.testing.workspace import Party, Workspace, build_workspace

__all__ = [
    "CASES",
    "Bench",
    "Key",
    "MailCatcher",
    "Outcome",
    "SuiteResult",
    "inbox_ids",
    "open_bench",
    "register_failures",
    "run_suite",
    "seal",
    "summary_line",
]

CATEGORY = "absoluut-verzuim"
DETECT_TIMEOUT = 10.0
DUPLICATE = "duplicate"  # a replay of identical bytes: answered, not an incident


# --- mail ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mail:
    recipients: tuple[str, ...]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        return "" if part is None else str(part.get_content())


class MailCatcher:
    """A real SMTP server (aiosmtpd) on loopback that keeps what it accepted."""

    def __init__(self) -> None:
        self.port = _free_port()
        self._mails: list[Mail] = []
        self._lock = threading.Lock()
        self._controller: Any = None

    async def handle_DATA(self, server: Any, session: Any, env: Any) -> str:
        raw = bytes(env.content)
        parsed = message_from_bytes(raw, policy=email_policy.default)
        assert isinstance(parsed, EmailMessage)  # noqa: S101 -- policy.default makes one
        with self._lock:
            self._mails.append(Mail(tuple(env.rcpt_tos), parsed))
        return "250 OK"

    def start(self) -> None:
        from aiosmtpd.controller import Controller  # a dev dependency: import only here

        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def mails(self) -> list[Mail]:
        with self._lock:
            return list(self._mails)

    def about(self, incident_id: str) -> list[Mail]:
        return [m for m in self.mails if incident_id in m.subject]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def officers(party: Party) -> tuple[str, ...]:
    return (f"privacy@{party.id}.example", f"security@{party.id}.example")


def add_mail_config(party: Party, port: int) -> None:
    """Append ``[organisation]`` and ``[mail]`` (loopback, no TLS) to the party's config;
    (re)start its daemon afterwards."""
    recipients = ", ".join(f'"{a}"' for a in officers(party))
    extra = f"""
[organisation]
name = "{party.name}"
contact_role = "Functionaris gegevensbescherming"
contact_email = "fg@{party.id}.example"
contact_phone = "+31 26 000 0000"

[mail]
host = "127.0.0.1"
port = {port}
security = "none"
from = "exchanged@{party.id}.example"
to = [{recipients}]
"""
    text = party.config_path.read_text(encoding="utf-8")
    party.config_path.write_text(text + extra, encoding="utf-8")


# --- keys and sealing ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Key:
    home: Path
    fingerprint: str


def seal(
    home: Path,
    plaintext: bytes,
    *,
    to: str | None,
    signer: str | None,
    compress: bool = True,
    literal: bool = True,
) -> bytes:
    """OpenPGP binary message made by the ``gpg`` binary in ``home``: signed by
    ``signer`` and/or encrypted to ``to`` (one pass), like the daemon's own seal.
    ``literal=False`` encrypts ``plaintext`` as OpenPGP packets (e.g. a signed message)
    instead of wrapping it as data: how an attacker re-encrypts an altered message."""
    args = ["--trust-model", "always", "--no-encrypt-to", "--output", "-"]
    args += ["--set-filename", ""] if literal else ["--no-literal"]
    if not compress:
        args += ["--compress-algo", "none"]
    if signer is not None:
        args += ["--local-user", signer, "--sign"]
    if to is not None:
        args += ["--recipient", to, "--encrypt"]
    return run_gpg(home, *args, stdin=plaintext).stdout


def _give_public(source: Key, *homes: Path) -> None:
    data = export_public(source.home, source.fingerprint)
    for home in homes:
        run_gpg(home, "--import", stdin=data)


# --- crafting envelopes -------------------------------------------------------------


def synthetic_records(rng: random.Random, n: int) -> tuple[list[Record], set[str]]:
    """``n`` minimised records as the sender's policy makes them, and the personal
    values in them (to prove they never reach a log or a mail)."""
    header, rows = synthetic_rows(rng, CATEGORY, n)
    checker = RecordChecker(load_policy(None), header, category=CATEGORY, today=date.today())
    records = [r for i, row in enumerate(rows, 1) if (r := checker.check(i, row)) is not None]
    personal: set[str] = set()
    for record in records:
        for name in ("bsn", "voornamen", "achternaam", "straat", "postcode"):
            value = record.fields.get(name, "")
            if len(value) > 3:
                personal.add(value)
    return records, personal


def export_plaintext(
    sender: str,
    recipient: str,
    records: Sequence[Record],
    *,
    message_id: MessageId | None = None,
    created_at: datetime | None = None,
) -> tuple[MessageId, bytes]:
    mid = message_id or MessageId.new()
    header = envelope.Header(
        "export", mid, sender, recipient, created_at or datetime.now(UTC).replace(microsecond=0)
    )
    return mid, "".join(envelope.export_chunks(header, CATEGORY, records)).encode()


def receipt_plaintext(
    sender: str,
    recipient: str,
    in_reply_to: str,
    received_sha256: str,
    record_count: int,
    *,
    also_answering: str | None = None,
) -> tuple[MessageId, bytes]:
    """A receipt answering ``in_reply_to``; with ``also_answering``, one that carries a
    second answer (for that message id) in the several-answers form."""
    mid = MessageId.new()
    now = datetime.now(UTC).replace(microsecond=0)
    header = envelope.Header("receipt", mid, sender, recipient, now)
    answers = [
        envelope.Receipt(
            in_reply_to=MessageId(answered), disposition=envelope.PROCESSED,
            received_sha256=received_sha256, record_count=record_count, received_at=now,
        )
        for answered in (in_reply_to, also_answering) if answered is not None
    ]  # fmt: skip
    return mid, envelope.encode_receipts(header, answers)


def place(party: Party, message_id: str, data: bytes) -> Path:
    """Put ``data`` on ``party``'s incoming channel as sshd would after the sender's
    posix-rename: written under a dot-name, then renamed to ``<message_id>.pgp``."""
    final = party.incoming / f"{message_id}.pgp"
    temp = party.incoming / f".{message_id}.pgp.part"
    with temp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    temp.rename(final)
    return final


# --- reading what the daemons did ---------------------------------------------------


@contextlib.contextmanager
def _journal(party: Party) -> Iterator[sqlite3.Connection | None]:
    path = party.state_dir / "journal.sqlite"
    if not path.exists():
        yield None
        return
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        db.row_factory = sqlite3.Row
        yield db


def query(party: Party, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
    with _journal(party) as db:
        if db is None:
            return []
        try:
            return list(db.execute(sql, params).fetchall())
        except sqlite3.OperationalError:
            return []


def incidents(party: Party) -> list[Incident]:
    """The party's register as it stands (latest row per incident)."""
    with _journal(party) as db:
        if db is None:
            return []
        try:
            return IncidentRegister(db).list()
        except sqlite3.OperationalError:
            return []


def incident(party: Party, incident_id: str) -> Incident | None:
    return next((i for i in incidents(party) if i.id == incident_id), None)


def kinds_for(party: Party, message_id: str) -> dict[str, str]:
    """{kind: incident id} of the party's own detections that name ``message_id``."""
    return {
        i.kind.value: i.id
        for i in incidents(party)
        if message_id in i.message_ids and i.kind != Kind.PARTNER_NOTICE
    }


def observed_since(party: Party, kind: str, since: float) -> str | None:
    """Id of the incident an observation of ``kind`` went into at or after ``since``."""
    stamp = datetime.fromtimestamp(since, UTC).isoformat()
    rows = query(
        party,
        "SELECT incident_id FROM incident_history WHERE kind = ? AND at >= ? "
        "AND action IN ('detected', 'aggregated') ORDER BY seq",
        (kind, stamp),
    )
    return str(rows[0]["incident_id"]) if rows else None


def outgoing(party: Party, message_id: str) -> sqlite3.Row | None:
    rows = query(party, "SELECT * FROM outgoing WHERE message_id = ?", (message_id,))
    return rows[0] if rows else None


def incoming(party: Party, message_id: str) -> sqlite3.Row | None:
    rows = query(party, "SELECT * FROM incoming WHERE message_id = ?", (message_id,))
    return rows[0] if rows else None


def export_ids(party: Party) -> set[str]:
    return {str(r[0]) for r in query(party, "SELECT message_id FROM outgoing WHERE kind='export'")}


def log_events(party: Party, event: str | None = None) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if not party.log_path.exists():
        return found
    for line in party.log_path.read_text(encoding="utf-8").splitlines():
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(item, dict) and (event is None or item.get("event") == event):
            found.append(item)
    return found


def register_failures(party: Party) -> list[str]:
    """Why the party's daemon could not write its incident register, if it could not."""
    found = {
        str(e.get("error"))
        for e in log_events(party, "local_failure")
        if "incident register cannot be written" in str(e.get("error"))
    }
    return [f"{party.id}: {error}" for error in sorted(found)]


def inbox_ids(party: Party) -> dict[str, Path]:
    """{message id: file} of what the party's daemon delivered to its inbox."""
    found: dict[str, Path] = {}
    if party.inbox.is_dir():
        for path in party.inbox.iterdir():
            mid = path.stem.rsplit("_", 1)[-1]
            found[mid] = path
    return found


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the bench: two daemons, an SMTP server, outsiders' keys ------------------------


class Timeout(AssertionError):
    pass


@dataclass
class Bench:
    workspace: Workspace
    mail: MailCatcher
    mallory: Key  # an outsider whose public key both parties hold
    eve: Key  # an outsider nobody knows
    rng: random.Random
    legit: set[str] = field(default_factory=set)  # ids the daemons may deliver

    @property
    def sender(self) -> Party:
        return self.workspace["rbl"]

    @property
    def receiver(self) -> Party:
        return self.workspace["passendwijs"]

    def partner_of(self, party: Party) -> Party:
        return next(p for p in self.workspace.parties.values() if p.id != party.id)

    def key(self, party: Party) -> Key:
        return Key(party.gpg_home, party.fingerprint)

    def wait(self, what: str, check: Callable[[], bool], timeout: float = DETECT_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            for party in self.workspace.parties.values():
                if party.process is not None and party.process.poll() is not None:
                    raise Timeout(f"the {party.id} daemon died while waiting for {what}")
            time.sleep(0.05)
        raise Timeout(f"timed out after {timeout:g} s waiting for {what}")

    def start(self, party: Party) -> None:
        before = len(log_events(party, "service_ready"))
        self.workspace.start_daemon(party)
        self.wait(
            f"{party.id} daemon ready",
            lambda: len(log_events(party, "service_ready")) > before,
        )

    def stop(self, party: Party) -> None:
        code = self.workspace.stop_daemon(party)
        if code not in (0, None):
            raise AssertionError(f"the {party.id} daemon exited with {code}")

    def send_export(self, n: int = 5) -> str:
        """The sender's daemon sends a real export; returns its message id (queued)."""
        party, partner = self.sender, self.receiver
        before = export_ids(party)
        header, rows = synthetic_rows(self.rng, CATEGORY, n)
        drop_export(party.outbox(partner.id, CATEGORY), f"t{time.monotonic_ns()}.csv", header, rows)
        found: list[str] = []

        def sealed() -> bool:
            found[:] = sorted(export_ids(party) - before)
            return bool(found) and all(
                (row := outgoing(party, m)) is not None and row["state"] != "detected"
                for m in found
            )

        self.wait("the sender's daemon to seal an export", sealed)
        self.legit.update(found)
        return found[0]

    def wait_state(self, party: Party, message_id: str, state: str) -> None:
        self.wait(
            f"{message_id} to be {state} at {party.id}",
            lambda: (row := outgoing(party, message_id)) is not None and row["state"] == state,
        )


def _prepare_keys(root: Path, workspace: Workspace) -> tuple[Key, Key]:
    parties = list(workspace.parties.values())
    mallory = Key(root / "mallory", make_party_home(root / "mallory", "mallory"))
    eve = Key(root / "eve", make_party_home(root / "eve", "eve"))
    for party in parties:
        _give_public(Key(party.gpg_home, party.fingerprint), mallory.home, eve.home)
    _give_public(mallory, *(p.gpg_home for p in parties))
    return mallory, eve


@contextlib.contextmanager
def open_bench(root: Path, *, seed: int = 20251203, start: bool = True) -> Iterator[Bench]:
    """Two parties with mail configured, outsiders' keys made, both daemons running."""
    workspace = build_workspace(root, settle_seconds=0.2)
    mail = MailCatcher()
    mallory = eve = None
    try:
        mail.start()
        mallory, eve = _prepare_keys(root, workspace)
        for party in workspace.parties.values():
            add_mail_config(party, mail.port)
        bench = Bench(workspace, mail, mallory, eve, random.Random(seed))  # noqa: S311 -- reproducible attack data
        if start:
            for party in workspace.parties.values():
                bench.start(party)
        yield bench
    finally:
        workspace.close()
        mail.stop()
        for key in (mallory, eve):
            if key is not None:
                kill_agent(key.home)


# --- outcomes -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    case: str
    attack: str
    party: str  # where the detection is expected
    expected: str  # the incident kind, or DUPLICATE
    found: tuple[str, ...] = ()
    incident_id: str | None = None
    delivered: bool = False
    problems: tuple[str, ...] = ()
    notified: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def detected(self) -> bool:
        return not self.problems and not self.delivered

    def line(self) -> str:
        where = f"{self.expected} at {self.party}"
        if self.incident_id:
            where += f" ({self.incident_id})"
        if self.detected:
            told = ", ".join(self.notified) or "nothing to notify"
            return (
                f"tamper: {self.case:<22} ok      {where}; notified: {told}; {self.seconds:.2f} s"
            )
        found = ", ".join(self.found) or "nothing"
        delivered = "; DELIVERED" if self.delivered else ""
        return (
            f"tamper: {self.case:<22} FAILED  expected {where}, found {found}{delivered}: "
            + "; ".join(self.problems)
        )


def _judge(
    case: str,
    attack: str,
    party: Party,
    expected: str,
    *,
    found: dict[str, str],
    started: float,
    delivered: bool,
    extra: Sequence[str] = (),
) -> Outcome:
    problems = list(extra)
    if expected != DUPLICATE and set(found) != {expected}:
        problems.append(f"registered kinds {sorted(found) or 'none'}, not [{expected}]")
    if expected == DUPLICATE and found:
        problems.append(f"a byte-identical resend was registered as {sorted(found)}")
    return Outcome(
        case=case,
        attack=attack,
        party=party.id,
        expected=expected,
        found=tuple(sorted(found)),
        incident_id=found.get(expected),
        delivered=delivered,
        problems=tuple(problems),
        seconds=time.monotonic() - started,
    )


def _attack_incoming(
    bench: Bench,
    case: str,
    attack: str,
    party: Party,
    message_id: str,
    *,
    data: bytes,
    kind: str,
    named: str | None = None,
) -> Outcome:
    """Place one crafted file on ``party``'s channel; wait until it was answered.
    The incident must name ``named`` (default: the crafted message's own id)."""
    started = time.monotonic()
    before_inbox = set(inbox_ids(party))
    path = place(party, message_id, data)
    problems: list[str] = []
    try:
        bench.wait(
            f"{case}: {party.id} to answer {message_id}",
            lambda: (
                not path.exists()
                and (row := incoming(party, message_id)) is not None
                and row["state"] == "answered"
            ),
        )
    except Timeout as exc:
        problems.append(str(exc))
    row = incoming(party, message_id)
    new_inbox = set(inbox_ids(party)) - before_inbox
    delivered = message_id in new_inbox or (
        row is not None and row["disposition"] == envelope.PROCESSED and row["kind"] != "receipt"
    )
    if path.exists():
        problems.append("the file was left on the channel")
    failed = str(row["disposition"] or "").startswith("failed/") if row is not None else True
    if row is not None and not failed and row["kind"] != "receipt":
        problems.append(f"answered {row['disposition']!r}, not a failed/* receipt")
    return _judge(
        case, attack, party, kind, found=kinds_for(party, named or message_id),
        started=started, delivered=delivered, extra=problems,
    )  # fmt: skip


def _legit_export(bench: Bench, **kwargs: Any) -> tuple[MessageId, bytes, set[str]]:
    """An export the sender could really have written, as plaintext."""
    records, personal = synthetic_records(bench.rng, 8)
    mid, plain = export_plaintext(bench.sender.id, bench.receiver.id, records, **kwargs)
    return mid, plain, personal


def _sealed_by_sender(bench: Bench, plain: bytes, *, to: str | None = None) -> bytes:
    sender, receiver = bench.sender, bench.receiver
    return seal(sender.gpg_home, plain, to=to or receiver.fingerprint, signer=sender.fingerprint)


# --- the cases ----------------------------------------------------------------------


def case_bit_flip(bench: Bench) -> Outcome:
    mid, plain, _ = _legit_export(bench)
    data = bytearray(_sealed_by_sender(bench, plain))
    data[len(data) // 2] ^= 0x04  # inside the encrypted, compressed literal data
    return _attack_incoming(
        bench, "bit-flip", "one bit flipped in a correctly sealed message",
        bench.receiver, mid.value, data=bytes(data), kind="decryption-failed",
    )  # fmt: skip


def case_truncated(bench: Bench) -> Outcome:
    mid, plain, _ = _legit_export(bench)
    data = _sealed_by_sender(bench, plain)
    return _attack_incoming(
        bench, "truncated", "a correctly sealed message cut to half its length",
        bench.receiver, mid.value, data=data[: len(data) // 2], kind="decryption-failed",
    )  # fmt: skip


def case_signed_not_encrypted(bench: Bench) -> Outcome:
    mid, plain, _ = _legit_export(bench)
    data = seal(bench.sender.gpg_home, plain, to=None, signer=bench.sender.fingerprint)
    return _attack_incoming(
        bench, "not-encrypted", "signed by the partner but not encrypted (cleartext on the wire)",
        bench.receiver, mid.value, data=data, kind="decryption-failed",
    )  # fmt: skip


def case_altered_content(bench: Bench) -> Outcome:
    """Signed by the partner, then one BSN changed and the packets re-encrypted: the
    encryption is intact, the signature no longer matches the content."""
    records, _ = synthetic_records(bench.rng, 8)
    mid, plain = export_plaintext(bench.sender.id, bench.receiver.id, records)
    sender = bench.sender
    signed = seal(sender.gpg_home, plain, to=None, signer=sender.fingerprint, compress=False)
    original = records[0].fields["bsn"]
    other = original
    while other == original or other.encode() in signed:
        other = generate_bsn(bench.rng)
    altered = signed.replace(original.encode(), other.encode(), 1)
    data = seal(bench.eve.home, altered, to=bench.receiver.fingerprint, signer=None,
                literal=False)  # fmt: skip
    return _attack_incoming(
        bench, "altered-content", "a partner-signed export with one BSN changed, re-encrypted",
        bench.receiver, mid.value, data=data, kind="signature-invalid",
    )  # fmt: skip


def case_wrong_signer(bench: Bench) -> Outcome:
    mid, plain, _ = _legit_export(bench)
    data = seal(bench.mallory.home, plain, to=bench.receiver.fingerprint,
                signer=bench.mallory.fingerprint)  # fmt: skip
    return _attack_incoming(
        bench, "wrong-signer", "signed by mallory, whose public key the receiver holds",
        bench.receiver, mid.value, data=data, kind="unknown-signer",
    )  # fmt: skip


def case_unknown_party(bench: Bench) -> Outcome:
    mid, plain, _ = _legit_export(bench)
    data = seal(bench.eve.home, plain, to=bench.receiver.fingerprint, signer=bench.eve.fingerprint)
    return _attack_incoming(
        bench, "unknown-party", "signed and encrypted by eve, a key the receiver never saw",
        bench.receiver, mid.value, data=data, kind="unknown-signer",
    )  # fmt: skip


def case_unsigned(bench: Bench) -> Outcome:
    mid, plain, _ = _legit_export(bench)
    data = seal(bench.eve.home, plain, to=bench.receiver.fingerprint, signer=None)
    return _attack_incoming(
        bench, "unsigned", "encrypted to the receiver, not signed at all",
        bench.receiver, mid.value, data=data, kind="unsigned-message",
    )  # fmt: skip


def case_misaddressed(bench: Bench) -> Outcome:
    records, _ = synthetic_records(bench.rng, 8)
    mid, plain = export_plaintext(bench.sender.id, "liemers", records)
    data = _sealed_by_sender(bench, plain)
    return _attack_incoming(
        bench, "misaddressed", "signed by the partner for 'liemers', forwarded to the receiver",
        bench.receiver, mid.value, data=data, kind="misaddressed",
    )  # fmt: skip


def case_expired(bench: Bench) -> Outcome:
    old = datetime.now(UTC).replace(microsecond=0) - timedelta(days=8)
    mid, plain, _ = _legit_export(bench, created_at=old)
    return _attack_incoming(
        bench, "expired", "a correctly signed message dated eight days ago",
        bench.receiver, mid.value, data=_sealed_by_sender(bench, plain), kind="expired",
    )  # fmt: skip


def _received(bench: Bench, message_id: str) -> None:
    bench.wait_state(bench.sender, message_id, "receipted")


def case_replay_same(bench: Bench) -> Outcome:
    """The very bytes of a processed message arrive again: not delivered twice, the
    original receipt is sent again (a sender retry looks exactly like this)."""
    started = time.monotonic()
    sender, receiver = bench.sender, bench.receiver
    mid = bench.send_export()
    _received(bench, mid)
    original = inbox_ids(receiver)[mid]
    digest = _digest(original)
    ciphertext = (sender.state_dir / "spool" / f"{mid}.pgp").read_bytes()
    row = incoming(receiver, mid)
    assert row is not None  # noqa: S101 -- it was receipted, so it was journaled
    receipt_id = str(row["receipt_id"])
    dup_before = len(log_events(receiver, "message_duplicate"))
    path = place(receiver, mid, ciphertext)
    problems: list[str] = []

    def resent() -> bool:
        return any(
            e.get("message_id") == receipt_id and e.get("same_ciphertext") is True
            for e in log_events(sender, "message_duplicate")
        )

    try:
        bench.wait(
            "replay-same: the duplicate to be answered",
            lambda: (
                not path.exists() and len(log_events(receiver, "message_duplicate")) > dup_before
            ),
        )
        bench.wait("replay-same: the original receipt to arrive again", resent)
    except Timeout as exc:
        problems.append(str(exc))
    copies = [m for m in inbox_ids(receiver) if m == mid]
    delivered = len(copies) != 1 or _digest(inbox_ids(receiver)[mid]) != digest
    return _judge(
        "replay-same", "the same ciphertext delivered again after it was processed",
        receiver, DUPLICATE, found=kinds_for(receiver, mid), started=started,
        delivered=delivered, extra=problems,
    )  # fmt: skip


def case_replay_new(bench: Bench) -> Outcome:
    """A different ciphertext, correctly signed, reusing an id already processed."""
    started = time.monotonic()
    receiver = bench.receiver
    mid = bench.send_export()
    _received(bench, mid)
    digest = _digest(inbox_ids(receiver)[mid])
    _, plain, _ = _legit_export(bench, message_id=MessageId(mid))
    outcome = _attack_incoming(
        bench, "replay-new", "a new ciphertext reusing an already processed message id",
        receiver, mid, data=_sealed_by_sender(bench, plain), kind="replayed",
    )  # fmt: skip
    # The journal row is the original's (processed); what counts is the inbox.
    delivered = _digest(inbox_ids(receiver)[mid]) != digest
    problems = tuple(p for p in outcome.problems if "answered" not in p)
    return replace(
        outcome, delivered=delivered, problems=problems, seconds=time.monotonic() - started
    )


@contextlib.contextmanager
def _pending_export(bench: Bench) -> Iterator[str]:
    """A real export from the sender, uploaded but not yet answered: the receiver's
    daemon is paused meanwhile and resumed afterwards (and must then receipt it)."""
    receiver = bench.receiver
    bench.stop(receiver)
    try:
        mid = bench.send_export()
        bench.wait_state(bench.sender, mid, "uploaded")
        yield mid
    finally:
        bench.start(receiver)
    _received(bench, mid)


def _attack_receipt(
    bench: Bench, case: str, attack: str, *, signer: Key, wrong_hash: bool, kind: str,
    several: bool = False,
) -> Outcome:  # fmt: skip
    started = time.monotonic()
    sender = bench.sender
    with _pending_export(bench) as mid:
        row = outgoing(sender, mid)
        assert row is not None  # noqa: S101 -- just sent
        digest = str(row["sha256"])
        if wrong_hash:
            digest = hashlib.sha256(digest.encode()).hexdigest()
        rid, plain = receipt_plaintext(
            bench.receiver.id, sender.id, mid, digest, int(row["record_count"] or 0),
            also_answering=MessageId.new().value if several else None,
        )  # fmt: skip
        data = seal(signer.home, plain, to=sender.fingerprint, signer=signer.fingerprint)
        # A receipt-invalid incident names the message the receipt claimed to answer.
        named = mid if kind == "receipt-invalid" else None
        outcome = _attack_incoming(
            bench, case, attack, sender, rid.value, data=data, kind=kind, named=named
        )
        after = outgoing(sender, mid)
        accepted = after is None or after["state"] != "uploaded"
    state = "gone" if after is None else after["state"]
    extra = (f"the receipt was accepted: message is {state}",) if accepted else ()
    return replace(
        outcome,
        delivered=outcome.delivered or accepted,
        problems=outcome.problems + extra,
        seconds=time.monotonic() - started,
    )


def case_forged_receipt(bench: Bench) -> Outcome:
    return _attack_receipt(
        bench, "forged-receipt",
        "a receipt (right hash) for a pending message, signed by mallory",
        signer=bench.mallory, wrong_hash=False, kind="unknown-signer",
    )  # fmt: skip


def case_receipt_wrong_hash(bench: Bench) -> Outcome:
    return _attack_receipt(
        bench, "receipt-wrong-hash",
        "a receipt signed by the real partner key with a wrong received_sha256",
        signer=bench.key(bench.receiver), wrong_hash=True, kind="receipt-invalid",
    )  # fmt: skip


def case_receipt_answers_wrong_hash(bench: Bench) -> Outcome:
    return _attack_receipt(
        bench, "receipt-answers-wrong-hash",
        "a partner-signed receipt with several answers: a wrong received_sha256 for a "
        "pending message, and one for a message never sent",
        signer=bench.key(bench.receiver), wrong_hash=True, kind="receipt-invalid",
        several=True,
    )  # fmt: skip


def case_receipt_unknown(bench: Bench) -> Outcome:
    """A receipt, signed by the real partner key, for a message we never sent."""
    sender, receiver = bench.sender, bench.receiver
    never_sent = MessageId.new().value
    rid, plain = receipt_plaintext(receiver.id, sender.id, never_sent, "0" * 64, 3)
    data = seal(receiver.gpg_home, plain, to=sender.fingerprint, signer=receiver.fingerprint)
    return _attack_incoming(
        bench, "receipt-unknown", "a partner-signed receipt answering a message never sent",
        sender, rid.value, data=data, kind="receipt-invalid", named=never_sent,
    )  # fmt: skip


def case_host_key_swap(bench: Bench) -> Outcome:
    """The partner's SFTP server answers with another host key (a man in the middle)."""
    started = time.monotonic()
    sender, receiver = bench.sender, bench.receiver
    saved = receiver.root / "sshd-saved"
    saved.mkdir(mode=0o700, exist_ok=True)
    host_key = receiver.root / "sshd" / "ssh_host_ed25519_key"
    for suffix in ("", ".pub"):
        shutil.copy2(f"{host_key}{suffix}", saved / f"key{suffix}")
    receiver.sshd.restart(new_host_key=True)
    problems: list[str] = []
    mid = ""
    found: dict[str, str] = {}
    delivered = False
    try:
        mid = bench.send_export()
        since = started_wall(started)
        try:
            bench.wait(
                "host-key-swap: a host-key-mismatch incident at the sender",
                lambda: observed_since(sender, "host-key-mismatch", since) is not None,
            )
        except Timeout as exc:
            problems.append(str(exc))
        time.sleep(0.5)  # give a wrongly trusting link time to upload, if it would
        incident_id = observed_since(sender, "host-key-mismatch", since)
        if incident_id:
            found["host-key-mismatch"] = incident_id
        row = outgoing(sender, mid)
        if row is None or row["state"] != "sealed":
            delivered = True
            problems.append(f"the message is {row['state'] if row else 'gone'}, not sealed")
        if (receiver.incoming / f"{mid}.pgp").exists() or incoming(receiver, mid) is not None:
            delivered = True
    finally:
        receiver.sshd.stop()
        for suffix in ("", ".pub"):
            shutil.copy2(saved / f"key{suffix}", f"{host_key}{suffix}")
        receiver.sshd.start()
    if mid:
        try:
            _received(bench, mid)  # the link recovers once the pinned key is back
        except Timeout as exc:
            problems.append(f"after restoring the host key: {exc}")
    return _judge(
        "host-key-swap", "the partner's sshd restarted with a new host key",
        sender, "host-key-mismatch", found=found, started=started, delivered=delivered,
        extra=problems,
    )  # fmt: skip


def started_wall(started_monotonic: float) -> float:
    """Wall-clock time of a ``time.monotonic()`` reading (the register uses wall time)."""
    return time.time() - (time.monotonic() - started_monotonic) - 0.001


def case_outbox_symlink(bench: Bench) -> Outcome:
    """A symlink in the outbox pointing at a real export elsewhere: refused unread."""
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    started = time.monotonic()
    sender, receiver = bench.sender, bench.receiver
    secret = sender.root / "elsewhere"
    secret.mkdir(mode=0o700, exist_ok=True)
    target = secret / "all-children.csv"
    header, rows = synthetic_rows(bench.rng, CATEGORY, 5)
    drop_export(secret, target.name, header, rows)
    touched: list[str] = []

    class Spy(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            if event.src_path == str(target):
                touched.append(event.event_type)

    observer = Observer()
    observer.schedule(Spy(), str(secret), recursive=False)
    observer.start()
    exports_before = export_ids(sender)
    inbox_before = set(inbox_ids(receiver))
    link = sender.outbox(receiver.id, CATEGORY) / "children.csv"
    problems: list[str] = []
    found: dict[str, str] = {}
    try:
        time.sleep(0.2)  # the watch is in place before the link appears
        link.symlink_to(target)
        since = started_wall(started)
        try:
            bench.wait(
                "outbox-symlink: an outbox-unsafe-file incident",
                lambda: observed_since(sender, "outbox-unsafe-file", since) is not None,
            )
        except Timeout as exc:
            problems.append(str(exc))
        time.sleep(3 * bench.workspace.settle_seconds + 0.3)  # would it be taken later?
        incident_id = observed_since(sender, "outbox-unsafe-file", since)
        if incident_id:
            found["outbox-unsafe-file"] = incident_id
    finally:
        observer.stop()
        observer.join(timeout=5)
    if touched:
        problems.append(f"the link's target was accessed: {sorted(set(touched))}")
    if not link.is_symlink():
        problems.append("the link was moved away instead of left in place for inspection")
    delivered = bool(export_ids(sender) - exports_before) or bool(
        set(inbox_ids(receiver)) - inbox_before
    )
    link.unlink(missing_ok=True)
    return _judge(
        "outbox-symlink", "a symlink in the outbox to an export outside it",
        sender, "outbox-unsafe-file", found=found, started=started, delivered=delivered,
        extra=problems,
    )  # fmt: skip


CASES: tuple[tuple[str, Callable[[Bench], Outcome]], ...] = (
    ("bit-flip", case_bit_flip),
    ("truncated", case_truncated),
    ("not-encrypted", case_signed_not_encrypted),
    ("altered-content", case_altered_content),
    ("wrong-signer", case_wrong_signer),
    ("unknown-party", case_unknown_party),
    ("unsigned", case_unsigned),
    ("misaddressed", case_misaddressed),
    ("expired", case_expired),
    ("replay-same", case_replay_same),
    ("replay-new", case_replay_new),
    ("forged-receipt", case_forged_receipt),
    ("receipt-wrong-hash", case_receipt_wrong_hash),
    ("receipt-answers-wrong-hash", case_receipt_answers_wrong_hash),
    ("receipt-unknown", case_receipt_unknown),
    ("host-key-swap", case_host_key_swap),
    ("outbox-symlink", case_outbox_symlink),
)


# --- notifications, checked once all cases ran -------------------------------------


def _check_notified(bench: Bench, outcome: Outcome, timeout: float) -> Outcome:
    if outcome.incident_id is None or not outcome.detected:
        return outcome
    party = bench.workspace[outcome.party]
    partner = bench.partner_of(party)
    inc_id = outcome.incident_id
    problems: list[str] = []
    told: list[str] = []
    events = [e for e in log_events(party, "security_incident") if e.get("incident_id") == inc_id]
    if events:
        told.append("log")
    else:
        problems.append("no security_incident log event")
    try:
        bench.wait(f"a mail about {inc_id}", lambda: bool(bench.mail.about(inc_id)), timeout)
    except Timeout as exc:
        problems.append(str(exc))
    mails = bench.mail.about(inc_id)
    if len(mails) > 1:
        problems.append(f"{len(mails)} mails about one incident")
    if mails:
        if set(mails[0].recipients) != set(officers(party)):
            problems.append(f"mail went to {mails[0].recipients}")
        else:
            told.append("mail")
    kind = Kind(outcome.expected)
    notices: list[Incident] = []

    def noticed() -> bool:
        notices[:] = [
            i
            for i in incidents(partner)
            if i.kind == Kind.PARTNER_NOTICE and i.notice is not None
            and i.notice.remote_id == inc_id
        ]  # fmt: skip
        own = incident(party, inc_id)
        return bool(notices) and own is not None and own.partner_informed_at is not None

    if CATALOGUE[kind].notify_partner:
        try:
            bench.wait(f"{partner.id} to register a partner-notice for {inc_id}", noticed, timeout)
            told.append(f"partner-notice at {partner.id} ({notices[0].id})")
        except Timeout as exc:
            problems.append(str(exc))
            own = incident(party, inc_id)
            if notices and own is not None and own.partner_informed_at is None:
                problems.append(f"{party.id}'s register does not record that it informed "
                                f"{partner.id}")  # fmt: skip
            problems.extend(register_failures(party))
    elif noticed() or notices:
        problems.append("the partner was told about an incident the catalogue keeps local")
    return replace(outcome, notified=tuple(told), problems=outcome.problems + tuple(problems))


def _final_checks(bench: Bench) -> list[str]:
    """Nothing delivered that was not legitimately sent; nothing left lying around."""
    problems: list[str] = []
    for party in bench.workspace.parties.values():
        stray = sorted(set(inbox_ids(party)) - bench.legit)
        if stray:
            problems.append(f"{party.id} inbox holds files from attacks: {stray}")
        left = [p.name for p in party.incoming.iterdir()] if party.incoming.is_dir() else []
        if left:
            problems.append(f"{party.id} channel still holds {left}")
        work = party.state_dir / "work"
        plaintexts = [p.name for p in work.iterdir()] if work.is_dir() else []
        if plaintexts:
            problems.append(f"{party.id} left decrypted plaintext in {work}: {plaintexts}")
    return problems


@dataclass(frozen=True, slots=True)
class SuiteResult:
    outcomes: tuple[Outcome, ...]
    problems: tuple[str, ...]
    seconds: float

    @property
    def detected(self) -> int:
        return sum(o.detected for o in self.outcomes)

    @property
    def delivered(self) -> int:
        return sum(o.delivered for o in self.outcomes)

    @property
    def ok(self) -> bool:
        return not self.problems and self.detected == len(self.outcomes) and not self.delivered


def summary_line(result: SuiteResult) -> str:
    return (
        f"tamper: {len(result.outcomes)} cases, {result.detected} detected, "
        f"{result.delivered} delivered"
    )


def run_suite(
    root: Path,
    *,
    only: Sequence[str] = (),
    report: Callable[[str], None] = lambda _line: None,
) -> SuiteResult:
    """Run the cases (all, or those named in ``only``) against one shared workspace."""
    started = time.monotonic()
    selected = [(n, f) for n, f in CASES if not only or n in only]
    outcomes: list[Outcome] = []
    problems: list[str] = []
    with open_bench(root) as bench:
        for name, case in selected:
            t0 = time.monotonic()
            try:
                outcome = case(bench)
            except Exception as exc:  # noqa: BLE001 -- one broken case must not hide the rest
                outcome = Outcome(name, "", "?", "?", problems=(f"{type(exc).__name__}: {exc}",),
                                  seconds=time.monotonic() - t0)  # fmt: skip
            report(f"tamper: {name:<22} ran in {outcome.seconds:.2f} s")
            outcomes.append(outcome)
        outcomes = [_check_notified(bench, o, timeout=DETECT_TIMEOUT) for o in outcomes]
        for party in bench.workspace.parties.values():
            code = bench.workspace.stop_daemon(party)
            if code != 0:
                problems.append(f"the {party.id} daemon exited with {code}")
        problems.extend(_final_checks(bench))  # after the stop: nothing is in flight
    for outcome in outcomes:
        report(outcome.line())
    for problem in problems:
        report(f"tamper: PROBLEM {problem}")
    return SuiteResult(tuple(outcomes), tuple(problems), time.monotonic() - started)
