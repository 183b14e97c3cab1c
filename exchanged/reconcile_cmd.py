"""``exchanged reconcile --partner ID [--as-of DATE] [--format csv|xlsx|json] [--ours FILE]``

Compares this party's current list per category with the partner's latest received
list (core/reconcile.py) and writes a report operators can work from into
``<state_dir>/reports/`` (folder 0700, files 0600). Only counts and the report's path
are printed; the report's name carries the parties and dates, never personal data.

Our list: per category, the latest export we sent to the partner (its operator file in
``sent/``, found through the journal), or the explicit ``--ours`` file(s). Either is
read through the policy engine exactly as the send path reads it, so what is compared
is what was (or would be) sent, never a column the covenant does not allow.

Their list: per category, the latest export received from the partner in the inbox,
with later corrections applied (a corrected record replaces the child's entry) and
later withdrawals applied (the child is no longer on their list).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from exchanged.commandline import DEFAULT_CONFIG, CommandParser, open_journal, run_command
from exchanged.core.reconcile import Entry, Reconciliation, Row, Status, reconcile
from exchanged.errors import EXIT_OK, OperatorInputError
from exchanged.inbox import INBOX_NAME

if TYPE_CHECKING:
    from exchanged.adapters.journal import Journal
    from exchanged.config import Config
    from exchanged.core.policy import Policy

__all__ = ["build_report", "reconcile_main", "write_report"]

_PROG = "exchanged reconcile"
FORMATS: Final = ("csv", "xlsx", "json")
_CORRECTION: Final = "correction-"
_ROW_FIELDS: Final = ("status", "bsn", "our_category", "their_category", "woonplaats",
                      "municipality")  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog=_PROG, description="Compare our list with a partner's latest list, by BSN."
    )
    parser.add_argument("--partner", required=True, metavar="ID", help="a configured partner id")
    parser.add_argument(
        "--as-of", type=date.fromisoformat, metavar="DATE",
        help="lists as they stood at the end of DATE (YYYY-MM-DD, UTC; default today)",
    )  # fmt: skip
    parser.add_argument("--format", choices=FORMATS, default="csv", help="report format")
    parser.add_argument(
        "--ours", type=Path, action="append", metavar="FILE",
        help="our list as an export file (CSV/XLSX, repeatable) instead of our latest exports",
    )  # fmt: skip
    parser.add_argument(
        "--category", metavar="ID", help="the category of --ours files without a category column"
    )
    parser.add_argument(
        "-c", "--config", type=Path, default=DEFAULT_CONFIG, metavar="CONFIG",
        help="configuration file (default: %(default)s)",
    )  # fmt: skip
    return parser


# -- our list -----------------------------------------------------------------------


def read_export(
    policy: Policy, path: Path, category: str | None, partner: str | None = None
) -> list[Entry]:
    """Entries of one export file, canonicalised by the policy engine. Rows the policy
    refuses are left out: they were never sent. A file whose rows name their category
    may hold several categories here (an explicit list), so one checker per category
    reads the rows and each keeps only the rows of its own category."""
    from exchanged.adapters.readers import open_table
    from exchanged.core.policy import PolicyInputError, RecordChecker

    with open_table(path) as table:
        header, rows = table.header, list(table.rows)
    try:
        RecordChecker(policy, header, category=category)
        categories = [category] if category else list(policy.allowed)
    except PolicyInputError as exc:
        raise OperatorInputError(f"{path.name}: {exc}") from None
    entries: list[Entry] = []
    for wanted in categories:
        checker = RecordChecker(policy, header, category=wanted, out_of_region="skip-and-report")
        for number, row in enumerate(rows, start=1):
            record = checker.check(number, row)
            if record is None or (partner and record.route not in (None, partner)):
                continue
            fields = record.fields
            entries.append(Entry(fields.get("bsn", ""), wanted, fields.get("woonplaats", "")))
    return entries


def our_latest(
    journal: Journal, policy: Policy, partner: str, until: float
) -> tuple[list[Entry], list[str]]:
    """Our latest export per category to ``partner``; also the categories whose file
    is no longer in ``sent/`` (removed by an operator or by retention)."""
    with journal.lock:
        rows = journal.connection.execute(
            "SELECT category, source_path FROM outgoing WHERE partner = ? AND kind = 'export'"
            " AND state IN ('sealed', 'uploaded', 'overdue', 'receipted') AND created_at <= ?"
            " ORDER BY created_at DESC",
            (partner, until),
        ).fetchall()
    latest: dict[str, str] = {}
    for row in rows:
        if row["category"] and row["source_path"]:
            latest.setdefault(row["category"], row["source_path"])
    entries: list[Entry] = []
    missing: list[str] = []
    for category, source in sorted(latest.items()):
        path = Path(source)
        if not path.is_file():
            missing.append(category)
            continue
        entries += read_export(policy, path, category, partner)
    return entries, missing


# -- their list ---------------------------------------------------------------------


def _kinds(journal: Journal | None, message_ids: Iterable[str]) -> dict[str, str]:
    if journal is None:
        return {}
    wanted = list(message_ids)
    found: dict[str, str] = {}
    with journal.lock:
        for mid in wanted:
            row = journal.connection.execute(
                "SELECT kind FROM incoming WHERE message_id = ?", (mid,)
            ).fetchone()
            if row is not None and row["kind"]:
                found[mid] = row["kind"]
    return found


def _read_inbox_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle, delimiter=";"))


@dataclass(frozen=True, slots=True)
class _InboxFile:
    stamp: str  # YYYYmmddTHHMMSSZ: sorts as text in time order
    kind: str  # export, correction, withdrawal (or another notice)
    category: str
    path: Path


def _inbox_files(
    inbox: Path, partner: str, until: str, journal: Journal | None
) -> list[_InboxFile]:
    """The partner's inbox files up to ``until``, oldest first, each with its kind.

    A CSV is an export unless its name says ``correction-<category>`` or the journal
    says it was a correction; a file the journal no longer knows is judged by its name.
    """
    found = []
    for path in inbox.iterdir() if inbox.is_dir() else ():
        match = INBOX_NAME.match(path.name)
        if match and match["partner"] == partner and match["stamp"] <= until:
            found.append((match, path))
    kinds = _kinds(journal, [m["mid"] for m, _ in found])
    files: list[_InboxFile] = []
    for match, path in found:
        what = match["what"]
        if what.startswith(_CORRECTION):  # named for the operator: "correction-<category>"
            kind, what = "correction", what.removeprefix(_CORRECTION)
        elif match["ext"] == "json":
            kind = what  # notices are named by their kind
        else:
            kind = kinds.get(match["mid"], "export")
        files.append(_InboxFile(match["stamp"], kind, what, path))
    return sorted(files, key=lambda f: (f.stamp, f.path.name))


def their_latest(
    inbox: Path, partner: str, until: str, journal: Journal | None
) -> tuple[list[Entry], int]:
    """The partner's list as of ``until`` (a ``YYYYmmddTHHMMSSZ`` stamp): per category
    its latest export, then later corrections and withdrawals applied in time order.
    Returns the entries and how many corrections and withdrawals were applied."""
    files = _inbox_files(inbox, partner, until, journal)
    latest = {f.category: f for f in files if f.kind == "export"}
    current: dict[str, tuple[Entry, str]] = {}  # bsn -> (entry, stamp of its source)
    for category, source in sorted(latest.items()):
        for row in _read_inbox_csv(source.path):
            entry = Entry(row.get("bsn", ""), category, row.get("woonplaats", ""))
            current.setdefault(entry.bsn, (entry, source.stamp))
    applied = 0
    for item in files:
        changes: list[tuple[str, str | None]]
        if item.kind == "correction":
            rows = _read_inbox_csv(item.path)
            changes = [(r.get("bsn", ""), r.get("woonplaats", "")) for r in rows]
        elif item.kind == "withdrawal":
            notice = json.loads(item.path.read_text(encoding="utf-8"))
            changes = [(str(notice.get("bsn", "")), None)]  # None: off the list
        else:
            continue
        for bsn, woonplaats in changes:
            if bsn in current and item.stamp > current[bsn][1]:
                applied += 1
                if woonplaats is None:
                    del current[bsn]
                else:
                    current[bsn] = (Entry(bsn, item.category, woonplaats), item.stamp)
    return [entry for entry, _ in current.values()], applied


# -- the report ---------------------------------------------------------------------


def build_report(
    result: Reconciliation, *, party: str, partner: str, as_of: date, generated: datetime
) -> dict[str, Any]:
    return {
        "party": party,
        "partner": partner,
        "as_of": as_of.isoformat(),
        "generated_at": generated.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "summary": result.summary(),
        "by_category": {c: asdict(n) for c, n in result.by_category.items()},
        "by_municipality": {m: asdict(n) for m, n in result.by_municipality.items()},
        "rows": [_row_values(r) for r in result.rows],
    }


def _row_values(row: Row) -> dict[str, str]:
    return {
        "status": row.status.value,
        "bsn": row.bsn,
        "our_category": row.our_category or "",
        "their_category": row.their_category or "",
        "woonplaats": row.woonplaats,
        "municipality": row.municipality,
    }


def _csv_bytes(rows: Iterable[Iterable[object]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    writer.writerows(rows)
    # UTF-8 with BOM and ';' is what Dutch Excel opens correctly by double-click.
    return buffer.getvalue().encode("utf-8-sig")


def _count_tables(report: dict[str, Any]) -> list[tuple[str, list[list[object]]]]:
    tables: list[tuple[str, list[list[object]]]] = []
    for title, key, first in (
        ("per category", "by_category", "category"),
        ("per municipality", "by_municipality", "municipality"),
    ):
        items: dict[str, dict[str, int]] = report[key]
        columns = list(next(iter(items.values()), {}).keys())
        table: list[list[object]] = [[first, *columns]]
        table += [[name, *values.values()] for name, values in items.items()]
        tables.append((title, table))
    tables.append(("summary", [["count", "value"], *report["summary"].items()]))
    return [(t, [list(r) for r in rows]) for t, rows in tables]


def write_report(report: dict[str, Any], folder: Path, stem: str, fmt: str) -> list[Path]:
    """Write the report in ``fmt``; returns the files written (0600, folder 0700)."""
    from exchanged.adapters.files import ensure_private_dir, write_atomic

    ensure_private_dir(folder).chmod(0o700)
    written: list[Path] = []
    if fmt == "json":
        target = folder / f"{stem}.json"
        write_atomic(target, [json.dumps(report, ensure_ascii=False, indent=2).encode()])
        written.append(target)
    elif fmt == "csv":
        target = folder / f"{stem}.csv"
        rows = [list(_ROW_FIELDS), *([r[f] for f in _ROW_FIELDS] for r in report["rows"])]
        write_atomic(target, [_csv_bytes(rows)])
        counts: list[list[object]] = []
        for title, table in _count_tables(report):
            counts += [[f"# {title}"], *table, []]
        counts_target = folder / f"{stem}_counts.csv"
        write_atomic(counts_target, [_csv_bytes(counts)])
        written += [target, counts_target]
    else:
        target = folder / f"{stem}.xlsx"
        write_atomic(target, [_xlsx_bytes(report)])
        written.append(target)
    return written


def _xlsx_bytes(report: dict[str, Any]) -> bytes:
    import openpyxl  # lazy: only this format needs it

    workbook = openpyxl.Workbook(write_only=True)
    for status in Status:
        sheet = workbook.create_sheet(status.value)
        sheet.append(list(_ROW_FIELDS))
        for row in report["rows"]:
            if row["status"] == status.value:
                sheet.append([row[f] for f in _ROW_FIELDS])
    for title, table in _count_tables(report):
        sheet = workbook.create_sheet(title)
        for values in table:
            sheet.append(values)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


# -- the command --------------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    from exchanged.config import load_config
    from exchanged.policyfile import load_policy

    config: Config = load_config(args.config)
    if args.partner not in config.partners:
        raise OperatorInputError(f"--partner {args.partner!r} is not a configured partner id")
    policy = load_policy(config.policy_file)
    now = datetime.now(UTC)
    as_of: date = args.as_of or now.date()
    end = datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC) + timedelta(days=1)
    journal_path = config.state_dir / "journal.sqlite"
    journal = open_journal(config.state_dir) if journal_path.exists() else None
    notes: list[str] = []
    try:
        if args.ours:
            ours = [e for f in args.ours for e in read_export(policy, f, args.category)]
        elif journal is None:
            raise OperatorInputError(f"no journal at {journal_path}; give our list with --ours")
        else:
            ours, missing = our_latest(journal, policy, args.partner, end.timestamp())
            if missing:
                notes.append(f"our export file is no longer in sent/ for: {', '.join(missing)}")
        stamp = (end - timedelta(seconds=1)).strftime("%Y%m%dT%H%M%SZ")
        theirs, applied = their_latest(config.inbox, args.partner, stamp, journal)
    finally:
        if journal is not None:
            journal.close()
    result = reconcile(ours, theirs, region=policy.region, categories=policy.allowed)
    report = build_report(
        result, party=config.party, partner=args.partner, as_of=as_of, generated=now
    )
    stem = f"reconcile_{config.party}_{args.partner}_{as_of:%Y%m%d}_{now:%Y%m%dT%H%M%SZ}"
    written = write_report(report, config.state_dir / "reports", stem, args.format)
    summary = result.summary()
    print(
        f"reconcile {config.party} vs {args.partner} as of {as_of.isoformat()}: "
        f"ours {len({e.bsn for e in ours})}, theirs {len({e.bsn for e in theirs})}, "
        + ", ".join(f"{k} {v}" for k, v in summary.items())
        + f", partner corrections/withdrawals applied {applied}"
    )
    for note in notes:
        print(f"note: {note}")
    for path in written:
        print(f"report: {path}")
    return EXIT_OK


def reconcile_main(argv: list[str]) -> int:
    """Run the reconcile command; returns the exit code."""
    return run_command(_PROG, _parser(), _run, argv)
