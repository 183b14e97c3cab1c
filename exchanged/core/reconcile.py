"""List reconciliation: do both parties see the same children? Pure.

Our list and the partner's list are matched by BSN, and every child lands in exactly
one of four sets: in both with the same category, in both with a different category,
only ours, only theirs. Counts per category and per municipality are what a
samenwerkingsverband reports to the Inspectie every quarter.

Per category (``CategoryCounts``), with C the category:
  ours        = same + different_ours + only_ours        (our list says C)
  theirs      = same + different_theirs + only_theirs    (their list says C)
  different_ours   = we say C, they say another category
  different_theirs = they say C, we say another category
Per municipality each child is counted once, under the municipality of our woonplaats
(theirs when only they list the child); a woonplaats outside the region is counted
under ``OUTSIDE_REGION``.

A BSN that appears twice in one list is counted once (its first entry wins) and
reported as a duplicate; an invalid BSN is skipped and counted. Neither is expected in
lists that passed the policy engine, but an explicit list file may hold them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from exchanged.core.bsn import normalise_bsn
from exchanged.core.text import fold_key

__all__ = [
    "OUTSIDE_REGION",
    "CategoryCounts",
    "Entry",
    "MunicipalityCounts",
    "Reconciliation",
    "Row",
    "Status",
    "reconcile",
]

OUTSIDE_REGION: Final = "(buiten regio)"


class Status(StrEnum):
    SAME = "same-category"
    DIFFERENT = "different-category"
    ONLY_OURS = "only-ours"
    ONLY_THEIRS = "only-theirs"


@dataclass(frozen=True, slots=True)
class Entry:
    """One child on one list: only what matching and counting need."""

    bsn: str
    category: str
    woonplaats: str = ""

    def __repr__(self) -> str:
        return f"Entry(category={self.category!r})"  # never the BSN in a traceback


@dataclass(frozen=True, slots=True)
class Row:
    """One child in the report."""

    status: Status
    bsn: str
    our_category: str | None
    their_category: str | None
    woonplaats: str
    municipality: str

    def __repr__(self) -> str:
        return f"Row(status={self.status.value!r}, municipality={self.municipality!r})"


@dataclass(frozen=True, slots=True)
class CategoryCounts:
    ours: int = 0
    theirs: int = 0
    same: int = 0
    different_ours: int = 0
    different_theirs: int = 0
    only_ours: int = 0
    only_theirs: int = 0


@dataclass(frozen=True, slots=True)
class MunicipalityCounts:
    children: int = 0
    same: int = 0
    different: int = 0
    only_ours: int = 0
    only_theirs: int = 0


@dataclass(frozen=True, slots=True)
class Reconciliation:
    rows: tuple[Row, ...]
    by_category: Mapping[str, CategoryCounts]
    by_municipality: Mapping[str, MunicipalityCounts]
    duplicates_ours: int = 0
    duplicates_theirs: int = 0
    invalid_ours: int = 0
    invalid_theirs: int = 0
    totals: Mapping[str, int] = field(default_factory=dict)

    def rows_with(self, status: Status) -> tuple[Row, ...]:
        return tuple(r for r in self.rows if r.status == status)

    def bsns(self, status: Status) -> frozenset[str]:
        return frozenset(r.bsn for r in self.rows if r.status == status)

    def summary(self) -> dict[str, int]:
        """Counts only: what may be printed and logged."""
        return {
            **{status.value: self.totals.get(status.value, 0) for status in Status},
            "duplicates_ours": self.duplicates_ours,
            "duplicates_theirs": self.duplicates_theirs,
            "invalid_ours": self.invalid_ours,
            "invalid_theirs": self.invalid_theirs,
        }


def _index(entries: Iterable[Entry]) -> tuple[dict[str, Entry], int, int]:
    found: dict[str, Entry] = {}
    duplicates = invalid = 0
    for entry in entries:
        bsn = normalise_bsn(entry.bsn)
        if bsn is None:
            invalid += 1
        elif bsn in found:
            duplicates += 1
        else:
            found[bsn] = Entry(bsn, entry.category, entry.woonplaats)
    return found, duplicates, invalid


def _municipality(region: Mapping[str, str], woonplaats: str) -> str:
    return region.get(fold_key(woonplaats), OUTSIDE_REGION) if woonplaats else OUTSIDE_REGION


def reconcile(
    ours: Iterable[Entry],
    theirs: Iterable[Entry],
    *,
    region: Mapping[str, str],
    categories: Iterable[str] = (),
) -> Reconciliation:
    """Match ``ours`` and ``theirs`` by BSN. ``region`` maps a folded woonplaats or
    municipality to its municipality (the policy's ``region``); ``categories`` are
    listed in the counts even when empty, so every report has the same shape."""
    mine, dup_o, bad_o = _index(ours)
    other, dup_t, bad_t = _index(theirs)
    rows: list[Row] = []
    for bsn in sorted(mine.keys() | other.keys()):
        a, b = mine.get(bsn), other.get(bsn)
        if a is not None and b is not None:
            status = Status.SAME if a.category == b.category else Status.DIFFERENT
        else:
            status = Status.ONLY_OURS if a is not None else Status.ONLY_THEIRS
        # Our woonplaats first: it is the list this party is accountable for.
        if a is not None and a.woonplaats:
            where = a.woonplaats
        else:
            where = b.woonplaats if b is not None else ""
        rows.append(
            Row(
                status=status,
                bsn=bsn,
                our_category=a.category if a else None,
                their_category=b.category if b else None,
                woonplaats=where,
                municipality=_municipality(region, where),
            )
        )
    order = {s: i for i, s in enumerate(Status)}
    rows.sort(key=lambda r: (order[r.status], r.municipality, r.bsn))
    return Reconciliation(
        rows=tuple(rows),
        by_category=_by_category(rows, categories),
        by_municipality=_by_municipality(rows, region),
        duplicates_ours=dup_o,
        duplicates_theirs=dup_t,
        invalid_ours=bad_o,
        invalid_theirs=bad_t,
        totals=dict(Counter(r.status.value for r in rows)),
    )


def _by_category(rows: list[Row], categories: Iterable[str]) -> dict[str, CategoryCounts]:
    counts: dict[str, Counter[str]] = {c: Counter() for c in categories}
    for row in rows:
        ours, theirs = row.our_category, row.their_category
        if ours is not None:
            counts.setdefault(ours, Counter())["ours"] += 1
        if theirs is not None:
            counts.setdefault(theirs, Counter())["theirs"] += 1
        if row.status == Status.SAME and ours is not None:
            counts[ours]["same"] += 1
        elif row.status == Status.DIFFERENT and ours is not None and theirs is not None:
            counts[ours]["different_ours"] += 1
            counts[theirs]["different_theirs"] += 1
        elif row.status == Status.ONLY_OURS and ours is not None:
            counts[ours]["only_ours"] += 1
        elif row.status == Status.ONLY_THEIRS and theirs is not None:
            counts[theirs]["only_theirs"] += 1
    return {c: CategoryCounts(**n) for c, n in sorted(counts.items())}


def _by_municipality(rows: list[Row], region: Mapping[str, str]) -> dict[str, MunicipalityCounts]:
    names = {*region.values()}
    counts: dict[str, Counter[str]] = {m: Counter() for m in names}
    key = {
        Status.SAME: "same",
        Status.DIFFERENT: "different",
        Status.ONLY_OURS: "only_ours",
        Status.ONLY_THEIRS: "only_theirs",
    }
    for row in rows:
        bucket = counts.setdefault(row.municipality, Counter())
        bucket["children"] += 1
        bucket[key[row.status]] += 1
    return {m: MunicipalityCounts(**n) for m, n in sorted(counts.items())}
