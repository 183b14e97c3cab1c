"""Wire protocol v1: the signed-then-encrypted JSON envelope and its receipt.

This module is the one place that knows the wire format (docs/PROTOCOL.md is its
normative text). It is pure: it turns values into text chunks and bytes into values;
the service does the writing, the sealing and the moving.

Invariants:
- ``protocol`` is exactly ``exchanged/1``; anything else is ``unsupported-protocol``.
- ``sender`` and ``recipient`` are inside the signed content, so a partner cannot
  forward a message signed for it to a third party as if it were meant for them.
- A receipt answers one message (``in_reply_to``), or several received in one pass
  (``answers``: a list of such answers, each message at most once); receipts are never
  receipted themselves.
- Records carry only canonical field names; nothing else is encoded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from exchanged.core.model import CATEGORIES, MessageId, Record

__all__ = [
    "DISPOSITIONS",
    "KINDS",
    "PROTOCOL",
    "EnvelopeError",
    "Header",
    "Message",
    "Receipt",
    "check_age",
    "decode",
    "decode_receipts",
    "encode_message",
    "encode_receipt",
    "encode_receipts",
    "export_chunks",
    "export_head",
    "export_record",
    "export_tail",
    "format_time",
    "parse_time",
]

PROTOCOL: Final = "exchanged/1"
KINDS: Final = ("export", "receipt", "incident-notice", "correction", "withdrawal")
PROCESSED: Final = "processed"
DUPLICATE: Final = "processed/duplicate"
FAILURE_REASONS: Final = (
    "decryption-failed",
    "authentication-failed",
    "misaddressed",
    "replayed",
    "expired",
    "policy-violation",
    "unsupported-protocol",
    "malformed",
    "unexpected-processing-error",
)
DISPOSITIONS: Final = (PROCESSED, DUPLICATE, *(f"failed/{r}" for r in FAILURE_REASONS))
# The most answers one receipt carries, so a receipt stays small (~250 bytes each).
MAX_ANSWERS: Final = 1000
_ANSWER_FIELDS: Final = frozenset(
    {"in_reply_to", "disposition", "received_sha256", "record_count", "received_at"}
)
_RECORD_KINDS: Final = ("export", "correction")


class EnvelopeError(ValueError):
    """The plaintext is not a valid v1 envelope. ``reason`` is a receipt failure reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Header:
    """The fields every envelope carries, whatever its kind."""

    kind: str
    message_id: MessageId
    sender: str
    recipient: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Message:
    """A decoded envelope. ``records`` is filled for kinds that carry records;
    ``body`` holds the other kind-specific fields as decoded JSON."""

    header: Header
    category: str | None = None
    records: tuple[Mapping[str, str], ...] = ()
    body: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Receipt:
    """The body of a receipt envelope."""

    in_reply_to: MessageId
    disposition: str
    received_sha256: str
    record_count: int
    received_at: datetime

    @property
    def ok(self) -> bool:
        return self.disposition in (PROCESSED, DUPLICATE)


