"""The values of the policy engine: the policy itself, row errors and the verdict.

A ``Policy`` is built from the policy file by ``exchanged.policyfile`` (which validates
it and names the key on error); the core only reads it. Every lookup table is keyed
by folded spellings (``text.fold_key``) so that matching is a dictionary lookup.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType
from typing import TypeVar

from exchanged.core.text import age_window, fold_key, fold_text, join_initials
from exchanged.errors import OperatorInputError

__all__ = [
    "FIELD_KINDS",
    "OUT_OF_REGION_MODES",
    "ForbiddenGroup",
    "HeaderMap",
    "Known",
    "Policy",
    "PolicyInputError",
    "PolicyMemo",
    "RowError",
    "Verdict",
    "blank",
    "compile_terms",
    "fold_for_terms",
    "frozen_map",
    "map_header",
    "route_of",
]

FIELD_KINDS = frozenset(
    {"bsn", "name", "text", "date", "postcode", "huisnummer", "woonplaats", "vocabulary",
     "duration"}
)  # fmt: skip
OUT_OF_REGION_MODES = frozenset({"reject", "skip-and-report"})

K = TypeVar("K")
V = TypeVar("V")


class PolicyInputError(OperatorInputError):
    """The export cannot be judged at all: no usable columns, unknown category."""


def frozen_map(items: Mapping[K, V] | Iterable[tuple[K, V]]) -> Mapping[K, V]:
    """A read-only mapping, so a frozen Policy cannot be changed through its tables."""
    return MappingProxyType(dict(items))


@dataclass(frozen=True, slots=True)
class ForbiddenGroup:
    """One group of forbidden terms (``health``, ``police``...), compiled once."""

    name: str
    pattern: re.Pattern[str]

    def found_in(self, text: str) -> bool:
        return self.found_in_folded(*fold_for_terms(text))

    def found_in_folded(self, folded: str, joined: str) -> bool:
        """Match on text already folded by ``fold_for_terms`` (fold once, many groups)."""
        if self.pattern.search(folded) is not None:
            return True
        return joined != folded and self.pattern.search(joined) is not None


def fold_for_terms(text: str) -> tuple[str, str]:
    """Both forms a term is looked for in: folded words, and with initials joined."""
    folded = fold_text(text)
    return folded, join_initials(folded)


def _term_regex(term: str) -> tuple[bool, str]:
    """(bounded on the left?, regex body) for one term of the pattern language."""
    stripped = term.strip()
    lead, trail = stripped.startswith("*"), stripped.endswith("*")
    words = fold_text(stripped.replace("*", " ")).split()
    # Consecutive words may be written apart, hyphenated (folded to a space) or joined.
    body = r"\s?".join(re.escape(word) for word in words)
    # search() finds an open-ended start anywhere, so no prefix needs matching.
    return not lead, body + ("" if trail else r"(?![a-z0-9])")


def compile_terms(terms: Iterable[str]) -> re.Pattern[str]:
    """One regular expression for a list of terms in the policy file's pattern language."""
    parts = {_term_regex(t) for t in terms if fold_text(t.replace("*", ""))}
    bounded = sorted(body for left, body in parts if left)
    anywhere = sorted(body for left, body in parts if not left)
    # The word-start check is factored out so most positions fail at once.
    alternatives = []
    if bounded:
        alternatives.append(r"(?<![a-z0-9])(?:" + "|".join(bounded) + ")")
    alternatives += anywhere
    if not alternatives:
        return re.compile(r"(?!)")
    return re.compile("|".join(f"(?:{a})" for a in alternatives))


# The memo of checked values is shared by every checker of a policy, for the life of
# the process, so it is bounded: this many values in all (a few MB at most, however
# many exports pass), at most this many for one field, each at most this long, in at
# most this many tables.
_MEMO_ENTRIES = 16384
_MEMO_PER_TABLE = 4096
_MEMO_MAX_LENGTH = 64
_MEMO_TABLES = 64


# A checked value as the memo keeps it: the pair a record's dictionary is built from.
Known = tuple[str, str]


def blank(field: str) -> Known:
    """What a blank cell of ``field`` stands for where it may be blank: no value. The
    pair's key is no field, so a record's dictionary built from the pairs says by its
    length that it holds one, and by its value which field to leave out."""
    return "\0" + field, field


