"""The incident core: catalogue, storm folding, the 72-hour clock, workflow, AP form
and the partner notice."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Literal

import pytest

from exchanged.core import incident_workflow as wf
from exchanged.core.incident import (
    AP_DEADLINE,
    CATALOGUE,
    TRANSITIONS,
    DataCategory,
    Effect,
    Incident,
    Kind,
    Observation,
    OrgInfo,
    Severity,
    Status,
    can_transition,
    due_reminders,
    fold,
    incident_from_dict,
    incident_notice_body,
    incident_to_dict,
    parse_incident_notice,
    render_ap_form,
)
from exchanged.core.incident_form import SECTIONS, UNKNOWN
from exchanged.errors import OperatorInputError, PartnerError

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
ORG = OrgInfo(
    name="RBL Midden-Gelre",
    party_id="rbl",
    contact_email="privacy@rbl.example",
    contact_phone="026 000 0000",
)


def obs(
    kind: Kind = Kind.SIGNATURE_INVALID,
    at: datetime = T0,
    partner: str | None = "passendwijs",
    message_id: str | None = None,
    records: int | None = None,
) -> Observation:
    return Observation(kind, partner, message_id, at, "bad-signature", record_count=records)


def new(o: Observation | None = None) -> Incident:
    return fold([], o or obs(), "inc-1").incident


def test_catalogue_has_every_required_stable_id() -> None:
    required = {
        "signature-invalid", "unknown-signer", "unsigned-message", "decryption-failed",
        "misaddressed", "replayed", "expired", "host-key-mismatch", "receipt-invalid",
        "receipt-failed", "loss-in-transit", "partner-policy-violation",
        "outbox-unsafe-file", "partner-key-changed", "partner-key-expired", "partner-notice",
        "malformed-message",
    }  # fmt: skip
    assert {k.value for k in Kind} == required
    assert set(CATALOGUE) == set(Kind)
    for kind, info in CATALOGUE.items():
        assert info.kind is kind
        assert info.nature and info.title and info.action
        assert isinstance(info.severity, Severity)
    assert CATALOGUE[Kind.HOST_KEY_MISMATCH].severity is Severity.CRITICAL
    assert not CATALOGUE[Kind.OUTBOX_UNSAFE_FILE].notify_partner  # local, not shared data


def test_new_incident_has_72_hour_deadline_from_awareness() -> None:
    result = fold([], obs(), "inc-1")
    assert result.created and result.mail
    inc = result.incident
    assert inc.deadline == T0 + timedelta(hours=72) == inc.aware_at + AP_DEADLINE
    assert inc.status is Status.OPEN and inc.count == 1 and inc.ongoing
    assert inc.partners == ("passendwijs",)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        obs(at=datetime(2025, 3, 3, 9, 0))  # naive on purpose


def test_storm_of_200_is_one_incident_and_one_mail() -> None:
    current: list[Incident] = []
    mails = 0
    for n in range(200):
        o = obs(at=T0 + timedelta(seconds=17 * n), message_id=str(uuid.UUID(int=n + 1)))
        result = fold(current, o, f"inc-{n}")
        current = [result.incident]
        mails += result.mail
    (inc,) = current
    assert inc.id == "inc-0"
    assert inc.count == 200
    assert mails == 1
    assert inc.detected_at == T0 and inc.last_seen_at == T0 + timedelta(seconds=17 * 199)
    assert len(inc.message_ids) == 100  # bounded; the count tells the rest


def test_storm_separates_by_kind_partner_window_and_status() -> None:
    first = new()
    later = obs(at=T0 + timedelta(hours=1, seconds=1))
    assert fold([first], later, "inc-2").created
    assert fold([first], obs(partner="deverbinding"), "inc-2").created
    assert fold([first], obs(kind=Kind.REPLAYED), "inc-2").created
    assessed = replace(first, status=Status.NOT_REPORTED)
    assert fold([assessed], obs(at=T0 + timedelta(minutes=1)), "inc-2").created
    folded = fold([first], obs(at=T0 + timedelta(minutes=59)), "inc-2")
    assert not folded.created and not folded.mail and folded.incident.count == 2


def test_record_counts_add_up_across_a_storm() -> None:
    inc = new(obs(kind=Kind.LOSS_IN_TRANSIT, records=12))
    inc = fold([inc], obs(kind=Kind.LOSS_IN_TRANSIT, records=30), "x").incident
    assert (inc.records_min, inc.records_max) == (42, 42)


def test_transition_table() -> None:
    assert can_transition(Status.OPEN, Status.ASSESSED)
    assert can_transition(Status.ASSESSED, Status.REPORTED)
    assert can_transition(Status.REPORTED, Status.CLOSED)
    assert can_transition(Status.NOT_REPORTED, Status.CLOSED)
    assert not can_transition(Status.OPEN, Status.CLOSED)
    assert not can_transition(Status.NOT_REPORTED, Status.REPORTED)
    assert TRANSITIONS[Status.CLOSED] == frozenset()


def test_workflow_open_assessed_reported_closed() -> None:
    inc = new()
    t = T0 + timedelta(hours=5)
    inc = wf.assess(
        inc, notify_ap=True, reason="Shared data may be exposed", subjects_informed=False,
        actor="fg", now=t,
    )  # fmt: skip
    assert inc.status is Status.ASSESSED and inc.ap is not None and inc.ap.notify
    inc = wf.report(inc, reference="AP-2025-123", actor="fg", now=t)
    assert inc.status is Status.REPORTED and inc.ap is not None
    assert inc.ap.reference == "AP-2025-123" and inc.ap.reported_at == t
    inc = wf.close(inc, actor="fg", now=t)
    assert inc.status is Status.CLOSED and not inc.ongoing


def test_not_reported_path_and_invalid_transitions() -> None:
    inc = new()
    with pytest.raises(wf.InvalidTransition, match="assess") as err:
        wf.close(inc, actor="fg", now=T0)
    assert isinstance(err.value, OperatorInputError) and err.value.exit_code == 2
    inc = wf.assess(inc, notify_ap=False, reason="Quarantined, no exposure",
                    subjects_informed=None, actor="fg", now=T0)  # fmt: skip
    assert inc.status is Status.NOT_REPORTED
    with pytest.raises(wf.InvalidTransition, match="not to notify"):
        wf.report(inc, reference="X", actor="fg", now=T0)
    closed = wf.close(inc, actor="fg", now=T0)
    with pytest.raises(wf.InvalidTransition):
        wf.assess(closed, notify_ap=True, reason="r", subjects_informed=None, actor="fg", now=T0)


def test_reasons_are_required_and_bsn_like_text_refused() -> None:
    with pytest.raises(wf.IncidentInputError, match="required"):
        wf.assess(new(), notify_ap=False, reason=" ", subjects_informed=None, actor="a", now=T0)
    with pytest.raises(wf.IncidentInputError, match="BSN"):
        wf.assess(new(), notify_ap=False, reason="child 123456782", subjects_informed=None,
                  actor="a", now=T0)  # fmt: skip


def test_amend_corrects_the_record_within_limits() -> None:
    inc = wf.amend(
        new(),
        {"subjects_min": 1, "subjects_max": 40, "data_categories": ["bsn", "school"],
         "effects": ["read"], "encrypted": True, "measures_planned": ["Rotate keys"]},
        actor="fg", now=T0,
    )  # fmt: skip
    assert inc.data_categories == (DataCategory.BSN, DataCategory.SCHOOL)
    assert inc.effects == (Effect.READ,) and inc.subjects_max == 40
    with pytest.raises(wf.IncidentInputError, match="cannot be amended"):
        wf.amend(inc, {"status": "closed"}, actor="fg", now=T0)
    with pytest.raises(wf.IncidentInputError, match="exceeds"):
        wf.amend(inc, {"subjects_min": 50}, actor="fg", now=T0)
    with pytest.raises(wf.IncidentInputError, match="wrong type"):
        wf.amend(inc, {"subjects_min": True}, actor="fg", now=T0)


def test_reminders_at_24h_and_4h_only_until_decided() -> None:
    inc = new()
    assert due_reminders([inc], T0 + timedelta(hours=47)) == []
    (r24,) = due_reminders([inc], T0 + timedelta(hours=48))
    assert r24.mark == "24h" and r24.remaining == timedelta(hours=24)
    inc = wf.mark_reminded(inc, mark="24h", now=T0)
    assert due_reminders([inc], T0 + timedelta(hours=60)) == []
    (r4,) = due_reminders([inc], T0 + timedelta(hours=68, minutes=30))
    assert r4.mark == "4h"
    # After downtime, only the most urgent reminder is sent.
    (late,) = due_reminders([new()], T0 + timedelta(hours=69))
    assert late.mark == "4h"
    (over,) = due_reminders([new()], T0 + timedelta(hours=73))
    assert over.mark == "overdue"
    decided = wf.assess(inc, notify_ap=False, reason="no risk", subjects_informed=None,
                        actor="fg", now=T0)  # fmt: skip
    assert due_reminders([decided], T0 + timedelta(hours=70)) == []


def test_dict_round_trip() -> None:
    inc = wf.assess(new(obs(message_id=str(uuid.uuid4()))), notify_ap=True, reason="r",
                    subjects_informed=True, actor="fg", now=T0)  # fmt: skip
    inc = wf.amend(inc, {"data_categories": ["bsn"], "records_min": 1, "records_max": 9},
                   actor="fg", now=T0)  # fmt: skip
    data = json.loads(json.dumps(incident_to_dict(inc)))
    assert incident_from_dict(data) == inc
    assert data["deadline"] == (T0 + AP_DEADLINE).isoformat()


@pytest.mark.parametrize("fmt", ["md", "json"])
def test_ap_form_has_every_section_filled_or_unknown(fmt: Literal["md", "json"]) -> None:
    text = render_ap_form(new(), ORG, fmt)
    if fmt == "json":
        doc = json.loads(text)
        assert [s["id"] for s in doc["sections"]] == [sid for sid, _ in SECTIONS]
        for section in doc["sections"]:
            assert section["fields"], section["id"]
            for label, value in section["fields"].items():
                assert isinstance(value, str) and value.strip(), label
        fields = {s["id"]: s["fields"] for s in doc["sections"]}
        assert fields["consequences"]["Likely consequences / Mogelijke gevolgen"] == UNKNOWN
        assert fields["timeline"]["Reporting deadline (72 h) / Meldtermijn"] == (
            (T0 + AP_DEADLINE).isoformat()
        )
    else:
        for number, (_sid, title) in enumerate(SECTIONS, start=1):
            assert f"## {number}. {title}" in text
        for line in text.splitlines():
            if line.startswith("- **"):
                assert line.split("**: ", 1)[1].strip(), line
        assert UNKNOWN in text


def test_notice_body_has_no_personal_fields_and_parses_back() -> None:
    mid = str(uuid.uuid4())
    inc = new(obs(message_id=mid, records=25))
    body = incident_notice_body(inc, ORG.contact_point)
    personal = {"bsn", "voornamen", "achternaam", "geboortedatum", "straat", "postcode",
                "woonplaats", "huisnummer", "summary", "name", "address"}  # fmt: skip
    assert not personal & set(body)
    assert body["incident_kind"] == "signature-invalid" and body["message_ids"] == [mid]
    wire = json.loads(json.dumps(body))
    o = parse_incident_notice(wire, "rbl", T0 + timedelta(minutes=5), str(uuid.uuid4()))
    assert o.kind is Kind.PARTNER_NOTICE and o.partner == "rbl" and o.notice is not None
    assert o.notice.remote_id == inc.id and o.notice.records_max == 25
    theirs = fold([], o, "inc-theirs").incident
    assert theirs.kind is Kind.PARTNER_NOTICE and mid in theirs.message_ids
    assert theirs.records_min == 25
    # An update on the same remote incident folds; another remote incident does not.
    again = fold([theirs], o, "inc-x")
    assert not again.created
    other = parse_incident_notice(wire | {"incident_id": "inc-other"}, "rbl", T0, None)
    assert fold([theirs], other, "inc-y").created


@pytest.mark.parametrize(
    "change",
    [
        {"bsn": "123456782"},
        {"contact_point": "call about 123456782"},
        {"records_min": -1},
        {"first_seen": "yesterday"},
        {"first_seen": "2025-03-03T09:00:00"},
        {"message_ids": ["../../etc/passwd"]},
        {"incident_id": 7},
    ],
)
def test_malformed_notice_is_refused(change: dict[str, object]) -> None:
    body = incident_notice_body(new(), ORG.contact_point) | change
    with pytest.raises(PartnerError):
        parse_incident_notice(body, "rbl", T0, None)


def test_log_fields_name_id_kind_and_deadline() -> None:
    from exchanged.core.incident_codec import log_fields

    fields = log_fields(new())
    assert fields["event"] == "security_incident" and fields["level"] == "critical"
    assert fields["kind"] == "signature-invalid" and fields["incident_id"] == "inc-1"
    assert fields["deadline"] == (T0 + AP_DEADLINE).isoformat()
