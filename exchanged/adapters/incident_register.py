"""The incident register (AVG art. 33(5)) in SQLite: an append-only history.

Every change is a new row holding the whole incident as it stands after the change,
plus who made it, when and which fields changed. The current state of an incident is
its latest row. Triggers make the database itself refuse UPDATE and DELETE on the
history, so not even a bug in this module can rewrite what was recorded.

The journal owns the database file and its lock; this class only adds its tables to
the connection it is given. Each method is one transaction.
"""

from __future__ import annotations

import builtins
import json
import secrets
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime

from exchanged.adapters.sqlite_tx import write_transaction
from exchanged.core import incident_workflow as wf
from exchanged.core.incident import (
    Incident,
    Observation,
    Reminder,
    Status,
    due_reminders,
    fold,
    incident_from_dict,
    incident_to_dict,
)
from exchanged.errors import LocalSystemError

__all__ = ["IncidentRegister", "ObserveResult", "UnknownIncident", "ensure_schema"]

_SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS incident_history (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        incident_id TEXT NOT NULL,
        at          TEXT NOT NULL,
        actor       TEXT NOT NULL,
        action      TEXT NOT NULL,
        changed     TEXT NOT NULL,
        status      TEXT NOT NULL,
        kind        TEXT NOT NULL,
        partner     TEXT NOT NULL,
        last_seen   TEXT NOT NULL,
        state       TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS incident_history_by_id ON incident_history (incident_id, seq)",
    "CREATE INDEX IF NOT EXISTS incident_history_by_kind ON incident_history (kind, partner)",
    """CREATE TRIGGER IF NOT EXISTS incident_history_no_update
    BEFORE UPDATE ON incident_history
    BEGIN
        SELECT RAISE(ABORT, 'incident history is append-only: add a correction instead');
    END""",
    """CREATE TRIGGER IF NOT EXISTS incident_history_no_delete
    BEFORE DELETE ON incident_history
    BEGIN
        SELECT RAISE(ABORT, 'incident history is append-only: it is never deleted');
    END""",
)

_LATEST = """
SELECT h.state FROM incident_history h
WHERE h.seq = (SELECT MAX(seq) FROM incident_history WHERE incident_id = h.incident_id)
"""


def ensure_schema(conn: sqlite3.Connection) -> None:
    with _transaction(conn):
        for statement in _SCHEMA:
            conn.execute(statement)


class UnknownIncident(wf.IncidentInputError):
    def __init__(self, incident_id: str) -> None:
        super().__init__(
            f"no incident {incident_id!r} in the register; `exchanged incidents list` shows ids"
        )


@dataclass(frozen=True, slots=True)
class ObserveResult:
    incident: Incident
    created: bool
    mail: bool  # only the first observation of a storm is mailed


def _transaction(conn: sqlite3.Connection) -> AbstractContextManager[None]:
    return write_transaction(conn, "incident_register")


def _new_id(now: datetime) -> str:
    # Date for humans, random part so two daemons or a restored backup never collide.
    return f"inc-{now.astimezone(UTC):%Y%m%d}-{secrets.token_hex(4)}"


