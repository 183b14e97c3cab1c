"""Minimisation to the covenant: rows in, minimised records or a rejection with reasons.

Interface used by the service (stable)::

    checker = RecordChecker(policy, header, category=..., today=...)
    for n, row in enumerate(rows, start=1):
        record = checker.check(n, row)      # Record, or None (error, blank, skipped)
    verdict = checker.finish()

Streaming: nothing grows with the file. BSNs seen (for duplicates) take a bit each at
most (``bsn.SeenBsns``); the error list is bounded, and so is the memo of checked values
the policy keeps for all its checkers (``PolicyMemo``). Columns outside the category's
allow-list are never read: their values cannot reach a record, a log or an error.
Errors hold row, column and code only.

Each row is first tried on a short path: the memo's values for all its cells at once,
the BSN checked in place, then the checks across fields. Anything out of the ordinary
(a value the memo does not know and that fails, a blank required field, a duplicate, a
place outside the region) sends the row down the full path, which finds and reports
every problem. The short path reports nothing and changes nothing until the row has
passed, so the verdict is the same as if every row took the full path.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date
from functools import partial
from typing import cast

from exchanged.core.bsn import SeenBsns, elfproef
from exchanged.core.model import Record
from exchanged.core.policy_fields import (
    REFERENCE_DATES,
    ShortPlan,
    Slot,
    label,
    plan_columns,
    read_values,
    short_plan,
)
from exchanged.core.policy_model import (
    ForbiddenGroup,
    Known,
    Policy,
    PolicyInputError,
    RowError,
    Verdict,
    frozen_map,
    map_header,
    route_of,
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

_STARTED, _GRANTED = REFERENCE_DATES
# Routes worked out per woonplaats, per export.
_ROUTES_REMEMBERED = 4096
_LOOKUP: Callable[[dict[str, Known], str], Known] = dict.__getitem__
# Record is a frozen dataclass, so its __init__ stores each field through
# object.__setattr__, which costs a tenth of the short path. Where that is all it
# does, the short path stores the three slots itself.
_RECORD_FIELDS = ("category", "fields", "route")
_SLOTS_ONLY = tuple(f.name for f in dataclasses.fields(Record)) == _RECORD_FIELDS
_SLOTS_ONLY = _SLOTS_ONLY and not hasattr(Record, "__post_init__")
_NEW_RECORD = Record.__new__
_SET_CATEGORY, _SET_FIELDS, _SET_ROUTE = (vars(Record)[f].__set__ for f in _RECORD_FIELDS)


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
        self._today_iso = today.isoformat() if today else ""
        self._routing = routing
        self._route_of: dict[str, str] = {}  # woonplaats -> partner, for the short path
        self._ages = policy.memo.ages
        self._age_window = partial(
            policy.memo.age_window, age_from=policy.age_from, age_below=policy.age_below
        )
        self._municipality = partial(policy.memo.municipality, policy.region)
        self._skip_out_of_region = (out_of_region or policy.out_of_region) == "skip-and-report"
        self._strict = strict
        self._max_errors = max_errors
        self._errors: list[RowError] = []
        self._error_count = 0
        self._skipped: list[RowError] = []
        self._count = 0
        self._seen = SeenBsns()
        self._plans: dict[str, tuple[Slot, ...]] = {}
        self._routes: Counter[str] = Counter()
        self._mapped = mapped = map_header(policy, self._header, strict=strict)
        self._columns = mapped.columns  # canonical field -> column index
        self._category_column = mapped.category_column
        for index in mapped.ambiguous:
            self._error(RowError(0, label(self._header, index), "column-ambiguous"))
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
        self._short: ShortPlan | None = None
        if category is not None:
            self._activate(category)
            if self._category_column is None:
                self._short = short_plan(policy, category, self._plan(category))

    def _activate(self, category: str) -> None:
        """Fix the export's category and judge the header against its allow-list."""
        self._category = category
        allowed = self._policy.allowed[category]
        if self._strict:
            for field, index in self._columns.items():
                if field not in allowed:
                    self._error(RowError(0, label(self._header, index), "field-not-allowed"))
            known = set(self._columns.values())
            for index in range(len(self._header)):
                if index not in known:
                    self._error(RowError(0, label(self._header, index), "field-not-allowed"))
        for field in sorted(self._policy.required[category] - self._columns.keys()):
            self._error(RowError(0, field, "column-missing"))

    def _error(self, error: RowError) -> None:
        self._error_count += 1
        if len(self._errors) < self._max_errors:
            self._errors.append(error)

    def _row_category(self, row_number: int, row: Sequence[str]) -> str | None:
        index = self._category_column
        raw = row[index].strip() if index is not None and index < len(row) else ""
        if not raw and self._fixed_category is not None:
            return self._fixed_category  # the common case: no category column
        where = label(self._header, self._category_column or 0)
        named = None
        if raw:
            named = self._policy.category_values.get(fold_key(raw))
            if named is None:
                self._error(RowError(row_number, where, "category-unknown"))
                return None
        if self._fixed_category is not None:
            if named is not None and named != self._fixed_category:
                self._error(RowError(row_number, where, "category-mismatch"))
                return None
            return self._fixed_category
        if named is None:
            self._error(RowError(row_number, where, "category-unknown"))
            return None
        if self._category is None:
            self._activate(named)
        elif named != self._category:
            self._error(RowError(row_number, where, "category-mixed"))
            return None
        return named

    def check(self, row_number: int, row: Sequence[str]) -> Record | None:  # noqa: PLR0912 - one pass
        """Check one data row (1-based); return its minimised record, or None."""
        plan = self._short
        if plan is None:
            return self._full_path(row_number, row)
        # The short path (see the module's docstring) runs for nearly every row of every
        # export, so it is one pass; the rare cases are in the methods it calls.
        if len(row) <= plan.last:  # a short row
            return self._full_path(row_number, row)
        bsn = row[plan.bsn_column]
        # Nine digits not starting with "00" (for digits, that is bsn >= "01"): what
        # check_bsn decides for such a number is the elfproef alone.
        if len(bsn) == 9 and bsn.isdigit() and bsn.isascii() and bsn >= "01":
            number = int(bsn)
            if not elfproef(number):
                return self._full_path(row_number, row)
        else:
            bsn, number = plan.other_bsn(self._policy, bsn, self._today or date.max)
            if number < 0:
                return self._full_path(row_number, row)
        cells: Sequence[str] = plan.cells(row)
        if (
            plan.suffix_at >= 0
            and (suffix := cells[plan.suffix_cell_at])
            and (suffix := suffix.strip())
        ):
            if not (head := cells[plan.suffix_at].strip()):
                return self._full_path(row_number, row)
            cells = list(cells)
            cells[plan.suffix_at] = f"{head} {suffix}"
        values = plan.template.copy()
        try:
            values.update(map(_LOOKUP, plan.tables, cells))
        except KeyError:  # a cell the memo does not know
            known = plan.fill(
                self._policy, cells, today=self._today or date.max, keep=self._in_region
            )
            if known is None:
                return self._full_path(row_number, row)
            values.update(known)
        values[plan.bsn_field] = bsn
        # Each blank cell added its marker last (see policy_model.blank): take it off,
        # and the field it names, which has no value.
        if len(values) > plan.size:
            for _blank in range(len(values) - plan.size):
                del values[values.popitem()[1]]  # type: ignore[arg-type]
        born = values.get("geboortedatum")
        if born is not None:
            on = values.get(_STARTED) or values.get(_GRANTED) or self._today_iso
            if on:
                low, high = self._ages.get(on) or self._age_window(on)  # see text.age_window
                if born <= low or born > high:
                    return self._full_path(row_number, row)
        # A woonplaats here lies in the region: the memo holds no other, and plan.fill
        # lets no other through.
        route = None
        if self._routing is not None:
            route = self._route_for(values.get("woonplaats"))
            if route is None:
                return self._full_path(row_number, row)
        # The first change, so it comes last: the row passes now, unless it repeats a BSN.
        if self._seen.add_key(number // 10):
            return self._full_path(row_number, row)
        self._count += 1
        if route is not None:
            self._routes[route] += 1
        if not _SLOTS_ONLY:
            return Record(plan.category, cast("dict[str, str]", values), route)
        record = _NEW_RECORD(Record)
        _SET_CATEGORY(record, plan.category)
        _SET_FIELDS(record, values)
        _SET_ROUTE(record, route)
        return record

    def _in_region(self, field: str, value: str) -> bool:
        """False for a woonplaats outside the region (which the memo never holds)."""
        return (
            field != "woonplaats"
            or not self._policy.region
            or self._municipality(value) is not None
        )

    def _route_for(self, place: str | None) -> str | None:
        if place is None or self._routing is None:
            return None
        route = self._route_of.get(place)
        if route is None:
            municipality = self._municipality(place) if self._policy.region else None
            route = route_of(self._routing, place, municipality)
            if route is not None:
                if len(self._route_of) >= _ROUTES_REMEMBERED:
                    self._route_of.clear()
                self._route_of[place] = route
        return route

    def _full_path(self, row_number: int, row: Sequence[str]) -> Record | None:
        if not "".join(row).strip():
            return None  # blank lines between or after the data are not records
        category = (
            self._fixed_category  # what _row_category answers, without asking
            if self._category_column is None
            else self._row_category(row_number, row)
        )
        if category is None:
            return None
        values, errors = read_values(
            self._policy, self._plan(category), row_number, row,
            today=self._today or date.max, keep=self._in_region,
        )  # fmt: skip
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
            route = route_of(self._routing, woonplaats, municipality)
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

    def _plan(self, category: str) -> tuple[Slot, ...]:
        plan = self._plans.get(category)
        if plan is None:
            plan = self._plans[category] = plan_columns(
                self._policy, category, self._header, self._mapped, today=self._today
            )
        return plan

    def _field_label(self, field: str) -> str:
        index = self._columns.get(field)
        return field if index is None else label(self._header, index)

    def _record_checks(self, row_number: int, values: dict[str, str]) -> list[RowError]:
        errors: list[RowError] = []
        bsn = values.get("bsn")
        if bsn is not None and self._seen.add(bsn):
            errors.append(RowError(row_number, self._field_label("bsn"), "bsn-duplicate"))
        born = values.get("geboortedatum")
        if born is not None:
            reference = None
            for name in REFERENCE_DATES:
                reference = values.get(name)
                if reference is not None:
                    break
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
        suffixes = self._mapped.suffixes
        used |= {i for f, i in suffixes.items() if f in allowed and f in self._columns}
        if self._category_column is not None:
            used.add(self._category_column)
        dropped = tuple(label(self._header, i) for i in range(len(self._header)) if i not in used)
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
    rows = list(records)
    header = sorted(set().union(*rows))
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
