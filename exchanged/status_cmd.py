"""``exchanged status [--json] [-c CONFIG]``: what the daemon owes and is owed, per partner.

Reads the journal through a read-only SQLite connection (``mode=ro``), so it is safe to
run while the daemon works: it never takes the write lock and cannot change anything.
Only counts, message states, incident ids and key dates are shown: never personal data.

``read_snapshot`` is shared with the metrics writer; ``key_states`` with ``keys list``,
``doctor`` and the metrics writer, so all of them say the same thing about expiry.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from exchanged.commandline import DEFAULT_CONFIG, CommandParser, run_command
from exchanged.config import Config, load_config
from exchanged.errors import EXIT_OK, ExchangedError, LocalSystemError

__all__ = [
    "DEFAULT_CONFIG",
    "KeyState",
    "OutCounts",
    "Snapshot",
    "check_gnupg_home",
    "key_states",
    "read_snapshot",
    "status_main",
]

_PROG: Final = "exchanged status"
WARN_DAYS: Final = 30
JOURNAL_NAME: Final = "journal.sqlite"

# Journal states (core/machine.py) grouped the way an operator asks about them.
_GROUPS: Final[Mapping[str, str]] = {
    "detected": "queued",
    "minimised": "queued",
    "sealed": "in_flight",
    "uploaded": "awaiting_receipt",
    "overdue": "overdue",
    "receipted": "receipted",
    "refused": "refused",
    "rejected": "rejected",
}
OUT_GROUPS: Final = (
    "queued", "in_flight", "awaiting_receipt", "overdue", "receipted", "refused", "rejected",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class OpenIncident:
    id: str
    kind: str
    status: str
    partners: tuple[str, ...]
    detected_at: datetime
    deadline: datetime
    awaiting_ap: bool


@dataclass(slots=True)
class OutCounts:
    groups: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUT_GROUPS, 0))
    last_success: float | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything status and metrics report, read in one go."""

    outgoing: dict[str, OutCounts]
    by_state: dict[tuple[str, str, str], int]  # (partner, direction, state) -> n
    incoming: dict[str, dict[str, int]]
    latencies: dict[str, list[float]]  # partner -> created->receipted seconds
    incidents: list[OpenIncident] | None  # None: no incident register in this journal
    journal_found: bool


# -- keys (shared with keys list, doctor and metrics) ----------------------------------


@dataclass(frozen=True, slots=True)
class KeyState:
    """One configured key as the GnuPG home sees it now."""

    role: str  # "own" or "partner"
    owner: str  # party id
    fingerprint: str
    present: bool
    usable: bool
    revoked: bool
    expired: bool
    expires: datetime | None
    days_left: int | None

    @property
    def problem(self) -> str | None:
        """A one-line warning for operators, or None when all is well."""
        if not self.present:
            return f"{self.role} key of {self.owner} ({self.fingerprint}) is not in the GnuPG home"
        if self.revoked:
            return f"{self.role} key of {self.owner} is revoked"
        if self.expired or (self.days_left is not None and self.days_left < 0):
            return f"{self.role} key of {self.owner} has expired"
        if not self.usable:
            return f"{self.role} key of {self.owner} cannot sign and encrypt"
        if self.days_left is not None and self.days_left <= WARN_DAYS:
            return f"{self.role} key of {self.owner} expires in {self.days_left} days"
        return None

    @property
    def failing(self) -> bool:
        """Unusable now (as opposed to merely expiring soon)."""
        return not self.present or not self.usable or self.revoked or self.expired

    def as_dict(self) -> dict[str, object]:
        return {
            "role": self.role,
            "party": self.owner,
            "fingerprint": self.fingerprint,
            "present": self.present,
            "usable": self.usable,
            "expires": self.expires.isoformat() if self.expires else None,
            "days_left": self.days_left,
            "warning": self.problem,
        }