def format_time(moment: datetime) -> str:
    """UTC, second precision, ``Z`` suffix: the only time format on the wire."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: object, name: str) -> datetime:
    if not isinstance(text, str) or not text.endswith("Z"):
        raise EnvelopeError("malformed", f"{name} must be a UTC time ending in Z")
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise EnvelopeError("malformed", f"{name} is not a valid UTC time") from None


def _header_json(header: Header) -> dict[str, Any]:
    return {
        "protocol": PROTOCOL,
        "kind": header.kind,
        "message_id": header.message_id.value,
        "sender": header.sender,
        "recipient": header.recipient,
        "created_at": format_time(header.created_at),
    }


def export_head(header: Header, category: str) -> str:
    """The opening text of an export (or correction) envelope, up to its records.

    Exports are encoded in three parts (head, one text per record, tail) so that a large
    export streams to disk record by record and is never held in memory.
    ``record_count`` comes last because it is only known once the records are written.
    """
    if header.kind not in _RECORD_KINDS:
        raise ValueError(f"export_head encodes {_RECORD_KINDS}, not {header.kind!r}")
    head = _header_json(header)
    head["category"] = category
    return json.dumps(head, ensure_ascii=False)[:-1] + ', "records": ['


# One encoder for every record: json.dumps with options builds a new one per call.
_RECORD_ENCODER: Final = json.JSONEncoder(ensure_ascii=False)


def export_record(record: Record, *, first: bool) -> str:
    return ("" if first else ",") + _RECORD_ENCODER.encode(dict(record.fields))


def export_tail(record_count: int) -> str:
    return f'], "record_count": {record_count}}}'


def export_chunks(header: Header, category: str, records: Iterable[Record]) -> Iterator[str]:
    """The whole export envelope as text chunks (see ``export_head``)."""
    yield export_head(header, category)
    count = 0
    for record in records:
        if record.category != category:
            raise ValueError("one message carries one category")
        yield export_record(record, first=count == 0)
        count += 1
    yield export_tail(count)


def encode_message(header: Header, body: Mapping[str, Any]) -> bytes:
    """Encode an envelope whose body is small (notices, withdrawals)."""
    if header.kind in _RECORD_KINDS or header.kind == "receipt":
        raise ValueError(f"use export_chunks or encode_receipt for {header.kind!r}")
    document = _header_json(header)
    overlap = document.keys() & body.keys()
    if overlap:
        raise ValueError(f"body may not redefine header fields {sorted(overlap)}")
    document.update(body)
    return json.dumps(document, ensure_ascii=False).encode()


def encode_receipt(header: Header, receipt: Receipt) -> bytes:
    return encode_receipts(header, [receipt])


def encode_receipts(header: Header, receipts: Sequence[Receipt]) -> bytes:
    """One receipt envelope answering ``receipts``: the fields of the answer itself for
    one (the form every receipt had before answers could be gathered), an
    ``answers`` list for several."""
    if header.kind != "receipt":
        raise ValueError("a receipt envelope has kind 'receipt'")
    if not 1 <= len(receipts) <= MAX_ANSWERS:
        raise ValueError(f"a receipt answers 1 to {MAX_ANSWERS} messages")
    if len({r.in_reply_to for r in receipts}) != len(receipts):
        raise ValueError("a receipt answers each message once")
    document = _header_json(header)
    answers = [_answer_json(r) for r in receipts]
    if len(answers) == 1:
        document.update(answers[0])
    else:
        document["answers"] = answers
    return json.dumps(document).encode()


def _answer_json(receipt: Receipt) -> dict[str, Any]:
    if receipt.disposition not in DISPOSITIONS:
        raise ValueError(f"unknown disposition {receipt.disposition!r}")
    return {
        "in_reply_to": receipt.in_reply_to.value,
        "disposition": receipt.disposition,
        "received_sha256": receipt.received_sha256,
        "record_count": receipt.record_count,
        "received_at": format_time(receipt.received_at),
    }


def decode(data: bytes) -> Message:
    """Parse and validate a decrypted envelope; raise EnvelopeError with a reason."""
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        # RecursionError: deeply nested JSON (a partner's bug or a hostile signer).
        raise EnvelopeError("malformed", "the plaintext is not UTF-8 JSON") from None
    if not isinstance(document, dict):
        raise EnvelopeError("malformed", "the envelope is not a JSON object")
    if document.get("protocol") != PROTOCOL:
        raise EnvelopeError("unsupported-protocol", "the protocol is not exchanged/1")
    header = _decode_header(document)
    rest = {
        k: v
        for k, v in document.items()
        if k not in {"protocol", "kind", "message_id", "sender", "recipient", "created_at"}
    }
    if header.kind not in _RECORD_KINDS:
        if header.kind == "receipt":
            decode_receipts(rest)  # validate now, so a Message always holds a usable body
        return Message(header=header, body=rest)
    category = rest.pop("category", None)
    records = rest.pop("records", None)
    count = rest.pop("record_count", None)
    if category not in CATEGORIES:
        raise EnvelopeError("malformed", "category is not one of the covenant's categories")
    if not isinstance(records, list) or not all(_is_record(r) for r in records):
        raise EnvelopeError("malformed", "records must be a list of string-valued objects")
    if count != len(records):
        raise EnvelopeError("malformed", "record_count does not match the records")
    return Message(header=header, category=category, records=tuple(records), body=rest)


def decode_receipts(body: Mapping[str, Any]) -> tuple[Receipt, ...]:
    """The answers of a receipt body, in either form (see ``encode_receipts``)."""
    if "answers" not in body:
        return (decode_receipt(body),)
    answers = body["answers"]
    if _ANSWER_FIELDS & body.keys():
        raise EnvelopeError("malformed", "a receipt has either answers or one answer's fields")
    if not isinstance(answers, list) or not 2 <= len(answers) <= MAX_ANSWERS:
        raise EnvelopeError("malformed", f"answers is not a list of 2 to {MAX_ANSWERS}")
    if not all(isinstance(answer, dict) for answer in answers):
        raise EnvelopeError("malformed", "an answer is not a JSON object")
    receipts = tuple(decode_receipt(answer) for answer in answers)
    if len({r.in_reply_to for r in receipts}) != len(receipts):
        raise EnvelopeError("malformed", "a receipt answers one message twice")
    return receipts


def decode_receipt(body: Mapping[str, Any]) -> Receipt:
    disposition = body.get("disposition")
    digest = body.get("received_sha256")
    count = body.get("record_count")
    if disposition not in DISPOSITIONS:
        raise EnvelopeError("malformed", "the receipt's disposition is not known")
    if not isinstance(digest, str) or len(digest) != 64 or not _is_hex(digest):
        raise EnvelopeError("malformed", "received_sha256 is not a SHA-256 hex digest")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise EnvelopeError("malformed", "record_count is not a non-negative integer")
    return Receipt(
        in_reply_to=_message_id(body.get("in_reply_to"), "in_reply_to"),
        disposition=disposition,
        received_sha256=digest,
        record_count=count,
        received_at=parse_time(body.get("received_at"), "received_at"),
    )


def check_age(
    created_at: datetime, now: datetime, *, max_age: timedelta, max_skew: timedelta
) -> bool:
    """True when a message is fresh: not older than ``max_age`` and not dated further
    in the future than the clock skew we tolerate."""
    return now - max_age <= created_at <= now + max_skew


def _decode_header(document: Mapping[str, Any]) -> Header:
    kind = document.get("kind")
    if kind not in KINDS:
        raise EnvelopeError("malformed", "kind is not one of the v1 kinds")
    sender, recipient = document.get("sender"), document.get("recipient")
    if not isinstance(sender, str) or not isinstance(recipient, str):
        raise EnvelopeError("malformed", "sender and recipient must be party ids")
    return Header(
        kind=kind,
        message_id=_message_id(document.get("message_id"), "message_id"),
        sender=sender,
        recipient=recipient,
        created_at=parse_time(document.get("created_at"), "created_at"),
    )


def _message_id(value: object, name: str) -> MessageId:
    if not isinstance(value, str):
        raise EnvelopeError("malformed", f"{name} must be a UUID string")
    try:
        return MessageId(value)
    except ValueError:
        raise EnvelopeError("malformed", f"{name} is not a canonical UUID") from None


def _is_record(value: object) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)
