"""The BSN elfproef (eleven test) and normalisation.

A BSN is 9 digits d1..d9 with 9*d1 + 8*d2 + ... + 2*d8 - 1*d9 divisible by 11. Eight
digits get one leading zero (old numbers are written without it); shorter input is
refused rather than padded, because padding would accept "140" as a valid number.
For the same reason a number with more than one leading zero is refused: "00000140"
is eight digits, but it is a short number zero-padded by someone else's software.
"""

from __future__ import annotations

__all__ = [
    "BSN_ELFPROEF",
    "BSN_FORMAT",
    "ELFPROEF_SUMS",
    "PAGE_BITS",
    "SET_LIMIT",
    "SeenBsns",
    "bsn_problem",
    "check_bsn",
    "elfproef",
    "is_valid_bsn",
    "normalise_bsn",
]

_WEIGHTS = (9, 8, 7, 6, 5, 4, 3, 2, -1)
_SEPARATORS = str.maketrans("", "", " .-\u00a0\t")


def _sums(weights: tuple[int, ...]) -> bytes:
    """The weighted digit sums, mod 11, of all numbers of ``len(weights)`` digits, in
    order: each digit added makes ten entries of every entry so far."""
    sums = bytes(1)
    for weight in weights:
        rows = [bytes((s + weight * d) % 11 for d in range(10)) for s in range(11)]
        sums = b"".join(map(rows.__getitem__, sums))
    return sums


# The elfproef sums of the first four and of the last five digits (of a number below
# 10**9): the policy engine runs the elfproef once per row, and two look-ups cost less
# than nine multiplications.
ELFPROEF_SUMS = _FIRST, _LAST = _sums(_WEIGHTS[:4]), _sums(_WEIGHTS[4:])

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
    return elfproef(int(digits))


def elfproef(number: int) -> bool:
    """The eleven test alone, on a BSN as a number (0 <= number < 10**9)."""
    return (_FIRST[number // 100_000] + _LAST[number % 100_000]) % 11 == 0


# Seen BSNs, first as a set of numbers: smaller than the pages below (and quicker)
# until it holds this many, about 8 MB. Then they move to the pages: one bit per BSN
# (the first eight digits decide the ninth), this many to a page.
SET_LIMIT = 1 << 17
PAGE_BITS = 4096


class SeenBsns:
    """The BSNs of one export seen so far, for the duplicate check, in bounded memory:
    a set of numbers up to ``SET_LIMIT``, then one bit per BSN in 512-byte pages made
    on first use (at most 12.5 MB however large the export). Anything that is not a
    nine-digit number goes to a plain set of its own.

    A BSN's key is its first eight digits as a number. While ``numbers`` is not None,
    the policy engine's short path looks keys up and adds them itself (a call per row
    would cost more than the look-up), the same way as ``add_key``."""

    __slots__ = ("_other", "numbers", "pages")

    def __init__(self) -> None:
        self.numbers: set[int] | None = set()
        self.pages: dict[int, bytearray] = {}
        self._other: set[str] = set()

    def add(self, bsn: str) -> bool:
        """Remember ``bsn``; True when it was seen before."""
        if len(bsn) != 9 or not bsn.isascii() or not bsn.isdigit():
            seen = bsn in self._other
            self._other.add(bsn)
            return seen
        return self.add_key(int(bsn) // 10)

    def add_key(self, key: int) -> bool:
        """Remember the BSN with ``key``; True when it was seen before."""
        numbers = self.numbers
        if numbers is not None:
            if key in numbers:
                return True
            if len(numbers) < SET_LIMIT:
                numbers.add(key)
                return False
            self.numbers = None
            for number in numbers:
                self._set_bit(number)
        return self._set_bit(key)

    def _set_bit(self, key: int) -> bool:
        page_number, offset = divmod(key, PAGE_BITS)
        page = self.pages.get(page_number)
        if page is None:
            page = self.pages[page_number] = bytearray(PAGE_BITS // 8)
        index, bit = offset >> 3, 1 << (offset & 7)
        if page[index] & bit:
            return True
        page[index] |= bit
        return False
