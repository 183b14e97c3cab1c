"""The BSN elfproef, normalisation and the synthetic generator."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchanged.core.bsn import BSN_ELFPROEF, BSN_FORMAT, bsn_problem, is_valid_bsn, normalise_bsn
from exchanged.testing.synthetic import generate_bsn, seeded_rng


def _reference(digits: str) -> bool:
    """The elfproef written out the long way, as the Rijksoverheid describes it."""
    total = 0
    for position, digit in enumerate(digits):
        weight = -1 if position == 8 else 9 - position
        total += weight * int(digit)
    return total % 11 == 0 and int(digits) != 0


@given(st.text(alphabet="0123456789", min_size=9, max_size=9))
def test_elfproef_agrees_with_reference(digits: str) -> None:
    assert is_valid_bsn(digits) == _reference(digits)


@given(st.integers(min_value=0, max_value=2**32))
def test_generated_bsns_are_valid(seed: int) -> None:
    bsn = generate_bsn(seeded_rng(seed))
    assert len(bsn) == 9
    assert is_valid_bsn(bsn)
    assert normalise_bsn(bsn) == bsn
    assert not bsn.startswith("00")


@given(st.text(max_size=30))
def test_any_text_gets_an_answer_not_an_exception(text: str) -> None:
    problem = bsn_problem(text)
    assert problem in (None, BSN_FORMAT, BSN_ELFPROEF)
    assert (normalise_bsn(text) is None) == (problem is not None)


def test_separators_are_removed() -> None:
    bsn = generate_bsn(seeded_rng(1))
    for written in (f"{bsn[:4]}.{bsn[4:6]}.{bsn[6:]}", f" {bsn[:3]} {bsn[3:6]} {bsn[6:]} ",
                    f"{bsn[:3]}-{bsn[3:6]}-{bsn[6:]}"):  # fmt: skip
        assert normalise_bsn(written) == bsn


def test_eight_digits_get_one_leading_zero() -> None:
    rng = seeded_rng(7)
    bsn = next(b for b in iter(lambda: generate_bsn(rng), None) if b.startswith("0"))
    assert normalise_bsn(bsn[1:]) == bsn


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("140", BSN_FORMAT),  # zero-padding would make this pass the elfproef
        ("00000140", BSN_FORMAT),  # the same short number, padded by other software
        ("000000140", BSN_FORMAT),
        ("000000000", BSN_FORMAT),
        ("", BSN_FORMAT),
        ("1234567890", BSN_FORMAT),
        ("12345678a", BSN_FORMAT),
        ("\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669", BSN_FORMAT),  # Arabic digits
        ("123456789", BSN_ELFPROEF),
    ],
)
def test_refusals(text: str, code: str) -> None:
    assert bsn_problem(text) == code
    assert normalise_bsn(text) is None


def test_all_zeros_fail_even_though_the_sum_is_divisible() -> None:
    assert not is_valid_bsn("000000000")
