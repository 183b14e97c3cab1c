"""End to end: two real daemons (subprocesses), real sshd, real gpg, both directions."""

from __future__ import annotations

import csv
import json
import random
import sqlite3
import time
from pathlib import Path

import pytest

from exchanged.core.model import CATEGORIES
from exchanged.demo import drop_export
from exchanged.testing.synthetic import synthetic_rows
from exchanged.testing.workspace import Workspace

pytestmark = pytest.mark.integration

EXTRA_COLUMNS = ["Telefoon ouder", "E-mail", "Diagnose", "Geslacht"]


def _with_extras(
    rng: random.Random, header: list[str], rows: list[list[str]]
) -> tuple[list[str], list[list[str]]]:
    """Add columns the covenant forbids to share; their values must never travel."""
    extra = ["06-12345678", "ouder@example.invalid", "ADHD en angststoornis", "M"]
    return header + EXTRA_COLUMNS, [row + extra for row in rows]


def _inbox_rows(folder: Path) -> list[dict[str, str]]:
    found: list[dict[str, str]] = []
    for path in sorted(folder.glob("*.csv")):
        with path.open(encoding="utf-8-sig", newline="") as handle:
            found.extend(csv.DictReader(handle, delimiter=";"))
    return found


def _sealed_exports(journal: Path) -> set[str]:
    with sqlite3.connect(journal) as db:
        rows = db.execute(
            "SELECT message_id FROM outgoing WHERE kind = 'export' AND state = 'sealed'"
        ).fetchall()
    return {row[0] for row in rows}


def test_two_party_exchange_in_both_directions(workspace: Workspace) -> None:
    rng = random.Random(7)  # noqa: S311 -- synthetic data
    sent_rows: dict[str, list[dict[str, str]]] = {}
    expected: dict[str, int] = {}
    for party in workspace.parties.values():
        workspace.start_daemon(party)
    for party in workspace.parties.values():
        partner = next(p for p in workspace.parties.values() if p.id != party.id)
        for category in CATEGORIES:
            header, rows = _with_extras(rng, *synthetic_rows(rng, category, 10))
            drop_export(party.outbox(partner.id, category), f"{category}.csv", header, rows)
            sent_rows.setdefault(partner.id, []).extend(
                dict(zip(header, r, strict=True)) for r in rows
            )
            expected[party.id] = expected.get(party.id, 0) + 1

    assert workspace.wait_for(expected, timeout=60), workspace.outgoing_states(workspace["rbl"])
    for party in workspace.parties.values():
        assert workspace.stop_daemon(party) == 0

    for party in workspace.parties.values():
        received = _inbox_rows(party.inbox)
        assert len(received) == 30
        # Nothing outside the allow-list arrived, by column name or by value.
        columns = set().union(*(r.keys() for r in received))
        assert not columns & {"Telefoon ouder", "E-mail", "Diagnose", "Geslacht"}
        assert not columns - {
            "bsn", "voornamen", "tussenvoegsel", "achternaam", "geboortedatum", "straat",
            "huisnummer", "postcode", "woonplaats", "laatst_bekende_school",
            "startdatum_verzuim", "reden_verzuim", "betrokkenheid",
            "datum_toekenning_vrijstelling", "duur_vrijstelling",
        }  # fmt: skip
        text = "".join(p.read_text(encoding="utf-8-sig") for p in party.inbox.glob("*.csv"))
        assert "ADHD" not in text and "06-12345678" not in text
        sent_bsns = {r["BSN"].replace(".", "") for r in sent_rows[party.id]}
        assert {r["bsn"] for r in received} == sent_bsns
        for path in party.inbox.iterdir():
            assert path.stat().st_mode & 0o777 == 0o600
        # The operator's files moved to sent/, none left behind or rejected.
        partner = next(p for p in workspace.parties.values() if p.id != party.id)
        assert len(list((party.outbox(partner.id) / "sent").iterdir())) == 3
        assert not (party.outbox(partner.id) / "rejected").exists()


