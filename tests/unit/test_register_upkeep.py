"""When the register's recent rows move: quiet passes, a backlog too large to wait
for, a clean stop; never on a busy pass with few rows waiting."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exchanged import register_upkeep
from exchanged.adapters.disclosures import DisclosureRegister, ensure_schema
from exchanged.adapters.journal import Journal
from exchanged.core.model import MessageId
from exchanged.register_upkeep import QUIET_SECONDS, RegisterUpkeep

T0 = 1_740_000_000.0


class _Log:
    def __init__(self) -> None:
        self.events: list[str] = []

    def debug(self, event: str, **_fields: Any) -> None:
        self.events.append(event)

    warning = debug


@pytest.fixture
def register(tmp_path: Path) -> Iterator[DisclosureRegister]:
    journal = Journal(tmp_path / "journal.sqlite")
    ensure_schema(journal.connection)
    yield DisclosureRegister(journal.connection, lock=journal.lock)
    journal.close()


def _record(register: DisclosureRegister, rows: int) -> None:
    hashes = [f"{i:064x}" for i in range(rows)]
    register.record("sent", "passendwijs", "absoluut-verzuim", MessageId.new().value, hashes, T0)


def test_rows_move_after_a_quiet_pass_and_not_after_a_busy_one(
    register: DisclosureRegister,
) -> None:
    upkeep = RegisterUpkeep(register, _Log())
    assert upkeep.wait(5.0) == 5.0  # nothing waits: the loop's own wait
    _record(register, 3)
    assert upkeep.wait(5.0) == QUIET_SECONDS
    upkeep.after_pass(quiet=False)
    assert register.waiting() == 3
    upkeep.after_pass(quiet=True)
    assert register.waiting() == 0
    assert upkeep.wait(5.0) == 5.0


def test_a_backlog_beyond_the_limit_moves_on_busy_passes_too(
    register: DisclosureRegister, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(register_upkeep, "WAITING_LIMIT", 2)
    upkeep = RegisterUpkeep(register, _Log())
    _record(register, 3)
    upkeep.wait(5.0)
    upkeep.after_pass(quiet=False)
    assert register.waiting() == 0


def test_a_clean_stop_moves_what_waits(register: DisclosureRegister) -> None:
    log = _Log()
    _record(register, 3)
    RegisterUpkeep(register, log).before_stop()
    assert register.waiting() == 0
    assert "register_rows_waiting" not in log.events


def test_without_a_register_nothing_is_asked() -> None:
    upkeep = RegisterUpkeep(None, _Log())
    assert upkeep.wait(5.0) == 5.0
    upkeep.after_pass(quiet=True)
    upkeep.before_stop()