def check_gnupg_home(home: Path) -> list[str]:
    """Problems with a GnuPG home's folder: missing, not 0700, not ours."""
    try:
        info = home.stat()
    except OSError as exc:
        return [f"GnuPG home {home} cannot be read: {exc.strerror}"]
    problems: list[str] = []
    if not stat.S_ISDIR(info.st_mode):
        problems.append(f"GnuPG home {home} is not a folder")
    if info.st_uid != os.geteuid():
        problems.append(f"GnuPG home {home} is not owned by this user (uid {info.st_uid})")
    if stat.S_IMODE(info.st_mode) & 0o077:
        problems.append(
            f"GnuPG home {home} has mode {stat.S_IMODE(info.st_mode):04o}; chmod 700 it"
        )
    return problems


def key_states(config: Config, now: datetime) -> list[KeyState]:
    """Own key first, then each partner's, as pinned in ``config``."""
    from exchanged.adapters.gpg import Gpg

    gpg = Gpg(config.gpg_home, config.fingerprint)
    wanted = [("own", config.party, config.fingerprint)] + [
        ("partner", p.id, p.fingerprint) for p in config.partners.values()
    ]
    states: list[KeyState] = []
    for role, owner, fpr in wanted:
        info = gpg.key_info(fpr)
        if info is None:
            states.append(KeyState(role, owner, fpr, False, False, False, False, None, None))
            continue
        days = None if info.expires is None else int((info.expires - now).total_seconds() // 86400)
        states.append(
            KeyState(role, owner, fpr, True, info.usable, info.revoked, info.expired,
                     info.expires, days)
        )  # fmt: skip
    return states


def _connect_ro(path: Path) -> sqlite3.Connection:
    # mode=ro: no write lock, no schema changes; WAL readers do not block the daemon.
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)


def read_snapshot(config: Config, journal: Path, now: float) -> Snapshot:
    """Counts from the journal at ``journal``; an absent journal reads as empty."""
    outgoing = {p: OutCounts() for p in config.partners}
    by_state: dict[tuple[str, str, str], int] = {}
    incoming: dict[str, dict[str, int]] = {p: {} for p in config.partners}
    latencies: dict[str, list[float]] = {p: [] for p in config.partners}
    if not journal.exists():
        return Snapshot(outgoing, by_state, incoming, latencies, [], journal_found=False)
    deadline = config.limits.receipt_deadline_seconds
    try:
        with contextlib.closing(_connect_ro(journal)) as db:
            for partner, state, uploaded, created, receipted in db.execute(
                "SELECT partner, state, uploaded_at, created_at, receipted_at FROM outgoing"
                " WHERE kind IS NOT 'receipt'"
            ):
                counts = outgoing.setdefault(partner, OutCounts())
                group = _GROUPS.get(state, state)
                # The daemon marks overdue only while it runs; a stopped daemon's
                # late messages must not look merely "awaiting".
                if state == "uploaded" and uploaded is not None and now - uploaded > deadline:
                    group = "overdue"
                counts.groups[group] = counts.groups.get(group, 0) + 1
                key = (partner, "out", state)
                by_state[key] = by_state.get(key, 0) + 1
                if state == "receipted" and receipted is not None:
                    latencies.setdefault(partner, []).append(max(0.0, receipted - created))
                    if counts.last_success is None or receipted > counts.last_success:
                        counts.last_success = receipted
            for partner, state, n in db.execute(
                "SELECT partner, state, COUNT(*) FROM incoming"
                " WHERE kind IS NOT 'receipt' GROUP BY partner, state"
            ):
                incoming.setdefault(partner, {})[state] = n
                by_state[(partner, "in", state)] = n
            incidents = _open_incidents(db)
    except sqlite3.Error as exc:
        raise LocalSystemError(f"cannot read the journal {journal}: {exc}") from None
    return Snapshot(outgoing, by_state, incoming, latencies, incidents, journal_found=True)


def _open_incidents(db: sqlite3.Connection) -> list[OpenIncident] | None:
    present = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'incident_history'"
    ).fetchone()
    if present is None:
        return None
    from exchanged.adapters.incident_register import IncidentRegister

    return [
        OpenIncident(
            id=i.id,
            kind=i.kind.value,
            status=i.status.value,
            partners=i.partners,
            detected_at=i.detected_at,
            deadline=i.deadline,
            awaiting_ap=i.awaiting_ap,
        )
        for i in IncidentRegister(db).list(open_only=True)
    ]


