"""Values shared by the core and the adapters.

All values are frozen and slotted; constructors validate, so a value that exists is
well-formed. Party ids and fingerprints are checked here once rather than everywhere.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

__all__ = [
    "CATEGORIES",
    "MESSAGE_ID_PATTERN",
    "PARTY_ID_PATTERN",
    "Category",
    "Fingerprint",
    "MessageId",
    "PartyId",
    "Record",
]

PARTY_ID_PATTERN: Final = r"[a-z][a-z0-9-]{1,31}"
# A message id as it appears on the wire and in file names: a canonical lower-case UUID.
MESSAGE_ID_PATTERN: Final = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_PARTY_RE = re.compile(rf"^{PARTY_ID_PATTERN}$")
_FPR_RE = re.compile(r"^[0-9A-F]{40}$")


class Category(StrEnum):
    """The covenant's three categories of thuiszitter (Bijlage 1)."""

    ABSOLUUT_VERZUIM = "absoluut-verzuim"
    LANGDURIG_VERZUIM = "langdurig-verzuim"
    VRIJSTELLING_5A = "vrijstelling-5a"


CATEGORIES: tuple[str, ...] = tuple(c.value for c in Category)


@dataclass(frozen=True, slots=True)
class PartyId:
    """A party's short id, e.g. ``rbl`` or ``passendwijs``: lower case, digits, dashes."""

    value: str

    def __post_init__(self) -> None:
        if not _PARTY_RE.match(self.value):
            raise ValueError(
                f"party id {self.value!r} must be 2-32 characters: a-z first, then a-z, 0-9, '-'"
            )

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """A full OpenPGP v4 fingerprint: 40 hex digits, stored upper case, no spaces."""

    value: str

    @classmethod
    def parse(cls, text: str) -> Fingerprint:
        return cls(text.replace(" ", "").upper())

    def __post_init__(self) -> None:
        if not _FPR_RE.match(self.value):
            raise ValueError("a fingerprint is 40 hexadecimal digits (spaces allowed)")

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class MessageId:
    """A random UUID naming one message; also its file name on the wire."""

    value: str

    @classmethod
    def new(cls) -> MessageId:
        return cls(str(uuid.uuid4()))

    def __post_init__(self) -> None:
        try:
            parsed = uuid.UUID(self.value)
        except ValueError:
            raise ValueError("a message id is a UUID") from None
        if str(parsed) != self.value:
            raise ValueError("a message id is a UUID in canonical lower-case form")

    @property
    def wire_name(self) -> str:
        return f"{self.value}.pgp"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Record:
    """One minimised child: only canonical fields allowed for ``category``.

    ``fields`` maps canonical field names (``bsn``, ``achternaam``, ...) to normalised
    text. ``route`` is the partner a routed outbox sends this record to, if any.
    """

    category: str
    fields: Mapping[str, str] = field(default_factory=dict)
    route: str | None = None
