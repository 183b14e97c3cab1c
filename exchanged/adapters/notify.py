"""Telling people about incidents: plain-text mail over SMTP and an optional command
hook (for ticket systems) that receives the incident as JSON on stdin.

Nothing sent here contains personal data: mails are built from the incident record,
which itself holds only catalogue texts, ids, codes, counts and times. Failures raise
:class:`MailError` / :class:`HookError` (local-system errors); the caller logs them and
tries again later, since a mail that never arrives is worse than a late one.
"""

from __future__ import annotations

import json
import os
import smtplib
import ssl
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from ipaddress import ip_address
from pathlib import Path
from typing import Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from exchanged.core.incident import (
    CATALOGUE,
    Incident,
    OrgInfo,
    Reminder,
    incident_to_dict,
)
from exchanged.errors import LocalSystemError, OperatorInputError

__all__ = [
    "CommandHook",
    "HookError",
    "IncidentNotifier",
    "MailError",
    "MailNotifier",
    "SmtpSettings",
    "incident_mail",
    "reminder_mail",
]

Security = Literal["starttls", "tls", "none"]
_MAX_IDS_IN_MAIL = 10


class MailError(LocalSystemError):
    """The incident mail could not be handed to the SMTP server."""


class HookError(LocalSystemError):
    """The incident command hook failed or timed out."""


class IncidentNotifier(Protocol):
    """The port the service uses; mail and hook both fit it."""

    def send_incident(self, incident: Incident, org: OrgInfo) -> None: ...

    def send_reminder(self, reminder: Reminder, incident: Incident, org: OrgInfo) -> None: ...


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    host: str
    port: int
    security: Security
    from_addr: str
    to_addrs: tuple[str, ...]
    username: str | None = None
    # Read by the caller from a systemd credential; never logged, hence repr=False.
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    ca_file: Path | None = None  # for a server with a certificate from a private CA

    def __post_init__(self) -> None:
        if self.security not in ("starttls", "tls", "none"):
            raise OperatorInputError("smtp security must be 'starttls', 'tls' or 'none'")
        if not self.to_addrs:
            raise OperatorInputError("smtp needs at least one recipient (to)")
        if (self.username is None) != (self.password is None):
            raise OperatorInputError("smtp username and password go together")
        # A password in clear text over the network would defeat the point of a
        # security notification; on loopback (a local relay) it never leaves the host.
        if self.username and self.security == "none" and not _is_loopback(self.host):
            raise OperatorInputError(
                "smtp credentials need security 'starttls' or 'tls' unless the host is local"
            )


def _amsterdam(value: datetime) -> str:
    try:
        local = value.astimezone(ZoneInfo("Europe/Amsterdam"))
    except ZoneInfoNotFoundError:  # no tzdata: UTC alone is still correct
        return "Europe/Amsterdam time unavailable (install tzdata)"
    return f"{local:%Y-%m-%d %H:%M %Z} (Europe/Amsterdam)"


def _utc(value: datetime) -> str:
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _deadline_lines(inc: Incident) -> list[str]:
    return [
        f"  Aware since: {inc.aware_at.astimezone(UTC).isoformat()}",
        f"  Deadline:    {inc.deadline.astimezone(UTC).isoformat()}",
        f"               = {_utc(inc.deadline)} = {_amsterdam(inc.deadline)}",
    ]


def _ids(inc: Incident) -> str:
    shown = ", ".join(inc.message_ids[:_MAX_IDS_IN_MAIL]) or "none identified"
    more = len(inc.message_ids) - _MAX_IDS_IN_MAIL
    return f"{shown} and {more} more" if more > 0 else shown


def _howto(inc: Incident) -> list[str]:
    return [
        "What to do now",
        f"  1. Review:  exchanged incidents show {inc.id}",
        "  2. Decide whether to notify the Autoriteit Persoonsgegevens (AVG art. 33;",
        "     every breach is documented, also when it is not reported):",
        f"     exchanged incidents assess {inc.id} --notify-ap yes|no --reason TEXT "
        "[--subjects-informed yes|no]",
        f"  3. Draft of the AP form: exchanged incidents export {inc.id} --format md",
        f"  4. Once filed: exchanged incidents report {inc.id} --reference REF",
    ]


