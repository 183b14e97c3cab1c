"""Security incidents: the detection catalogue, the art. 33(5) record, storm folding,
the 72-hour clock and the AP data-breach form.

Pure: the current time, new ids and the organisation's details come in as arguments.
Serialisation and partner notices live in ``incident_codec``, the AP form in
``incident_form``; the functions re-exported here are the stable entry points.
Nothing here may carry personal data of data subjects; summaries are built from the
catalogue and detail codes only, never from file contents or names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from exchanged.core.model import MessageId

__all__ = [
    "AP_DEADLINE",
    "CATALOGUE",
    "REMINDER_MARKS",
    "STORM_WINDOW",
    "TRANSITIONS",
    "ApDecision",
    "DataCategory",
    "Effect",
    "Fold",
    "Incident",
    "Kind",
    "KindInfo",
    "Nature",
    "Observation",
    "OrgInfo",
    "PartnerNotice",
    "Reminder",
    "Severity",
    "Status",
    "can_transition",
    "due_reminders",
    "fold",
    "incident_from_dict",
    "incident_notice_body",
    "incident_to_dict",
    "parse_incident_notice",
    "render_ap_form",
]

AP_DEADLINE = timedelta(hours=72)  # AVG art. 33(1), counted from awareness
STORM_WINDOW = timedelta(hours=1)
_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9/._:-]{0,79}$")
_NINE_DIGITS = re.compile(r"(?<!\d)\d{9}(?!\d)")  # could be a BSN
# Bounded so that a storm cannot grow one register row without limit; the count and
# the time range still describe the whole storm.
MAX_MESSAGE_IDS = 100
MAX_DETAIL_CODES = 20


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"


class Nature(StrEnum):
    CONFIDENTIALITY = "confidentiality"
    INTEGRITY = "integrity"
    AVAILABILITY = "availability"


class Effect(StrEnum):
    READ = "read"
    COPIED = "copied"
    ALTERED = "altered"
    DELETED = "deleted"
    LOST = "lost"


class DataCategory(StrEnum):
    NAME_ADDRESS = "name-address"
    BSN = "bsn"
    DATE_OF_BIRTH = "date-of-birth"
    SCHOOL = "school"
    ABSENCE = "absence"
    EXEMPTION = "exemption"


class Status(StrEnum):
    OPEN = "open"
    ASSESSED = "assessed"  # decided to notify the AP, report not yet filed
    REPORTED = "reported"
    NOT_REPORTED = "not-reported"
    CLOSED = "closed"


# Re-assessment stays possible until closing because new facts (a larger storm, the
# partner's findings) can change the decision; a closed incident is history.
TRANSITIONS: Mapping[Status, frozenset[Status]] = {
    Status.OPEN: frozenset({Status.ASSESSED, Status.NOT_REPORTED}),
    Status.ASSESSED: frozenset({Status.ASSESSED, Status.NOT_REPORTED, Status.REPORTED}),
    Status.NOT_REPORTED: frozenset({Status.ASSESSED, Status.NOT_REPORTED, Status.CLOSED}),
    Status.REPORTED: frozenset({Status.REPORTED, Status.CLOSED}),
    Status.CLOSED: frozenset(),
}


def can_transition(current: Status, target: Status) -> bool:
    return target in TRANSITIONS[current]


class Kind(StrEnum):
    """Stable ids: they appear in logs, mails, partner notices and the register."""

    SIGNATURE_INVALID = "signature-invalid"
    UNKNOWN_SIGNER = "unknown-signer"
    UNSIGNED_MESSAGE = "unsigned-message"
    DECRYPTION_FAILED = "decryption-failed"
    MISADDRESSED = "misaddressed"
    REPLAYED = "replayed"
    EXPIRED = "expired"
    HOST_KEY_MISMATCH = "host-key-mismatch"
    RECEIPT_INVALID = "receipt-invalid"
    RECEIPT_FAILED = "receipt-failed"
    LOSS_IN_TRANSIT = "loss-in-transit"
    PARTNER_POLICY_VIOLATION = "partner-policy-violation"
    OUTBOX_UNSAFE_FILE = "outbox-unsafe-file"
    PARTNER_KEY_CHANGED = "partner-key-changed"
    PARTNER_KEY_EXPIRED = "partner-key-expired"
    PARTNER_NOTICE = "partner-notice"
    MALFORMED_MESSAGE = "malformed-message"


@dataclass(frozen=True, slots=True)
class KindInfo:
    kind: Kind
    severity: Severity
    nature: tuple[Nature, ...]
    notify_partner: bool  # shared data concerned: the covenant says tell the partner
    mail: bool
    encrypted: bool | None  # were the data encrypted at the time (None: unknown)
    title: str
    action: str  # what the daemon already did, for the mail and the AP form


_C, _I, _A = Nature.CONFIDENTIALITY, Nature.INTEGRITY, Nature.AVAILABILITY
_HELD = "The message was quarantined; nothing of it was delivered to the inbox."


def _k(  # noqa: PLR0917 - positional keeps the catalogue a readable table
    kind: Kind,
    sev: Severity,
    nature: tuple[Nature, ...],
    partner: bool,
    encrypted: bool | None,
    title: str,
    action: str = _HELD,
) -> tuple[Kind, KindInfo]:
    return kind, KindInfo(kind, sev, nature, partner, True, encrypted, title, action)


_CRIT, _HIGH, _MED = Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM
CATALOGUE: Mapping[Kind, KindInfo] = dict(
    [
        _k(Kind.SIGNATURE_INVALID, _CRIT, (_I,), True, True,
           "An incoming message carried an invalid signature."),
        _k(Kind.UNKNOWN_SIGNER, _CRIT, (_I,), True, True,
           "An incoming message was signed by a key that is not the partner's pinned key."),
        _k(Kind.UNSIGNED_MESSAGE, _CRIT, (_I,), True, True,
           "An incoming message was not signed."),
        _k(Kind.DECRYPTION_FAILED, _HIGH, (_I, _A), True, True,
           "An incoming message could not be decrypted with our key."),
        _k(Kind.MISADDRESSED, _CRIT, (_C,), True, True,
           "An incoming message was addressed to another party (possibly forwarded)."),
        _k(Kind.REPLAYED, _HIGH, (_I,), True, True,
           "An incoming message had been received before (replay)."),
        _k(Kind.EXPIRED, _MED, (_I,), True, True,
           "An incoming message was older than the accepted age."),
        _k(Kind.HOST_KEY_MISMATCH, _CRIT, (_C, _I), True, True,
           "The partner's SFTP host key did not match the pinned key (possible interception).",
           "The connection was refused before any file was transferred."),
        _k(Kind.RECEIPT_INVALID, _CRIT, (_I,), True, True,
           "A receipt was invalid: wrong signer, unknown message or checksum mismatch.",
           "The receipt was not accepted; the message stays unconfirmed."),
        _k(Kind.RECEIPT_FAILED, _HIGH, (_A,), True, True,
           "The partner refused one of our messages (failed receipt).",
           "The message is marked failed; it was not delivered on the partner's side."),
        _k(Kind.LOSS_IN_TRANSIT, _HIGH, (_C, _A), True, True,
           "No receipt arrived past the second deadline: the message may be lost in transit.",
           "The message is marked overdue; it is not resent automatically."),
        _k(Kind.PARTNER_POLICY_VIOLATION, _HIGH, (_C,), True, True,
           "A partner's message held fields the covenant does not allow (over-disclosure).",
           "The message was refused with a failed/policy-violation receipt; nothing delivered."),
        _k(Kind.OUTBOX_UNSAFE_FILE, _HIGH, (_C, _I), False, False,
           "An outbox held a symbolic link or a file owned by another user.",
           "The file was not read or sent and was left in place for inspection."),
        _k(Kind.PARTNER_KEY_CHANGED, _CRIT, (_C, _I), True, None,
           "The partner's pinned key changed in the keyring.",
           "Sending to and accepting from this partner stopped until the key is re-pinned."),
        _k(Kind.PARTNER_KEY_EXPIRED, _MED, (_A,), True, None,
           "The partner's pinned key expired.",
           "Sending to this partner stopped until a valid key is pinned."),
        _k(Kind.MALFORMED_MESSAGE, _MED, (_I,), True, True,
           "A correctly signed message from the partner was not a valid v1 envelope."),
        _k(Kind.PARTNER_NOTICE, _HIGH, (_C,), False, None,
           "A partner reported a security incident concerning data shared with us.",
           "The partner's notice was registered; no data were changed here."),
    ]
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class PartnerNotice:
    """What a partner's ``incident-notice`` tells us; never personal data."""

    remote_id: str
    remote_kind: str
    first_seen: datetime
    last_seen: datetime
    message_ids: tuple[str, ...]
    records_min: int | None
    records_max: int | None
    contact_point: str


