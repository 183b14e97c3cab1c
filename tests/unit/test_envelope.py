"""Wire protocol v1: encoding and decoding of envelopes and receipts, no fixtures."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchanged.core import envelope
from exchanged.core.envelope import EnvelopeError, Header, Receipt
from exchanged.core.model import MessageId, Record

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
MID = MessageId("0b6c3f5e-9a43-4a52-8b0d-5d8f3c2e1a77")


def _export(records: list[dict[str, str]], category: str = "absoluut-verzuim") -> bytes:
    header = Header("export", MID, "rbl", "passendwijs", NOW)
    chunks = envelope.export_chunks(header, category, [Record(category, r) for r in records])
    return "".join(chunks).encode()


def test_an_export_round_trips_with_its_header_inside_the_signed_content() -> None:
    records = [{"bsn": "111222333", "achternaam": "Jansen"}, {"bsn": "123456782"}]
    message = envelope.decode(_export(records))
    assert message.header == Header("export", MID, "rbl", "passendwijs", NOW)
    assert message.category == "absoluut-verzuim"
    assert [dict(r) for r in message.records] == records
    document = json.loads(_export(records))
    assert document["protocol"] == "exchanged/1"
    assert document["record_count"] == 2
    assert document["created_at"] == "2026-11-28T12:00:00Z"


@given(st.lists(st.dictionaries(st.sampled_from(["bsn", "achternaam", "straat"]),
                                st.text(max_size=20), max_size=3), max_size=20))  # fmt: skip
def test_any_records_round_trip(records: list[dict[str, str]]) -> None:
    assert [dict(r) for r in envelope.decode(_export(records)).records] == records


def test_one_message_carries_one_category() -> None:
    header = Header("export", MID, "rbl", "passendwijs", NOW)
    other = [Record("vrijstelling-5a", {"bsn": "111222333"})]
    with pytest.raises(ValueError, match="one category"):
        "".join(envelope.export_chunks(header, "absoluut-verzuim", other))


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d.update(protocol="exchanged/2"), "unsupported-protocol"),
        (lambda d: d.pop("protocol"), "unsupported-protocol"),
        (lambda d: d.update(kind="gossip"), "malformed"),
        (lambda d: d.update(message_id="not-a-uuid"), "malformed"),
        (lambda d: d.update(message_id=MID.value.upper()), "malformed"),
        (lambda d: d.update(created_at="2026-11-28 12:00:00"), "malformed"),
        (lambda d: d.update(category="zorg"), "malformed"),
        (lambda d: d.update(record_count=5), "malformed"),
        (lambda d: d.update(records=[{"bsn": 111222333}]), "malformed"),
        (lambda d: d.update(recipient=None), "malformed"),
    ],
)  # fmt: skip
def test_invalid_envelopes_are_refused_with_a_receipt_reason(mutate: object, reason: str) -> None:
    document = json.loads(_export([{"bsn": "111222333"}]))
    mutate(document)  # type: ignore[operator]
    with pytest.raises(EnvelopeError) as refused:
        envelope.decode(json.dumps(document).encode())
    assert refused.value.reason == reason


@pytest.mark.parametrize(
    "plaintext",
    [b"", b"\xff\xfe", b"[]", b"null", b'{"protocol":"exchanged/1","x":' + b"[" * 100_000],
)
def test_garbage_and_hostile_json_are_malformed_not_crashes(plaintext: bytes) -> None:
    with pytest.raises(EnvelopeError) as refused:
        envelope.decode(plaintext)
    assert refused.value.reason in ("malformed", "unsupported-protocol")


def test_a_receipt_round_trips_and_is_validated() -> None:
    header = Header("receipt", MessageId.new(), "passendwijs", "rbl", NOW)
    receipt = Receipt(MID, "processed", "ab" * 32, 3, NOW)
    message = envelope.decode(envelope.encode_receipt(header, receipt))
    assert envelope.decode_receipt(message.body) == receipt
    assert receipt.ok and not Receipt(MID, "failed/expired", "ab" * 32, 0, NOW).ok
    document = json.loads(envelope.encode_receipt(header, receipt))
    document["received_sha256"] = "not-hex"
    with pytest.raises(EnvelopeError):
        envelope.decode(json.dumps(document).encode())
    with pytest.raises(ValueError, match="unknown disposition"):
        envelope.encode_receipt(header, Receipt(MID, "fine", "ab" * 32, 0, NOW))


def test_age_is_checked_against_max_age_and_clock_skew() -> None:
    week, skew = timedelta(days=7), timedelta(minutes=5)
    assert envelope.check_age(NOW - timedelta(days=6), NOW, max_age=week, max_skew=skew)
    assert not envelope.check_age(NOW - timedelta(days=8), NOW, max_age=week, max_skew=skew)
    assert envelope.check_age(NOW + timedelta(minutes=4), NOW, max_age=week, max_skew=skew)
    assert not envelope.check_age(NOW + timedelta(minutes=6), NOW, max_age=week, max_skew=skew)


def test_small_messages_cannot_redefine_header_fields() -> None:
    header = Header("incident-notice", MessageId.new(), "rbl", "passendwijs", NOW)
    with pytest.raises(ValueError, match="redefine"):
        envelope.encode_message(header, {"recipient": "liemers"})


def _answer(n: int, disposition: str = "processed") -> Receipt:
    return Receipt(MessageId.new(), disposition, f"{n:064x}", n, NOW)


def test_a_receipt_of_one_answer_keeps_the_single_form() -> None:
    header = Header("receipt", MID, "passendwijs", "rbl", NOW)
    document = json.loads(envelope.encode_receipts(header, [_answer(1)]))
    assert "answers" not in document
    assert document["in_reply_to"]
    message = envelope.decode(envelope.encode_receipts(header, [_answer(1)]))
    assert len(envelope.decode_receipts(message.body)) == 1


def test_a_receipt_answers_several_messages_each_exactly_once() -> None:
    header = Header("receipt", MID, "passendwijs", "rbl", NOW)
    answers = [_answer(1), _answer(2, "failed/policy-violation"), _answer(3)]
    message = envelope.decode(envelope.encode_receipts(header, answers))
    assert envelope.decode_receipts(message.body) == tuple(answers)
    with pytest.raises(ValueError, match="once"):
        envelope.encode_receipts(header, [answers[0], answers[0]])
    with pytest.raises(ValueError, match="1 to"):
        envelope.encode_receipts(header, [])


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d["answers"].append(dict(d["answers"][0])),  # one message answered twice
        lambda d: d.update(answers=d["answers"][:1]),  # a list of one: use the single form
        lambda d: d.update(answers="all of them"),
        lambda d: d["answers"].append("processed"),
        lambda d: d["answers"][1].pop("received_sha256"),
        lambda d: d["answers"][0].update(disposition="fine"),
        lambda d: d.update(in_reply_to=d["answers"][0]["in_reply_to"]),  # both forms at once
        lambda d: d.update(answers=d["answers"] * 600),  # over the limit
    ],
)
def test_a_receipt_with_bad_answers_is_malformed(
    mutate: Callable[[dict[str, Any]], object],
) -> None:
    header = Header("receipt", MID, "passendwijs", "rbl", NOW)
    document = json.loads(envelope.encode_receipts(header, [_answer(1), _answer(2)]))
    mutate(document)
    with pytest.raises(EnvelopeError) as caught:
        envelope.decode(json.dumps(document).encode())
    assert caught.value.reason == "malformed"
