"""Reconciliation: known overlaps give exactly the four sets and their counts, in the
pure core and through the command in all three report formats."""

from __future__ import annotations

import csv
import json
import random
from datetime import UTC, datetime
from pathlib import Path

import openpyxl
import pytest

from exchanged.adapters.files import write_atomic
from exchanged.adapters.journal import Journal
from exchanged.core.model import MessageId
from exchanged.core.reconcile import (
    OUTSIDE_REGION,
    CategoryCounts,
    Entry,
    MunicipalityCounts,
    Status,
    reconcile,
)
from exchanged.policyfile import default_policy
from exchanged.reconcile_cmd import reconcile_main
from exchanged.testing.synthetic import HEADERS, generate_bsn, synthetic_rows

AV, LV, VR = "absoluut-verzuim", "langdurig-verzuim", "vrijstelling-5a"
NAMES = ("s1", "s2", "d1", "o1", "o2", "t1", "c1", "w1", "x1", "y1")
B = dict(zip(NAMES, (generate_bsn(random.Random(i)) for i in range(40, 50)), strict=True))  # noqa: S311
assert len(set(B.values())) == len(NAMES)


def _sets(result: object) -> dict[Status, set[str]]:
    back = {v: k for k, v in B.items()}
    return {s: {back[b] for b in result.bsns(s)} for s in Status}  # type: ignore[attr-defined]


def test_core_sets_and_counts() -> None:
    ours = [
        Entry(B["s1"], AV, "Velp"), Entry(B["s2"], AV, "Arnhem"), Entry(B["d1"], AV, "Elst"),
        Entry(B["o1"], LV, "Huissen"), Entry(B["o2"], AV, "Arnhem"),
        Entry(f"{B['o2'][:4]}.{B['o2'][4:6]}.{B['o2'][6:]}", LV, "Arnhem"),  # duplicate
        Entry("123456789", AV, "Arnhem"),  # invalid
    ]  # fmt: skip
    theirs = [
        Entry(B["s1"], AV, "Velp"), Entry(B["s2"], AV, "Arnhem"), Entry(B["d1"], LV, "Elst"),
        Entry(B["t1"], VR, "Giesbeek"), Entry(B["x1"], VR, "Utrecht"),
    ]  # fmt: skip
    result = reconcile(ours, theirs, region=default_policy().region, categories=(AV, LV, VR))
    assert _sets(result) == {
        Status.SAME: {"s1", "s2"},
        Status.DIFFERENT: {"d1"},
        Status.ONLY_OURS: {"o1", "o2"},
        Status.ONLY_THEIRS: {"t1", "x1"},
    }
    assert result.by_category == {
        AV: CategoryCounts(ours=4, theirs=2, same=2, different_ours=1, only_ours=1),
        LV: CategoryCounts(ours=1, theirs=1, different_theirs=1, only_ours=1),
        VR: CategoryCounts(theirs=2, only_theirs=2),
    }
    assert result.by_municipality["Arnhem"] == MunicipalityCounts(2, same=1, only_ours=1)
    assert result.by_municipality["Zevenaar"] == MunicipalityCounts(1, only_theirs=1)
    assert result.by_municipality[OUTSIDE_REGION] == MunicipalityCounts(1, only_theirs=1)
    assert result.by_municipality["Renkum"] == MunicipalityCounts()
    assert len(result.by_municipality) == 10  # the nine municipalities and "outside"
    assert result.summary() == {
        "same-category": 2, "different-category": 1, "only-ours": 2, "only-theirs": 2,
        "duplicates_ours": 1, "duplicates_theirs": 0, "invalid_ours": 1, "invalid_theirs": 0,
    }  # fmt: skip
    assert B["s1"] not in repr(result.rows[0])


# -- the command, end to end on files ----------------------------------------------------

T_OLD = datetime(2024, 12, 1, 10, tzinfo=UTC)
T_LIST = datetime(2025, 3, 1, 10, tzinfo=UTC)
T_LATER = datetime(2025, 3, 10, 10, tzinfo=UTC)
T_AFTER = datetime(2025, 6, 1, 10, tzinfo=UTC)
OUR_FILES = {
    AV: [("s1", "Velp"), ("s2", "Arnhem"), ("d1", "Elst"), ("o2", "Arnhem"), ("c1", "Dieren"),
         ("w1", "Duiven")],
    LV: [("o1", "Huissen")],
}  # fmt: skip


def _our_export(folder: Path, category: str, children: list[tuple[str, str]]) -> Path:
    header, rows = synthetic_rows(random.Random(5), category, len(children))  # noqa: S311
    where = HEADERS[category].index("Woonplaats")
    for row, (name, place) in zip(rows, children, strict=True):
        row[0], row[where] = B[name], place
    path = folder / f"{category}.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, delimiter=";").writerows([header, *rows])
    return path


