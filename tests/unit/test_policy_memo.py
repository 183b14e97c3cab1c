"""The policy's memo of checked values and the checker's short path: the same verdict,
row for row, as checking every value afresh on the full path; and a bounded memo."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from typing import cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchanged.core import bsn as bsn_module
from exchanged.core.bsn import SeenBsns
from exchanged.core.model import CATEGORIES, Record
from exchanged.core.policy import RecordChecker, Verdict, recheck_records
from exchanged.core.policy_model import Policy, PolicyMemo
from exchanged.core.text import age_on, age_window
from exchanged.policyfile import default_policy
from exchanged.testing.synthetic import generate_bsn, seeded_rng, synthetic_rows

TODAY = date(2025, 3, 1)
# One policy for all examples, so that its memo is warm with what earlier ones left.
SHARED = dataclasses.replace(default_policy())
ROUTING = {"arnhem": "p1", "zevenaar": "p2", "overbetuwe": "p3", "velp": "p4"}

ODD = [
    "", " ", "\t", "abc", "x" * 70, "y" * 201, "31-02-2010", "29-02-2012", "1-2-2010",
    "2010-01-02 00:00", "01.02.2010", "2999-01-01", "1900-01-01", "6811 ab", "0811AB",
    "6811SA", "12", "12-A", "0", "A", "Utrecht", "arnhem", "Oud-Zevenaar", "Velp",
    "Wacht op passende plek: adhd", "beide: politie", "Onbekend - ziek", "RBL: casus",
    "Zoë", "O'Brien", "Jan2", "van  der", "de\nGroot", "A.D.H.D.", "1 jaar",
    "123456782", "1234.56.782", "12345678", "000000000", "00123456", " 123456782 ",
    "\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff12",  # full-width digits
    "111111110", "Langdurig verzuim", "Absoluut", "5a", "xx",
]  # fmt: skip

Outcome = tuple[object, ...]
_LETTERS = str.maketrans("0123456789", "abcdefghij")


def outcome(checker: RecordChecker, rows: list[list[str]]) -> list[Outcome]:
    """Every row's record (or None), then the verdict, as plain values."""
    out: list[Outcome] = []
    for number, row in enumerate(rows, start=1):
        record = checker.check(number, row)
        out.append(() if record is None else _record(record))
    out.append(_verdict(checker.finish()))
    return out


def _record(record: Record) -> Outcome:
    assert type(record) is Record
    return (record.category, tuple(record.fields.items()), record.route)


def _verdict(verdict: Verdict) -> Outcome:
    return (verdict.category, verdict.records, verdict.kept_fields, verdict.dropped_columns,
            verdict.errors, dict(verdict.routes), verdict.skipped, verdict.error_count)  # fmt: skip


