"""Moving operator files into sent/ and rejected/: renames only, nothing lost or merged."""

from __future__ import annotations

import stat
from pathlib import Path

from exchanged.adapters.files import move_all_into, move_into


def test_several_files_move_at_once_and_same_names_get_numbered(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    (outbox / "a").mkdir(parents=True)
    (outbox / "b").mkdir()
    first, second, third = (
        outbox / "a" / "lijst.csv",
        outbox / "b" / "lijst.csv",
        outbox / "b" / "x.csv",
    )
    for n, path in enumerate((first, second, third)):
        path.write_text(f"file {n}\n")
    sent = outbox / "sent"

    targets = move_all_into([(first, sent), (second, sent), (third, sent)], 0o2770)

    assert [t.name for t in targets] == ["lijst.csv", "lijst.1.csv", "x.csv"]
    assert [t.read_text() for t in targets] == ["file 0\n", "file 1\n", "file 2\n"]
    assert not first.exists() and not second.exists() and not third.exists()
    assert stat.S_IMODE(sent.stat().st_mode) & 0o770 == 0o770


def test_a_name_already_in_the_folder_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "sent").mkdir()
    (tmp_path / "sent" / "lijst.csv").write_text("earlier\n")
    (tmp_path / "lijst.csv").write_text("now\n")
    target = move_into(tmp_path / "lijst.csv", tmp_path / "sent")
    assert target.name == "lijst.1.csv"
    assert (tmp_path / "sent" / "lijst.csv").read_text() == "earlier\n"
