"""Accountability end to end (issue 7): two real daemons, real sshd and gpg.

One story, in the order an operator lives it: an export; ``subject`` on both sides
shows the disclosure; ``correct`` reaches the partner's inbox; ``withdraw --ground
terug-naar-school`` reaches the partner, ends processing on both sides, and a later
export of that child is refused until ``reopen``; the register holds no plain BSN;
``purge --dry-run`` and ``purge`` report and remove what the retention windows say,
and nothing else.

The CLI commands run in-process through ``exchanged.cli.main`` beside the running
daemons, as an operator would run them on the same host; the daemons upload what
the commands seal into their journal.
"""

from __future__ import annotations

import csv
import json
import random
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import exchanged.purge
from exchanged.cli import main as cli_main
from exchanged.demo import drop_export
from exchanged.testing.synthetic import synthetic_rows
from exchanged.testing.workspace import Party, Workspace

pytestmark = pytest.mark.integration

CATEGORY = "absoluut-verzuim"
DAY = 86400.0
# Small windows so a clock a few weeks ahead crosses each of them in turn.
RETENTION = """
[retention]
inbox_days = 10
sent_days = 10
spool_days = 5
journal_days = 20
disclosures_days = 30
"""


@dataclass(slots=True)
class Run:
    code: int
    out: str
    err: str


@dataclass(slots=True)
class Cli:
    workspace: Workspace
    monkeypatch: pytest.MonkeyPatch
    capsys: pytest.CaptureFixture[str]

    def __call__(self, party: Party, *argv: str) -> Run:
        """``exchanged ARGV -c <party's config>`` with the party's credentials."""
        self.monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(self.workspace.credentials(party)))
        self.capsys.readouterr()
        code = cli_main([*argv, "-c", str(party.config_path)])
        captured = self.capsys.readouterr()
        return Run(code, captured.out, captured.err)

    def subject(self, party: Party, bsn: str) -> Any:
        """``subject --json``, parsed."""
        run = self(party, "subject", "--bsn", bsn, "--json")
        assert run.code == 0, run.err
        return json.loads(run.out)


