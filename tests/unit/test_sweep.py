"""A notice or correction whose maker was killed before sealing is swept away, with its
plaintext; an export in the same state is left for its outbox file to restart."""

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
    ids = {
        "withdrawal": "00000000-0000-4000-8000-000000000001",
        "export": "00000000-0000-4000-8000-000000000002",
    }
    for kind, message_id in ids.items():
        journal.add_outgoing(message_id, "passendwijs", kind=kind, state=OutState.MINIMISED,
                             now=now[0])  # fmt: skip
        (spool / f"{message_id}.json").write_text("{}")

    assert sender.sweep_abandoned(older_than=600) == 0  # too recent: a command may be running
    now[0] += 601
    assert sender.sweep_abandoned(older_than=600) == 1
    assert journal.outgoing(ids["withdrawal"]) is None
    assert not (spool / f"{ids['withdrawal']}.json").exists()
    assert journal.outgoing(ids["export"]) is not None
    assert (spool / f"{ids['export']}.json").exists()
    assert log.events == ["abandoned_messages_dropped"]
