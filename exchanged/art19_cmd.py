"""AVG art. 19: ``exchanged correct``, ``exchanged withdraw`` and ``exchanged reopen``.

``correct FILE [--category ID]``
    Corrected records for subjects sent before. The file is checked by the policy
    engine exactly like an export; any error refuses the whole file (exit 3). Each
    record goes, as one ``correction`` envelope per partner, to every partner the
    disclosure register says received that subject, and to no one else. A subject
    nobody received from us, or whose processing ended, is an error (row number only).

``withdraw --bsn BSN --ground GROUND``
    Processing of a subject ends: a ``withdrawal`` envelope goes to every partner that
    received the subject, processing ends here (a later export of the subject is
    refused), and where the ground requires it the subject's plaintext is purged from
    the inbox archive and the ciphertext of its receipted messages from the spool.

``reopen --bsn BSN``
    An operator's decision to process the subject again; the history stays.

These commands run beside the daemon, as the same user, on the same journal: they
seal each message into ``<state_dir>/spool/<id>.pgp`` and commit it to the journal in
state ``sealed`` (with its disclosure-register rows in the same transaction); the
running daemon picks up sealed messages every second, uploads them and collects the
partner's receipt like for any export. Nothing here touches the network.

Output names partners, message ids and counts; never a BSN, name or other value.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from exchanged.commandline import (
    BSN_HELP,
    DEFAULT_CONFIG,
    CommandParser,
    open_journal,
    read_bsn,
    run_command,
)
from exchanged.core.disclosure import GROUNDS
from exchanged.errors import EXIT_OK, EXIT_REJECTED, OperatorInputError

if TYPE_CHECKING:
    from exchanged.adapters.disclosures import DisclosureRegister, SubjectReport, Termination
    from exchanged.adapters.gpg import Gpg
    from exchanged.adapters.journal import Journal
    from exchanged.config import Config
    from exchanged.core.model import Record
    from exchanged.core.policy import RowError, Verdict
    from exchanged.purge import SubjectPurge
    from exchanged.sending import Sender

__all__ = ["correct_main", "reopen_main", "withdraw_main"]


# Row errors only a correction can have; the rest are explained by rejection_report.
_EXTRA_EXPLANATIONS: Final = {
    "not-disclosed": (
        "Dit kind is nooit aan een partner verstuurd: er valt niets te corrigeren. "
        "Stuur het als gewone export als het gedeeld moet worden.",
        "This child was never sent to a partner: there is nothing to correct. Send it "
        "as an ordinary export if it must be shared.",
    ),
}


# -- shared -------------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--config", type=Path, default=DEFAULT_CONFIG, metavar="CONFIG",
        help="configuration file (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--hash-key-file", type=Path, metavar="FILE",
        help="the BSN hashing key (default: the systemd credential bsn-hash-key)",
    )  # fmt: skip


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class _Context:
    config: Config
    journal: Journal
    register: DisclosureRegister
    key: bytes


@contextlib.contextmanager
def _opened(args: argparse.Namespace) -> Iterator[_Context]:
    """Configuration, hashing key, and the daemon's journal with the register."""
    from exchanged.adapters.disclosures import DisclosureRegister, ensure_schema, load_hash_key
    from exchanged.config import load_config

    config = load_config(args.config)
    key = load_hash_key(args.hash_key_file)
    journal = open_journal(config.state_dir)
    try:
        with journal.lock:
            ensure_schema(journal.connection)
        register = DisclosureRegister(journal.connection, lock=journal.lock)
        # These commands look subjects up record by record: with the recent rows moved
        # into the subject index first, each look-up is an index search, not a scan.
        while register.settle():
            pass
        yield _Context(config, journal, register, key)
    finally:
        journal.close()


def _gpg(config: Config) -> Gpg:
    from exchanged.adapters.gpg import Gpg
    from exchanged.credentials import GPG_KEY_CREDENTIAL, read_credential

    passphrase = read_credential(GPG_KEY_CREDENTIAL, required=False)
    return Gpg(config.gpg_home, config.fingerprint, passphrase=passphrase)


