"""Minimisation to the covenant's allow-list (skeleton; the full engine replaces it).

Interface used by the service (stable): ``RecordChecker(policy, header, category=...)``
then ``check(row_number, row)`` per data row and ``finish()`` for the verdict.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from exchanged.core.bsn import normalise_bsn
from exchanged.core.model import Record

__all__ = ["Policy", "RecordChecker", "RowError", "Verdict", "default_policy"]


@dataclass(frozen=True, slots=True)
class Policy:
    allowed: Mapping[str, frozenset[str]]
    required: Mapping[str, frozenset[str]]
    aliases: Mapping[str, str]
    category_aliases: frozenset[str] = frozenset({"categorie", "soortverzuim"})


@dataclass(frozen=True, slots=True)
class RowError:
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
    routes: Mapping[str, int] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return not self.errors and self.records > 0


_COMMON = frozenset(
    {
        "bsn", "voornamen", "tussenvoegsel", "achternaam", "geboortedatum",
        "straat", "huisnummer", "postcode", "woonplaats", "laatst_bekende_school",
    }
)  # fmt: skip


def default_policy() -> Policy:
    allowed = {
        "absoluut-verzuim": _COMMON | {"startdatum_verzuim", "betrokkenheid"},
        "langdurig-verzuim": _COMMON | {"startdatum_verzuim", "reden_verzuim", "betrokkenheid"},
        "vrijstelling-5a": _COMMON | {"datum_toekenning_vrijstelling", "duur_vrijstelling"},
    }
    aliases = {_fold(f): f for fields in allowed.values() for f in fields}
    return Policy(
        allowed=allowed,
        required={c: frozenset({"bsn", "achternaam"}) for c in allowed},
        aliases=aliases,
    )


def _fold(header: str) -> str:
    text = unicodedata.normalize("NFKD", header).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]", "", text.lower())


class RecordChecker:
    """Streams rows of one export through the policy; collects errors without values."""

    def __init__(self, policy: Policy, header: Sequence[str], *, category: str | None) -> None:
        self._policy = policy
        self._category = category
        self._columns: list[tuple[int, str]] = []
        self._category_column: int | None = None
        dropped: list[str] = []
        for index, name in enumerate(header):
            folded = _fold(name)
            if folded in policy.category_aliases:
                self._category_column = index
            elif folded in policy.aliases:
                self._columns.append((index, policy.aliases[folded]))
            else:
                dropped.append(name)
        self._dropped = tuple(dropped)
        self._errors: list[RowError] = []
        self._count = 0
        self._seen: set[str] = set()
        self._categories: set[str] = set()

    def check(self, row_number: int, row: Sequence[str]) -> Record | None:
        category = self._category
        if self._category_column is not None and self._category_column < len(row):
            category = category or row[self._category_column].strip().lower() or None
        if category not in self._policy.allowed:
            self._errors.append(RowError(row_number, "categorie", "unknown-category"))
            return None
        allowed = self._policy.allowed[category]
        values = {
            canonical: row[index].strip()
            for index, canonical in self._columns
            if canonical in allowed and index < len(row) and row[index].strip()
        }
        before = len(self._errors)
        for needed in sorted(self._policy.required[category] - values.keys()):
            self._errors.append(RowError(row_number, needed, "missing"))
        if "bsn" in values:
            bsn = normalise_bsn(values["bsn"])
            if bsn is None:
                self._errors.append(RowError(row_number, "bsn", "bsn-invalid"))
            elif bsn in self._seen:
                self._errors.append(RowError(row_number, "bsn", "bsn-duplicate"))
            else:
                self._seen.add(bsn)
                values["bsn"] = bsn
        if len(self._errors) != before:
            return None
        self._count += 1
        self._categories.add(category)
        return Record(category=category, fields=values)

    def finish(self) -> Verdict:
        kept = sorted({c for _, c in self._columns})
        category = self._category or (
            next(iter(self._categories)) if len(self._categories) == 1 else None
        )
        return Verdict(
            category=category,
            records=self._count,
            kept_fields=tuple(kept),
            dropped_columns=self._dropped,
            errors=tuple(self._errors),
        )
