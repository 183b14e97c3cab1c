"""A notice or correction whose maker was killed before sealing is swept away, with its
plaintext, and so is an export whose outbox file is gone; an export whose file is still
there is left for that file to restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from exchanged.adapters.journal import Journal
from exchanged.config import Config
from exchanged.core.machine import OutState
from exchanged.sending import Sender


class _Log:
    def __init__(self) -> None:
        self.events: list[str] = []

    def warning(self, event: str, **_fields: Any) -> None:
        self.events.append(event)


def test_abandoned_non_exports_are_swept_with_their_plaintext(tmp_path: Path) -> None:
    now = [1000.0]
    journal = Journal(tmp_path / "state" / "journal.sqlite")
    spool = tmp_path / "state" / "spool"
    spool.mkdir()
    config = Config.__new__(Config)  # only state_dir is read by the sweep
    object.__setattr__(config, "state_dir", tmp_path / "state")
    log = _Log()
    sender = Sender(
        config, journal, gpg=None, policy=None, clock=lambda: now[0], log=log,  # type: ignore[arg-type]
        enqueue_upload=lambda _p, _m: None,
    )  # fmt: skip
    present = tmp_path / "outbox" / "lijst.csv"
    present.parent.mkdir()
    present.write_text("BSN\n")
    rows = {
        "withdrawal": ("00000000-0000-4000-8000-000000000001", "withdrawal", None),
        "export": ("00000000-0000-4000-8000-000000000002", "export", present),
        "orphan": ("00000000-0000-4000-8000-000000000003", "export", tmp_path / "gone.csv"),
    }
    for message_id, kind, source in rows.values():
        journal.add_outgoing(message_id, "passendwijs", kind=kind, state=OutState.MINIMISED,
                             now=now[0], source_path=str(source) if source else None)  # fmt: skip
        (spool / f"{message_id}.json").write_text("{}")

    assert sender.sweep_abandoned(older_than=600) == 0  # too recent: a command may be running
    now[0] += 601
    assert sender.sweep_abandoned(older_than=600) == 2
    for name in ("withdrawal", "orphan"):
        message_id = rows[name][0]
        assert journal.outgoing(message_id) is None
        assert not (spool / f"{message_id}.json").exists()
    kept = rows["export"][0]
    assert journal.outgoing(kept) is not None
    assert (spool / f"{kept}.json").exists()
    assert log.events == ["abandoned_messages_dropped"]
