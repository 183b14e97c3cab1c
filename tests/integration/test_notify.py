"""Incident mail against a real SMTP server (aiosmtpd on loopback) and the command
hook against a real subprocess.

The test makes a synthetic child (BSN, name, address) as the service would have in
hand while the incident happens, and checks that none of it reaches the mail.
"""

from __future__ import annotations

import ipaddress
import json
import random
import socket
import ssl
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from exchanged.adapters.notify import (
    CommandHook,
    HookError,
    MailError,
    MailNotifier,
    SmtpSettings,
)
from exchanged.core.incident import (
    Incident,
    Kind,
    Observation,
    OrgInfo,
    due_reminders,
    fold,
    incident_to_dict,
)
from exchanged.errors import LocalSystemError, OperatorInputError
from exchanged.testing.synthetic import HEADERS, synthetic_rows

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
ORG = OrgInfo(name="RBL Midden-Gelre", party_id="rbl", contact_email="privacy@rbl.example")
OFFICERS = ("fg@rbl.example", "security@rbl.example")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Inbox:
    """What the SMTP server accepted: (envelope recipients, raw message bytes)."""

    mails: list[tuple[list[str], bytes]] = field(default_factory=list)
    logins: list[tuple[bytes, bytes]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append((list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 OK"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.password == b"s3cret-from-credential"
        if ok:
            self.logins.append((data.login, data.password))
        return AuthResult(success=ok)


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.now(UTC) - timedelta(minutes=5))
        .not_valid_after(datetime.now(UTC) + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "smtp.crt", tmp / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def smtp_starttls(tmp_path: Path) -> Iterator[tuple[Inbox, int, Path]]:
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    inbox, port = Inbox(), free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        authenticator=inbox.authenticate,
        auth_require_tls=True,
    )
    controller.start()
    try:
        yield inbox, port, cert
    finally:
        controller.stop()


@dataclass(frozen=True)
class Child:
    bsn: str
    voornamen: str
    achternaam: str
    straat: str
    postcode: str


@pytest.fixture
def child() -> Child:
    """The synthetic child whose export was in flight when the incident happened."""
    header, rows = synthetic_rows(random.Random(5), "absoluut-verzuim", 1)  # noqa: S311 - test data
    row = dict(zip(header, rows[0], strict=False))
    assert header[: len(HEADERS["absoluut-verzuim"])] == HEADERS["absoluut-verzuim"]
    return Child(row["BSN"], row["Voornamen"], row["Achternaam"], row["Straat"], row["Postcode"])


def an_incident(kind: Kind = Kind.SIGNATURE_INVALID, n: int = 3) -> Incident:
    inc: list[Incident] = []
    for i in range(n):
        o = Observation(kind, "passendwijs", str(uuid.uuid4()), T0 + timedelta(minutes=i), "bad")
        inc = [fold(inc, o, "inc-20250303-0a1b2c3d").incident]
    return inc[0]


def parse(raw: bytes) -> EmailMessage:
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def assert_no_personal_data(raw: bytes, child: Child) -> None:
    text = parse(raw).get_body(("plain",))
    assert text is not None
    content = raw.decode(errors="replace") + str(text.get_content())
    for value in (child.bsn, child.voornamen, child.achternaam, child.straat, child.postcode):
        assert value not in content, "personal data leaked into the mail"


def test_incident_mail_arrives_with_subject_deadline_and_no_personal_data(
    smtp: tuple[Inbox, int], child: Child
) -> None:
    inbox, port = smtp
    settings = SmtpSettings(
        host="127.0.0.1", port=port, security="none", from_addr="exchanged@rbl.example",
        to_addrs=OFFICERS,
    )  # fmt: skip
    # The only free-text entry into an incident refuses what the service had in hand.
    with pytest.raises(ValueError, match="plain code"):
        Observation(Kind.SIGNATURE_INVALID, "passendwijs", None, T0, child.bsn)
    inc = an_incident()
    MailNotifier(settings).send_incident(inc, ORG)

    ((rcpts, raw),) = inbox.mails
    assert sorted(rcpts) == sorted(OFFICERS)
    msg = parse(raw)
    assert msg["Subject"] == (
        "[exchanged] critical incident inc-20250303-0a1b2c3d: signature-invalid"
        " — AP deadline 2025-03-06 09:00 UTC"
    )
    body = msg.get_body(("plain",))
    assert body is not None
    text = str(body.get_content())
    assert "2025-03-06T09:00:00+00:00" in text
    assert "2025-03-06 10:00 CET (Europe/Amsterdam)" in text
    assert "Observations: 3" in text
    assert "exchanged incidents assess inc-20250303-0a1b2c3d" in text
    assert "quarantined" in text
    assert_no_personal_data(raw, child)


def test_reminder_mail(smtp: tuple[Inbox, int], child: Child) -> None:
    inbox, port = smtp
    settings = SmtpSettings("127.0.0.1", port, "none", "exchanged@rbl.example", OFFICERS[:1])
    inc = an_incident(n=1)
    (rem,) = due_reminders([inc], T0 + timedelta(hours=69))
    MailNotifier(settings).send_reminder(rem, inc, ORG)
    ((rcpts, raw),) = inbox.mails
    assert rcpts == [OFFICERS[0]]
    assert parse(raw)["Subject"].startswith("[exchanged] reminder (3 h left): incident inc-")
    assert b"No decision on notifying the AP" in raw
    assert_no_personal_data(raw, child)


def test_starttls_with_login(smtp_starttls: tuple[Inbox, int, Path]) -> None:
    inbox, port, cert = smtp_starttls
    settings = SmtpSettings(
        host="127.0.0.1", port=port, security="starttls", from_addr="exchanged@rbl.example",
        to_addrs=OFFICERS, username="exchanged", password="s3cret-from-credential",  # noqa: S106 - throw-away test server
        ca_file=cert,
    )  # fmt: skip
    assert "s3cret" not in repr(settings)
    MailNotifier(settings).send_incident(an_incident(), ORG)
    assert inbox.logins == [(b"exchanged", b"s3cret-from-credential")]
    assert len(inbox.mails) == 1


def test_untrusted_certificate_is_a_local_system_error(
    smtp_starttls: tuple[Inbox, int, Path],
) -> None:
    _inbox, port, _cert = smtp_starttls
    settings = SmtpSettings("127.0.0.1", port, "starttls", "x@rbl.example", OFFICERS)
    with pytest.raises(MailError, match="starttls"):
        MailNotifier(settings).send_incident(an_incident(), ORG)


def test_unreachable_server_raises_mail_error() -> None:
    settings = SmtpSettings("127.0.0.1", free_port(), "none", "x@rbl.example", OFFICERS)
    with pytest.raises(MailError) as err:
        MailNotifier(settings).send_incident(an_incident(), ORG)
    assert isinstance(err.value, LocalSystemError)


def test_settings_refuse_clear_text_credentials_to_a_remote_host() -> None:
    with pytest.raises(OperatorInputError, match="starttls"):
        SmtpSettings("mail.example", 25, "none", "x@rbl.example", OFFICERS, "u", "p")


def test_command_hook_receives_the_incident_as_json(tmp_path: Path) -> None:
    out = tmp_path / "hook.json"
    script = (
        "import os, sys, pathlib; data = sys.stdin.read(); "
        f"pathlib.Path({str(out)!r}).write_text(os.environ['EXCHANGED_EVENT'] + '\\n' + data)"
    )
    inc = an_incident()
    CommandHook([sys.executable, "-c", script]).send_incident(inc, ORG)
    event, payload = out.read_text().split("\n", 1)
    assert event == "incident"
    assert json.loads(payload) == json.loads(json.dumps(incident_to_dict(inc)))


def test_command_hook_is_not_run_through_a_shell(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    hook = CommandHook([sys.executable, "-c", "import sys; sys.stdin.read()", f"; touch {marker}"])
    hook.send_incident(an_incident(), ORG)
    assert not marker.exists()


def test_command_hook_failures_raise_hook_error() -> None:
    with pytest.raises(HookError, match="exited with 3: boom"):
        CommandHook(
            [sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"]
        ).send_incident(an_incident(), ORG)
    with pytest.raises(HookError, match=r"within 0\.5 s"):
        CommandHook(
            [sys.executable, "-c", "import time; time.sleep(5)"], timeout=0.5
        ).send_incident(an_incident(), ORG)
    with pytest.raises(HookError, match="could not start"):
        CommandHook(["/nonexistent/hook"]).send_incident(an_incident(), ORG)