def test_logs_carry_no_personal_data(workspace: Workspace) -> None:
    rng = random.Random(11)  # noqa: S311 -- synthetic data
    personal: set[str] = set()
    for party in workspace.parties.values():
        workspace.start_daemon(party)
    rbl, pw = workspace["rbl"], workspace["passendwijs"]
    for category in CATEGORIES:
        header, rows = synthetic_rows(rng, category, 15)
        drop_export(rbl.outbox(pw.id, category), f"leerlingen {category}.csv", header, rows)
        for row in rows:
            bsn, first_names, _prefix, surname, born, street = row[:6]
            personal.update({bsn.replace(".", ""), first_names, surname, born, street})
            day, month, year = born.split("-")
            personal.add(f"{year}-{int(month):02d}-{int(day):02d}")  # as the receiver writes it
    assert workspace.wait_for({"rbl": 3}, timeout=60)
    for party in workspace.parties.values():
        workspace.stop_daemon(party)

    lines = list(workspace.log_lines())
    assert len(lines) > 10
    for line in lines:
        json.loads(line)  # every line is one JSON object, as journald expects
    blob = "\n".join(lines)
    leaked = sorted(value for value in personal if len(value) > 3 and value in blob)
    assert leaked == []
    assert "leerlingen" not in blob  # the operator's file name never reaches the logs


def test_host_key_change_is_refused_and_message_stays_queued(workspace: Workspace) -> None:
    rng = random.Random(3)  # noqa: S311 -- synthetic data
    rbl, pw = workspace["rbl"], workspace["passendwijs"]
    pw.sshd.restart(new_host_key=True)  # rbl still pins the old key
    workspace.start_daemon(rbl)
    header, rows = synthetic_rows(rng, "absoluut-verzuim", 5)
    drop_export(rbl.outbox(pw.id, "absoluut-verzuim"), "a.csv", header, rows)

    deadline = time.monotonic() + 30
    mismatch: list[dict[str, object]] = []
    while time.monotonic() < deadline and not mismatch:
        time.sleep(0.2)
        events = [json.loads(line) for line in rbl.log_path.read_text().splitlines()]
        mismatch = [e for e in events if e.get("event") == "host_key_mismatch"]
    assert mismatch, "the refusal is logged as a host-key mismatch"
    assert mismatch[0]["partner"] == "passendwijs"
    assert workspace.outgoing_states(rbl) == {"sealed": 1}  # queued, not lost, not sent
    assert list(pw.incoming.iterdir()) == []  # nothing reached the impostor
    assert workspace.stop_daemon(rbl) == 0
    events = [json.loads(line) for line in rbl.log_path.read_text().splitlines()]
    incidents = [e for e in events if e.get("event") == "security_incident"]
    assert [e["kind"] for e in incidents] == ["host-key-mismatch"]  # one, however many retries
    # The sealed ciphertext waits in the spool for the link to be trusted again.
    spooled = {p.stem for p in (rbl.state_dir / "spool").glob("*.pgp")}
    sealed = _sealed_exports(rbl.state_dir / "journal.sqlite")
    assert len(sealed) == 1 and sealed <= spooled


def test_files_for_operators_are_group_readable_only_when_configured(
    workspace: Workspace,
) -> None:
    rbl, pw = workspace["rbl"], workspace["passendwijs"]
    workspace.write_config(pw, extra="share_with_operators = true")
    workspace.write_config(rbl, extra="share_with_operators = true")
    for party in (rbl, pw):
        workspace.start_daemon(party)
    rng = random.Random(5)  # noqa: S311 -- synthetic data
    header, rows = synthetic_rows(rng, "absoluut-verzuim", 2)
    drop_export(rbl.outbox(pw.id, "absoluut-verzuim"), "ok.csv", header, rows)
    bad_header, bad_rows = synthetic_rows(rng, "absoluut-verzuim", 1)
    bad_rows[0][0] = "123456789"  # fails the elfproef: rejected with a report
    drop_export(rbl.outbox(pw.id, "absoluut-verzuim"), "bad.csv", bad_header, bad_rows)
    assert workspace.wait_for({"rbl": 1}, timeout=30)
    rejected = rbl.outbox(pw.id) / "rejected"
    assert _wait_for_path(rejected / "bad.csv.rejected.txt")
    for party in (rbl, pw):
        workspace.stop_daemon(party)

    (delivered,) = pw.inbox.glob("*.csv")
    assert delivered.stat().st_mode & 0o777 == 0o640
    assert (rejected / "bad.csv.rejected.txt").stat().st_mode & 0o777 == 0o640
    assert rejected.stat().st_mode & 0o777 == 0o750
    assert (rbl.outbox(pw.id) / "sent").stat().st_mode & 0o777 == 0o750
    assert (pw.state_dir / "journal.sqlite").stat().st_mode & 0o777 == 0o600  # still private


def _wait_for_path(path: Path, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not path.exists():
        time.sleep(0.1)
    return path.exists()
