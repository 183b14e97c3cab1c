"""Incidents as plain JSON-able dicts (register rows, ``--json``, the command hook) and
the ``incident-notice`` body exchanged with partners.

Use the entry points in :mod:`exchanged.core.incident`; this module holds the detail.
A partner's notice is parsed strictly because whatever passes is stored and mailed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime

from exchanged.core.incident import (
    MAX_MESSAGE_IDS,
    ApDecision,
    DataCategory,
    Effect,
    Incident,
    Kind,
    Nature,
    Observation,
    PartnerNotice,
    Severity,
    Status,
)
from exchanged.errors import PartnerError

__all__ = ["from_dict", "log_fields", "notice_body", "parse_notice", "to_dict"]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _notice_dict(n: PartnerNotice) -> dict[str, object]:
    return {
        "remote_id": n.remote_id,
        "remote_kind": n.remote_kind,
        "first_seen": _iso(n.first_seen),
        "last_seen": _iso(n.last_seen),
        "message_ids": list(n.message_ids),
        "records_min": n.records_min,
        "records_max": n.records_max,
        "contact_point": n.contact_point,
    }


def _ap_dict(ap: ApDecision) -> dict[str, object]:
    return {
        "notify": ap.notify,
        "rationale": ap.rationale,
        "decided_at": _iso(ap.decided_at),
        "decided_by": ap.decided_by,
        "reported_at": _iso(ap.reported_at),
        "reference": ap.reference,
    }


def to_dict(i: Incident) -> dict[str, object]:
    return {
        "id": i.id,
        "kind": i.kind.value,
        "severity": i.severity.value,
        "status": i.status.value,
        "detected_at": _iso(i.detected_at),
        "aware_at": _iso(i.aware_at),
        "deadline": _iso(i.deadline),
        "last_seen_at": _iso(i.last_seen_at),
        "count": i.count,
        "ongoing": i.ongoing,
        "summary": i.summary,
        "nature": [n.value for n in i.nature],
        "effects": [e.value for e in i.effects],
        "partners": list(i.partners),
        "message_ids": list(i.message_ids),
        "detail_codes": list(i.detail_codes),
        "records_min": i.records_min,
        "records_max": i.records_max,
        "subjects_min": i.subjects_min,
        "subjects_max": i.subjects_max,
        "data_categories": [c.value for c in i.data_categories],
        "encrypted": i.encrypted,
        "encryption": i.encryption,
        "consequences": i.consequences,
        "measures_taken": list(i.measures_taken),
        "measures_planned": list(i.measures_planned),
        "ap": None if i.ap is None else _ap_dict(i.ap),
        "subjects_informed": i.subjects_informed,
        "subjects_rationale": i.subjects_rationale,
        "partner_informed_at": _iso(i.partner_informed_at),
        "partner_informed_how": i.partner_informed_how,
        "reminders_sent": list(i.reminders_sent),
        "notice": None if i.notice is None else _notice_dict(i.notice),
        "updated_at": _iso(i.updated_at),
        "updated_by": i.updated_by,
    }


def log_fields(i: Incident) -> dict[str, object]:
    """Fields of the ``security_incident`` log event; log at ``level``."""
    return {
        "event": "security_incident",
        "level": "critical" if i.severity == Severity.CRITICAL else "error",
        "incident_id": i.id,
        "kind": i.kind.value,
        "severity": i.severity.value,
        "status": i.status.value,
        "count": i.count,
        "partners": list(i.partners),
        "deadline": _iso(i.deadline),
    }


# --- reading back what to_dict wrote (our own register: trusted, but still typed) ---


def _s(d: Mapping[str, object], key: str) -> str:
    return str(d[key])


def _t(d: Mapping[str, object], key: str) -> datetime:
    return datetime.fromisoformat(_s(d, key))


def _ot(d: Mapping[str, object], key: str) -> datetime | None:
    return None if d.get(key) is None else _t(d, key)


def _oi(d: Mapping[str, object], key: str) -> int | None:
    value = d.get(key)
    return None if value is None else int(str(value))


def _ob(d: Mapping[str, object], key: str) -> bool | None:
    value = d.get(key)
    return None if value is None else bool(value)


def _strs(d: Mapping[str, object], key: str) -> tuple[str, ...]:
    value = d.get(key) or []
    return tuple(str(v) for v in value) if isinstance(value, list | tuple) else ()


def from_dict(d: Mapping[str, object]) -> Incident:
    ap, notice = d.get("ap"), d.get("notice")
    return Incident(
        id=_s(d, "id"),
        kind=Kind(_s(d, "kind")),
        status=Status(_s(d, "status")),
        detected_at=_t(d, "detected_at"),
        aware_at=_t(d, "aware_at"),
        last_seen_at=_t(d, "last_seen_at"),
        count=int(_s(d, "count")),
        ongoing=bool(d["ongoing"]),
        summary=_s(d, "summary"),
        nature=tuple(Nature(v) for v in _strs(d, "nature")),
        effects=tuple(Effect(v) for v in _strs(d, "effects")),
        partners=_strs(d, "partners"),
        message_ids=_strs(d, "message_ids"),
        detail_codes=_strs(d, "detail_codes"),
        records_min=_oi(d, "records_min"),
        records_max=_oi(d, "records_max"),
        subjects_min=_oi(d, "subjects_min"),
        subjects_max=_oi(d, "subjects_max"),
        data_categories=tuple(DataCategory(v) for v in _strs(d, "data_categories")),
        encrypted=_ob(d, "encrypted"),
        encryption=_s(d, "encryption"),
        consequences=_s(d, "consequences"),
        measures_taken=_strs(d, "measures_taken"),
        measures_planned=_strs(d, "measures_planned"),
        ap=None
        if not isinstance(ap, Mapping)
        else ApDecision(
            notify=bool(ap["notify"]),
            rationale=_s(ap, "rationale"),
            decided_at=_t(ap, "decided_at"),
            decided_by=_s(ap, "decided_by"),
            reported_at=_ot(ap, "reported_at"),
            reference=None if ap.get("reference") is None else _s(ap, "reference"),
        ),
        subjects_informed=_ob(d, "subjects_informed"),
        subjects_rationale=_s(d, "subjects_rationale"),
        partner_informed_at=_ot(d, "partner_informed_at"),
        partner_informed_how=_s(d, "partner_informed_how"),
        reminders_sent=_strs(d, "reminders_sent"),
        notice=None
        if not isinstance(notice, Mapping)
        else PartnerNotice(
            remote_id=_s(notice, "remote_id"),
            remote_kind=_s(notice, "remote_kind"),
            first_seen=_t(notice, "first_seen"),
            last_seen=_t(notice, "last_seen"),
            message_ids=_strs(notice, "message_ids"),
            records_min=_oi(notice, "records_min"),
            records_max=_oi(notice, "records_max"),
            contact_point=_s(notice, "contact_point"),
        ),
        updated_at=_ot(d, "updated_at"),
        updated_by=_s(d, "updated_by"),
    )


# --- the incident-notice body ------------------------------------------------------

NOTICE_KEYS = frozenset(
    {
        "incident_id", "incident_kind", "severity", "first_seen", "last_seen", "ongoing",
        "observations", "message_ids", "records_min", "records_max", "contact_point",
    }
)  # fmt: skip
# A nine-digit run could be a BSN: a notice carrying one is refused, not stored.
_NINE_DIGITS = re.compile(r"(?<!\d)\d{9}(?!\d)")
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,79}$")
_TIME = re.compile(r"^[0-9T:.+\-Z ]{10,40}$")
_CONTACT = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")


def notice_body(incident: Incident, contact_point: str) -> dict[str, object]:
    """Facts about the transfer only: ids, kind, times, counts and whom to call."""
    return {
        "incident_id": incident.id,
        "incident_kind": incident.kind.value,
        "severity": incident.severity.value,
        "first_seen": _iso(incident.detected_at),
        "last_seen": _iso(incident.last_seen_at),
        "ongoing": incident.ongoing,
        "observations": incident.count,
        "message_ids": list(incident.message_ids),
        "records_min": incident.records_min,
        "records_max": incident.records_max,
        "contact_point": contact_point,
    }


def parse_notice(
    body: Mapping[str, object], partner: str, received_at: datetime, notice_message_id: str | None
) -> Observation:
    def bad(what: str) -> PartnerError:
        return PartnerError(f"incident notice from partner {partner!r}: {what}")

    unknown = sorted(set(body) - NOTICE_KEYS)
    if unknown:
        raise bad(f"unknown fields {unknown}; refused so nothing unexpected is stored")

    def text(key: str, pattern: re.Pattern[str] = _SAFE_ID) -> str:
        value = body.get(key)
        if not isinstance(value, str) or not pattern.match(value):
            raise bad(f"field {key!r} is missing or malformed")
        return value

    def count(key: str) -> int | None:
        value = body.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise bad(f"field {key!r} is not a count")
        return value

    def when(key: str) -> datetime:
        try:
            parsed = datetime.fromisoformat(text(key, _TIME))
        except ValueError:
            raise bad(f"field {key!r} is not a time") from None
        if parsed.utcoffset() is None:
            raise bad(f"field {key!r} has no time zone")
        return parsed

    contact = text("contact_point", _CONTACT)
    if _NINE_DIGITS.search(contact):
        raise bad("the contact point contains a nine-digit number (possibly a BSN)")
    raw_ids = body.get("message_ids", [])
    if not isinstance(raw_ids, list) or not all(
        isinstance(m, str) and _SAFE_ID.match(m) for m in raw_ids
    ):
        raise bad("field 'message_ids' is malformed")
    notice = PartnerNotice(
        remote_id=text("incident_id"),
        remote_kind=text("incident_kind"),
        first_seen=when("first_seen"),
        last_seen=when("last_seen"),
        message_ids=tuple(str(m) for m in raw_ids[:MAX_MESSAGE_IDS]),
        records_min=count("records_min"),
        records_max=count("records_max"),
        contact_point=contact,
    )
    return Observation(
        kind=Kind.PARTNER_NOTICE,
        partner=partner,
        message_id=notice_message_id,
        at=received_at,
        detail_code=notice.remote_kind,
        notice=notice,
    )
