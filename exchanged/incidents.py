"""The daemon's side of the incident register: detections in, register, notifications out.

A detection becomes an observation in the append-only register (storms fold into one
incident). A new incident is logged as ``security_incident``, mailed to the officers
and passed to the hook; when the catalogue says shared data are concerned, a signed
``incident-notice`` goes to the partner over the normal channel. A notification that
fails is logged and does not stop the daemon; the register entry is already written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from exchanged.adapters.incident_register import IncidentRegister, ensure_schema
from exchanged.adapters.journal import Journal
from exchanged.adapters.notify import IncidentNotifier
from exchanged.core.incident import (
    CATALOGUE,
    Incident,
    Kind,
    Observation,
    OrgInfo,
    incident_notice_body,
    parse_incident_notice,
)
from exchanged.core.incident_codec import log_fields
from exchanged.errors import ExchangedError

__all__ = ["Detection", "IncidentDesk"]


@dataclass(frozen=True, slots=True)
class Detection:
    """What a part of the daemon saw. ``detail`` is a short machine code, never data."""

    kind: str
    partner: str | None
    message_id: str | None
    detail: str
    record_count: int | None = None


class IncidentDesk:
    def __init__(
        self,
        journal: Journal,
        org: OrgInfo,
        *,
        clock: Callable[[], float],
        log: Any,
        notifiers: tuple[IncidentNotifier, ...] = (),
        send_notice: Callable[[str, Mapping[str, Any]], str] | None = None,
    ) -> None:
        self._journal = journal
        self._org = org
        self._clock = clock
        self._log = log
        self._notifiers = notifiers
        self._send_notice = send_notice
        with journal.lock:
            ensure_schema(journal.connection)
        self.register = IncidentRegister(journal.connection)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def detect(self, detection: Detection) -> Incident:
        now = self._now()
        try:
            observation = Observation(
                kind=Kind(detection.kind),
                partner=detection.partner,
                message_id=detection.message_id or None,
                at=now,
                detail_code=detection.detail,
                record_count=detection.record_count,
            )
        except ValueError:
            # A detail or id the register would refuse must not cost us the incident (a
            # refused incident would leave its file on the channel, retried forever).
            self._log.error("incident_detail_refused", kind=detection.kind)
            observation = Observation(
                kind=Kind(detection.kind),
                partner=detection.partner,
                message_id=None,
                at=now,
                detail_code="unspecified",
                record_count=detection.record_count,
            )
        return self._observe(observation, now)

    def partner_notice(self, partner: str, body: Mapping[str, Any], message_id: str) -> Incident:
        now = self._now()
        return self._observe(parse_incident_notice(body, partner, now, message_id), now)

    def remind(self) -> None:
        """Send the 24 h / 4 h reminders for incidents still without an AP decision."""
        now = self._now()
        with self._journal.lock:
            due = self.register.due_reminders(now)
        for reminder in due:
            with self._journal.lock:
                incident = self.register.get(reminder.incident_id)
            self._log.warning(
                "incident_reminder", incident_id=incident.id, kind=incident.kind.value,
                mark=reminder.mark, deadline=reminder.deadline.isoformat(),
            )  # fmt: skip

            def send(notifier: IncidentNotifier, i: Incident = incident, r: Any = reminder) -> None:
                notifier.send_reminder(r, i, self._org)

            if self._notify(send):
                with self._journal.lock:
                    self.register.mark_reminded(reminder.incident_id, reminder.mark, now)

    # -- internals ------------------------------------------------------------------

    def _observe(self, observation: Observation, now: datetime) -> Incident:
        with self._journal.lock:
            result = self.register.observe(observation, now)
        incident = result.incident
        fields = log_fields(incident)
        level = str(fields.pop("level"))
        event = str(fields.pop("event"))
        fields["new"] = result.created
        getattr(self._log, level)(event, **fields)
        if result.mail:
            self._notify(lambda n: n.send_incident(incident, self._org))
        if result.created and CATALOGUE[incident.kind].notify_partner:
            self._inform_partner(incident, now)
        return incident

    def _notify(self, send: Callable[[IncidentNotifier], None]) -> bool:
        ok = True
        for notifier in self._notifiers:
            try:
                send(notifier)
            except ExchangedError as exc:
                ok = False
                self._log.error("incident_notification_failed", error=exc.message,
                                notifier=type(notifier).__name__)  # fmt: skip
        return ok

    def _inform_partner(self, incident: Incident, now: datetime) -> None:
        if self._send_notice is None:
            return
        body = incident_notice_body(incident, self._org.contact_point)
        for partner in incident.partners:
            try:
                message_id = self._send_notice(partner, body)
            except ExchangedError as exc:
                self._log.error("incident_notice_failed", incident_id=incident.id,
                                partner=partner, error=exc.message)  # fmt: skip
                continue
            try:
                with self._journal.lock:
                    self.register.record_partner_informed(
                        incident.id, now, f"incident-notice {message_id}", "exchanged", now
                    )
            except ExchangedError as exc:
                # The notice is on its way; raising here would make the caller re-run
                # the detection (and count it twice). Say it loudly instead.
                self._log.error("incident_partner_informed_not_recorded",
                                incident_id=incident.id, partner=partner,
                                notice_id=message_id, error=exc.message)  # fmt: skip
