"""Checks and normalisation of single values, by field kind.

Each check returns ``(normalised, None)`` or ``(None, code)``. Codes are short, stable
strings (``date-future``, ``forbidden-health``...) that the rejection report explains;
a value never appears in a code.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date

from exchanged.core.bsn import check_bsn
from exchanged.core.policy_model import Policy, fold_for_terms
from exchanged.core.text import clean_value, fold_key, normalise_postcode, parse_date

__all__ = ["Checked", "check_value"]

Checked = tuple[str | None, str | None]

_HUISNUMMER = re.compile(r"[1-9][0-9]{0,4}(?:[- /]?[A-Za-z0-9]{1,4}){0,2}")
_NAME_PUNCTUATION = frozenset(" '-.\u2019`")
# Separators between a vocabulary term and its note, tried in this order.
_NOTE_SEPARATORS = (":", " - ", " \u2013 ")


def _printable(value: str) -> bool:
    return all(c.isprintable() for c in value)


def _bsn(policy: Policy, field: str, value: str, today: date) -> Checked:
    return check_bsn(value)


def _name(policy: Policy, field: str, value: str, today: date) -> Checked:
    if not all(c.isalpha() or c in _NAME_PUNCTUATION for c in value):
        return None, "name-invalid"
    return value, None


def _text(policy: Policy, field: str, value: str, today: date) -> Checked:
    return (value, None) if _printable(value) else (None, "text-invalid")


def _date(policy: Policy, field: str, value: str, today: date) -> Checked:
    parsed = parse_date(value)
    if parsed is None:
        return None, "date-invalid"
    if parsed > today:
        return None, "date-future"
    return parsed.isoformat(), None


def _postcode(policy: Policy, field: str, value: str, today: date) -> Checked:
    normalised = normalise_postcode(value)
    return (normalised, None) if normalised else (None, "postcode-invalid")


def _huisnummer(policy: Policy, field: str, value: str, today: date) -> Checked:
    return (value, None) if _HUISNUMMER.fullmatch(value) else (None, "huisnummer-invalid")


def _woonplaats(policy: Policy, field: str, value: str, today: date) -> Checked:
    if not all(c.isalpha() or c in _NAME_PUNCTUATION for c in value):
        return None, "woonplaats-invalid"
    # Region membership is a record-level check: out-of-region may skip, not reject.
    return value, None


def _vocabulary(policy: Policy, field: str, value: str, today: date) -> Checked:
    terms = policy.vocabularies.get(field, {})
    term = terms.get(fold_key(value))
    if term is not None:
        return term, None
    for separator in _NOTE_SEPARATORS:
        head, found, note = value.partition(separator)
        if not found:
            continue
        term = terms.get(fold_key(head))
        if term is not None:
            note = note.strip()
            if not _printable(note):
                return None, "text-invalid"
            return (f"{term}: {note}" if note else term), None
    return None, "not-in-vocabulary"


def _duration(policy: Policy, field: str, value: str, today: date) -> Checked:
    # An end date may lie in the future; a text such as "1 jaar" is kept as written.
    parsed = parse_date(value)
    if parsed is not None:
        return parsed.isoformat(), None
    return _text(policy, field, value, today)


_CHECKS: dict[str, Callable[[Policy, str, str, date], Checked]] = {
    "bsn": _bsn,
    "name": _name,
    "text": _text,
    "date": _date,
    "postcode": _postcode,
    "huisnummer": _huisnummer,
    "woonplaats": _woonplaats,
    "vocabulary": _vocabulary,
    "duration": _duration,
}


def check_value(policy: Policy, field: str, raw: str, today: date) -> Checked:
    """Check one non-empty value of canonical ``field``; ``raw`` may be untrimmed."""
    value = clean_value(raw)
    if len(value) > policy.max_text:
        return None, "too-long"
    if field in policy.forbidden_fields:
        folded = fold_for_terms(value)
        for group in policy.forbidden:
            if group.found_in_folded(*folded):
                return None, f"forbidden-{group.name}"
    check = _CHECKS.get(policy.kinds.get(field, "text"), _text)
    return check(policy, field, value, today)