class _QuietLog:
    """The Sender's log: the CLI answers on stdout; the daemon logs the upload and the
    receipt of what is sealed here, and the journal records every state."""

    def info(self, *_args: Any, **_kwargs: Any) -> None:
        return None

    warning = error = info


def _ignore_enqueue(_partner: str, _message_id: str) -> None:
    """The running daemon enqueues sealed messages itself (service._resume)."""


# -- correct ------------------------------------------------------------------------


def _correct_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="exchanged correct",
        description="Send corrected records (AVG art. 19) to every partner that received "
        "these children. The file is checked by the same policy as an export.",
    )
    parser.add_argument("file", type=Path, metavar="FILE", help="the corrected records (CSV/XLSX)")
    parser.add_argument(
        "--category", metavar="ID",
        help="absoluut-verzuim, langdurig-verzuim or vrijstelling-5a (or a Categorie column)",
    )  # fmt: skip
    _common(parser)
    return parser


def _error_lines(errors: Iterable[RowError]) -> list[str]:
    from exchanged.rejection_report import error_lines

    lines: list[str] = []
    for error in errors:
        if error.code in _EXTRA_EXPLANATIONS:
            nl, en = _EXTRA_EXPLANATIONS[error.code]
            where = "bestand/file" if error.row == 0 else f"rij/row {error.row}"
            lines += [f"- {where}: {error.code}", f"    NL: {nl}", f"    EN: {en}"]
        else:
            lines += error_lines([error])
    return lines


def _refuse(prog: str, what: str, errors: list[RowError], total: int) -> int:
    print(f"{prog}: {what}: {total} error(s); nothing was sent")
    for line in _error_lines(errors):
        print(line)
    return EXIT_REJECTED


def _check_file(
    path: Path, category: str | None, config: Config
) -> tuple[Verdict, list[tuple[int, Record]]]:
    """The policy verdict on the whole file, and its records with their row numbers."""
    from exchanged.adapters.readers import open_table
    from exchanged.core.policy import RecordChecker
    from exchanged.policyfile import load_policy

    policy = load_policy(config.policy_file)
    records: list[tuple[int, Record]] = []
    with open_table(path) as table:
        # No routing: a correction goes where the subject went, which only the
        # register knows, never where the corrected address would route it now.
        checker = RecordChecker(
            policy, table.header, category=category, today=datetime.now(UTC).date()
        )
        for number, row in enumerate(table.rows, start=1):
            record = checker.check(number, row)
            if record is not None:
                records.append((number, record))
        verdict = checker.finish()
    return verdict, records


def _run_correct(args: argparse.Namespace) -> int:
    from exchanged.core.disclosure import bsn_hash
    from exchanged.core.policy import PolicyInputError, RowError

    prog = "exchanged correct"
    with _opened(args) as ctx:
        try:
            verdict, records = _check_file(args.file, args.category, ctx.config)
        except PolicyInputError as exc:
            raise OperatorInputError(f"the file cannot be checked: {exc}") from None
        if not verdict.accepted:
            total = max(verdict.error_count, len(verdict.errors))
            return _refuse(prog, "correction refused by the policy", list(verdict.errors), total)
        hashes = {number: bsn_hash(ctx.key, record.fields["bsn"]) for number, record in records}
        ended = ctx.register.ended_among(hashes.values())
        errors: list[RowError] = []
        per_partner: dict[str, list[tuple[Record, str]]] = {}
        for number, record in records:
            digest = hashes[number]
            if digest in ended:
                errors.append(RowError(number, "bsn", "processing-ended"))
                continue
            partners = ctx.register.partners_for(digest)
            if not partners:
                errors.append(RowError(number, "bsn", "not-disclosed"))
                continue
            for partner in sorted(partners):
                per_partner.setdefault(partner, []).append((record, digest))
        unknown = sorted(p for p in per_partner if p not in ctx.config.partners)
        if unknown:
            raise OperatorInputError(
                f"the register names partner(s) {', '.join(unknown)} that this configuration "
                "no longer has; restore the partner's configuration to send the correction"
            )
        if errors:
            return _refuse(prog, "correction refused", errors, len(errors))
        category = verdict.category
        assert category is not None  # noqa: S101 -- an accepted verdict has its category
        sender = _sender(ctx)
        sent: list[tuple[str, str, int]] = []
        for partner, items in sorted(per_partner.items()):
            message_id = sender.send_records(
                partner, "correction", category, [r for r, _ in items],
                disclosed=[h for _, h in items],
            )  # fmt: skip
            sent.append((partner, message_id, len(items)))
    print(
        f"Correction ({category}, {len(records)} record(s)) sealed for "
        f"{len(sent)} partner(s); the daemon uploads it and collects the receipt:"
    )
    for partner, message_id, count in sent:
        print(f"  {partner:<14} {count} record(s)  message {message_id}")
    return EXIT_OK


