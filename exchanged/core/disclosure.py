"""Accountability values: the keyed BSN hash, termination grounds, and the bodies of the
``withdrawal`` and ``correction`` envelopes (AVG art. 19). Pure: the hashing key is
passed in by the caller, never read here.

Why a keyed hash: there are only 10^9 BSNs, so a plain SHA-256 of a BSN is reversed by
trying them all in minutes. HMAC-SHA-256 with a per-party secret (a systemd
credential) makes the register useless to whoever copies the database without the key,
while the party itself can still find a subject by hashing the number it is asked about.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from functools import lru_cache
from typing import Any, Final

from exchanged.core.bsn import is_valid_bsn, normalise_bsn
from exchanged.core.envelope import EnvelopeError, Message

__all__ = [
    "MIN_KEY_BYTES",
    "Correction",
    "Ground",
    "Withdrawal",
    "bsn_hash",
    "parse_correction",
    "parse_withdrawal",
    "withdrawal_body",
]

# 128 bits: a shorter secret could itself be guessed, which would undo the hashing.
MIN_KEY_BYTES: Final = 16

_WITHDRAWAL_KEYS: Final = frozenset({"bsn", "ground", "date"})


class Ground(StrEnum):
    """Why processing of a subject ends (covenant, AVG art. 17 and 21)."""

    TERUG_NAAR_SCHOOL = "terug-naar-school"
    STARTKWALIFICATIE = "startkwalificatie"
    VERHUISD_BUITEN_REGIO = "verhuisd-buiten-regio"
    OVERLEDEN = "overleden"
    VERWIJDERVERZOEK = "verwijderverzoek"
    BEZWAAR = "bezwaar"

    @property
    def purges(self) -> bool:
        """Whether stored copies must be erased now.

        The covenant's four end-of-purpose grounds and an erasure request (art. 17)
        leave no reason to keep the data. An objection (art. 21) stops processing at
        once, but while it is being assessed the data are *restricted* (art. 18(1)(d)),
        not erased: erasing would decide the objection before it is decided, and the
        party may need the copy to answer it. The operator purges later with a
        second withdrawal on ground ``verwijderverzoek`` if the objection is upheld.
        """
        return self is not Ground.BEZWAAR


GROUNDS: Final = tuple(g.value for g in Ground)


@lru_cache(maxsize=4)
def _keyed_hmac(key: bytes) -> hmac.HMAC:
    # The key's inner and outer pads hashed once; each BSN then copies this state
    # instead of setting the key up again (the daemon hashes every record it moves).
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the BSN hashing key must be at least {MIN_KEY_BYTES} bytes")
    return hmac.new(key, digestmod="sha256")


def bsn_hash(key: bytes, bsn: str) -> str:
    """HMAC-SHA-256(key, normalised 9-digit BSN) as lower-case hex.

    The BSN is normalised first, so "1234.56.782" and "123456782" hash alike; an
    invalid BSN is refused rather than hashed into an entry nobody can ever find.
    """
    mac = _keyed_hmac(key).copy()
    # Records carry the normalised form already; for it normalise_bsn would return the
    # same nine digits, so only other spellings go through it.
    if len(bsn) == 9 and bsn[:2] != "00" and is_valid_bsn(bsn):
        digits: str | None = bsn
    else:
        digits = normalise_bsn(bsn)
    if digits is None:
        raise ValueError("not a valid BSN")
    mac.update(digits.encode("ascii"))
    return mac.hexdigest()


# -- withdrawal --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Withdrawal:
    """One subject whose processing the sender ended, and why.

    The BSN must travel: without it the receiver cannot find the subject. It is inside
    the signed and encrypted envelope, and nothing else about the person is.
    """

    bsn: str
    ground: Ground
    date: date

    def __repr__(self) -> str:
        # A repr ends up in tracebacks and logs; the BSN must not.
        return f"Withdrawal(ground={self.ground.value!r}, date={self.date.isoformat()!r})"


def withdrawal_body(bsn: str, ground: str, on: date) -> dict[str, Any]:
    """The body of a ``withdrawal`` envelope (encode with ``envelope.encode_message``)."""
    digits = normalise_bsn(bsn)
    if digits is None:
        raise ValueError("not a valid BSN")
    return {"bsn": digits, "ground": Ground(ground).value, "date": on.isoformat()}


def parse_withdrawal(body: Mapping[str, Any]) -> Withdrawal:
    """Validate a received withdrawal body; EnvelopeError("malformed") otherwise.

    Exactly the three keys: a withdrawal carrying anything more would disclose more
    than the covenant allows, so it is refused rather than delivered.
    """
    if set(body) != _WITHDRAWAL_KEYS:
        raise EnvelopeError("malformed", "a withdrawal holds exactly bsn, ground and date")
    raw_bsn, raw_ground, raw_date = body["bsn"], body["ground"], body["date"]
    if not isinstance(raw_bsn, str) or normalise_bsn(raw_bsn) != raw_bsn:
        raise EnvelopeError("malformed", "the withdrawal's bsn is not a valid 9-digit BSN")
    if raw_ground not in GROUNDS:
        raise EnvelopeError("malformed", "the withdrawal's ground is not a known ground")
    try:
        on = date.fromisoformat(raw_date) if isinstance(raw_date, str) else None
    except ValueError:
        on = None
    if on is None or len(raw_date) != 10:
        raise EnvelopeError("malformed", "the withdrawal's date is not YYYY-MM-DD")
    return Withdrawal(bsn=raw_bsn, ground=Ground(raw_ground), date=on)


# -- correction --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Correction:
    """Corrected records of one category for subjects sent before. On the wire it has
    the export shape (``category``, ``records``, ``record_count``) with kind
    ``correction``: each record replaces what the receiver holds for that BSN."""

    category: str
    records: tuple[Mapping[str, str], ...]

    @property
    def bsns(self) -> tuple[str, ...]:
        return tuple(r["bsn"] for r in self.records)

    def __repr__(self) -> str:
        return f"Correction(category={self.category!r}, records={len(self.records)})"


def parse_correction(message: Message) -> Correction:
    """Check what only a correction needs beyond ``envelope.decode`` (the receiver
    still re-checks the records against the policy like any export)."""
    if message.header.kind != "correction" or message.category is None:
        raise EnvelopeError("malformed", "not a correction envelope")
    if not message.records:
        raise EnvelopeError("malformed", "a correction holds at least one record")
    seen: set[str] = set()
    for record in message.records:
        bsn = record.get("bsn", "")
        if normalise_bsn(bsn) != bsn:
            raise EnvelopeError("malformed", "every corrected record needs a valid bsn")
        if bsn in seen:
            raise EnvelopeError("malformed", "a correction names each subject once")
        seen.add(bsn)
    return Correction(category=message.category, records=message.records)
