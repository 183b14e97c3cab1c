"""``exchanged preview``: JSON shape, exit codes, one-line errors, the -c flag."""

from __future__ import annotations

import csv
import json
from datetime import date
from pathlib import Path

import pytest

from exchanged.cli import main
from exchanged.core.policy import RowError, Verdict
from exchanged.preview import preview_main
from exchanged.rejection_report import EXPLANATIONS, explain, render_rejection_report
from exchanged.testing.synthetic import seeded_rng, synthetic_rows

KEYS = {"verdict", "category", "records", "kept_fields", "dropped_columns", "errors", "routes"}


def export(tmp_path: Path, category: str = "absoluut-verzuim", n: int = 5) -> Path:
    header, rows = synthetic_rows(seeded_rng(11), category, n, today=date.today())
    path = tmp_path / "export.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, delimiter=";").writerows([header, *rows])
    return path


def test_accept_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = preview_main([str(export(tmp_path)), "--category", "absoluut-verzuim", "--json"])
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert code == 0 and captured.err == ""
    assert set(result) == KEYS
    assert result["verdict"] == "accept" and result["records"] == 5
    assert result["category"] == "absoluut-verzuim"
    assert result["dropped_columns"] == ["Telefoonnummer", "E-mail ouder"]
    assert result["routes"] == {} and result["errors"] == []


def test_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["preview", str(export(tmp_path)), "--category", "absoluut-verzuim"])
    out = capsys.readouterr().out
    assert code == 0
    assert "ACCEPT" in out and "Telefoonnummer" in out and "@example.org" not in out


def test_reject_human_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = export(tmp_path, "langdurig-verzuim")
    text = path.read_text(encoding="utf-8").replace("Thuissituatie", "Anders: ADHD", 1)
    text = text.replace("Onbekend", "Anders: ADHD", 1).replace("Wacht op", "Anders: ADHD -", 1)
    path.write_text(text, encoding="utf-8")
    code = preview_main([str(path), "--category", "langdurig-verzuim"])
    out = capsys.readouterr().out
    assert code == 3
    assert "REJECT" in out and "forbidden-health" in out and "ADHD" not in out


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--bogus", "x"],
        ["missing.csv"],
        ["{file}", "--category", "thuiszitter"],
        ["{file}"],  # synthetic exports have no category column
        ["{file}", "-c", "missing.toml"],
    ],
)
def test_usage_errors_are_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    path = export(tmp_path)
    code = preview_main([a.replace("{file}", str(path)) for a in argv])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("exchanged preview: ")
    assert "Traceback" not in captured.err


def test_binary_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(bytes(range(256)) * 4)
    assert preview_main([str(path), "--json"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_config_policy_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shipped = Path(__file__).resolve().parents[2] / "exchanged" / "data" / "policy.toml"
    policy = tmp_path / "policy.toml"
    policy.write_text(
        shipped.read_text(encoding="utf-8").replace(
            "[routing]", '[routing]\nArnhem = "passendwijs"\nRheden = "deliemers"'
        ),
        encoding="utf-8",
    )
    config = tmp_path / "exchanged.toml"
    config.write_text('party = "rbl"\npolicy = "policy.toml"\n', encoding="utf-8")
    path = export(tmp_path, n=30)
    code = preview_main([str(path), "--category", "absoluut-verzuim", "--json", "-c", str(config)])
    result = json.loads(capsys.readouterr().out)
    # Synthetic places outside Arnhem and Rheden have no partner: routing errors.
    assert set(result["routes"]) <= {"passendwijs", "deliemers"} and result["routes"]
    assert all(e["code"] == "route-unknown" for e in result["errors"])
    assert code == (0 if not result["errors"] else 3)
    config.write_text("policy = 5\n", encoding="utf-8")
    assert preview_main([str(path), "-c", str(config)]) == 2
    assert "policy" in capsys.readouterr().err


def test_every_code_has_both_explanations() -> None:
    codes = set(EXPLANATIONS) | {f"forbidden-{g}" for g in ("health", "police", "other")}
    for code in codes:
        nl, en = explain(code)
        assert nl and en and nl != en


def test_rejection_report_has_no_values() -> None:
    verdict = Verdict(
        category="langdurig-verzuim", records=1, kept_fields=("bsn",),
        dropped_columns=("Telefoon",),
        errors=(RowError(3, "BSN", "bsn-elfproef"), RowError(0, "geboortedatum", "column-missing")),
        error_count=2,
    )  # fmt: skip
    report = render_rejection_report(verdict=verdict, error=None, file_label="export.csv")
    assert "rij/row 3, kolom/column BSN: bsn-elfproef" in report
    assert "bestand/file, kolom/column geboortedatum: column-missing" in report
    assert "NL: " in report and "EN: " in report and "Telefoon" in report
    unreadable = render_rejection_report(verdict=None, error="the file is empty")
    assert "the file is empty" in unreadable