def _sender(ctx: _Context) -> Sender:
    """The daemon's send path, used from this process: it seals into the daemon's
    journal and spool, and the running daemon uploads what it finds sealed."""
    from exchanged.policyfile import load_policy
    from exchanged.sending import Sender

    return Sender(
        ctx.config, ctx.journal, _gpg(ctx.config), load_policy(ctx.config.policy_file),
        clock=time.time, log=_QuietLog(), enqueue_upload=_ignore_enqueue,
        register=ctx.register, bsn_hash_key=ctx.key,
    )  # fmt: skip


def correct_main(argv: list[str]) -> int:
    """``exchanged correct FILE [--category ID] [-c CONFIG]``; returns the exit code."""
    return run_command("exchanged correct", _correct_parser(), _run_correct, argv)


# -- withdraw -----------------------------------------------------------------------


def _withdraw_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="exchanged withdraw",
        description="End processing of one person: tell every partner that received them "
        "(AVG art. 19), stop sending them, and purge local copies where the ground requires.",
    )
    parser.add_argument("--bsn", metavar="BSN", help=BSN_HELP)
    parser.add_argument(
        "--ground", required=True, choices=GROUNDS, metavar="GROUND",
        help="one of: " + ", ".join(GROUNDS),
    )  # fmt: skip
    _common(parser)
    return parser


def _already_told(report: SubjectReport, ground: str) -> set[str]:
    """Partners that already know this ground for this subject: those we sent a
    withdrawal since the last re-open while this ground stands, and the partner whose
    own withdrawal on this ground ended processing here. A re-run after a crash (or
    twice by mistake) then sends nothing twice; a different ground (an upheld
    objection becoming an erasure request) is sent again to everyone."""
    ended = report.ended
    if ended is None or ended.ground != ground:
        return set()
    reopened = max((t.reopened_at for t in report.terminations if t.reopened_at), default=0.0)
    told = {
        d.partner
        for d in report.disclosures
        if d.direction == "sent" and d.kind == "withdrawal" and d.at >= reopened
    }
    if ended.ended_by != "local":
        told.add(ended.ended_by)
    return told