class PolicyMemo:
    """What checking has learnt about one policy's values, shared by all its checkers.

    Exports repeat places, schools, dates and names, also from one export to the next,
    so a new export starts warm. A table maps a raw cell (untrimmed) of one field to
    ``(field, normalised value)``; only values that passed are kept, and the table of
    a field that may be blank also maps blank cells to ``blank(field)``. Checks that
    depend on today's date get a table per date. The caller never passes a field whose
    values are unique (the BSN): a memo of those would hold personal numbers and never
    be hit.

    Each entry is a pure function of the policy and its key, so a lost entry (a table
    cleared to stay within the bounds, or two threads adding at once) only costs time.
    """

    __slots__ = ("_size", "_tables", "ages", "places")

    def __init__(self) -> None:
        self._tables: dict[tuple[str, date | None, bool], dict[str, Known]] = {}
        self._size = 0
        # woonplaats as a record has it -> municipality, for places in the region
        self.places: dict[str, str] = {}
        # reference date (ISO) -> the bounds of the birth dates (ISO) in the age range
        self.ages: dict[str, tuple[str, str]] = {}

    def table(self, field: str, day: date | None, *, optional: bool) -> dict[str, Known]:
        """The table of ``field`` (``optional``: may be blank), checked against ``day``
        (None: checks of this kind do not depend on the date, or there was no date)."""
        return self._table((field, day, optional), blank(field) if optional else None)

    def passed(self, field: str, known: Known) -> dict[str, Known]:
        """A table for the cells of a suffix column of ``field``, which are not checked
        on their own: it maps each cell seen to ``known``."""
        return self._table(("\0" + field, None, True), known)

    def _table(self, key: tuple[str, date | None, bool], seed: Known | None) -> dict[str, Known]:
        table = self._tables.get(key)
        if table is None:
            if len(self._tables) >= _MEMO_TABLES:  # tables of past dates: start afresh
                self.clear()
                self._tables = {}
            table = self._tables[key] = {} if seed is None else {"": seed}
        return table

    def remember(self, table: dict[str, Known], key: str, known: Known) -> None:
        if len(key) > _MEMO_MAX_LENGTH:
            return
        # A full table starts afresh, and when all are full the largest does: a field
        # whose values hardly repeat (postcodes) then churns alone, and the others keep
        # what they know.
        if len(table) >= _MEMO_PER_TABLE:
            self._size -= _empty(table)
        self._size += 1
        if self._size > _MEMO_ENTRIES:
            tables = list(self._tables.values())
            _empty(max(tables, key=len, default=table))
            self._size = sum(map(len, tables))  # recounted: a table may have been let go
        table[key] = known

    def age_window(self, on: str, *, age_from: int, age_below: int) -> tuple[str, str]:
        """``text.age_window``, remembered (the ages of one policy)."""
        window = self.ages.get(on)
        if window is None:
            if len(self.ages) >= _MEMO_PER_TABLE:
                self.ages.clear()
            window = self.ages[on] = age_window(on, age_from, age_below)
        return window

    def municipality(self, region: Mapping[str, str], place: str) -> str | None:
        """The municipality of woonplaats ``place`` in ``region`` (the policy's)."""
        municipality = self.places.get(place)
        if municipality is None:
            municipality = region.get(fold_key(place))
            if municipality is not None:
                if len(self.places) >= _MEMO_PER_TABLE:
                    self.places.clear()
                self.places[place] = municipality
        return municipality

    def clear(self) -> None:
        for table in list(self._tables.values()):
            _empty(table)
        self.places.clear()
        self.ages.clear()
        self._size = 0

    def __len__(self) -> int:
        """The number of entries held (the blank seeds not counted), for tests."""
        tables = list(self._tables.values())
        return sum(len(t) - ("" in t) for t in tables) + len(self.places) + len(self.ages)


def _empty(table: dict[str, Known]) -> int:
    """Clear ``table`` but for its blank cell's entry; the number of entries it lost."""
    seed = table.get("")
    size = len(table)
    table.clear()
    if seed is not None:
        table[""] = seed
    return size - len(table)


def _any_forbidden(groups: Iterable[ForbiddenGroup]) -> re.Pattern[str] | None:
    """One pattern that matches where any group's does: most text names none of the
    terms, and one search says so instead of one per group. None when the patterns
    cannot be joined without changing what they match."""
    patterns = [group.pattern for group in groups]
    if not patterns:
        return None
    flags = patterns[0].flags
    if any(p.flags != flags or p.groups for p in patterns) or flags & re.VERBOSE:
        return None
    try:
        return re.compile("|".join(f"(?:{p.pattern})" for p in patterns), flags)
    except re.error:
        return None


