"""CSV/XLSX readers: encodings, dialects, quoted newlines, date cells, bad input."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchanged.adapters.readers import UnreadableInput, open_table
from exchanged.errors import OperatorInputError

EXPORTS = Path(__file__).resolve().parents[1] / "data" / "exports"


def read(path: Path) -> tuple[list[str], list[list[str]]]:
    with open_table(path) as table:
        return table.header, list(table.rows)


def write_csv(path: Path, rows: list[list[str]], *, encoding: str, delimiter: str) -> Path:
    buffer = io.StringIO(newline="")
    csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n").writerows(rows)
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


def test_semicolon_windows_1252() -> None:
    header, rows = read(EXPORTS / "semicolon_cp1252.csv")
    assert header[0] == "BSN" and len(header) == 13
    assert [r[1] for r in rows] == ["Loïs", "Zoë Renée", "Noël", "Anaïs"]


def test_utf8_bom_commas_and_quoted_newline() -> None:
    header, rows = read(EXPORTS / "comma_utf8_bom.csv")
    assert header[0] == "Burgerservicenummer"  # no BOM left on the first header
    assert rows[0][9] == "Het Rijnlands College, locatie Zuid"
    assert rows[1][9] == "Montessorischool\nDe Linde"
    assert len(rows) == 2


def test_tab_separated() -> None:
    header, rows = read(EXPORTS / "tab_vrijstelling.txt")
    assert header[-1] == "Einddatum vrijstelling" and len(rows) == 2


def test_excel_sep_hint_and_leading_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("sep=,\r\nBSN,Naam;x\r\n1,2\r\n", encoding="utf-8")
    assert read(path) == (["BSN", "Naam;x"], [["1", "2"]])
    path.write_text("\n\n;;\nBSN;Naam\n1;2\n", encoding="utf-8")
    assert read(path) == (["BSN", "Naam"], [["1", "2"]])


def test_utf16_from_excel_unicode_text(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_bytes("BSN\tNaam\r\n1\tZoë\r\n".encode("utf-16"))
    assert read(path) == (["BSN", "Naam"], [["1", "Zoë"]])


def test_xlsx_with_date_cells_and_numbers(tmp_path: Path) -> None:
    path = tmp_path / "export.xlsx"
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["BSN", "Geboortedatum", "Startdatum verzuim", "Huisnummer", "Leeg"])
    sheet.append([12345678, dt.datetime(2012, 3, 4), dt.date(2024, 9, 2), 12.0, None])
    sheet.append([None, None, None, None, None])
    workbook.save(path)
    header, rows = read(path)
    assert header == ["BSN", "Geboortedatum", "Startdatum verzuim", "Huisnummer", "Leeg"]
    assert rows[0] == ["12345678", "2012-03-04", "2024-09-02", "12", ""]


def test_xlsx_named_csv_is_still_read_as_xlsx(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["BSN"])
    workbook.save(path)
    assert read(path) == (["BSN"], [])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"\n\n ;; \n", "empty"),
        (b"BSN;Naam\n\x00\x01\x02", "binary"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, ".xls"),
        (b"PK\x03\x04not really a zip", "XLSX"),
        (b"BSN\n\x81\x8d\x8f", "neither UTF-8 nor Windows-1252"),
        (b"\xef\xbb\xbfBSN\n\xff", "not valid UTF-8"),
    ],
)
def test_unusable_files_give_one_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(UnreadableInput, match=message) as caught:
        read(path)
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, OperatorInputError)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(UnreadableInput, match="cannot open"):
        read(tmp_path / "nope.csv")
    with pytest.raises(UnreadableInput, match="folder"):
        read(tmp_path)


def test_unclosed_quote_and_huge_field(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text('BSN;Naam\n1;"abc' + "x" * 140_000 + "\n", encoding="utf-8")
    with pytest.raises(UnreadableInput, match="malformed near line"):
        read(path)


def test_rows_stream(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8") as handle:
        handle.write("BSN;Naam\n")
        for i in range(20_000):
            handle.write(f"{i};naam{i}\n")
    with open_table(path) as table:
        first = next(table.rows)
        assert first == ["0", "naam0"]
        assert sum(1 for _ in table.rows) == 19_999


_HEADER_WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ABC", min_size=1, max_size=12).filter(
    lambda s: s.strip() != ""
)
# Dutch letters only for Windows-1252: no byte sequence of these is valid UTF-8.
_CP1252_CELL = st.text(alphabet="abcXYZ 0123456789,;\t\"'\r\n-éëïöüèàç", max_size=15)
_ANY_CELL = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=15
)


@settings(max_examples=120, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    delimiter=st.sampled_from([";", ",", "\t"]),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "utf-16"]),
    header=st.lists(_HEADER_WORDS, min_size=1, max_size=6),
    data=st.data(),
)
def test_random_dialects_round_trip(
    tmp_path_factory: pytest.TempPathFactory,
    delimiter: str,
    encoding: str,
    header: list[str],
    data: st.DataObject,
) -> None:
    cell = _CP1252_CELL if encoding == "cp1252" else _ANY_CELL
    width = len(header)
    rows = data.draw(st.lists(st.lists(cell, min_size=width, max_size=width), max_size=5))
    header = [h.strip() for h in header]
    path = tmp_path_factory.mktemp("rt") / "x.csv"
    write_csv(path, [header, *rows], encoding=encoding, delimiter=delimiter)
    got_header, got_rows = read(path)
    assert got_header == header
    # csv itself cannot tell a row of one empty cell from an empty line.
    assert [r for r in got_rows if r not in ([], [""])] == [r for r in rows if r != [""]]


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(content=st.binary(max_size=400))
def test_random_bytes_never_crash(tmp_path_factory: pytest.TempPathFactory, content: bytes) -> None:
    path = tmp_path_factory.mktemp("rb") / "x.csv"
    path.write_bytes(content)
    try:
        with open_table(path) as table:
            assert isinstance(table.header, list)
            for row in table.rows:
                assert all(isinstance(cell, str) for cell in row)
    except UnreadableInput as exc:
        assert "\n" not in str(exc)