def _run_withdraw(args: argparse.Namespace) -> int:
    from exchanged.core.disclosure import Ground, bsn_hash, withdrawal_body
    from exchanged.core.machine import OutState
    from exchanged.purge import purge_subject

    bsn = read_bsn(args.bsn)
    ground = Ground(args.ground)
    with _opened(args) as ctx:
        subject = bsn_hash(ctx.key, bsn)
        report = ctx.register.subject(subject)
        told = _already_told(report, ground.value)
        partners = sorted(ctx.register.partners_for(subject) - told)
        unknown = [p for p in partners if p not in ctx.config.partners]
        if unknown:
            raise OperatorInputError(
                f"the register names partner(s) {', '.join(unknown)} that this configuration "
                "no longer has; restore the partner's configuration to send the withdrawal"
            )
        sent: list[tuple[str, str]] = []
        if partners:
            sender = _sender(ctx)
            body = withdrawal_body(bsn, ground.value, datetime.now(UTC).date())
            for partner in partners:
                mid = sender.send_envelope(partner, "withdrawal", body, disclosed=[subject])
                sent.append((partner, mid))
        # After the notices are sealed: a crash in between leaves processing active,
        # and the re-run sends what is missing and then ends it.
        newly_ended = ctx.register.end_processing(subject, ground.value, time.time())
        standing = ctx.register.subject(subject).ended
        purged = None
        if ground.purges:
            carried = [
                m
                for m in ctx.register.messages_for(subject, "sent")
                if (row := ctx.journal.outgoing(m)) is not None
                and row["state"] == OutState.RECEIPTED
            ]
            purged = purge_subject(ctx.config.inbox, ctx.config.state_dir / "spool", bsn, carried)
    _print_withdrawal(
        ground.value, sent=sent, told=told, newly_ended=newly_ended, standing=standing,
        purged=purged, known=report.known,
    )  # fmt: skip
    return EXIT_OK


def _print_withdrawal(
    ground: str,
    *,
    sent: list[tuple[str, str]],
    told: set[str],
    newly_ended: bool,
    standing: Termination | None,
    purged: SubjectPurge | None,
    known: bool,
) -> None:
    lines = [f"Withdrawal ({ground}): {len(sent)} partner(s) informed"]
    lines += [f"  {partner:<14} message {mid}" for partner, mid in sent]
    if told:
        lines.append(f"  already informed earlier: {', '.join(sorted(told))}")
    if not sent and not told:
        lines.append(
            "  no partner received this person from us"
            + ("" if known else " (the register has no entry)")
        )
    if newly_ended:
        lines.append(f"Processing: ended here, ground {ground}")
    elif standing is not None:
        lines.append(
            f"Processing: already ended {_iso(standing.at)}, ground {standing.ground}; "
            "that termination stands"
        )
    if purged is None:
        lines.append(
            "Local copies: kept, restricted (bezwaar: erase with a withdrawal on ground "
            "verwijderverzoek if the objection is upheld)"
        )
    else:
        lines.append(
            f"Local copies purged: {purged.inbox_rows} inbox row(s), "
            f"{purged.inbox_files_rewritten} inbox file(s) rewritten, "
            f"{purged.inbox_files_removed} removed, {purged.spool_files} spool file(s)"
        )
    if sent:
        lines.append("The daemon uploads the notices and collects the receipts.")
    print("\n".join(lines))


def withdraw_main(argv: list[str]) -> int:
    """``exchanged withdraw --bsn BSN --ground GROUND [-c CONFIG]``; the exit code."""
    return run_command("exchanged withdraw", _withdraw_parser(), _run_withdraw, argv)


# -- reopen -------------------------------------------------------------------------


def _reopen_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="exchanged reopen",
        description="Re-open processing of one person whose processing ended, so that "
        "exports may carry them again. Partners are not told; the history stays.",
    )
    parser.add_argument("--bsn", metavar="BSN", help=BSN_HELP)
    _common(parser)
    return parser


def _run_reopen(args: argparse.Namespace) -> int:
    from exchanged.core.disclosure import bsn_hash

    bsn = read_bsn(args.bsn)
    with _opened(args) as ctx:
        subject = bsn_hash(ctx.key, bsn)
        ended = ctx.register.subject(subject).ended
        if ended is None or not ctx.register.reopen(subject, time.time()):
            raise OperatorInputError("processing of this person has not ended; nothing to re-open")
    by = "this party" if ended.ended_by == "local" else f"partner {ended.ended_by}"
    print(
        f"Processing re-opened (ended {_iso(ended.at)}, ground {ended.ground}, by {by}).\n"
        "Exports may carry this person again; partners are not told until you send one."
    )
    return EXIT_OK


def reopen_main(argv: list[str]) -> int:
    """``exchanged reopen --bsn BSN [-c CONFIG]``; returns the exit code."""
    return run_command("exchanged reopen", _reopen_parser(), _run_reopen, argv)