@contextmanager
def memo_off() -> Iterator[None]:
    """Checkers that remember nothing, so that every value is checked afresh."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PolicyMemo, "remember", lambda *_args: None)
        yield


def full_path(
    policy: Policy, header: list[str], rows: list[list[str]], **kw: object
) -> list[Outcome]:
    """The reference: a fresh policy, nothing remembered, every row on the full path."""
    with memo_off():
        checker = RecordChecker(dataclasses.replace(policy), header, **kw)  # type: ignore[arg-type]
        checker._short = None
        return outcome(checker, rows)


def mutated(seed: int, category: str, n: int, day: date) -> tuple[list[str], list[list[str]]]:
    rng = seeded_rng(seed)
    header, rows = synthetic_rows(seeded_rng(seed), category, n, today=day)
    for row in rows:
        if rng.random() < 0.3:  # born on the edge of an age range (4-18, 10-12)
            on = date.fromisoformat("-".join(reversed(row[11].split("-"))))
            born = _years_before(on, rng.choice((4, 10, 12, 18)))
            row[4] = (born + timedelta(days=rng.randint(-1, 1))).strftime("%d-%m-%Y")
        for _ in range(rng.choice((0, 0, 1, 2, 4))):
            i = rng.randrange(len(row))
            row[i] = rng.choice((rng.choice(ODD), f" {row[i]}  ", row[i].upper(), ""))
        if rng.random() < 0.1:
            row[0] = rows[0][0]  # a duplicate BSN
        if rng.random() < 0.1:
            row[4] = (day + timedelta(days=rng.randint(-2, 2))).isoformat()
    if rng.random() < 0.2:
        rows.append([""] * len(header))
    if rng.random() < 0.2:
        rows.append(rows[0][: rng.randrange(len(header))])  # a short row
    if rng.random() < 0.2:
        header = [*header, "Categorie"]
        rows = [[*row, rng.choice(("", category, "Absoluut", "xx"))] for row in rows]
    return header, rows


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10**6),
    category=st.sampled_from(CATEGORIES),
    n=st.integers(1, 12),
    today=st.sampled_from([None, TODAY, date(2024, 9, 2)]),
    routing=st.booleans(),
    skip=st.booleans(),
    policy=st.sampled_from(["default", "narrow", "short-text"]),
)
def test_short_path_and_shared_memo_match_the_full_path(
    seed: int, category: str, n: int, today: date | None, routing: bool, skip: bool,
    policy: str,
) -> None:  # fmt: skip
    base = {
        "default": SHARED,
        "narrow": dataclasses.replace(SHARED, age_from=10, age_below=12),
        "short-text": dataclasses.replace(SHARED, max_text=8),  # no short path at all
    }[policy]
    header, rows = mutated(seed, category, n, today or TODAY)
    kw: dict[str, object] = {"category": category, "today": today}
    if routing:
        kw["routing"] = ROUTING
    if skip:
        kw["out_of_region"] = "skip-and-report"
    expected = full_path(base, header, rows, **kw)
    # Twice with the shared memo: cold for these values, then warm.
    for _ in range(2):
        assert outcome(RecordChecker(base, header, **kw), rows) == expected  # type: ignore[arg-type]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), category=st.sampled_from(CATEGORIES), n=st.integers(1, 8))
def test_receiver_recheck_matches_the_full_path(seed: int, category: str, n: int) -> None:
    header, rows = synthetic_rows(seeded_rng(seed), category, n, today=TODAY)
    checker = RecordChecker(SHARED, header, category=category, today=TODAY)
    records: list[dict[str, object]] = []
    for number, row in enumerate(rows, start=1):
        made = checker.check(number, row)
        if made is not None:
            records.append(dict(made.fields))
    rng = seeded_rng(seed)
    for fields in records:
        if rng.random() < 0.3:  # what a partner should not send, numbers and null too
            fields[rng.choice(sorted(fields))] = rng.choice([*ODD, 123, None])
    sent = cast("list[dict[str, str]]", records)
    with memo_off():
        expected = recheck_records(dataclasses.replace(SHARED), category, sent, today=TODAY)
    for _ in range(2):
        got = recheck_records(SHARED, category, sent, today=TODAY)
        assert _verdict(got) == _verdict(expected)


def test_memo_stays_bounded_and_keeps_no_bsn() -> None:
    policy = dataclasses.replace(default_policy())
    rng = seeded_rng(3)
    header, template = synthetic_rows(rng, "langdurig-verzuim", 1, today=TODAY)
    bsns = set()
    for batch in range(12):
        rows = []
        for i in range(3000):
            row = list(template[0])
            row[0] = generate_bsn(rng)
            bsns.add(row[0])
            row[1] = f"Naam{batch}x{i}".translate(_LETTERS)  # all new names
            row[8] = f"{6800 + i % 100} {'BCDEFGHJKL'[i // 300]}{'BCDEFGHJKLMN'[batch]}"
            rows.append(row)
        checker = RecordChecker(policy, header, category="langdurig-verzuim", today=TODAY)
        for number, row in enumerate(rows, start=1):
            checker.check(number, row)
        assert checker.finish().accepted
        assert len(policy.memo) <= 16384 + 2 * 4096
    tables = list(policy.memo._tables.values())
    assert all(len(table) <= 4096 for table in tables)
    held = {key for table in tables for key in table} | {v for t in tables for _, v in t.values()}
    assert not held & bsns


def test_a_date_remembered_for_one_day_is_judged_again_on_another() -> None:
    policy = dataclasses.replace(default_policy())
    header, rows = synthetic_rows(seeded_rng(8), "langdurig-verzuim", 1, today=TODAY)
    start = header.index("Startdatum verzuim")
    rows[0][start] = "01-03-2025"

    def check(day: date) -> list[str]:
        checker = RecordChecker(policy, header, category="langdurig-verzuim", today=day)
        checker.check(1, rows[0])
        return [e.code for e in checker.finish().errors]

    assert check(date(2025, 3, 1)) == []
    assert check(date(2025, 2, 28)) == ["date-future"]
    assert check(date(2025, 3, 1)) == []


def test_duplicates_are_found_across_the_move_from_set_to_pages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bsn_module, "SET_LIMIT", 8)
    header, rows = synthetic_rows(seeded_rng(4), "absoluut-verzuim", 20, today=TODAY)
    rows += [rows[2], rows[15], list(rows[5])]
    rows[-1][0] = f"{rows[5][0][:4]}.{rows[5][0][4:6]}.{rows[5][0][6:]}"  # another spelling
    checker = RecordChecker(SHARED, header, category="absoluut-verzuim", today=TODAY)
    for number, row in enumerate(rows, start=1):
        checker.check(number, row)
    verdict = checker.finish()
    assert verdict.records == 20
    assert [(e.row, e.code) for e in verdict.errors] == [
        (21, "bsn-duplicate"), (22, "bsn-duplicate"), (23, "bsn-duplicate"),
    ]  # fmt: skip


def test_seen_bsns_set_and_pages_agree() -> None:
    seen, rng = SeenBsns(), seeded_rng(5)
    keys = [rng.randrange(10**8) for _ in range(bsn_module.SET_LIMIT + 5000)]
    expected: set[int] = set()
    for key in keys + keys[:100] + keys[-100:]:
        assert seen.add_key(key) == (key in expected)
        expected.add(key)
    assert seen.numbers is None and seen.pages


def test_records_of_the_short_path_are_plain_records() -> None:
    header, rows = synthetic_rows(seeded_rng(6), "vrijstelling-5a", 3, today=TODAY)
    checker = RecordChecker(SHARED, header, category="vrijstelling-5a", today=TODAY)
    assert checker._short is not None
    for number, row in enumerate(rows, start=1):
        record = checker.check(number, row)
        assert record is not None
        again = Record(record.category, dict(record.fields), record.route)
        assert record == again and hash(record.category) == hash(again.category)
        with pytest.raises(dataclasses.FrozenInstanceError):
            record.route = "x"  # type: ignore[misc]


# Dates of the first years too, where a bound would lie before the year 0.
_DATES = st.one_of(st.dates(), st.dates(date(1, 1, 1), date(40, 12, 31)))


@settings(max_examples=500)
@given(
    born=_DATES,
    on=_DATES,
    age_from=st.integers(0, 30),
    span=st.integers(1, 30),
)
def test_age_window_says_what_age_on_says(born: date, on: date, age_from: int, span: int) -> None:
    low, high = age_window(on.isoformat(), age_from, age_from + span)
    in_range = age_from <= age_on(born, on) < age_from + span
    assert (low < born.isoformat() <= high) == in_range


def test_a_bsn_typed_into_the_suffix_column_is_not_remembered() -> None:
    policy = dataclasses.replace(default_policy())
    header, rows = synthetic_rows(seeded_rng(5), "langdurig-verzuim", 3, today=TODAY)
    header = ["Toevoeging", *header]  # before the huisnummer: read first
    secret = generate_bsn(seeded_rng(6))
    checker = RecordChecker(policy, header, category="langdurig-verzuim", today=TODAY)
    for number, row in enumerate(rows, start=1):
        checker.check(number, [secret if number == 2 else "", *row])
    assert not checker.finish().accepted  # huisnummer with that suffix is invalid
    tables = list(policy.memo._tables.values())
    held = {key for table in tables for key in table} | {v for t in tables for _, v in t.values()}
    assert secret not in held
