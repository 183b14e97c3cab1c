"""``exchanged incidents``: the privacy officer's workflow on the incident register.

    list [--open] [--json]          every incident, newest first, with its 72 h deadline
    show ID [--json]                one incident in full, with who changed what when
    assess ID --notify-ap yes|no --reason TEXT [--subjects-informed yes|no]
                                    [--subjects-reason TEXT]
    report ID --reference REF       the AP's reference after reporting (meldloket)
    close ID
    export ID --format md|json      a filled-in draft of the AP's data-breach form

The register is append-only: every command adds an entry naming the operator (the
login name, or SUDO_USER) and never rewrites an earlier one. It works beside the
running daemon (SQLite WAL).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from exchanged.adapters.incident_register import IncidentRegister, ensure_schema
from exchanged.commandline import DEFAULT_CONFIG, CommandParser, open_journal, run_command
from exchanged.config import Config, load_config
from exchanged.core.incident import Incident, OrgInfo, incident_to_dict, render_ap_form
from exchanged.errors import EXIT_OK

__all__ = ["incidents_main"]

_PROG = "exchanged incidents"


def _actor() -> str:
    return os.environ.get("SUDO_USER") or getpass.getuser()


def _yes_no(text: str) -> bool:
    if text not in ("yes", "no"):
        raise argparse.ArgumentTypeError("answer yes or no")
    return text == "yes"


def _parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog=_PROG, description="The security-incident register (AVG 33(5)).")
    parser.add_argument(
        "-c", "--config", type=Path, default=DEFAULT_CONFIG, metavar="CONFIG",
        help="configuration file (default: %(default)s)",
    )  # fmt: skip
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = sub.add_parser("list", help="all incidents, newest first")
    listing.add_argument("--open", action="store_true", help="only those not closed")
    listing.add_argument("--json", action="store_true")
    show = sub.add_parser("show", help="one incident in full")
    show.add_argument("id")
    show.add_argument("--json", action="store_true")
    assess = sub.add_parser("assess", help="record the decision on notifying the AP")
    assess.add_argument("id")
    assess.add_argument("--notify-ap", type=_yes_no, required=True, metavar="yes|no")
    assess.add_argument("--reason", required=True, help="the rationale (no personal data)")
    assess.add_argument("--subjects-informed", type=_yes_no, metavar="yes|no")
    assess.add_argument("--subjects-reason", default="", help="why (not) inform (art. 34)")
    report = sub.add_parser("report", help="record the AP's reference after reporting")
    report.add_argument("id")
    report.add_argument("--reference", required=True)
    close = sub.add_parser("close", help="close an assessed incident")
    close.add_argument("id")
    export = sub.add_parser("export", help="a draft of the AP's data-breach form")
    export.add_argument("id")
    export.add_argument("--format", choices=["md", "json"], default="md")
    return parser


def _line(incident: Incident, now: datetime) -> str:
    left = incident.deadline - now
    hours = left.total_seconds() / 3600
    clock = f"{hours:.0f} h left" if hours >= 0 else f"{-hours:.0f} h past deadline"
    if incident.ap is not None:
        clock = "AP decision recorded"
    partners = ",".join(incident.partners) or "-"
    return (
        f"{incident.id}  {incident.status.value:<12} {incident.severity.value:<8} "
        f"{incident.kind.value:<24} x{incident.count:<4} {partners:<14} "
        f"deadline {incident.deadline:%Y-%m-%d %H:%M}Z ({clock})"
    )


def _run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    journal = open_journal(config.state_dir)
    try:
        with journal.lock:
            ensure_schema(journal.connection)
            register = IncidentRegister(journal.connection)
            return _ACTIONS[args.action](args, register, config, datetime.now(UTC))
    finally:
        journal.close()


def _list(args: argparse.Namespace, register: IncidentRegister, _c: Config, now: datetime) -> int:
    incidents = register.list(open_only=args.open)
    if args.json:
        print(json.dumps([incident_to_dict(i) for i in incidents], indent=2, default=str))
        return EXIT_OK
    if not incidents:
        print("no incidents" + (" open" if args.open else ""))
    for incident in incidents:
        print(_line(incident, now))
    return EXIT_OK


def _show(args: argparse.Namespace, register: IncidentRegister, _c: Config, now: datetime) -> int:
    incident = register.get(args.id)
    history = register.history(args.id)
    if args.json:
        document = {"incident": incident_to_dict(incident), "history": history}
        print(json.dumps(document, indent=2, default=str))
        return EXIT_OK
    print(_line(incident, now))
    for key, value in incident_to_dict(incident).items():
        if value not in (None, "", [], ()):
            print(f"  {key}: {value}")
    print("  history:")
    for entry in history:
        print(f"    {entry['at']}  {entry['actor']:<12} {entry['action']}")
    return EXIT_OK


def _export(args: argparse.Namespace, register: IncidentRegister, c: Config, _n: datetime) -> int:
    org = c.organisation
    info = OrgInfo(
        name=org.name, party_id=c.party, contact_role=org.contact_role,
        contact_email=org.contact_email, contact_phone=org.contact_phone,
    )  # fmt: skip
    fmt: Literal["md", "json"] = "json" if args.format == "json" else "md"
    sys.stdout.write(render_ap_form(register.get(args.id), info, fmt))
    return EXIT_OK


def _step(args: argparse.Namespace, register: IncidentRegister, _c: Config, now: datetime) -> int:
    actor = _actor()
    if args.action == "assess":
        incident = register.assess(
            args.id, notify_ap=args.notify_ap, reason=args.reason,
            subjects_informed=args.subjects_informed, actor=actor, now=now,
            subjects_rationale=args.subjects_reason,
        )  # fmt: skip
    elif args.action == "report":
        incident = register.report(args.id, args.reference, actor, now)
    else:
        incident = register.close(args.id, actor, now)
    print(f"{incident.id}: {incident.status.value} (by {actor})")
    return EXIT_OK


_ACTIONS: dict[str, Callable[[argparse.Namespace, IncidentRegister, Config, datetime], int]] = {
    "list": _list,
    "show": _show,
    "export": _export,
    "assess": _step,
    "report": _step,
    "close": _step,
}


def incidents_main(argv: list[str]) -> int:
    return run_command(_PROG, _parser(), _run, argv)
