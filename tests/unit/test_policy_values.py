"""Quick forms of the value checks say exactly what the plain forms say."""

from __future__ import annotations

import re
from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from exchanged.core.policy_fields import _name_like
from exchanged.core.policy_model import ForbiddenGroup, compile_terms, fold_for_terms
from exchanged.core.text import clean_value, parse_date
from exchanged.policyfile import default_policy

POLICY = default_policy()
_SPACES = re.compile(r"\s+")
# Every kind of whitespace, name punctuation, letters from several scripts, digits.
_TEXT = st.text(
    alphabet=st.sampled_from(
        [" ", "\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x85", "\xa0", "\u2003",
         "\u2028", "\u3000", "'", "-", ".", "\u2019", "`", ",", "a", "Z", "é", "ß", "ж",
         "中", "1", "٣", "\x00", "\u200b"]
    ),
    max_size=12,
)  # fmt: skip


@given(_TEXT)
def test_clean_value_without_the_regex_is_the_same(text: str) -> None:
    assert clean_value(text) == _SPACES.sub(" ", text).strip()


@given(_TEXT)
def test_names_are_letters_and_name_punctuation(text: str) -> None:
    assert _name_like(text) == all(c.isalpha() or c in " '-.\u2019`" for c in text)


_WORDS = st.sampled_from(
    ["adhd", "a.d.h.d.", "Halt", "halte", "p v", "PV", "politie", "politiek", "autisme",
     "wacht", "op", "plek", "Angst-stoornis", "katholieke", "kerk", "ziek", "-", ":", " "]
)  # fmt: skip


@given(st.lists(_WORDS, max_size=6).map(" ".join))
def test_one_search_for_all_groups_finds_what_the_groups_find(text: str) -> None:
    groups = POLICY.forbidden
    anywhere = POLICY.forbidden_any
    assert anywhere is not None
    folded, joined = fold_for_terms(text)
    found = anywhere.search(folded) is not None or anywhere.search(joined) is not None
    assert found == any(group.found_in(text) for group in groups)


def test_groups_that_cannot_be_joined_are_searched_one_by_one() -> None:
    verbose = ForbiddenGroup("v", re.compile("a b # comment", re.VERBOSE))
    grouped = ForbiddenGroup("g", re.compile(r"(x)\1"))
    plain = ForbiddenGroup("p", compile_terms(["halt"]))
    for groups in ((verbose, plain), (grouped, plain)):
        policy = type(POLICY)(
            allowed=POLICY.allowed, required=POLICY.required, aliases=POLICY.aliases,
            forbidden=groups,
        )  # fmt: skip
        assert policy.forbidden_any is None


_DMY = re.compile(r"([0-9]{1,2})[-/.]([0-9]{1,2})[-/.]([0-9]{4})")
_YMD = re.compile(r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})(?:[T ]00:00(?::00(?:\.0+)?)?)?")


def _parse_date_by_regex(text: str) -> date | None:
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


_DATE_TEXT = st.one_of(
    st.text(alphabet="0123456789-/. T:\u0663", min_size=8, max_size=12),
    st.dates().map(lambda d: d.isoformat()),
    st.dates().map(lambda d: f"{d.day:02d}-{d.month:02d}-{d.year:04d}"),
    st.tuples(st.dates(), st.sampled_from("-/."), st.sampled_from("-/.")).map(
        lambda t: f"{t[0].day:02d}{t[1]}{t[0].month:02d}{t[2]}{t[0].year:04d}"
    ),
)


@given(_DATE_TEXT)
def test_dates_without_the_regexes_are_the_same(text: str) -> None:
    assert parse_date(text) == _parse_date_by_regex(text)
