"""``exchanged subject --bsn BSN [--json] [-c CONFIG]``: a data subject's access request.

What this party sent to and received from whom about one person (AVG art. 15 and the
accountability of art. 5(2)): categories, dates, message ids, and whether processing
has ended and on what ground. It works from the disclosure register alone, which
holds keyed hashes, so the answer can never include anyone else. The BSN given is
not echoed back: the operator knows it, the terminal's scroll-back need not.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from exchanged.commandline import (
    BSN_HELP,
    DEFAULT_CONFIG,
    CommandParser,
    open_journal,
    read_bsn,
    run_command,
)
from exchanged.errors import EXIT_OK

if TYPE_CHECKING:
    from exchanged.adapters.disclosures import SubjectReport

__all__ = ["subject_json", "subject_main"]

_PROG = "exchanged subject"


def _parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog=_PROG,
        description="Show what this party sent to and received from whom about one person.",
    )
    parser.add_argument("--bsn", metavar="BSN", help=BSN_HELP)
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument(
        "-c", "--config", type=Path, default=DEFAULT_CONFIG, metavar="CONFIG",
        help="configuration file (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--hash-key-file", type=Path, metavar="FILE",
        help="the BSN hashing key (default: the systemd credential bsn-hash-key)",
    )  # fmt: skip
    return parser


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def subject_json(report: SubjectReport) -> dict[str, object]:
    ended = report.ended
    return {
        "known": report.known,
        "disclosures": [
            {
                "direction": d.direction,
                "partner": d.partner,
                "kind": d.kind,
                "category": d.category,
                "message_id": d.message_id,
                "at": _iso(d.at),
            }
            for d in report.disclosures
        ],
        "processing": {
            "ended": ended is not None,
            "ground": ended.ground if ended else None,
            "ended_at": _iso(ended.at) if ended else None,
            "ended_by": ended.ended_by if ended else None,
        },
        "terminations": [
            {
                "ground": t.ground,
                "at": _iso(t.at),
                "ended_by": t.ended_by,
                "reopened_at": _iso(t.reopened_at) if t.reopened_at is not None else None,
            }
            for t in report.terminations
        ],
    }


def _text(report: SubjectReport) -> str:
    if not report.known:
        return "Nothing was sent or received about this person (the register has no entry)."
    lines: list[str] = []
    for direction, title, word in (("sent", "Sent", "to"), ("received", "Received", "from")):
        entries = [d for d in report.disclosures if d.direction == direction]
        lines.append(f"{title}: {len(entries)}")
        lines += [
            f"  {_iso(d.at)}  {word} {d.partner:<14} {d.kind:<11} {d.category or '-':<18} "
            f"message {d.message_id}"
            for d in entries
        ]
    ended = report.ended
    if ended is None:
        lines.append("Processing: active")
    else:
        by = "this party" if ended.ended_by == "local" else f"partner {ended.ended_by}"
        lines.append(f"Processing: ended {_iso(ended.at)}, ground {ended.ground} (by {by})")
    for t in report.terminations:
        if t.reopened_at is not None:
            lines.append(
                f"  earlier: ended {_iso(t.at)} ({t.ground}), re-opened {_iso(t.reopened_at)}"
            )
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    from exchanged.adapters.disclosures import DisclosureRegister, ensure_schema, load_hash_key
    from exchanged.config import load_config
    from exchanged.core.disclosure import bsn_hash

    bsn = read_bsn(args.bsn)
    config = load_config(args.config)
    key = load_hash_key(args.hash_key_file)
    journal = open_journal(config.state_dir)
    try:
        with journal.lock:
            ensure_schema(journal.connection)
        report = DisclosureRegister(journal.connection, lock=journal.lock).subject(
            bsn_hash(key, bsn)
        )
    finally:
        journal.close()
    if args.json:
        print(json.dumps(subject_json(report), ensure_ascii=False))
    else:
        print(_text(report))
    return EXIT_OK


def subject_main(argv: list[str]) -> int:
    """Run the subject command; returns the exit code."""
    return run_command(_PROG, _parser(), _run, argv)
