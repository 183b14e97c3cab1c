"""The operator's steps on an incident, as pure functions ``Incident -> Incident``.

Status changes are checked against :data:`exchanged.core.incident.TRANSITIONS`; the
register stores each result as a new history entry, so a step never rewrites the past.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime

from exchanged.core.incident import (
    TRANSITIONS,
    ApDecision,
    DataCategory,
    Effect,
    Incident,
    Nature,
    Status,
    can_transition,
)
from exchanged.core.model import MESSAGE_ID_PATTERN
from exchanged.errors import OperatorInputError

__all__ = [
    "AMENDABLE",
    "IncidentInputError",
    "InvalidTransition",
    "amend",
    "assess",
    "close",
    "mark_reminded",
    "partner_informed",
    "report",
]

# Free text goes into the register, mails and the AP form: refuse what looks like a BSN.
_NINE_DIGITS = re.compile(r"(?<!\d)\d{9}(?!\d)")
# Message ids are random UUIDs whose hex groups can hold nine digits in a row.
_UUID = re.compile(MESSAGE_ID_PATTERN)


class IncidentInputError(OperatorInputError):
    """The operator's request about an incident cannot be carried out as given."""


class InvalidTransition(IncidentInputError):
    def __init__(self, incident: Incident, target: Status, hint: str) -> None:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[incident.status])) or "none"
        super().__init__(
            f"incident {incident.id} is {incident.status.value}; it cannot become "
            f"{target.value} (allowed next: {allowed}). {hint}".rstrip()
        )
        self.current = incident.status
        self.target = target


_HINTS = {
    (Status.OPEN, Status.CLOSED): "Every breach needs a documented decision: run "
    "`exchanged incidents assess ID --notify-ap yes|no --reason TEXT` first.",
    (Status.OPEN, Status.REPORTED): "Record the decision first with `incidents assess`.",
    (Status.ASSESSED, Status.CLOSED): "The decision was to notify the AP: run "
    "`incidents report ID --reference REF` first, or re-assess.",
    (Status.NOT_REPORTED, Status.REPORTED): "The decision was not to notify the AP; "
    "re-assess with --notify-ap yes first.",
    (Status.CLOSED, Status.ASSESSED): "A closed incident is history; open a new one.",
}


def _move(inc: Incident, target: Status) -> None:
    if not can_transition(inc.status, target):
        raise InvalidTransition(inc, target, _HINTS.get((inc.status, target), ""))


def _text(value: str, what: str, *, required: bool = True) -> str:
    value = value.strip()
    if required and not value:
        raise IncidentInputError(f"{what} is required: the register must say why")
    if _NINE_DIGITS.search(_UUID.sub(" ", value)):
        raise IncidentInputError(
            f"{what} contains a nine-digit number, possibly a BSN; "
            "the register holds no personal data"
        )
    return value


def assess(
    inc: Incident,
    *,
    notify_ap: bool,
    reason: str,
    subjects_informed: bool | None,
    actor: str,
    now: datetime,
    subjects_rationale: str = "",
) -> Incident:
    """Record the art. 33 decision (and, if known, the art. 34 one)."""
    target = Status.ASSESSED if notify_ap else Status.NOT_REPORTED
    _move(inc, target)
    decision = ApDecision(
        notify=notify_ap,
        rationale=_text(reason, "the reason"),
        decided_at=now,
        decided_by=actor,
    )
    return replace(
        inc,
        status=target,
        ap=decision,
        subjects_informed=subjects_informed,
        subjects_rationale=_text(subjects_rationale, "the rationale", required=False)
        or inc.subjects_rationale,
        updated_at=now,
        updated_by=actor,
    )


