"""The BSN elfproef (eleven test) and normalisation.

A BSN is 9 digits d1..d9 with 9*d1 + 8*d2 + ... + 2*d8 - 1*d9 divisible by 11. Eight
digits get one leading zero (old numbers are written without it); shorter input is
refused rather than padded, because padding would accept "140" as a valid number.
For the same reason a number with more than one leading zero is refused: "00000140"
is eight digits, but it is a short number zero-padded by someone else's software.
"""

from __future__ import annotations

from operator import mul

__all__ = [
    "BSN_ELFPROEF",
    "BSN_FORMAT",
    "bsn_problem",
    "check_bsn",
    "is_valid_bsn",
    "normalise_bsn",
]

_WEIGHTS = (9, 8, 7, 6, 5, 4, 3, 2, -1)
# The weighted sum over ASCII codes is off by ord("0") times the sum of the weights.
_ASCII_OFFSET = ord("0") * sum(_WEIGHTS)
_SEPARATORS = str.maketrans("", "", " .-\u00a0\t")

# Error codes, shared with the policy engine and the rejection report.
BSN_FORMAT = "bsn-format"
BSN_ELFPROEF = "bsn-elfproef"


def _digits(text: str) -> str | None:
    digits = text.strip().translate(_SEPARATORS)
    if len(digits) == 8:
        digits = "0" + digits
    if len(digits) != 9 or not digits.isascii() or not digits.isdigit():
        return None
    return digits


def check_bsn(text: str) -> tuple[str | None, str | None]:
    """``(9-digit BSN, None)`` for a valid BSN, else ``(None, error code)``."""
    digits = _digits(text)
    if digits is None or digits.startswith("00"):
        return None, BSN_FORMAT
    return (digits, None) if is_valid_bsn(digits) else (None, BSN_ELFPROEF)


def bsn_problem(text: str) -> str | None:
    """Return the error code for ``text`` as a BSN, or None when it is a valid BSN."""
    return check_bsn(text)[1]


def normalise_bsn(text: str) -> str | None:
    """Return the 9-digit BSN for ``text``, or None when it is not a valid BSN."""
    return check_bsn(text)[0]


def is_valid_bsn(digits: str) -> bool:
    """True when ``digits`` is exactly nine ASCII digits, not all zero, passing the elfproef."""
    if len(digits) != 9 or not digits.isascii() or not digits.isdigit():
        return False
    if digits == "000000000":
        return False
    total: int = sum(map(mul, _WEIGHTS, digits.encode("ascii"))) - _ASCII_OFFSET
    return total % 11 == 0
