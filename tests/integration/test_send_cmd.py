"""exchanged send: a one-off export through the same pipeline as the outbox."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from exchanged.cli import main
from exchanged.testing.synthetic import seeded_rng, synthetic_rows
from exchanged.testing.workspace import Workspace

pytestmark = pytest.mark.integration


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=";")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_send_queues_a_file_that_the_daemon_delivers(
    workspace: Workspace, short_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rbl, pw = workspace["rbl"], workspace["passendwijs"]
    workspace.start_daemon(pw)
    workspace.start_daemon(rbl)
    header, rows = synthetic_rows(seeded_rng(21), "langdurig-verzuim", 4)
    export = _write(short_tmp / "eenmalig.csv", header, rows)
    config = str(rbl.config_path)

    assert main(["send", str(export), "--to", "passendwijs", "-c", config]) == 2
    assert "--category is needed" in capsys.readouterr().err
    assert main(["send", str(export), "--to", "nobody", "--category", "langdurig-verzuim",
                 "-c", config]) == 2  # fmt: skip
    assert "no outbox sends to 'nobody'" in capsys.readouterr().err

    assert main(["send", str(export), "--to", "passendwijs", "--category", "langdurig-verzuim",
                 "-c", config]) == 0  # fmt: skip
    assert "queued for passendwijs as eenmalig.csv: 4 record(s)" in capsys.readouterr().out
    assert workspace.wait_for({"rbl": 1}, timeout=30)
    assert export.exists()  # the operator's original stays where it was
    assert len(list(pw.inbox.glob("*langdurig-verzuim*.csv"))) == 1


def test_send_refuses_a_name_the_daemon_would_ignore(
    workspace: Workspace, short_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    header, rows = synthetic_rows(seeded_rng(23), "absoluut-verzuim", 1)
    export = _write(short_tmp / "lijst.tmp", header, rows)
    code = main(["send", str(export), "--to", "passendwijs", "--category", "absoluut-verzuim",
                 "-c", str(workspace["rbl"].config_path)])  # fmt: skip
    assert code == 2
    assert "rename the file first" in capsys.readouterr().err


def test_send_refuses_what_the_policy_refuses_and_queues_nothing(
    workspace: Workspace, short_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rbl = workspace["rbl"]
    header, rows = synthetic_rows(seeded_rng(22), "absoluut-verzuim", 2)
    rows[1][0] = "123456789"  # fails the elfproef
    export = _write(short_tmp / "fout.csv", header, rows)
    code = main(["send", str(export), "--to", "passendwijs", "--category", "absoluut-verzuim",
                 "-c", str(rbl.config_path)])  # fmt: skip
    assert code == 3
    out = capsys.readouterr().out
    assert "nothing was queued" in out and "123456789" not in out
    assert not list(rbl.outbox("passendwijs", "absoluut-verzuim").iterdir())