@dataclass(frozen=True, slots=True)
class Observation:
    """One detection, as the service sees it; ``detail_code`` is a short machine code."""

    kind: Kind
    partner: str | None
    message_id: str | None
    at: datetime
    detail_code: str
    record_count: int | None = None
    notice: PartnerNotice | None = None

    def __post_init__(self) -> None:
        _require_aware(self.at, "observation time")
        # These strings reach the register, mails and partners: machine codes only,
        # so a careless caller cannot pass a file name or a row through them.
        for what, value in (("detail code", self.detail_code), ("partner", self.partner)):
            if value is not None and (not _CODE.match(value) or _NINE_DIGITS.search(value)):
                raise ValueError(f"{what} {value!r} is not a plain code")
        if self.message_id is not None:
            MessageId(self.message_id)  # a UUID, or ValueError


@dataclass(frozen=True, slots=True)
class ApDecision:
    notify: bool
    rationale: str
    decided_at: datetime
    decided_by: str
    reported_at: datetime | None = None
    reference: str | None = None


@dataclass(frozen=True, slots=True)
class Incident:
    id: str
    kind: Kind
    detected_at: datetime
    aware_at: datetime
    last_seen_at: datetime
    count: int
    ongoing: bool
    summary: str
    nature: tuple[Nature, ...]
    partners: tuple[str, ...]
    status: Status = Status.OPEN
    effects: tuple[Effect, ...] = ()
    message_ids: tuple[str, ...] = ()
    detail_codes: tuple[str, ...] = ()
    records_min: int | None = None
    records_max: int | None = None
    subjects_min: int | None = None
    subjects_max: int | None = None
    data_categories: tuple[DataCategory, ...] = ()
    encrypted: bool | None = None
    encryption: str = ""
    consequences: str = ""
    measures_taken: tuple[str, ...] = ()
    measures_planned: tuple[str, ...] = ()
    ap: ApDecision | None = None
    subjects_informed: bool | None = None
    subjects_rationale: str = ""
    partner_informed_at: datetime | None = None
    partner_informed_how: str = ""
    reminders_sent: tuple[str, ...] = ()
    notice: PartnerNotice | None = None
    updated_at: datetime | None = None
    updated_by: str = "exchanged"

    @property
    def deadline(self) -> datetime:
        return self.aware_at + AP_DEADLINE

    @property
    def severity(self) -> Severity:
        return CATALOGUE[self.kind].severity

    @property
    def awaiting_ap(self) -> bool:
        """The 72-hour clock still matters: no decision, or a decision not yet filed."""
        return self.status in (Status.OPEN, Status.ASSESSED)