class IncidentRegister:
    def __init__(
        self, conn: sqlite3.Connection, new_id: Callable[[datetime], str] = _new_id
    ) -> None:
        self._conn = conn
        self._new_id = new_id

    # --- reading --------------------------------------------------------------------

    def get(self, incident_id: str) -> Incident:
        row = self._conn.execute(
            "SELECT state FROM incident_history WHERE incident_id = ? ORDER BY seq DESC LIMIT 1",
            (incident_id,),
        ).fetchone()
        if row is None:
            raise UnknownIncident(incident_id)
        return _load(row[0])

    def list(self, open_only: bool = False) -> builtins.list[Incident]:
        """Newest first; ``open_only`` means not yet closed."""
        rows = self._conn.execute(_LATEST + " ORDER BY h.seq DESC").fetchall()
        found = [_load(r[0]) for r in rows]
        if open_only:
            found = [i for i in found if i.status != Status.CLOSED]
        return sorted(found, key=lambda i: (i.detected_at, i.id), reverse=True)

    def history(self, incident_id: str) -> builtins.list[dict[str, object]]:
        """Who changed what when, oldest first (for `incidents show`)."""
        rows = self._conn.execute(
            "SELECT seq, at, actor, action, changed, status FROM incident_history "
            "WHERE incident_id = ? ORDER BY seq",
            (incident_id,),
        ).fetchall()
        if not rows:
            raise UnknownIncident(incident_id)
        return [
            {"seq": s, "at": at, "actor": actor, "action": act, "changed": json.loads(ch),
             "status": st}
            for s, at, actor, act, ch, st in rows
        ]  # fmt: skip

    def due_reminders(self, now: datetime) -> builtins.list[Reminder]:
        """Reminders to send now; call :meth:`mark_reminded` after each was sent, so a
        failed mail is simply tried again on the next tick."""
        return due_reminders(self.list(open_only=True), now)

    # --- writing --------------------------------------------------------------------

    def observe(self, obs: Observation, now: datetime) -> ObserveResult:
        partner = obs.partner or ""
        with _transaction(self._conn):
            rows = self._conn.execute(
                _LATEST + " AND h.kind = ? AND h.partner = ? AND h.status = ?",
                (obs.kind.value, partner, Status.OPEN.value),
            ).fetchall()
            result = fold([_load(r[0]) for r in rows], obs, self._new_id(now))
            previous = None if result.created else self._current(result.incident.id)
            self._append(
                result.incident,
                previous,
                actor="exchanged",
                action="detected" if result.created else "aggregated",
                now=now,
            )
        return ObserveResult(result.incident, result.created, result.mail)

    def assess(
        self,
        incident_id: str,
        *,
        notify_ap: bool,
        reason: str,
        subjects_informed: bool | None,
        actor: str,
        now: datetime,
        subjects_rationale: str = "",
    ) -> Incident:
        return self._step(
            incident_id,
            "assessed",
            actor,
            now,
            lambda i: wf.assess(
                i,
                notify_ap=notify_ap,
                reason=reason,
                subjects_informed=subjects_informed,
                actor=actor,
                now=now,
                subjects_rationale=subjects_rationale,
            ),
        )

    def report(self, incident_id: str, reference: str, actor: str, now: datetime) -> Incident:
        return self._step(
            incident_id,
            "reported",
            actor,
            now,
            lambda i: wf.report(i, reference=reference, actor=actor, now=now),
        )

    def close(self, incident_id: str, actor: str, now: datetime) -> Incident:
        return self._step(
            incident_id, "closed", actor, now, lambda i: wf.close(i, actor=actor, now=now)
        )

    def record_partner_informed(
        self, incident_id: str, at: datetime, how: str, actor: str, now: datetime
    ) -> Incident:
        return self._step(
            incident_id,
            "partner-informed",
            actor,
            now,
            lambda i: wf.partner_informed(i, at=at, how=how, actor=actor, now=now),
        )

    def amend(
        self, incident_id: str, changes: dict[str, object], actor: str, now: datetime
    ) -> Incident:
        return self._step(
            incident_id, "amended", actor, now, lambda i: wf.amend(i, changes, actor=actor, now=now)
        )

    def mark_reminded(self, incident_id: str, mark: str, now: datetime) -> Incident:
        return self._step(
            incident_id,
            f"reminder-{mark}",
            "exchanged",
            now,
            lambda i: wf.mark_reminded(i, mark=mark, now=now),
        )

    # --- internals ------------------------------------------------------------------

    def _current(self, incident_id: str) -> Incident:
        return self.get(incident_id)

    def _step(
        self,
        incident_id: str,
        action: str,
        actor: str,
        now: datetime,
        change: Callable[[Incident], Incident],
    ) -> Incident:
        with _transaction(self._conn):
            before = self.get(incident_id)
            after = change(before)
            if after != before:
                self._append(after, before, actor=actor, action=action, now=now)
        return after

    def _append(
        self, inc: Incident, before: Incident | None, *, actor: str, action: str, now: datetime
    ) -> None:
        state = incident_to_dict(inc)
        old = incident_to_dict(before) if before else {}
        changed = sorted(k for k, v in state.items() if old.get(k) != v and k != "updated_at")
        self._conn.execute(
            "INSERT INTO incident_history (incident_id, at, actor, action, changed, status, "
            "kind, partner, last_seen, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                inc.id,
                now.astimezone(UTC).isoformat(),
                actor,
                action,
                json.dumps(changed),
                inc.status.value,
                inc.kind.value,
                inc.partners[0] if inc.partners else "",
                inc.last_seen_at.astimezone(UTC).isoformat(),
                json.dumps(state, sort_keys=True, ensure_ascii=False),
            ),
        )


def _load(state: str) -> Incident:
    data = json.loads(state)
    if not isinstance(data, dict):
        raise LocalSystemError("the incident register holds a corrupt row; restore from backup")
    return incident_from_dict(data)