@dataclass(frozen=True, slots=True)
class Policy:
    """What may leave a party, per category, and how to recognise it in an export."""

    allowed: Mapping[str, frozenset[str]]
    required: Mapping[str, frozenset[str]]
    # folded header -> canonical field
    aliases: Mapping[str, str]
    # canonical field -> check kind (one of FIELD_KINDS)
    kinds: Mapping[str, str] = field(default_factory=lambda: frozen_map({}))
    # folded header -> canonical field the column's value is appended to (Toevoeging)
    suffix_aliases: Mapping[str, str] = field(default_factory=lambda: frozen_map({}))
    category_aliases: frozenset[str] = frozenset({"categorie", "soortverzuim"})
    # folded category value -> category id
    category_values: Mapping[str, str] = field(default_factory=lambda: frozen_map({}))
    # canonical field -> (folded spelling -> canonical term)
    vocabularies: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: frozen_map({}))
    forbidden: tuple[ForbiddenGroup, ...] = ()
    forbidden_fields: frozenset[str] = frozenset()
    # folded woonplaats -> municipality; empty means no region check
    region: Mapping[str, str] = field(default_factory=lambda: frozen_map({}))
    # folded woonplaats or municipality -> partner id
    routing: Mapping[str, str] = field(default_factory=lambda: frozen_map({}))
    max_text: int = 200
    age_from: int = 4
    age_below: int = 18
    out_of_region: str = "reject"
    # Derived, not configured: a changed copy (dataclasses.replace) gets its own.
    memo: PolicyMemo = field(default_factory=PolicyMemo, init=False, repr=False, compare=False)
    forbidden_any: re.Pattern[str] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "forbidden_any", _any_forbidden(self.forbidden))

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(self.allowed)


@dataclass(frozen=True, slots=True)
class HeaderMap:
    """What the column headers of an export mean under a policy."""

    columns: Mapping[str, int]  # canonical field -> column
    suffixes: Mapping[str, int]  # canonical field -> column appended to its value
    category_column: int | None
    ambiguous: tuple[int, ...]  # columns naming a field, or the category, a second time


def map_header(policy: Policy, header: Sequence[str], *, strict: bool) -> HeaderMap:
    """Strict headers are canonical field names; others are folded and looked up in
    the policy's aliases."""
    columns: dict[str, int] = {}
    suffixes: dict[str, int] = {}
    category_column = None
    ambiguous: list[int] = []
    for index, name in enumerate(header):
        if strict:
            canonical: str | None = name if name in policy.kinds else None
            suffix_of = None
        else:
            folded = fold_key(name)
            if folded and folded in policy.category_aliases:
                if category_column is None:
                    category_column = index
                else:
                    ambiguous.append(index)
                continue
            canonical = policy.aliases.get(folded)
            suffix_of = policy.suffix_aliases.get(folded)
        target, table = (canonical, columns) if canonical else (suffix_of, suffixes)
        if target is None:
            continue
        if target in table:
            ambiguous.append(index)
        else:
            table[target] = index
    return HeaderMap(columns, suffixes, category_column, tuple(ambiguous))


def route_of(
    routing: Mapping[str, str], woonplaats: str | None, municipality: str | None
) -> str | None:
    """The partner a record goes to by its woonplaats (folded, as ``routing``'s keys)."""
    # A village listed on its own wins over its municipality.
    for place in (woonplaats, municipality):
        if place is not None:
            partner = routing.get(fold_key(place))
            if partner is not None:
                return partner
    return None


@dataclass(frozen=True, slots=True)
class RowError:
    """Where an export breaks the policy: never the value, only where and which rule.

    ``row`` is the 1-based data row (0 means the header / the file as a whole);
    ``column`` is the original header, or the canonical field name when the problem
    is a field that is missing altogether.
    """

    row: int
    column: str
    code: str


@dataclass(frozen=True, slots=True)
class Verdict:
    category: str | None
    records: int
    kept_fields: tuple[str, ...]
    dropped_columns: tuple[str, ...]
    errors: tuple[RowError, ...]
    routes: Mapping[str, int] = field(default_factory=lambda: frozen_map({}))
    # Rows left out under out_of_region = "skip-and-report"; not errors.
    skipped: tuple[RowError, ...] = ()
    # Errors found in total; ``errors`` keeps only the first ones to bound memory.
    error_count: int = 0

    @property
    def accepted(self) -> bool:
        return not self.errors and self.records > 0