def report(inc: Incident, *, reference: str, actor: str, now: datetime) -> Incident:
    """The report was filed with the AP under ``reference``."""
    _move(inc, Status.REPORTED)
    if inc.ap is None or not inc.ap.notify:  # pragma: no cover - the table prevents it
        raise InvalidTransition(inc, Status.REPORTED, "Re-assess with --notify-ap yes first.")
    ref = _text(reference, "the AP reference")
    return replace(
        inc,
        status=Status.REPORTED,
        ap=replace(inc.ap, reported_at=inc.ap.reported_at or now, reference=ref),
        updated_at=now,
        updated_by=actor,
    )


def close(inc: Incident, *, actor: str, now: datetime) -> Incident:
    _move(inc, Status.CLOSED)
    return replace(inc, status=Status.CLOSED, ongoing=False, updated_at=now, updated_by=actor)


def partner_informed(
    inc: Incident, *, at: datetime, how: str, actor: str, now: datetime
) -> Incident:
    """Covenant: a party whose breach concerns shared data informs the other party."""
    return replace(
        inc,
        partner_informed_at=at,
        partner_informed_how=_text(how, "how the partner was informed"),
        updated_at=now,
        updated_by=actor,
    )


def mark_reminded(inc: Incident, *, mark: str, now: datetime) -> Incident:
    if mark in inc.reminders_sent:
        return inc
    return replace(inc, reminders_sent=(*inc.reminders_sent, mark), updated_at=now)


# What the officer may correct as the investigation goes on; the rest is the daemon's
# own observation (ids, counts, times seen) or the decision trail above.
AMENDABLE: dict[str, type | tuple[type, ...]] = {
    "aware_at": datetime,
    "ongoing": bool,
    "summary": str,
    "nature": tuple,
    "effects": tuple,
    "records_min": (int, type(None)),
    "records_max": (int, type(None)),
    "subjects_min": (int, type(None)),
    "subjects_max": (int, type(None)),
    "data_categories": tuple,
    "encrypted": (bool, type(None)),
    "encryption": str,
    "consequences": str,
    "measures_taken": tuple,
    "measures_planned": tuple,
    "subjects_rationale": str,
}
_ENUMS: dict[str, type[Nature] | type[Effect] | type[DataCategory]] = {
    "nature": Nature,
    "effects": Effect,
    "data_categories": DataCategory,
}


def _clean(key: str, raw: object) -> object:
    expected = AMENDABLE.get(key)
    if expected is None:
        raise IncidentInputError(
            f"field {key!r} cannot be amended; amendable: {', '.join(sorted(AMENDABLE))}"
        )
    value = raw
    if key in _ENUMS and isinstance(raw, tuple | list):
        try:
            value = tuple(_ENUMS[key](str(v)) for v in raw)
        except ValueError:
            allowed = ", ".join(m.value for m in _ENUMS[key])
            raise IncidentInputError(f"{key}: allowed values are {allowed}") from None
    elif isinstance(raw, tuple | list):
        value = tuple(_text(str(v), key) for v in raw)
    elif isinstance(raw, str):
        value = _text(raw, key, required=False)
    types = expected if isinstance(expected, tuple) else (expected,)
    # bool is an int in Python; a count given as True is a mistake, not 1.
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        raise IncidentInputError(f"field {key!r} has the wrong type")
    if isinstance(value, datetime) and value.utcoffset() is None:
        raise IncidentInputError(f"{key} needs a time zone (use UTC)")
    return value


def amend(inc: Incident, changes: dict[str, object], *, actor: str, now: datetime) -> Incident:
    """A correction of the record; the register keeps the previous version."""
    if inc.status == Status.CLOSED:
        raise IncidentInputError(f"incident {inc.id} is closed; its record can no longer change")
    clean = {key: _clean(key, value) for key, value in changes.items()}
    for low, high in (("records_min", "records_max"), ("subjects_min", "subjects_max")):
        lo, hi = clean.get(low, getattr(inc, low)), clean.get(high, getattr(inc, high))
        if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
            raise IncidentInputError(f"{low} ({lo}) exceeds {high} ({hi})")
    return replace(inc, **clean, updated_at=now, updated_by=actor)  # type: ignore[arg-type]