@dataclass(frozen=True, slots=True)
class Fold:
    incident: Incident
    created: bool
    mail: bool


_ENCRYPTION = "OpenPGP, signed then encrypted to the partner's pinned key (ed25519/cv25519)"


def _new_incident(obs: Observation, new_id: str) -> Incident:
    info = CATALOGUE[obs.kind]
    notice = obs.notice
    return Incident(
        id=new_id,
        kind=obs.kind,
        detected_at=obs.at,
        # The daemon's detection is when the controller can know; the officer may
        # correct it, but the conservative default keeps the deadline early.
        aware_at=obs.at,
        last_seen_at=obs.at,
        count=1,
        ongoing=True,
        summary=info.title
        + (f" Their incident {notice.remote_id}, kind {notice.remote_kind}." if notice else ""),
        nature=info.nature,
        partners=(obs.partner,) if obs.partner else (),
        message_ids=_ids((), obs, notice),
        detail_codes=(obs.detail_code,),
        records_min=notice.records_min if notice else obs.record_count,
        records_max=notice.records_max if notice else obs.record_count,
        encrypted=info.encrypted,
        encryption=_ENCRYPTION if info.encrypted else "",
        measures_taken=(info.action,),
        notice=notice,
        updated_at=obs.at,
    )


def _ids(have: tuple[str, ...], obs: Observation, notice: PartnerNotice | None) -> tuple[str, ...]:
    new = list(have)
    for mid in ((obs.message_id,) if obs.message_id else ()) + (
        notice.message_ids if notice else ()
    ):
        if mid not in new and len(new) < MAX_MESSAGE_IDS:
            new.append(mid)
    return tuple(new)


def _add(a: int | None, b: int | None) -> int | None:
    return None if a is None and b is None else (a or 0) + (b or 0)


