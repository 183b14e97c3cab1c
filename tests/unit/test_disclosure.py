"""core/disclosure.py: the keyed BSN hash, grounds, and the art. 19 envelope bodies."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime

import pytest

from exchanged.core import envelope
from exchanged.core.disclosure import (
    Ground,
    bsn_hash,
    parse_correction,
    parse_withdrawal,
    withdrawal_body,
)
from exchanged.core.envelope import EnvelopeError, Header
from exchanged.core.model import MessageId, Record
from exchanged.testing.synthetic import generate_bsn

KEY = b"k" * 32
BSN = generate_bsn(random.Random(1))  # noqa: S311 -- synthetic data


def _header(kind: str) -> Header:
    return Header(kind, MessageId.new(), "rbl", "passendwijs", datetime(2025, 3, 1, tzinfo=UTC))


def test_hash_is_keyed_hex_and_normalises_the_bsn() -> None:
    digest = bsn_hash(KEY, BSN)
    assert len(digest) == 64 and set(digest) <= set("0123456789abcdef")
    assert bsn_hash(KEY, f"{BSN[:4]}.{BSN[4:6]}.{BSN[6:]}") == digest
    assert bsn_hash(b"x" * 32, BSN) != digest
    assert BSN not in digest


def test_hash_refuses_a_short_key_and_an_invalid_bsn() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        bsn_hash(b"short", BSN)
    with pytest.raises(ValueError, match="not a valid BSN"):
        bsn_hash(KEY, "123456789")


def test_grounds_and_which_purge() -> None:
    assert [g.value for g in Ground] == [
        "terug-naar-school", "startkwalificatie", "verhuisd-buiten-regio", "overleden",
        "verwijderverzoek", "bezwaar",
    ]  # fmt: skip
    assert {g.value for g in Ground if not g.purges} == {"bezwaar"}


def test_withdrawal_round_trip_through_the_envelope() -> None:
    body = withdrawal_body(BSN, "terug-naar-school", date(2025, 3, 1))
    assert set(body) == {"bsn", "ground", "date"}
    data = envelope.encode_message(_header("withdrawal"), body)
    message = envelope.decode(data)
    withdrawal = parse_withdrawal(message.body)
    assert withdrawal.bsn == BSN
    assert withdrawal.ground is Ground.TERUG_NAAR_SCHOOL
    assert withdrawal.date == date(2025, 3, 1)
    assert BSN not in repr(withdrawal)


@pytest.mark.parametrize(
    "change",
    [
        {"achternaam": "Veldkamp"},  # personal data beyond the three keys
        {"ground": "verveeld"},
        {"bsn": "123456789"},
        {"date": "01-03-2025"},
        {"date": 20250301},
    ],
)
def test_withdrawal_refuses_anything_else(change: dict[str, object]) -> None:
    body = {**withdrawal_body(BSN, "overleden", date(2025, 3, 1)), **change}
    with pytest.raises(EnvelopeError) as caught:
        parse_withdrawal(body)
    assert caught.value.reason == "malformed"


def test_correction_round_trip_and_checks() -> None:
    other = generate_bsn(random.Random(2))  # noqa: S311
    records = [
        Record("absoluut-verzuim", {"bsn": BSN, "achternaam": "Kempers", "woonplaats": "Velp"}),
        Record("absoluut-verzuim", {"bsn": other, "achternaam": "Smeenk", "woonplaats": "Elst"}),
    ]
    # A correction is written exactly like an export (the same encoder), kind aside.
    text = "".join(envelope.export_chunks(_header("correction"), "absoluut-verzuim", records))
    message = envelope.decode(text.encode())
    correction = parse_correction(message)
    assert correction.bsns == (BSN, other)
    assert BSN not in repr(correction)
    doubled = json.loads(text)
    doubled["records"].append(doubled["records"][0])
    doubled["record_count"] = 3
    with pytest.raises(EnvelopeError, match="once"):
        parse_correction(envelope.decode(json.dumps(doubled).encode()))
