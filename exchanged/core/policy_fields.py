"""Checks and normalisation of values: one by field kind, and the planned fields of a row.

Each check returns ``(normalised, None)`` or ``(None, code)``. Codes are short, stable
strings (``date-future``, ``forbidden-health``...) that the rejection report explains;
a value never appears in a code.

A row's fields are read in one of two ways (see ``exchanged.core.policy``): in full,
each cell checked or found in the memo and every problem reported (``read_values``),
or on the short path, all cells looked up in the memo at once (``ShortPlan``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import date
from operator import itemgetter
from typing import cast

from exchanged.core.bsn import check_bsn
from exchanged.core.policy_model import (
    HeaderMap,
    Known,
    Policy,
    PolicyMemo,
    RowError,
    blank,
    fold_for_terms,
)
from exchanged.core.text import clean_value, fold_key, normalise_postcode, parse_date

__all__ = [
    "DATED_KINDS",
    "REFERENCE_DATES",
    "Checked",
    "ShortPlan",
    "Slot",
    "check_value",
    "label",
    "plan_columns",
    "read_values",
    "short_plan",
]

Checked = tuple[str | None, str | None]
# One planned column of a category: (field, column, label, suffix column, required,
# the memo's table of the field's checked values, or None for a field not remembered).
Slot = tuple[str, int, str, "int | None", bool, "dict[str, Known] | None"]
# Whether the memo may hold a field's value (a woonplaats outside the region it may not).
Keep = Callable[[str, str], bool]

# The dates a child's age is measured on, in order of preference.
REFERENCE_DATES = ("startdatum_verzuim", "datum_toekenning_vrijstelling")
_DATES_COMPARED = frozenset({"geboortedatum", *REFERENCE_DATES})
# Field kinds whose values are unique per row: remembering them would only cost memory
# (and would keep personal numbers).
_UNIQUE_KINDS = frozenset({"bsn"})
_GET: Callable[[dict[str, Known], str], Known | None] = dict.get

# The kinds whose check depends on today's date (a date may not lie in the future);
# for all others the result is a function of the policy, the field and the value.
DATED_KINDS = frozenset({"date"})

_HUISNUMMER = re.compile(r"[1-9][0-9]{0,4}(?:[- /]?[A-Za-z0-9]{1,4}){0,2}")
# Deleted before asking whether the rest is all letters.
_NAME_PUNCTUATION = str.maketrans("", "", " '-.\u2019`")
# Separators between a vocabulary term and its note, tried in this order.
_NOTE_SEPARATORS = (":", " - ", " \u2013 ")


def _printable(value: str) -> bool:
    return value.isprintable()


def _name_like(value: str) -> bool:
    """Letters and name punctuation only (an empty value passes)."""
    if value.isalpha():
        return True
    letters = value.translate(_NAME_PUNCTUATION)
    return not letters or letters.isalpha()


def _bsn(policy: Policy, field: str, value: str, today: date) -> Checked:
    return check_bsn(value)


def _name(policy: Policy, field: str, value: str, today: date) -> Checked:
    if not _name_like(value):
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
    if not _name_like(value):
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
        folded, joined = fold_for_terms(value)
        anywhere = policy.forbidden_any
        if (
            anywhere is None
            or anywhere.search(folded) is not None
            or (joined != folded and anywhere.search(joined) is not None)
        ):
            for group in policy.forbidden:  # the first group that matches names the code
                if group.found_in_folded(folded, joined):
                    return None, f"forbidden-{group.name}"
    check = _CHECKS.get(policy.kinds.get(field, "text"), _text)
    return check(policy, field, value, today)


def label(header: Sequence[str], index: int) -> str:
    """How an error names column ``index``: by its header, else by its number."""
    name = header[index].strip() if index < len(header) else ""
    return name or f"#{index + 1}"


def plan_columns(
    policy: Policy,
    category: str,
    header: Sequence[str],
    mapped: HeaderMap,
    *,
    today: date | None,
) -> tuple[Slot, ...]:
    """The allowed columns of ``category`` in header order, with what checking each
    needs, worked out once per export instead of once per row."""
    allowed = policy.allowed[category]
    required = policy.required[category]
    slots = []
    for field, index in mapped.columns.items():
        if field not in allowed:
            continue  # never read: a dropped column's value goes nowhere
        kind = policy.kinds.get(field, "text")
        table = None
        if kind not in _UNIQUE_KINDS:
            day = today if kind in DATED_KINDS else None
            table = policy.memo.table(field, day, optional=field not in required)
        suffix = mapped.suffixes.get(field)
        slot = (field, index, label(header, index), suffix, field in required, table)
        slots.append(slot)
    return tuple(slots)


def read_values(
    policy: Policy,
    slots: Sequence[Slot],
    number: int,
    row: Sequence[str],
    *,
    today: date,
    keep: Keep,
) -> tuple[dict[str, str], list[RowError]]:
    """Read, check and normalise the planned fields of row ``number``, and only those;
    every problem as an error."""
    errors: list[RowError] = []
    values: dict[str, str] = {}
    width = len(row)
    for field, index, where, suffix_index, required, table in slots:
        key = row[index] if index < width else ""
        raw = key.strip()
        if suffix_index is not None and suffix_index < width:
            suffix = row[suffix_index].strip()
            if suffix and not raw:
                errors.append(RowError(number, where, "huisnummer-invalid"))
                continue
            if suffix:
                raw = key = f"{raw} {suffix}"
        if not raw:
            if required:
                errors.append(RowError(number, where, "missing"))
            continue
        known = None if table is None else table.get(key)
        if known is not None:
            values[field] = known[1]
            continue
        value, code = check_value(policy, field, raw, today)
        if code is not None:
            errors.append(RowError(number, where, code))
        elif value is not None:
            values[field] = value
            if table is not None and value and keep(field, value):
                policy.memo.remember(table, key, (field, value))
    return values, errors


class ShortPlan:
    """What the short path needs for one export, worked out once: the cells to look up
    in the memo (all fields but the BSN, which is unique, in column order), and a
    dictionary of all fields in header order to copy for each row's values."""

    __slots__ = ("bsn_column", "bsn_field", "category", "cells", "last", "passed", "size",
                 "slots", "suffix_at", "suffix_cell_at", "tables", "template")  # fmt: skip

    def __init__(self, category: str, slots: Sequence[Slot], bsn_at: int, memo: PolicyMemo):
        self.category = category
        # Copied at its final size, where a dictionary filled from empty grows twice.
        self.template: dict[str, str | None] = dict.fromkeys(slot[0] for slot in slots)
        self.size = len(slots)
        self.bsn_field, self.bsn_column = slots[bsn_at][:2]
        suffixed = next((slot for slot in slots if slot[3] is not None), None)
        # A suffix column (the huisnummer's Toevoeging) is read too: None.
        read: dict[int, Slot | None] = {slot[1]: slot for slot in slots if slot[5] is not None}
        if suffixed is not None:
            read[cast("int", suffixed[3])] = None
        columns = sorted(read)
        self.last = max(self.bsn_column, columns[-1])
        self.slots = [read[column] for column in columns]
        if columns[-1] - columns[0] + 1 == len(columns):  # one slice: cheaper than each cell
            self.cells = itemgetter(slice(columns[0], columns[-1] + 1))
        else:
            self.cells = itemgetter(*columns)  # type: ignore[assignment]
        at = {column: i for i, column in enumerate(columns)}
        self.suffix_at = self.suffix_cell_at = -1  # the huisnummer's and the suffix's
        if suffixed is not None:
            self.suffix_at, self.suffix_cell_at = at[suffixed[1]], at[cast("int", suffixed[3])]
        # A suffix cell stands for a value of the BSN's field, which is set afterwards.
        self.passed = memo.passed(self.bsn_field, (self.bsn_field, ""))
        self.tables = [
            self.passed if slot is None else cast("dict[str, Known]", slot[5])
            for slot in self.slots
        ]

    def other_bsn(self, policy: Policy, cell: str, today: date) -> tuple[str, int]:
        """A BSN not written as nine plain digits: (normalised, as a number), or
        ("", -1) when it is blank or fails."""
        raw = cell.strip()
        if raw:
            bsn, code = check_value(policy, self.bsn_field, raw, today)
            if code is None and bsn:
                return bsn, int(bsn)
        return "", -1

    def fill(
        self, policy: Policy, cells: Sequence[str], *, today: date, keep: Keep
    ) -> list[Known] | None:
        """The known values of ``cells`` where the memo does not know some yet, which are
        checked and remembered; None when one fails or a required one is blank (the full
        path then says why)."""
        got = list(map(_GET, self.tables, cells))
        suffix: str | None = None
        position = -1
        for _unknown in range(got.count(None)):
            position = got.index(None, position + 1)
            key = cells[position]
            slot = self.slots[position]
            if slot is None:
                # A suffix cell is judged only with its huisnummer, so it is remembered
                # once the whole loop passed: a cell that fails (even a BSN typed into
                # the Toevoeging column) never stays in the shared memo.
                suffix = key
                got[position] = (self.bsn_field, "")
                continue
            field, _index, _label, _suffix, required, table = slot
            if raw := key.strip():
                value, code = check_value(policy, field, raw, today)
                if code is not None or not value or not keep(field, value):
                    return None
                found = (field, value)
            elif required:
                return None
            else:
                found = blank(field)
            if table is not None:
                policy.memo.remember(table, key, found)
            got[position] = found
        if suffix is not None:
            policy.memo.remember(self.passed, suffix, (self.bsn_field, ""))
        return got  # type: ignore[return-value]


def short_plan(policy: Policy, category: str, slots: Sequence[Slot]) -> ShortPlan | None:
    """The short path's plan for these slots; None where the short path does not apply."""
    kinds = [policy.kinds.get(slot[0], "text") for slot in slots]
    bsn_at = kinds.index("bsn") if kinds.count("bsn") == 1 else -1
    dated = [kinds[i] for i, slot in enumerate(slots) if slot[0] in _DATES_COMPARED]
    if (
        len(slots) < 3  # so that a getter of the other cells gives a sequence
        or bsn_at < 0
        or sum(slot[5] is None for slot in slots) != 1  # only the BSN is not remembered
        or sum(slot[3] is not None for slot in slots) > 1  # one suffix column at most
        or slots[bsn_at][3] is not None  # a suffix column for the BSN
        or "" in (slot[0] for slot in slots)  # see policy_model.blank
        or slots[bsn_at][0] in policy.forbidden_fields
        or policy.max_text < 9  # so that nine digits are checked as written
        or not 0 <= policy.age_from < policy.age_below  # for text.age_window
        or any(kind != "date" for kind in dated)  # age_window compares ISO dates
    ):
        return None
    return ShortPlan(category, slots, bsn_at, policy.memo)
