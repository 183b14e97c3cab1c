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
    "age_window",
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
_DATE_SEPARATORS = "-/."
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
    if "  " not in text and text.isprintable():
        # The common case, without the regex: a printable text holds no whitespace but
        # the plain space, so there is nothing to collapse.
        return text.strip()
    return _SPACES.sub(" ", text).strip()


def parse_date(text: str) -> date | None:
    """Parse ``dd-mm-jjjj``, ``d-m-jjjj`` (also with / or .) or ``jjjj-mm-dd``."""
    value = text.strip()
    if len(value) == 10 and value.isascii():
        # The two spellings of nearly every date, without the regexes: what they match
        # in ten characters.
        if value[4] == value[7] == "-" and (value[:4] + value[5:7] + value[8:]).isdigit():
            return _date(value[:4], value[5:7], value[8:])
        day_first = value[2] in _DATE_SEPARATORS and value[5] in _DATE_SEPARATORS
        if day_first and (value[:2] + value[3:5] + value[6:]).isdigit():
            return _date(value[6:], value[3:5], value[:2])
    match = _DMY.fullmatch(value)
    if match:
        day, month, year = match.groups()
    else:
        match = _YMD.fullmatch(value)
        if not match:
            return None
        year, month, day = match.group(1, 2, 3)
    return _date(year, month, day)


def _date(year: str, month: str, day: str) -> date | None:
    try:
        return date(int(year), int(month), int(day))
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


def age_window(on: str, age_from: int, age_below: int) -> tuple[str, str]:
    """``(low, high)``: on ISO date ``on`` a child born on ISO date ``born`` is at least
    ``age_from`` (>= 0) and younger than ``age_below`` exactly when ``low < born <= high``
    (as text), which is what ``age_on`` says.

    Age >= n on (y, m, d) means born on or before (y - n, m, d), compared as (year,
    month, day): how ISO dates of four-digit years compare as text. A bound before the
    year 0 lies before every birth date.
    """
    year, rest = int(on[:4]), on[4:]
    low, high = year - age_below, year - age_from
    return (f"{low:04d}{rest}" if low >= 0 else ""), (f"{high:04d}{rest}" if high >= 0 else "")
