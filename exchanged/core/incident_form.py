"""A filled-in draft of the Autoriteit Persoonsgegevens data-breach form
("meldformulier datalekken") for one incident, as Markdown or JSON.

Every field is either filled in or says ``unknown / onbekend``: a blank would let a
gap in the record slip into the report unnoticed. Use
:func:`exchanged.core.incident.render_ap_form`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from exchanged.core.incident import CATALOGUE, Incident, OrgInfo

__all__ = ["SECTIONS", "UNKNOWN", "render", "sections"]

UNKNOWN = "unknown / onbekend"

# Section ids (stable, used by the JSON form and tests) and their bilingual titles, in
# the order of the AP form.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("organisation", "Organisation and contact / Organisatie en contactgegevens"),
    ("timeline", "Timeline / Tijdlijn"),
    ("nature", "Nature of the breach / Aard van het datalek"),
    ("data", "Types of data and numbers / Soort gegevens en aantallen"),
    ("subjects", "Data subjects / Betrokkenen"),
    ("encryption", "Encryption / Versleuteling"),
    ("consequences", "Likely consequences / Gevolgen"),
    ("informing", "Informing data subjects / Informeren betrokkenen"),
    ("measures", "Measures / Maatregelen"),
    ("decision", "Decision and cooperation / Besluit en samenwerking"),
)

Field = tuple[str, str]


def _v(value: object) -> str:
    if value is None or value in ("", ()):
        return UNKNOWN
    if isinstance(value, bool):
        return "yes / ja" if value else "no / nee"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return "; ".join(str(v) for v in value)
    return str(value)


def _range(low: int | None, high: int | None) -> str:
    if low is None and high is None:
        return UNKNOWN
    if low == high or high is None:
        return str(low)
    return f"{_v(low)} - {high}"


def sections(inc: Incident, org: OrgInfo) -> list[tuple[str, str, list[Field]]]:
    info = CATALOGUE[inc.kind]
    ap = inc.ap
    reported_at = ap.reported_at if ap else None
    late = reported_at is not None and reported_at > inc.deadline
    return [
        ("organisation", SECTIONS[0][1], [
            ("Organisation / Organisatie", _v(org.name)),
            ("Party id in the covenant / Partij-id", _v(org.party_id)),
            ("KvK number / KvK-nummer", _v(org.kvk)),
            ("Contact (function) / Contactpersoon (functie)", _v(org.contact_role)),
            ("E-mail", _v(org.contact_email)),
            ("Telephone / Telefoon", _v(org.contact_phone)),
        ]),
        ("timeline", SECTIONS[1][1], [
            # The daemon sees the first symptom, not necessarily the start of the breach.
            ("Breach began / Begin datalek", f"on or before {_v(inc.detected_at)}"),
            ("Breach ended / Einde datalek",
             "ongoing / voortdurend" if inc.ongoing else _v(inc.last_seen_at)),
            ("Detected / Ontdekt", _v(inc.detected_at)),
            ("Aware since / Bekend sinds", _v(inc.aware_at)),
            ("Reporting deadline (72 h) / Meldtermijn", _v(inc.deadline)),
            ("Reported to AP / Gemeld bij AP", _v(reported_at) if ap and ap.notify else
             ("not applicable / niet van toepassing" if ap else UNKNOWN)),
            ("Reason for late report / Reden late melding",
             UNKNOWN if late else "not applicable / niet van toepassing"),
        ]),
        ("nature", SECTIONS[2][1], [
            ("What happened / Wat is er gebeurd", _v(inc.summary)),
            ("Incident kind / Soort incident", f"{inc.kind.value} ({info.severity.value})"),
            ("Security aspect / Aard", _v(tuple(n.value for n in inc.nature))),
            ("Effect on the data / Gevolg voor gegevens",
             _v(tuple(e.value for e in inc.effects))),
            ("Observations / Waarnemingen", f"{inc.count} between "
             f"{inc.detected_at.isoformat()} and {inc.last_seen_at.isoformat()}"),
            ("Technical codes / Technische codes", _v(inc.detail_codes)),
            ("Partners concerned / Betrokken partners", _v(inc.partners)),
            ("Messages concerned / Betrokken berichten", _v(inc.message_ids)),
        ]),
        ("data", SECTIONS[3][1], [
            ("Data categories / Soorten gegevens",
             _v(tuple(c.value for c in inc.data_categories))),
            # The covenant forbids art. 9 and police data in exports (Bijlage 1).
            ("Special categories / Bijzondere persoonsgegevens",
             "none by design of the covenant / geen (uitgesloten door het convenant)"),
            ("Records / Aantal records (min - max)", _range(inc.records_min, inc.records_max)),
        ]),
        ("subjects", SECTIONS[4][1], [
            ("Number of data subjects / Aantal betrokkenen (min - max)",
             _range(inc.subjects_min, inc.subjects_max)),
            ("Groups / Groepen",
             "children of compulsory school age not attending school (thuiszitters); minors"),
            ("Vulnerable group / Kwetsbare groep", "yes / ja (minors)"),
        ]),
        ("encryption", SECTIONS[5][1], [
            ("Encrypted at the time / Versleuteld", _v(inc.encrypted)),
            ("How / Hoe", _v(inc.encryption)),
        ]),
        ("consequences", SECTIONS[6][1], [
            ("Likely consequences / Mogelijke gevolgen", _v(inc.consequences)),
        ]),
        ("informing", SECTIONS[7][1], [
            ("Data subjects informed / Betrokkenen geïnformeerd", _v(inc.subjects_informed)),
            ("Rationale / Motivering", _v(inc.subjects_rationale)),
        ]),
        ("measures", SECTIONS[8][1], [
            ("Measures taken / Genomen maatregelen", _v(inc.measures_taken)),
            ("Measures planned / Geplande maatregelen", _v(inc.measures_planned)),
        ]),
        ("decision", SECTIONS[9][1], [
            ("Notify AP / Melden bij AP", _v(ap.notify) if ap else UNKNOWN),
            ("Rationale / Motivering", _v(ap.rationale) if ap else UNKNOWN),
            ("Decided / Besloten", f"{ap.decided_at.isoformat()} by {ap.decided_by}"
             if ap else UNKNOWN),
            ("AP reference / Kenmerk AP", _v(ap.reference) if ap else UNKNOWN),
            ("Partner informed / Partner geïnformeerd",
             f"{inc.partner_informed_at.isoformat()} via {_v(inc.partner_informed_how)}"
             if inc.partner_informed_at else UNKNOWN),
            ("Register status / Status", inc.status.value),
        ]),
    ]  # fmt: skip


def _markdown(inc: Incident, body: Sequence[tuple[str, str, list[Field]]]) -> str:
    lines = [
        f"# Data breach report (draft) — incident {inc.id}",
        "",
        "Concept voor het meldformulier datalekken van de Autoriteit Persoonsgegevens.",
    ]
    for number, (_sid, title, fields) in enumerate(body, start=1):
        lines += ["", f"## {number}. {title}", ""]
        lines += [f"- **{label}**: {value}" for label, value in fields]
    return "\n".join(lines) + "\n"


def render(inc: Incident, org: OrgInfo, fmt: Literal["md", "json"]) -> str:
    body = sections(inc, org)
    if fmt == "md":
        return _markdown(inc, body)
    if fmt == "json":
        doc = {
            "form": "AP meldformulier datalekken (draft)",
            "incident_id": inc.id,
            "sections": [
                {"id": sid, "title": title, "fields": dict(fields)} for sid, title, fields in body
            ],
        }
        return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
    raise ValueError(f"unknown form format {fmt!r}; use 'md' or 'json'")