def _inbox_file(
    inbox: Path, journal: Journal, category: str, when: datetime, children: list[tuple[str, str]],
    kind: str = "export",
) -> None:  # fmt: skip
    mid = MessageId.new().value
    journal.add_incoming(mid, "passendwijs", state="received", received_sha256="0" * 64, now=1.0)
    journal.update_incoming(mid, now=1.0, state="delivered", kind=kind, category=category)
    what = f"correction-{category}" if kind == "correction" else category
    name = f"passendwijs_{what}_{when:%Y%m%dT%H%M%SZ}_{mid}.csv"
    lines = ["bsn;achternaam;woonplaats", *(f"{B[n]};Achternaam;{p}" for n, p in children)]
    write_atomic(inbox / name, [("\r\n".join(lines) + "\r\n").encode("utf-8-sig")])


@pytest.fixture
def config(tmp_path: Path) -> Path:
    for folder in ("gnupg", "outbox/sent", "inbox", "state"):
        (tmp_path / folder).mkdir(mode=0o700, parents=True, exist_ok=True)
    key_file = tmp_path / "id_ed25519"
    key_file.write_text("not a real key\n")
    key_file.chmod(0o600)
    path = tmp_path / "exchanged.toml"
    path.write_text(
        f'party = "rbl"\nstate_dir = "{tmp_path / "state"}"\ninbox = "{tmp_path / "inbox"}"\n'
        f'[gpg]\nhome = "{tmp_path / "gnupg"}"\nfingerprint = "{"A" * 40}"\n'
        f'[[outbox]]\npath = "{tmp_path / "outbox"}"\npartner = "passendwijs"\n'
        'category = "subfolder"\n'
        f'[[partner]]\nid = "passendwijs"\nname = "Passend Wijs"\nfingerprint = "{"B" * 40}"\n'
        'remote_dir = "incoming"\nreceive = "poll"\npoll_dir = "outgoing"\n'
        f'[partner.sftp]\nhost = "127.0.0.1"\nuser = "rbl"\nkey_file = "{key_file}"\n'
        'host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample"\n',
        encoding="utf-8",
    )
    journal = Journal(tmp_path / "state" / "journal.sqlite")
    sent = tmp_path / "outbox" / "sent"
    old = sent / "old"
    old.mkdir()
    # An older export of ours (ignored: a newer one exists) and a rejected newer one.
    exports: list[tuple[str, datetime, str, Path, list[tuple[str, str]]]] = [
        (AV, T_OLD, "receipted", old, [("x1", "Arnhem")]),
        (AV, T_LIST, "receipted", sent, OUR_FILES[AV]),
        (LV, T_LIST, "uploaded", sent, OUR_FILES[LV]),
    ]
    for category, when, state, where, children in exports:
        source = _our_export(where, category, children)
        journal.add_outgoing(
            MessageId.new().value, "passendwijs", kind="export", state=state,
            now=when.timestamp(), category=category, source_path=str(source),
        )  # fmt: skip
    journal.add_outgoing(
        MessageId.new().value, "passendwijs", kind="export", state="rejected",
        now=T_LATER.timestamp(), category=LV, source_path=str(old / f"{AV}.csv"),
    )  # fmt: skip
    inbox = tmp_path / "inbox"
    _inbox_file(inbox, journal, AV, T_OLD, [("x1", "Arnhem"), ("s1", "Velp")])
    _inbox_file(inbox, journal, AV, T_LIST, [("s1", "Velp"), ("s2", "Arnhem")])
    _inbox_file(inbox, journal, LV, T_LIST, [("d1", "Elst"), ("c1", "Dieren"), ("w1", "Duiven")])
    _inbox_file(inbox, journal, VR, T_LIST, [("t1", "Giesbeek")])
    # Later: a correction moves c1 to absoluut-verzuim; a withdrawal takes w1 off.
    _inbox_file(inbox, journal, AV, T_LATER, [("c1", "Dieren")], kind="correction")
    wid = MessageId.new().value
    notice = {"kind": "withdrawal", "bsn": B["w1"], "ground": "terug-naar-school",
              "date": "2025-03-10"}  # fmt: skip
    write_atomic(
        inbox / f"passendwijs_withdrawal_{T_LATER:%Y%m%dT%H%M%SZ}_{wid}.json",
        [json.dumps(notice).encode()],
    )
    # After the as-of date: ignored.
    _inbox_file(inbox, journal, VR, T_AFTER, [("y1", "Arnhem")])
    journal.close()
    return path


EXPECTED = {
    Status.SAME: {"s1", "s2", "c1"},
    Status.DIFFERENT: {"d1"},
    Status.ONLY_OURS: {"o1", "o2", "w1"},
    Status.ONLY_THEIRS: {"t1"},
}
EXPECTED_BY_CATEGORY = {
    AV: {"ours": 6, "theirs": 3, "same": 3, "different_ours": 1, "different_theirs": 0,
         "only_ours": 2, "only_theirs": 0},
    LV: {"ours": 1, "theirs": 1, "same": 0, "different_ours": 0, "different_theirs": 1,
         "only_ours": 1, "only_theirs": 0},
    VR: {"ours": 0, "theirs": 1, "same": 0, "different_ours": 0, "different_theirs": 0,
         "only_ours": 0, "only_theirs": 1},
}  # fmt: skip
EXPECTED_CHILDREN = {"Arnhem": 2, "Rheden": 2, "Overbetuwe": 1, "Lingewaard": 1,
                     "Zevenaar": 1, "Duiven": 1}  # fmt: skip


