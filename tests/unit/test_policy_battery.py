"""The battery of tricky exports in tests/data/exports: the verdict a careful operator expects.

Each file goes through ``exchanged preview --json`` (reader + engine + shipped policy),
so the test covers exactly what an operator sees.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from exchanged.preview import preview_main
from exchanged.testing.synthetic import generate_bsn, seeded_rng

EXPORTS = Path(__file__).resolve().parents[1] / "data" / "exports"
LV = "langdurig-verzuim"


def preview(
    path: Path, category: str | None, capsys: pytest.CaptureFixture[str]
) -> tuple[int, Any]:
    argv = [str(path), "--json"] + (["--category", category] if category else [])
    code = preview_main(argv)
    out = capsys.readouterr().out
    return code, json.loads(out) if out else None


Case = tuple[str, str | None, str, int, set[tuple[int, str, str]]]
CASES: list[Case] = [
    ("semicolon_cp1252.csv", LV, "accept", 4, set()),
    ("comma_utf8_bom.csv", "absoluut-verzuim", "accept", 2, set()),
    ("tab_vrijstelling.txt", "vrijstelling-5a", "accept", 2, set()),
    ("extra_columns.csv", LV, "accept", 2, set()),
    ("category_column.csv", None, "accept", 2, set()),
    ("invalid_bsn.csv", LV, "reject", 2, {
        (1, "BSN", "bsn-elfproef"), (2, "BSN", "bsn-format"), (4, "BSN", "bsn-format"),
        (6, "BSN", "bsn-format"), (7, "BSN", "missing"),
    }),
    ("forbidden_reason.csv", LV, "reject", 1, {
        (1, "Reden verzuim", "forbidden-health"), (2, "Reden verzuim", "forbidden-police"),
        (3, "Reden verzuim", "forbidden-police"), (4, "Reden verzuim", "forbidden-police"),
        (5, "Reden verzuim", "forbidden-health"), (6, "Reden verzuim", "forbidden-religion"),
        (8, "Reden verzuim", "not-in-vocabulary"), (9, "Betrokkenheid", "forbidden-police"),
    }),
    ("out_of_region.csv", LV, "reject", 2, {(2, "Woonplaats", "out-of-region")}),
    ("duplicate_bsn.csv", LV, "reject", 2, {(3, "BSN", "bsn-duplicate")}),
    ("future_dates.csv", LV, "reject", 1, {(1, "Startdatum verzuim", "date-future")}),
    ("adult.csv", LV, "reject", 1, {(2, "Geboortedatum", "age-out-of-range")}),
    ("missing_column.csv", "absoluut-verzuim", "reject", 1,
     {(0, "geboortedatum", "column-missing")}),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_battery(capsys: pytest.CaptureFixture[str], case: Case) -> None:
    name, category, verdict, records, errors = case
    code, result = preview(EXPORTS / name, category, capsys)
    assert result["verdict"] == verdict
    assert code == (0 if verdict == "accept" else 3)
    assert result["records"] == records
    assert {(e["row"], e["column"], e["code"]) for e in result["errors"]} == errors


def test_extra_columns_are_listed_and_their_values_never_shown(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = EXPORTS / "extra_columns.csv"
    _, result = preview(path, LV, capsys)
    assert result["dropped_columns"] == [
        "Telefoon", "E-mail", "Diagnose", "Naam ouder", "Geslacht", "Notities"
    ]  # fmt: skip
    preview_main([str(path), "--category", LV])
    text = capsys.readouterr().out
    for secret in ("06-11112222", "ouder@example.org", "ADHD", "autisme", "politie"):
        assert secret not in text
        assert secret not in json.dumps(result)


def test_no_usable_columns_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = preview_main([str(EXPORTS / "no_usable_columns.csv"), "--category", LV])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.count("\n") == 1 and "no usable columns" in captured.err


def test_xlsx_with_date_cells(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = seeded_rng(3)
    path = tmp_path / "export.xlsx"
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["BSN", "Voornaam", "Achternaam", "Geboortedatum", "Woonplaats",
                  "Startdatum verzuim", "Betrokkenheid", "Telefoon"])  # fmt: skip
    sheet.append([int(generate_bsn(rng)), "Bram", "Lindeboom", dt.datetime(2012, 5, 6),
                  "Dieren", dt.datetime(2024, 10, 1), "RBL", "0612345678"])  # fmt: skip
    sheet.append([generate_bsn(rng), "Evi", "Smeenk", dt.date(2013, 1, 2),
                  "Giesbeek", "14-10-2024", "geen", None])  # fmt: skip
    sheet.append([generate_bsn(rng), "Stijn", "Hulshorst", dt.datetime(2003, 1, 2),
                  "Heteren", dt.datetime(2024, 10, 1), "SWV", None])  # fmt: skip
    for row in sheet.iter_rows(min_row=2, min_col=4, max_col=4):
        row[0].number_format = "DD-MM-YYYY"
    workbook.save(path)
    code, result = preview(path, "absoluut-verzuim", capsys)
    assert code == 3
    assert result["errors"] == [{"row": 3, "column": "Geboortedatum", "code": "age-out-of-range"}]
    assert result["records"] == 2
    assert result["dropped_columns"] == ["Telefoon"]