def _matches(inc: Incident, obs: Observation, window: timedelta) -> bool:
    if inc.status != Status.OPEN or inc.kind != obs.kind:
        return False
    if inc.partners != ((obs.partner,) if obs.partner else ()):
        return False
    # A partner's distinct incidents stay distinct; updates to one fold into it.
    if obs.notice is not None and (
        inc.notice is None or inc.notice.remote_id != obs.notice.remote_id
    ):
        return False
    # Workers may report slightly out of order, so the window extends both ways.
    return inc.detected_at - window <= obs.at <= inc.last_seen_at + window


def fold(
    candidates: Iterable[Incident],
    obs: Observation,
    new_id: str,
    window: timedelta = STORM_WINDOW,
) -> Fold:
    """Fold ``obs`` into the open incident of the same kind and partner seen within
    ``window``, or open a new one. Only a new incident triggers a mail, so a storm
    costs one mail however long it lasts."""
    for inc in candidates:
        if not _matches(inc, obs, window):
            continue
        codes = inc.detail_codes
        if obs.detail_code not in codes and len(codes) < MAX_DETAIL_CODES:
            codes = (*codes, obs.detail_code)
        if obs.notice is not None:  # a partner's update restates its counts
            rec_min, rec_max = obs.notice.records_min, obs.notice.records_max
        else:
            rec_min = _add(inc.records_min, obs.record_count)
            rec_max = _add(inc.records_max, obs.record_count)
        updated = replace(
            inc,
            count=inc.count + 1,
            last_seen_at=max(inc.last_seen_at, obs.at),
            detected_at=min(inc.detected_at, obs.at),
            message_ids=_ids(inc.message_ids, obs, obs.notice),
            detail_codes=codes,
            records_min=rec_min,
            records_max=rec_max,
            notice=obs.notice or inc.notice,
            updated_at=obs.at,
            updated_by="exchanged",
        )
        return Fold(updated, created=False, mail=False)
    return Fold(_new_incident(obs, new_id), created=True, mail=CATALOGUE[obs.kind].mail)


# --- the 72-hour clock ------------------------------------------------------------

REMINDER_MARKS: tuple[tuple[str, timedelta], ...] = (
    ("overdue", timedelta(0)),
    ("4h", timedelta(hours=4)),
    ("24h", timedelta(hours=24)),
)


@dataclass(frozen=True, slots=True)
class Reminder:
    incident_id: str
    mark: str  # "24h", "4h" or "overdue"
    remaining: timedelta
    deadline: datetime


def due_reminders(incidents: Iterable[Incident], now: datetime) -> list[Reminder]:
    """The most urgent unsent reminder per incident still awaiting the AP step.

    After downtime only the most urgent mark is due, so an operator gets one mail
    saying "4 h left" rather than a 24 h and a 4 h reminder at once."""
    _require_aware(now, "now")
    due: list[Reminder] = []
    for inc in incidents:
        if not inc.awaiting_ap:
            continue
        remaining = inc.deadline - now
        for mark, threshold in REMINDER_MARKS:
            if remaining <= threshold:
                if mark not in inc.reminders_sent:
                    due.append(Reminder(inc.id, mark, remaining, inc.deadline))
                break
    return due


def _require_aware(value: datetime, what: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime")


@dataclass(frozen=True, slots=True)
class OrgInfo:
    """Our organisation for the AP form and partner notices: functional contacts only,
    so no employee's name ends up in a register or a mail."""

    name: str
    party_id: str
    contact_role: str = "Functionaris gegevensbescherming"
    contact_email: str = ""
    contact_phone: str = ""
    kvk: str = ""

    @property
    def contact_point(self) -> str:
        parts = [self.contact_role, self.contact_email, self.contact_phone]
        return ", ".join(p for p in parts if p)


# Thin entry points; the codec and the form import this module, hence the late imports.


def incident_to_dict(incident: Incident) -> dict[str, object]:
    from exchanged.core.incident_codec import to_dict

    return to_dict(incident)


def incident_from_dict(data: Mapping[str, object]) -> Incident:
    from exchanged.core.incident_codec import from_dict

    return from_dict(data)


def incident_notice_body(incident: Incident, contact_point: str) -> dict[str, object]:
    from exchanged.core.incident_codec import notice_body

    return notice_body(incident, contact_point)


def parse_incident_notice(
    body: Mapping[str, object], partner: str, received_at: datetime, notice_message_id: str | None
) -> Observation:
    from exchanged.core.incident_codec import parse_notice

    return parse_notice(body, partner, received_at, notice_message_id)


def render_ap_form(incident: Incident, organisation: OrgInfo, fmt: Literal["md", "json"]) -> str:
    from exchanged.core.incident_form import render

    return render(incident, organisation, fmt)
