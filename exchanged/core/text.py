"""Pure text helpers for the policy: folding, dates, postcodes.

Everything here is a function of its arguments (today's date included), so the rules
are unit-tested without files or a clock.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date

__all__ = [
    "age_on",
    "clean_value",
    "fold_key",
    "fold_text",
    "join_initials",
    "normalise_postcode",
    "parse_date",
]

_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_SPACES = re.compile(r"\s+")
_INITIALS = re.compile(r"(?<![a-z0-9])(?:[a-z0-9] )+[a-z0-9](?![a-z0-9])")
# Dutch exports write days first; ISO comes from XLSX date cells and newer software.
_DMY = re.compile(r"([0-9]{1,2})[-/.]([0-9]{1,2})[-/.]([0-9]{4})")
# A time part of midnight is what spreadsheets add to a date exported as text.
_YMD = re.compile(r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})(?:[T ]00:00(?::00(?:\.0+)?)?)?")
# Postcodes never start with 0; SA, SD and SS are not issued.
_POSTCODE = re.compile(r"([1-9][0-9]{3}) ?([A-Z]{2})")
_UNISSUED_POSTCODE_LETTERS = frozenset({"SA", "SD", "SS"})


def _ascii_lower(text: str) -> str:
    if text.isascii():
        return text.lower()  # the common case, and a large share of the checking time
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def fold_key(text: str) -> str:
    """Fold a header or vocabulary spelling: case, diacritics, spaces and punctuation go.

    ``"Tussenvoegsel(s)"`` and ``"tussen-voegsels"`` both become ``"tussenvoegsels"``.
    """
    return _NON_ALNUM.sub("", _ascii_lower(text))


def fold_text(text: str) -> str:
    """Fold free text for term matching: words of a-z0-9 separated by single spaces.

    Hyphens, dots and other punctuation become word breaks so that word-boundary
    matching sees ``proces-verbaal`` as ``proces verbaal``.
    """
    return _NON_ALNUM.sub(" ", _ascii_lower(text)).strip()


def join_initials(folded: str) -> str:
    """Join runs of single letters, so that folded ``a d h d`` (from A.D.H.D.) reads ``adhd``."""
    return _INITIALS.sub(lambda m: m.group().replace(" ", ""), folded)


def clean_value(text: str) -> str:
    """Trim and collapse whitespace (line breaks from quoted cells included)."""
    return _SPACES.sub(" ", text).strip()


def parse_date(text: str) -> date | None:
    """Parse ``dd-mm-jjjj``, ``d-m-jjjj`` (also with / or .) or ``jjjj-mm-dd``."""
    value = text.strip()
    match = _DMY.fullmatch(value)
    if match:
        day, month, year = (int(g) for g in match.groups())
    else:
        match = _YMD.fullmatch(value)
        if not match:
            return None
        year, month, day = (int(g) for g in match.groups())
    try:
        return date(year, month, day)
    except ValueError:
        return None


def normalise_postcode(text: str) -> str | None:
    """Return ``1234 AB`` for a Dutch postcode in any common spelling, else None."""
    match = _POSTCODE.fullmatch(clean_value(text).upper())
    if not match or match.group(2) in _UNISSUED_POSTCODE_LETTERS:
        return None
    return f"{match.group(1)} {match.group(2)}"


def age_on(born: date, on: date) -> int:
    """Age in whole years on ``on``; negative when ``on`` lies before ``born``."""
    years = on.year - born.year
    if (on.month, on.day) < (born.month, born.day):
        years -= 1
    return years
