"""exchanged incidents: the officer's workflow on a real register in a real journal."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from exchanged.adapters.incident_register import IncidentRegister, ensure_schema
from exchanged.adapters.journal import Journal
from exchanged.cli import main
from exchanged.core.incident import Kind, Observation
from exchanged.core.incident_form import SECTIONS

EXAMPLE = Path(__file__).parents[2] / "config" / "exchanged.example.toml"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    for folder in ("gnupg", "outbox", "upload", "state"):
        (tmp_path / folder).mkdir(mode=0o700)
    key = tmp_path / "id_ed25519"
    key.write_text("x\n")
    key.chmod(0o600)
    text = EXAMPLE.read_text(encoding="utf-8")
    for old, new in (
        ("/var/lib/exchanged/gnupg", tmp_path / "gnupg"),
        ("/var/lib/exchanged", tmp_path / "state"),
        ("/srv/exchanged/outbox/passendwijs", tmp_path / "outbox"),
        ("/srv/exchanged/sftp/passendwijs/upload", tmp_path / "upload"),
        ("/etc/exchanged/ssh/id_ed25519", key),
    ):
        text = text.replace(old, str(new))
    path = tmp_path / "exchanged.toml"
    path.write_text(text, encoding="utf-8")
    journal = Journal(tmp_path / "state" / "journal.sqlite")
    with journal.lock:
        ensure_schema(journal.connection)
        register = IncidentRegister(journal.connection, new_id=lambda _now: "INC-1")
        at = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
        for _ in range(3):
            register.observe(
                Observation(Kind.DECRYPTION_FAILED, "passendwijs", None, at, "bit-flip"), at
            )
    journal.close()
    return path


def _run(config: Path, *args: str) -> int:
    return main(["incidents", "-c", str(config), *args])


def test_list_shows_one_incident_for_a_storm_with_its_deadline(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(config, "list") == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    assert "INC-1" in out[0] and "decryption-failed" in out[0] and "x3" in out[0]
    assert "deadline 2026-12-01 10:00Z" in out[0]  # aware at 10:00 on the 28th, + 72 h
    assert _run(config, "list", "--json") == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["count"] == 3


def test_the_workflow_is_recorded_by_who_and_when(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUDO_USER", "fg-officer")
    assert _run(config, "close", "INC-1") == 2  # not assessed yet: refused, says what to do
    assert "INC-1" in capsys.readouterr().err
    assert _run(config, "assess", "INC-1", "--notify-ap", "yes", "--reason",
                "integrity of a transfer at risk") == 0  # fmt: skip
    assert _run(config, "report", "INC-1", "--reference", "AP-2026-123") == 0
    assert _run(config, "close", "INC-1") == 0
    assert "INC-1: closed (by fg-officer)" in capsys.readouterr().out
    assert _run(config, "show", "INC-1", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["incident"]["status"] == "closed"
    actions = [(e["actor"], e["action"]) for e in shown["history"]]
    assert ("fg-officer", "reported") in actions and ("fg-officer", "closed") in actions
    assert _run(config, "list", "--open") == 0
    assert "no incidents open" in capsys.readouterr().out


def test_export_fills_every_section_of_the_ap_form(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(config, "export", "INC-1", "--format", "md") == 0
    form = capsys.readouterr().out
    assert "RBL Midden-Gelre" in form and "fg@rbl-midden-gelre.example" in form
    for _section, title in SECTIONS:
        assert title in form
    assert _run(config, "export", "INC-1", "--format", "json") == 0
    document = json.dumps(json.loads(capsys.readouterr().out))
    for section, _title in SECTIONS:
        assert f'"{section}"' in document


def test_an_unknown_incident_is_one_line_exit_2(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(config, "show", "NOPE") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "incidents list" in err
