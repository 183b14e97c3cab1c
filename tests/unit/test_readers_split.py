"""A plain file (no double quote, no over-long line) is split line by line: the same rows
as csv.reader gives."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchanged.adapters import readers
from exchanged.adapters.readers import UnreadableInput, open_table

# No double quote and no NUL (a file with either never takes the split path).
_CELL = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters='"\x00'),
    max_size=8,
)
_LINE_END = st.sampled_from(["\n", "\r\n", "\r"])


def _rows(path: Path, encoding: str, delimiter: str, *, plain: bool) -> list[list[str]] | str:
    try:
        return list(readers._rows(path, encoding, delimiter, plain=plain))
    except UnreadableInput as exc:
        return str(exc)


@contextmanager
def field_limit(limit: int) -> Iterator[None]:
    old = csv.field_size_limit(limit)
    try:
        yield
    finally:
        csv.field_size_limit(old)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    delimiter=st.sampled_from([";", ",", "\t", "\0"]),
    lines=st.lists(st.tuples(st.lists(_CELL, max_size=5), _LINE_END), max_size=8),
    last_end=st.booleans(),
)
def test_split_rows_are_csv_rows(
    tmp_path_factory: pytest.TempPathFactory,
    delimiter: str,
    lines: list[tuple[list[str], str]],
    last_end: bool,
) -> None:
    # "\0" stands for "one column" (see readers._pick_delimiter): it never occurs.
    width = 1 if delimiter == "\0" else 5
    text = "".join(delimiter.join(cells[:width]) + end for cells, end in lines)
    if lines and not last_end:
        text = text.rstrip("\r\n")
    path = tmp_path_factory.mktemp("split") / "x.csv"
    path.write_bytes(text.encode("utf-8"))
    assert readers._decodes(path, "utf-8") == (True, True)
    split = _rows(path, "utf-8", delimiter, plain=True)
    assert split == _rows(path, "utf-8", delimiter, plain=False)


@pytest.mark.parametrize("extra", [-1, 0, 1, 3])
@pytest.mark.parametrize("before", [0, 70_000])
def test_a_line_longer_than_the_field_limit_goes_through_csv(
    tmp_path: Path, extra: int, before: int
) -> None:
    limit = csv.field_size_limit()
    line = "1;" + "x" * (limit - 2 + extra)  # a field over the limit only with extra 3
    path = tmp_path / "x.csv"
    path.write_text(f"BSN;Naam\n{'a;b' * (before // 4)}\n{line}\n2;c\n", encoding="utf-8")
    assert readers._decodes(path, "utf-8") == (True, extra <= 0)
    rows = _rows(path, "utf-8", ";", plain=False)
    if extra > 2:
        assert isinstance(rows, str)
        assert rows.startswith("the CSV file is malformed near line 3 ")
    else:
        assert rows == _rows(path, "utf-8", ";", plain=True)


def test_a_small_field_limit_leaves_every_file_to_csv(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("BSN;Naam\n1;abcdefgh\n", encoding="utf-8")
    with field_limit(6):
        assert readers._decodes(path, "utf-8") == (True, False)
        with pytest.raises(UnreadableInput, match="malformed near line 2"), open_table(path) as t:
            list(t.rows)


def test_a_file_with_a_quote_goes_through_csv(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text('BSN;Naam\n1;"a;b"\n2;c\n', encoding="utf-8")
    with open_table(path) as table:
        assert list(table.rows) == [["1", "a;b"], ["2", "c"]]
    path.write_text("BSN;Naam\n1;a;b\n\n2;c\r\n", encoding="cp1252")
    with open_table(path) as table:
        assert list(table.rows) == [["1", "a", "b"], [], ["2", "c"]]


def test_damage_found_while_splitting_is_reported_as_such(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(b"BSN;Naam\n" + b"1;abc\n" * 50_000)
    rows = readers._split_rows(path, "utf-8", ";")
    assert next(rows) == ["BSN", "Naam"]
    path.write_bytes(b"\xff" * 300_000)  # changed after the encoding was decided
    with pytest.raises(UnreadableInput, match="encoding is damaged"):
        list(rows)
