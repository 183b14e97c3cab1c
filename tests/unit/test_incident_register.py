"""The incident register on a real SQLite file: append-only history, workflow,
reminders, storms."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from exchanged.adapters.incident_register import IncidentRegister, UnknownIncident, ensure_schema
from exchanged.core.incident import Kind, Observation, Status
from exchanged.core.incident_workflow import IncidentInputError, InvalidTransition
from exchanged.errors import OperatorInputError

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = sqlite3.connect(tmp_path / "journal.sqlite3")
    ensure_schema(c)
    ensure_schema(c)  # idempotent: the daemon calls it on every start
    yield c
    c.close()


@pytest.fixture
def reg(conn: sqlite3.Connection) -> IncidentRegister:
    return IncidentRegister(conn)


def bad_signature(at: datetime = T0, partner: str = "passendwijs") -> Observation:
    return Observation(Kind.SIGNATURE_INVALID, partner, str(uuid.uuid4()), at, "bad-signature")


def test_history_refuses_update_and_delete(reg: IncidentRegister, conn: sqlite3.Connection) -> None:
    reg.observe(bad_signature(), T0)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE incident_history SET status = 'closed'")
    conn.rollback()
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM incident_history")
    conn.rollback()
    assert conn.execute("SELECT COUNT(*) FROM incident_history").fetchone() == (1,)


def test_workflow_open_assessed_reported_closed(
    reg: IncidentRegister, conn: sqlite3.Connection, tmp_path: Path
) -> None:
    inc = reg.observe(bad_signature(), T0).incident
    t1, t2, t3 = (T0 + timedelta(hours=h) for h in (2, 30, 80))
    reg.assess(inc.id, notify_ap=True, reason="Shared data possibly exposed",
               subjects_informed=False, actor="fg", now=t1)  # fmt: skip
    assert reg.get(inc.id).status is Status.ASSESSED
    reg.report(inc.id, "AP-2025-0001", "fg", t2)
    reg.close(inc.id, "fg", t3)

    # A fresh connection sees the same state: it is derived from the stored history.
    other = IncidentRegister(sqlite3.connect(tmp_path / "journal.sqlite3"))
    final = other.get(inc.id)
    assert final.status is Status.CLOSED and final.ap is not None
    assert final.ap.reference == "AP-2025-0001" and final.ap.reported_at == t2
    assert final.ap.decided_by == "fg" and final.deadline == T0 + timedelta(hours=72)

    history = reg.history(inc.id)
    assert [h["action"] for h in history] == ["detected", "assessed", "reported", "closed"]
    assert [h["status"] for h in history] == ["open", "assessed", "reported", "closed"]
    assert history[1]["actor"] == "fg" and "ap" in history[1]["changed"]  # type: ignore[operator]
    assert conn.execute("SELECT COUNT(*) FROM incident_history").fetchone() == (4,)


def test_invalid_transition_is_refused_and_nothing_is_written(
    reg: IncidentRegister, conn: sqlite3.Connection
) -> None:
    inc = reg.observe(bad_signature(), T0).incident
    with pytest.raises(InvalidTransition, match="cannot become closed") as err:
        reg.close(inc.id, "fg", T0)
    assert isinstance(err.value, OperatorInputError)
    with pytest.raises(InvalidTransition):
        reg.report(inc.id, "AP-1", "fg", T0)
    assert reg.get(inc.id).status is Status.OPEN
    assert conn.execute("SELECT COUNT(*) FROM incident_history").fetchone() == (1,)
    with pytest.raises(UnknownIncident, match="incidents list"):
        reg.get("inc-nope")


def test_not_reported_path_and_corrections_are_new_rows(reg: IncidentRegister) -> None:
    inc = reg.observe(bad_signature(), T0).incident
    reg.assess(inc.id, notify_ap=False, reason="Quarantined, nothing read",
               subjects_informed=None, actor="fg", now=T0)  # fmt: skip
    reg.amend(inc.id, {"consequences": "None expected", "effects": ["altered"]}, "fg", T0)
    reg.amend(inc.id, {"consequences": "None expected; partner confirmed"}, "fg", T0)
    reg.record_partner_informed(inc.id, T0, "incident-notice message", "exchanged", T0)
    reg.close(inc.id, "fg", T0)
    final = reg.get(inc.id)
    assert final.status is Status.CLOSED
    assert final.consequences == "None expected; partner confirmed"
    assert final.partner_informed_how == "incident-notice message"
    assert len(reg.history(inc.id)) == 6
    with pytest.raises(IncidentInputError, match="closed"):
        reg.amend(inc.id, {"consequences": "rewrite"}, "fg", T0)


def test_storm_of_200_folds_into_one_incident_with_one_mail(reg: IncidentRegister) -> None:
    results = [
        reg.observe(bad_signature(T0 + timedelta(seconds=n)), T0 + timedelta(seconds=n))
        for n in range(200)
    ]
    assert sum(r.mail for r in results) == 1 and sum(r.created for r in results) == 1
    (inc,) = reg.list()
    assert inc.count == 200
    # A different partner, or the same one after the window, is a new incident.
    assert reg.observe(bad_signature(T0, "deverbinding"), T0).created
    late = T0 + timedelta(seconds=199) + timedelta(hours=2)
    assert reg.observe(bad_signature(late), late).created
    assert len(reg.list(open_only=True)) == 3


def test_reminders_at_24h_and_4h(reg: IncidentRegister) -> None:
    inc = reg.observe(bad_signature(), T0).incident
    assert reg.due_reminders(T0 + timedelta(hours=47)) == []
    (r,) = reg.due_reminders(T0 + timedelta(hours=48))
    assert (r.incident_id, r.mark) == (inc.id, "24h")
    # Not marked (say the mail failed): still due on the next tick.
    assert len(reg.due_reminders(T0 + timedelta(hours=48, minutes=1))) == 1
    reg.mark_reminded(inc.id, "24h", T0 + timedelta(hours=48, minutes=1))
    assert reg.due_reminders(T0 + timedelta(hours=60)) == []
    (r,) = reg.due_reminders(T0 + timedelta(hours=68))
    assert r.mark == "4h"
    reg.mark_reminded(inc.id, "4h", T0 + timedelta(hours=68))
    assert reg.due_reminders(T0 + timedelta(hours=70)) == []
    reg.assess(inc.id, notify_ap=False, reason="no risk", subjects_informed=None,
               actor="fg", now=T0 + timedelta(hours=71))  # fmt: skip
    assert reg.due_reminders(T0 + timedelta(hours=80)) == []


def test_runs_inside_a_callers_transaction(conn: sqlite3.Connection) -> None:
    reg = IncidentRegister(conn)
    conn.execute("CREATE TABLE other (x INTEGER)")
    conn.commit()
    conn.execute("INSERT INTO other VALUES (1)")  # the journal's open transaction
    assert conn.in_transaction
    reg.observe(bad_signature(), T0)
    assert conn.in_transaction  # a savepoint, released; the caller still commits
    conn.rollback()
    assert reg.list() == []


def test_a_notice_id_with_nine_digits_in_a_row_is_not_mistaken_for_a_bsn(
    reg: IncidentRegister,
) -> None:
    """Random UUIDs hold a nine-digit run about once in 70; recording how the partner
    was informed must not fail on them (it once did, now and then)."""
    inc = reg.observe(bad_signature(), T0).incident
    notice_id = "79bf0760-7753-4abb-bed6-3a586659854b"  # holds 586659854
    informed = reg.record_partner_informed(inc.id, T0, f"incident-notice {notice_id}", "x", T0)
    assert informed.partner_informed_how.endswith(notice_id)
    with pytest.raises(OperatorInputError):  # a real nine-digit run outside a UUID still is
        reg.record_partner_informed(inc.id, T0, "called about 111222333", "x", T0)