def _run(config: Path, fmt: str, capsys: pytest.CaptureFixture[str]) -> list[Path]:
    argv = ["--partner", "passendwijs", "--as-of", "2025-04-01", "--format", fmt,
            "-c", str(config)]  # fmt: skip
    assert reconcile_main(argv) == 0
    out = capsys.readouterr().out
    assert "same-category 3, different-category 1, only-ours 3, only-theirs 1" in out
    assert not any(b in out for b in B.values())
    paths = [Path(line.removeprefix("report: ")) for line in out.splitlines()
             if line.startswith("report: ")]  # fmt: skip
    folder = config.parent / "state" / "reports"
    assert folder.stat().st_mode & 0o777 == 0o700
    for path in paths:
        assert path.parent == folder
        assert path.stat().st_mode & 0o777 == 0o600
        assert not any(b in path.name for b in B.values())
    return paths


def _by_name(rows: list[tuple[str, str]]) -> dict[Status, set[str]]:
    back = {v: k for k, v in B.items()}
    found: dict[Status, set[str]] = {s: set() for s in Status}
    for status, bsn in rows:
        found[Status(status)].add(back[bsn])
    return found


def test_csv_report(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main, counts = _run(config, "csv", capsys)
    with main.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter=";"))
    assert _by_name([(r["status"], r["bsn"]) for r in rows]) == EXPECTED
    assert {r["municipality"] for r in rows if r["bsn"] == B["c1"]} == {"Rheden"}
    with counts.open(encoding="utf-8-sig", newline="") as handle:
        lines = list(csv.reader(handle, delimiter=";"))
    header = lines[1]
    for category, expected in EXPECTED_BY_CATEGORY.items():
        row = next(line for line in lines if line and line[0] == category)
        assert dict(zip(header[1:], map(int, row[1:]), strict=True)) == expected


def test_json_report(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (path,) = _run(config, "json", capsys)
    report = json.loads(path.read_text(encoding="utf-8"))
    assert _by_name([(r["status"], r["bsn"]) for r in report["rows"]]) == EXPECTED
    assert report["by_category"] == EXPECTED_BY_CATEGORY
    children = {m: c["children"] for m, c in report["by_municipality"].items() if c["children"]}
    assert children == EXPECTED_CHILDREN
    assert report["as_of"] == "2025-04-01" and report["partner"] == "passendwijs"


def test_xlsx_report(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (path,) = _run(config, "xlsx", capsys)
    book = openpyxl.load_workbook(path, read_only=True)
    assert book.sheetnames == [s.value for s in Status] + [
        "per category", "per municipality", "summary",
    ]  # fmt: skip
    found: dict[Status, set[str]] = {}
    back = {v: k for k, v in B.items()}
    for status in Status:
        rows = list(book[status.value].iter_rows(values_only=True))
        assert rows[0][:2] == ("status", "bsn")
        assert all(r[0] == status.value for r in rows[1:])
        found[status] = {back[str(r[1])] for r in rows[1:]}
    assert found == EXPECTED
    table = list(book["per category"].iter_rows(values_only=True))
    by_category = {r[0]: dict(zip(table[0][1:], r[1:], strict=True)) for r in table[1:]}
    assert by_category == EXPECTED_BY_CATEGORY
    book.close()


def test_inbox_names_suffice_when_journal_metadata_is_gone(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After the journal's retention window the inbox file names alone tell exports,
    corrections and withdrawals apart."""
    journal = Journal(config.parent / "state" / "journal.sqlite")
    with journal.transaction() as db:
        db.execute("DELETE FROM incoming")
    journal.close()
    (path,) = _run(config, "json", capsys)
    report = json.loads(path.read_text(encoding="utf-8"))
    assert _by_name([(r["status"], r["bsn"]) for r in report["rows"]]) == EXPECTED


def test_explicit_list_file(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ours = _our_export(tmp_path, AV, [("s1", "Velp"), ("t1", "Giesbeek")])
    argv = ["--partner", "passendwijs", "--as-of", "2025-04-01", "--format", "json",
            "--ours", str(ours), "--category", AV, "-c", str(config)]  # fmt: skip
    assert reconcile_main(argv) == 0
    out = capsys.readouterr().out
    path = Path(next(line for line in out.splitlines() if line.startswith("report: "))[8:])
    report = json.loads(path.read_text(encoding="utf-8"))
    assert _by_name([(r["status"], r["bsn"]) for r in report["rows"]]) == {
        Status.SAME: {"s1"},
        Status.DIFFERENT: {"t1"},  # ours says absoluut-verzuim, theirs vrijstelling-5a
        Status.ONLY_OURS: set(),
        Status.ONLY_THEIRS: {"s2", "c1", "d1"},
    }


def test_unknown_partner_is_a_usage_error(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert reconcile_main(["--partner", "nobody", "-c", str(config)]) == 2
    assert "not a configured partner" in capsys.readouterr().err