@pytest.fixture
def cli(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Cli:
    return Cli(workspace, monkeypatch, capsys)


def _bsn(cell: str) -> str:
    return cell.replace(".", "")


def _inbox_rows(folder: Path, pattern: str = "*.csv") -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for path in sorted(folder.glob(pattern)):
        with path.open(encoding="utf-8-sig", newline="") as handle:
            rows.extend(csv.DictReader(handle, delimiter=";"))
    return rows


def _wait(
    what: str, condition: Callable[[], bool], workspace: Workspace, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        for party in workspace.parties.values():
            assert party.process is None or party.process.poll() is None, f"{party.id} died"
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def _receipted(workspace: Workspace, party: Party, kind: str, n: int) -> bool:
    return workspace.outgoing_states(party, kind).get("receipted", 0) >= n


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=";")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _database_bytes(party: Party) -> bytes:
    state = party.state_dir
    return b"".join(p.read_bytes() for p in sorted(state.glob("journal.sqlite*")) if p.is_file())


def _assert_no_plain_bsn(party: Party, bsns: set[str]) -> None:
    blob = _database_bytes(party)
    assert blob, "the journal exists"
    leaked = sorted(b for b in bsns if b.encode() in blob or b.encode("utf-16-le") in blob)
    assert leaked == [], f"{party.id}'s journal holds plain BSNs"


def _counts(run: Run) -> dict[str, int]:
    """The ``purge`` report's per-class counts."""
    found: dict[str, int] = {}
    for line in run.out.splitlines():
        match = re.match(r"^  (\w+): (?:would remove|removed) (\d+)$", line)
        if match:
            found[match.group(1)] = int(match.group(2))
    return found


def _table_rows(party: Party, *tables: str) -> int:
    db = sqlite3.connect(f"file:{party.state_dir / 'journal.sqlite'}?mode=ro", uri=True)
    try:
        return sum(db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables)  # noqa: S608
    finally:
        db.close()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    """``purge``'s clock, moved ahead by the test (the daemons are stopped by then)."""
    fake = SimpleNamespace(now=time.time())
    monkeypatch.setattr(exchanged.purge, "time", SimpleNamespace(time=lambda: fake.now))
    yield fake


def test_accountability_story(workspace: Workspace, cli: Cli, clock: SimpleNamespace) -> None:
    rng = random.Random(19)  # noqa: S311 -- synthetic data
    rbl, pw = workspace["rbl"], workspace["passendwijs"]
    for party in (rbl, pw):
        workspace.write_config(party, extra=RETENTION)
        workspace.start_daemon(party)

    # -- export ----------------------------------------------------------------------
    header, rows = synthetic_rows(rng, CATEGORY, 5)
    bsns = [_bsn(r[0]) for r in rows]
    exchanged_bsns = set(bsns)
    child, other = bsns[0], bsns[1]
    drop_export(rbl.outbox(pw.id, CATEGORY), "lijst.csv", header, rows)
    _wait("the export's receipt", lambda: _receipted(workspace, rbl, "export", 1), workspace)

    # -- subject on both sides ---------------------------------------------------------
    ours = cli.subject(rbl, child)
    assert ours["known"] is True
    assert [
        (d["direction"], d["partner"], d["kind"], d["category"]) for d in ours["disclosures"]
    ] == [("sent", pw.id, "export", CATEGORY)]
    theirs = cli.subject(pw, child)
    assert [
        (d["direction"], d["partner"], d["kind"], d["category"]) for d in theirs["disclosures"]
    ] == [("received", rbl.id, "export", CATEGORY)]
    sent_id = ours["disclosures"][0]["message_id"]
    assert theirs["disclosures"][0]["message_id"] == sent_id
    text = cli(rbl, "subject", "--bsn", child)
    assert text.code == 0 and child not in text.out and "Processing: active" in text.out

    # -- correct -----------------------------------------------------------------------
    corrected = [list(rows[0]), list(rows[1])]
    corrected[0][5] = "Correctiestraat"
    corrected[1][10] = "Gecorrigeerde School"
    work = rbl.root / "work"
    work.mkdir(mode=0o700)
    fix = _write_csv(work / "correctie.csv", header, corrected)
    run = cli(rbl, "correct", str(fix), "--category", CATEGORY)
    assert run.code == 0, run.err + run.out
    assert pw.id in run.out and "2 record(s)" in run.out
    assert child not in run.out + run.err
    _wait("the correction's receipt", lambda: _receipted(workspace, rbl, "correction", 1),
          workspace)  # fmt: skip
    fixes = _inbox_rows(pw.inbox, f"{rbl.id}_correction-{CATEGORY}_*.csv")
    assert {r["bsn"]: r["straat"] for r in fixes}[child] == "Correctiestraat"
    assert {r["bsn"]: r["laatst_bekende_school"] for r in fixes}[other] == "Gecorrigeerde School"
    kinds = [d["kind"] for d in cli.subject(pw, child)["disclosures"]]
    assert kinds == ["export", "correction"]

    # A correction for a child never sent is refused whole, naming the row only.
    _, stranger_rows = synthetic_rows(rng, CATEGORY, 1)
    stranger = _bsn(stranger_rows[0][0])
    exchanged_bsns.add(stranger)
    bad = _write_csv(work / "onbekend.csv", header, [corrected[0], stranger_rows[0]])
    run = cli(rbl, "correct", str(bad), "--category", CATEGORY)
    assert run.code == 3
    assert "row 2: not-disclosed" in run.out and stranger not in run.out + run.err
    # A policy error refuses the whole file too, without values.
    invalid = list(corrected[0])
    invalid[8] = "99999"  # not a postcode
    run = cli(rbl, "correct", str(_write_csv(work / "fout.csv", header, [invalid])),
              "--category", CATEGORY)  # fmt: skip
    assert run.code == 3 and "postcode-invalid" in run.out and "99999" not in run.out
    assert workspace.outgoing_states(rbl, "correction") == {"receipted": 1}

    # -- withdraw ----------------------------------------------------------------------
    run = cli(rbl, "withdraw", "--bsn", child, "--ground", "terug-naar-school")
    assert run.code == 0, run.err + run.out
    assert "1 partner(s) informed" in run.out and pw.id in run.out
    assert "Processing: ended here" in run.out
    assert child not in run.out + run.err
    _wait("the withdrawal's receipt", lambda: _receipted(workspace, rbl, "withdrawal", 1),
          workspace)  # fmt: skip
    # Ended on both sides, each saying by whom.
    ours = cli.subject(rbl, child)
    assert ours["processing"]["ended"] is True
    assert ours["processing"]["ground"] == "terug-naar-school"
    assert ours["processing"]["ended_by"] == "local"
    theirs = cli.subject(pw, child)
    assert theirs["processing"]["ended"] is True
    assert theirs["processing"]["ground"] == "terug-naar-school"
    assert theirs["processing"]["ended_by"] == rbl.id
    # The partner has the notice, and no longer the child's rows; the others stay.
    notices = list(pw.inbox.glob(f"{rbl.id}_withdrawal_*.json"))
    assert len(notices) == 1
    notice = json.loads(notices[0].read_text(encoding="utf-8"))
    assert notice["ground"] == "terug-naar-school"
    held = {r["bsn"] for r in _inbox_rows(pw.inbox)}
    assert child not in held and other in held and set(bsns[1:]) <= held
    # A second withdrawal on the same ground sends nothing twice.
    again = cli(rbl, "withdraw", "--bsn", child, "--ground", "terug-naar-school")
    assert again.code == 0 and "0 partner(s) informed" in again.out
    assert "already informed earlier: passendwijs" in again.out

    # -- a later export of the child is refused until re-opened, on both sides -----------
    # (Each file differs: the daemon knows a file it sent before by its content.)
    drop_export(rbl.outbox(pw.id, CATEGORY), "lijst-2.csv", header, rows[::-1])
    rejected = rbl.outbox(pw.id) / "rejected"
    report = rejected / "lijst-2.csv.rejected.txt"
    _wait("the refused export", report.exists, workspace)
    assert "processing-ended" in report.read_text(encoding="utf-8")
    assert "- rij/row 5, kolom/column bsn: processing-ended" in report.read_text(encoding="utf-8")
    drop_export(pw.outbox(rbl.id, CATEGORY), "terug.csv", header, rows[:2])
    their_report = pw.outbox(rbl.id) / "rejected" / "terug.csv.rejected.txt"
    _wait("the partner's refused export", their_report.exists, workspace)
    assert "processing-ended" in their_report.read_text(encoding="utf-8")

    run = cli(rbl, "reopen", "--bsn", child)
    assert run.code == 0, run.err
    assert "re-opened" in run.out and child not in run.out
    assert cli(rbl, "reopen", "--bsn", child).code == 2  # nothing left to re-open
    drop_export(rbl.outbox(pw.id, CATEGORY), "lijst-3.csv", header, rows[:3])
    _wait("the re-opened export's receipt", lambda: _receipted(workspace, rbl, "export", 2),
          workspace)  # fmt: skip

    # -- no plain BSN in either register -------------------------------------------------
    for party in (rbl, pw):
        _assert_no_plain_bsn(party, exchanged_bsns)
    for party in (rbl, pw):
        assert workspace.stop_daemon(party) == 0
    for party in (rbl, pw):
        _assert_no_plain_bsn(party, exchanged_bsns)

    # -- retention -------------------------------------------------------------------------
    for party in (rbl, pw):
        party.inbox.mkdir(mode=0o700, exist_ok=True)
        (party.inbox / "notities.txt").write_text("van de operator\n", encoding="utf-8")
    _purge_story(cli, clock, rbl, pw)


def _files(folder: Path, pattern: str = "*") -> list[Path]:
    return sorted(p for p in folder.glob(pattern) if p.is_file()) if folder.is_dir() else []


def _purge_story(cli: Cli, clock: SimpleNamespace, rbl: Party, pw: Party) -> None:
    start = clock.now
    parties = (rbl, pw)
    sent = {p.id: _files(p.root / "outbox", "*/sent/*") for p in parties}
    rejected = {p.id: _files(p.root / "outbox", "*/rejected/*") for p in parties}
    assert [len(sent[p.id]) for p in parties] == [2, 0]
    assert rejected[rbl.id] and rejected[pw.id]
    inbox = {p.id: _files(p.inbox, "*_*_*_*.*") for p in parties}
    assert inbox[pw.id] and inbox[rbl.id] == []

    # Day 7: only the spool window (5 days after the receipt) has passed.
    clock.now = start + 7 * DAY
    for party in parties:
        spool = _files(party.state_dir / "spool", "*.pgp")
        assert spool, party.id
        dry = cli(party, "purge", "--dry-run")
        assert dry.code == 0, dry.err
        assert _counts(dry) == {
            "inbox_files": 0, "sent_files": 0, "spool_files": len(spool), "journal_rows": 0,
            "disclosure_rows": 0,
        }  # fmt: skip
        assert _files(party.state_dir / "spool", "*.pgp") == spool  # a dry run removes nothing
        real = cli(party, "purge")
        assert _counts(real) == _counts(dry)
        assert _files(party.state_dir / "spool", "*.pgp") == []
        assert _files(party.inbox, "*_*_*_*.*") == inbox[party.id]

    # Day 12: the inbox and sent/ windows (10 days) too; nothing is left in the spool.
    clock.now = start + 12 * DAY
    for party in parties:
        dry = cli(party, "purge", "--dry-run")
        expected = {
            "inbox_files": len(inbox[party.id]), "sent_files": len(sent[party.id]),
            "spool_files": 0, "journal_rows": 0, "disclosure_rows": 0,
        }  # fmt: skip
        assert _counts(dry) == expected
        assert _files(party.inbox, "*_*_*_*.*") == inbox[party.id]
        assert _counts(cli(party, "purge")) == expected
        assert _files(party.inbox, "*_*_*_*.*") == []
        assert _files(party.root / "outbox", "*/sent/*") == []
        # Not ours to purge: the operator's own file, and rejected exports with reports.
        assert (party.inbox / "notities.txt").exists()
        assert _files(party.root / "outbox", "*/rejected/*") == rejected[party.id]

    # Day 25: the journal window (20 days): every finished message and its events.
    clock.now = start + 25 * DAY
    for party in parties:
        journal = _table_rows(party, "outgoing", "incoming", "events")
        register = _table_rows(party, "disclosures_all")
        dry = cli(party, "purge", "--dry-run")
        assert _counts(dry)["journal_rows"] == journal
        assert _counts(dry)["disclosure_rows"] == 0
        assert _counts(cli(party, "purge"))["journal_rows"] == journal
        assert _table_rows(party, "outgoing", "incoming", "events") == 0
        assert _table_rows(party, "disclosures_all") == register

    # Day 35: the register window (30 days). A termination still in force stays (it
    # is what keeps the partner from sending the child again); a re-opened one goes.
    clock.now = start + 35 * DAY
    for party in parties:
        rows = _table_rows(party, "disclosures_all")
        reopened = _count_reopened(party)
        dry = cli(party, "purge", "--dry-run")
        assert _counts(dry)["disclosure_rows"] == rows + reopened
        assert _counts(cli(party, "purge"))["disclosure_rows"] == rows + reopened
        assert _table_rows(party, "disclosures_all") == 0
    assert _table_rows(rbl, "terminations") == 0
    assert _table_rows(pw, "terminations") == 1


def _count_reopened(party: Party) -> int:
    db = sqlite3.connect(f"file:{party.state_dir / 'journal.sqlite'}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT COUNT(*) FROM terminations WHERE reopened_at IS NOT NULL")
        return int(row.fetchone()[0])
    finally:
        db.close()
