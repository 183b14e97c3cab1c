"""The values of the policy engine: the policy itself, row errors and the verdict.

A ``Policy`` is built from the policy file by ``exchanged.policyfile`` (which validates
it and names the key on error); the core only reads it. Every lookup table is keyed
by folded spellings (``text.fold_key``) so that matching is a dictionary lookup.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from exchanged.core.text import fold_text, join_initials
from exchanged.errors import OperatorInputError

__all__ = [
    "FIELD_KINDS",
    "OUT_OF_REGION_MODES",
    "ForbiddenGroup",
    "Policy",
    "PolicyInputError",
    "RowError",
    "Verdict",
    "compile_terms",
    "fold_for_terms",
    "frozen_map",
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

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(self.allowed)


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
