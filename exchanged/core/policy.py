"""Minimisation to the covenant: rows in, minimised records or a rejection with reasons.

Interface used by the service (stable)::

    checker = RecordChecker(policy, header, category=..., today=...)
    for n, row in enumerate(rows, start=1):
        record = checker.check(n, row)      # Record, or None (error, blank, skipped)
    verdict = checker.finish()

Streaming: nothing grows with the file. BSNs seen (for duplicates) are one bit each
in pages made on first use (at most 12.5 MB, a few KB for a small export); the error
list and the per-field memo of checked values are bounded. Columns outside the
category's allow-list are never read: their values cannot reach a record, a log or an
error. Errors hold row, column and code only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import date

from exchanged.core.model import Record
from exchanged.core.policy_fields import check_value
from exchanged.core.policy_model import (
    ForbiddenGroup,
    Policy,
    PolicyInputError,
    RowError,
    Verdict,
    frozen_map,
)
from exchanged.core.text import age_on, fold_key

__all__ = [
    "ForbiddenGroup",
    "Policy",
    "PolicyInputError",
    "RecordChecker",
    "RowError",
    "Verdict",
    "recheck_records",
]

# The dates a child's age is measured on, in order of preference.
_REFERENCE_DATES = ("startdatum_verzuim", "datum_toekenning_vrijstelling")

# Checked values are remembered per field (exports repeat places, schools, dates and
# names): at most this many per field, so the memo's size does not grow with the file.
_MEMO_PER_FIELD = 4096
# Only short values are remembered, so the memo stays small (4096 x 256 characters per
# field at most) even for an export full of over-long text.
_MEMO_MAX_LENGTH = 256
# Field kinds whose values are unique per row: remembering them would only cost memory.
_UNIQUE_KINDS = frozenset({"bsn"})
# Seen BSNs: one bit each (the first eight digits decide the ninth), 4096 to a page.
_PAGE_BITS = 4096

# One planned column of a category: (field, column, label, suffix column, required,
# memo of checked values or None).
_Slot = tuple[str, int, str, "int | None", bool, "dict[str, tuple[str | None, str | None]] | None"]


class _SeenBsns:
    """The BSNs of one export seen so far, for the duplicate check, in bounded memory:
    one bit per BSN in 512-byte pages made on first use (at most 12.5 MB however large
    the export). Anything that is not a nine-digit number goes to a plain set."""

    __slots__ = ("_other", "_pages")

    def __init__(self) -> None:
        self._pages: dict[int, bytearray] = {}
        self._other: set[str] = set()

    def add(self, bsn: str) -> bool:
        """Remember ``bsn``; True when it was seen before."""
        if len(bsn) != 9 or not bsn.isascii() or not bsn.isdigit():
            seen = bsn in self._other
            self._other.add(bsn)
            return seen
        page_number, offset = divmod(int(bsn) // 10, _PAGE_BITS)
        page = self._pages.get(page_number)
        if page is None:
            page = self._pages[page_number] = bytearray(_PAGE_BITS // 8)
        index, bit = offset >> 3, 1 << (offset & 7)
        if page[index] & bit:
            return True
        page[index] |= bit
        return False


def _label(header: Sequence[str], index: int) -> str:
    name = header[index].strip() if index < len(header) else ""
    return name or f"#{index + 1}"


def _cell(row: Sequence[str], index: int | None) -> str:
    if index is None or index >= len(row):
        return ""
    return row[index]


class RecordChecker:
    """Streams the rows of one export through the policy.

    ``category`` fixes the category; without it every row names its own in the
    category column and all rows must agree. ``today`` is the date future dates and
    ages are judged against (the core has no clock: without it, those checks that need
    today are skipped). ``routing`` (folded woonplaats or municipality -> partner)
    routes each record and makes an unrouted record an error. ``strict`` is the
    receiver's mode: headers are canonical names and any field outside the allow-list
    is an error instead of a dropped column.
    """

    def __init__(
        self,
        policy: Policy,
        header: Sequence[str],
        *,
        category: str | None,
        today: date | None = None,
        routing: Mapping[str, str] | None = None,
        out_of_region: str | None = None,
        strict: bool = False,
        max_errors: int = 1000,
    ) -> None:
        if category is not None and category not in policy.allowed:
            known = ", ".join(policy.allowed)
            raise PolicyInputError(f"unknown category {category!r}; the policy knows {known}")
        self._policy = policy
        self._header = [str(h) for h in header]
        self._today = today
        self._routing = routing
        self._skip_out_of_region = (out_of_region or policy.out_of_region) == "skip-and-report"
        self._strict = strict
        self._max_errors = max_errors
        self._errors: list[RowError] = []
        self._error_count = 0
        self._skipped: list[RowError] = []
        self._count = 0
        self._seen = _SeenBsns()
        self._plans: dict[str, tuple[_Slot, ...]] = {}
        self._routes: Counter[str] = Counter()
        self._columns: dict[str, int] = {}  # canonical field -> column index
        self._suffixes: dict[str, int] = {}  # canonical field -> suffix column index
        self._category_column: int | None = None
        self._map_header()
        if not self._columns:
            raise PolicyInputError(
                f"no usable columns: none of the {len(self._header)} column headers is a "
                "field the policy knows (see the aliases in the policy file)"
            )
        if category is None and self._category_column is None:
            raise PolicyInputError(
                "no category: give one (--category) or add a column Categorie to the export"
            )
        self._fixed_category = category
        self._category: str | None = None
        if category is not None:
            self._activate(category)

    def _map_header(self) -> None:
        policy = self._policy
        for index, name in enumerate(self._header):
            if self._strict:
                canonical: str | None = name if name in policy.kinds else None
                suffix_of = None
            else:
                folded = fold_key(name)
                if folded and folded in policy.category_aliases:
                    if self._category_column is None:
                        self._category_column = index
                    else:
                        self._error(RowError(0, _label(self._header, index), "column-ambiguous"))
                    continue
                canonical = policy.aliases.get(folded)
                suffix_of = policy.suffix_aliases.get(folded)
            target, table = (canonical, self._columns) if canonical else (suffix_of, self._suffixes)
            if target is None:
                continue
            if target in table:
                self._error(RowError(0, _label(self._header, index), "column-ambiguous"))
            else:
                table[target] = index

    def _activate(self, category: str) -> None:
        """Fix the export's category and judge the header against its allow-list."""
        self._category = category
        allowed = self._policy.allowed[category]
        if self._strict:
            for field, index in self._columns.items():
                if field not in allowed:
                    self._error(RowError(0, _label(self._header, index), "field-not-allowed"))
            known = set(self._columns.values())
            for index in range(len(self._header)):
                if index not in known:
                    self._error(RowError(0, _label(self._header, index), "field-not-allowed"))
        for field in sorted(self._policy.required[category] - self._columns.keys()):
            self._error(RowError(0, field, "column-missing"))

    def _error(self, error: RowError) -> None:
        self._error_count += 1
        if len(self._errors) < self._max_errors:
            self._errors.append(error)

    def _row_category(self, row_number: int, row: Sequence[str]) -> str | None:
        raw = _cell(row, self._category_column).strip()
        if not raw and self._fixed_category is not None:
            return self._fixed_category  # the common case: no category column
        label = _label(self._header, self._category_column or 0)
        named = None
        if raw:
            named = self._policy.category_values.get(fold_key(raw))
            if named is None:
                self._error(RowError(row_number, label, "category-unknown"))
                return None
        if self._fixed_category is not None:
            if named is not None and named != self._fixed_category:
                self._error(RowError(row_number, label, "category-mismatch"))
                return None
            return self._fixed_category
        if named is None:
            self._error(RowError(row_number, label, "category-unknown"))
            return None
        if self._category is None:
            self._activate(named)
        elif named != self._category:
            self._error(RowError(row_number, label, "category-mixed"))
            return None
        return named

    def check(self, row_number: int, row: Sequence[str]) -> Record | None:
        """Check one data row (1-based); return its minimised record, or None."""
        if not "".join(row).strip():
            return None  # blank lines between or after the data are not records
        category = self._row_category(row_number, row)
        if category is None:
            return None
        values, errors = self._read_values(row_number, row, category)
        errors.extend(self._record_checks(row_number, values))
        woonplaats = values.get("woonplaats")
        municipality = None
        if woonplaats is not None and self._policy.region:
            municipality = self._policy.region.get(fold_key(woonplaats))
            if municipality is None:
                where = RowError(row_number, self._field_label("woonplaats"), "out-of-region")
                if self._skip_out_of_region:
                    self._skipped.append(where)
                    return None  # out of scope: none of this row is sent or judged
                errors.append(where)
        route = None
        if self._routing is not None:
            route = _route(self._routing, woonplaats, municipality)
            if route is None:
                label = self._field_label("woonplaats")
                errors.append(RowError(row_number, label, "route-unknown"))
        if errors:
            for error in errors:
                self._error(error)
            return None
        self._count += 1
        if route is not None:
            self._routes[route] += 1
        return Record(category=category, fields=values, route=route)

    def _plan(self, category: str) -> tuple[_Slot, ...]:
        """The allowed columns of ``category`` in header order, with what checking each
        needs, worked out once per export instead of once per row."""
        plan = self._plans.get(category)
        if plan is None:
            allowed = self._policy.allowed[category]
            required = self._policy.required[category]
            plan = tuple(
                (
                    field, index, _label(self._header, index), self._suffixes.get(field),
                    field in required,
                    None if self._policy.kinds.get(field) in _UNIQUE_KINDS else {},
                )
                for field, index in self._columns.items()
                # never read: a dropped column's value goes nowhere
                if field in allowed
            )  # fmt: skip
            self._plans[category] = plan
        return plan

    def _read_values(
        self, row_number: int, row: Sequence[str], category: str
    ) -> tuple[dict[str, str], list[RowError]]:
        """Read, check and normalise the allowed fields of one row, and only those."""
        policy = self._policy
        today = self._today or date.max
        errors: list[RowError] = []
        values: dict[str, str] = {}
        width = len(row)
        for field, index, label, suffix_index, required, memo in self._plan(category):
            raw = row[index].strip() if index < width else ""
            if suffix_index is not None and suffix_index < width:
                suffix = row[suffix_index].strip()
                if suffix and not raw:
                    errors.append(RowError(row_number, label, "huisnummer-invalid"))
                    continue
                if suffix:
                    raw = f"{raw} {suffix}"
            if not raw:
                if required:
                    errors.append(RowError(row_number, label, "missing"))
                continue
            if memo is None:
                value, code = check_value(policy, field, raw, today)
            else:
                checked = memo.get(raw)
                if checked is None:
                    checked = check_value(policy, field, raw, today)
                    if len(memo) < _MEMO_PER_FIELD and len(raw) <= _MEMO_MAX_LENGTH:
                        memo[raw] = checked
                value, code = checked
            if code is not None:
                errors.append(RowError(row_number, label, code))
            elif value is not None:
                values[field] = value
        return values, errors

    def _field_label(self, field: str) -> str:
        index = self._columns.get(field)
        return field if index is None else _label(self._header, index)

    def _record_checks(self, row_number: int, values: dict[str, str]) -> list[RowError]:
        errors: list[RowError] = []
        bsn = values.get("bsn")
        if bsn is not None and self._seen.add(bsn):
            errors.append(RowError(row_number, self._field_label("bsn"), "bsn-duplicate"))
        born = values.get("geboortedatum")
        if born is not None:
            reference = next((values[f] for f in _REFERENCE_DATES if f in values), None)
            on = date.fromisoformat(reference) if reference else self._today
            if on is not None:
                age = age_on(date.fromisoformat(born), on)
                if not self._policy.age_from <= age < self._policy.age_below:
                    label = self._field_label("geboortedatum")
                    errors.append(RowError(row_number, label, "age-out-of-range"))
        return errors

    def finish(self) -> Verdict:
        """The verdict on the whole export: accepted only without a single error."""
        if self._count == 0 and self._error_count == 0:
            self._error(RowError(0, "", "no-records"))
        allowed = self._policy.allowed.get(self._category or "", frozenset())
        kept = sorted(f for f in self._columns if f in allowed)
        used = {i for f, i in self._columns.items() if f in allowed}
        used |= {i for f, i in self._suffixes.items() if f in allowed and f in self._columns}
        if self._category_column is not None:
            used.add(self._category_column)
        dropped = tuple(_label(self._header, i) for i in range(len(self._header)) if i not in used)
        return Verdict(
            category=self._category,
            records=self._count,
            kept_fields=tuple(kept),
            dropped_columns=dropped,
            errors=tuple(self._errors),
            routes=frozen_map(sorted(self._routes.items())),
            skipped=tuple(self._skipped),
            error_count=self._error_count,
        )


def _route(
    routing: Mapping[str, str], woonplaats: str | None, municipality: str | None
) -> str | None:
    # A village listed on its own wins over its municipality.
    for place in (woonplaats, municipality):
        if place is not None:
            partner = routing.get(fold_key(place))
            if partner is not None:
                return partner
    return None


def recheck_records(
    policy: Policy,
    category: str,
    records: Iterable[Mapping[str, str]],
    *,
    today: date | None,
) -> Verdict:
    """The receiver's check of a partner's records (canonical field names, normalised).

    Any field outside the category's allow-list is an error here, not a dropped column:
    the partner over-disclosed and the message must be refused.
    """
    rows = [dict(r) for r in records]
    header = sorted({name for r in rows for name in r})
    try:
        checker = RecordChecker(policy, header, category=category, today=today, strict=True)
    except PolicyInputError:
        code = "category-unknown" if category not in policy.allowed else "no-usable-columns"
        return Verdict(
            category=None,
            records=0,
            kept_fields=(),
            dropped_columns=tuple(header),
            errors=(RowError(0, "", code),),
            error_count=1,
        )
    for number, record in enumerate(rows, start=1):
        checker.check(number, [str(record.get(name, "")) for name in header])
    return checker.finish()