def incident_mail(inc: Incident, org: OrgInfo) -> tuple[str, str]:
    """Subject and body of the first mail about an incident."""
    info = CATALOGUE[inc.kind]
    subject = (
        f"[exchanged] {inc.severity.value} incident {inc.id}: {inc.kind.value}"
        f" — AP deadline {_utc(inc.deadline)}"
    )
    partners = ", ".join(inc.partners) or "none"
    lines = [
        f"Security incident {inc.id} at {org.name} ({org.party_id})",
        f"Kind: {inc.kind.value}   Severity: {inc.severity.value}   Status: {inc.status.value}",
        "",
        "What happened",
        f"  {inc.summary}",
        f"  Partner: {partners}",
        f"  Observations: {inc.count}, first {inc.detected_at.astimezone(UTC).isoformat()}, "
        f"last {inc.last_seen_at.astimezone(UTC).isoformat()}",
        f"  Messages concerned: {_ids(inc)}",
        f"  Technical codes: {', '.join(inc.detail_codes) or 'none'}",
        "",
        "What exchanged already did",
        *(f"  {m}" for m in inc.measures_taken),
        "  The incident was recorded in the register (AVG art. 33(5)).",
        "  Further observations of the same kind within the hour are added to this",
        "  incident without another mail.",
    ]
    if info.notify_partner and inc.partners:
        lines.append(f"  The covenant asks that partner {partners} is informed.")
    lines += ["", "AVG art. 33 deadline (72 hours after becoming aware)", *_deadline_lines(inc)]
    lines += ["", *_howto(inc), "", _footer(org)]
    return subject, "\n".join(lines) + "\n"


def reminder_mail(rem: Reminder, inc: Incident, org: OrgInfo) -> tuple[str, str]:
    left = (
        "deadline passed"
        if rem.mark == "overdue"
        else f"{max(int(rem.remaining.total_seconds() // 3600), 0)} h left"
    )
    subject = (
        f"[exchanged] reminder ({left}): incident {inc.id}: {inc.kind.value}"
        f" — AP deadline {_utc(inc.deadline)}"
    )
    decided = (
        "No decision on notifying the AP has been recorded yet."
        if inc.ap is None
        else "The decision was to notify the AP, but no report has been recorded yet."
    )
    lines = [
        f"Reminder for security incident {inc.id} at {org.name} ({org.party_id}): {left}.",
        "",
        f"  {inc.summary}",
        f"  {decided}",
        "",
        *_deadline_lines(inc),
        "",
        *_howto(inc),
        "",
        _footer(org),
    ]
    return subject, "\n".join(lines) + "\n"


def _footer(org: OrgInfo) -> str:
    contact = org.contact_point or "your privacy officer"
    return (
        "This mail contains no personal data; details are in the register.\n"
        f"Contact point: {contact}\n-- exchanged"
    )


class MailNotifier:
    def __init__(self, settings: SmtpSettings) -> None:
        self._s = settings

    def send_incident(self, incident: Incident, org: OrgInfo) -> None:
        self._send(*incident_mail(incident, org))

    def send_reminder(self, reminder: Reminder, incident: Incident, org: OrgInfo) -> None:
        self._send(*reminder_mail(reminder, incident, org))

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self._s.ca_file) if self._s.ca_file else None)

    def _send(self, subject: str, body: str) -> None:
        s = self._s
        msg = EmailMessage()
        msg["From"] = s.from_addr
        msg["To"] = ", ".join(s.to_addrs)
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = make_msgid(domain=s.from_addr.rpartition("@")[2] or None)
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, please
        msg.set_content(body)
        try:
            smtp: smtplib.SMTP
            if s.security == "tls":
                smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=self._context())
            else:
                smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            with smtp:
                if s.security == "starttls":
                    smtp.starttls(context=self._context())
                if s.username is not None and s.password is not None:
                    smtp.login(s.username, s.password)
                refused = smtp.send_message(msg, from_addr=s.from_addr, to_addrs=list(s.to_addrs))
        except (smtplib.SMTPException, OSError) as exc:
            raise MailError(
                f"could not send the incident mail via {s.host}:{s.port} ({s.security}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if refused:
            raise MailError(f"the SMTP server refused recipients: {', '.join(sorted(refused))}")


class CommandHook:
    """Runs ``argv`` (never through a shell) with the incident as JSON on stdin."""

    def __init__(self, argv: Sequence[str], timeout: float = 30.0) -> None:
        if not argv:
            raise OperatorInputError("the incident hook command is empty")
        self._argv = list(argv)
        self._timeout = timeout

    def send_incident(self, incident: Incident, org: OrgInfo) -> None:
        self._run(incident, "incident")

    def send_reminder(self, reminder: Reminder, incident: Incident, org: OrgInfo) -> None:
        self._run(incident, f"reminder-{reminder.mark}")

    def _run(self, incident: Incident, event: str) -> None:
        payload = json.dumps(incident_to_dict(incident), sort_keys=True, ensure_ascii=False)
        # A small, explicit environment: the daemon's own (credentials directory and
        # all) is none of the hook's business.
        env = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "TZ"}}
        env |= {"EXCHANGED_EVENT": event, "EXCHANGED_INCIDENT_ID": incident.id}
        try:
            done = subprocess.run(
                self._argv,
                input=payload.encode(),
                capture_output=True,
                timeout=self._timeout,
                env=env,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise HookError(
                f"incident hook {self._argv[0]} did not finish within {self._timeout:g} s"
            ) from None
        except OSError as exc:
            raise HookError(f"incident hook {self._argv[0]} could not start: {exc}") from exc
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace").strip()[-200:]
            raise HookError(
                f"incident hook {self._argv[0]} exited with {done.returncode}: {tail or '-'}"
            )