# -- presentation ------------------------------------------------------------------------


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="seconds")


def _keys_or_error(config: Config, now: datetime) -> tuple[list[KeyState], str | None]:
    try:
        return key_states(config, now), None
    except ExchangedError as exc:
        return [], exc.message


def status_json(config: Config, snap: Snapshot, keys: list[KeyState], key_error: str | None,
                now: datetime) -> dict[str, Any]:  # fmt: skip
    partners: dict[str, dict[str, Any]] = {}
    for pid in sorted(set(snap.outgoing) | set(snap.incoming)):
        out = snap.outgoing.get(pid, OutCounts())
        partners[pid] = {
            **out.groups,
            "last_success": _iso(out.last_success),
            "incoming": dict(sorted(snap.incoming.get(pid, {}).items())),
        }
    warnings = [k.problem for k in keys if k.problem]
    if key_error:
        warnings.append(key_error)
    for pid, entry in partners.items():
        if entry["overdue"]:
            warnings.append(f"{entry['overdue']} message(s) to {pid} overdue for a receipt")
    incidents = None
    if snap.incidents is not None:
        incidents = [
            {
                "id": i.id, "kind": i.kind, "status": i.status, "partners": list(i.partners),
                "detected_at": i.detected_at.isoformat(timespec="seconds"),
                "deadline": i.deadline.isoformat(timespec="seconds"),
                "awaiting_ap": i.awaiting_ap,
                "hours_left": round((i.deadline - now).total_seconds() / 3600, 1),
            }
            for i in snap.incidents
        ]  # fmt: skip
    return {
        "party": config.party,
        "at": now.isoformat(timespec="seconds"),
        "journal": snap.journal_found,
        "partners": partners,
        "incidents": incidents,
        "keys": [k.as_dict() for k in keys],
        "warnings": warnings,
    }


def _print_text(data: dict[str, Any]) -> None:
    print(f"party {data['party']} at {data['at']}")
    if not data["journal"]:
        print("no journal yet: the daemon has not run with this configuration")
    partners = data["partners"]
    for pid, entry in partners.items():
        incoming = entry["incoming"]
        print(
            f"partner {pid}: queued {entry['queued']}, in flight {entry['in_flight']}, "
            f"awaiting receipt {entry['awaiting_receipt']}, overdue {entry['overdue']}, "
            f"receipted {entry['receipted']}, refused {entry['refused']}, "
            f"rejected {entry['rejected']}; last success {entry['last_success'] or 'never'}; "
            f"incoming {', '.join(f'{s} {n}' for s, n in incoming.items()) or 'none'}"
        )
    incidents = data["incidents"]
    if incidents is None:
        print("incidents: no incident register in this journal")
    else:
        print(f"open incidents: {len(incidents)}")
        for inc in incidents:
            due = f"AP deadline {inc['deadline']}" if inc["awaiting_ap"] else "AP decision made"
            print(f"  {inc['id']} {inc['kind']} ({inc['status']}): {due}")
    keys = data["keys"]
    for key in keys:
        print(f"key {key['role']} {key['party']} {key['fingerprint']} "
              f"expires {key['expires'] or 'never'}")  # fmt: skip
    warnings = data["warnings"]
    for warning in warnings:
        print(f"warning: {warning}")


def _parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog=_PROG, description="Queues, receipts, incidents and keys, per partner."
    )
    parser.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG, metavar="CONFIG",
                        help="configuration file (default: %(default)s)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return parser


def _run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    now = datetime.now(UTC)
    snap = read_snapshot(config, config.state_dir / JOURNAL_NAME, now.timestamp())
    keys, key_error = _keys_or_error(config, now)
    data = status_json(config, snap, keys, key_error, now)
    if args.json:
        print(json.dumps(data, ensure_ascii=False))
    else:
        _print_text(data)
    return EXIT_OK


def status_main(argv: list[str]) -> int:
    """Run ``exchanged status``; returns the exit code."""
    return run_command(_PROG, _parser(), _run, argv)
