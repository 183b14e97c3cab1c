"""The send path for one operator file: read, minimise, seal, archive, hand to upload.

Order matters for crash safety (see core/machine.py): the journal learns of each
message before gpg starts on it, the ciphertext is complete in the spool before the
journal says ``sealed``, and the operator's file moves to ``sent/`` only after
every message made from it is sealed. A restart finds the file either still in the
outbox with nothing sealed (start again; the journal rows of the attempt are dropped)
or sealed (finish archiving and upload).

A message's plaintext never exists on disk: records stream from the policy engine
straight into gpg (``Gpg.begin_seal``), which encrypts them while the rest of the file
is still being read.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from exchanged.adapters.disclosures import DisclosureRegister
from exchanged.adapters.files import move_into, sha256_file, write_atomic
from exchanged.adapters.gpg import Gpg
from exchanged.adapters.gpg_run import PendingSeal
from exchanged.adapters.journal import Journal
from exchanged.adapters.readers import open_table
from exchanged.config import CATEGORY_FROM_COLUMN, CATEGORY_FROM_SUBFOLDER, Config, Outbox
from exchanged.core import envelope
from exchanged.core.disclosure import bsn_hash
from exchanged.core.machine import OutState
from exchanged.core.model import MessageId, Record
from exchanged.core.policy import Policy, PolicyInputError, RecordChecker, RowError, Verdict
from exchanged.disclosed import DisclosedHashes
from exchanged.errors import OperatorInputError
from exchanged.outbox import opened_export
from exchanged.rejection_report import render_rejection_report

__all__ = ["Sender"]

_PROGRESS_ROWS = 20_000
# Keyed BSN hashes are checked against the register this many at a time.
_HASH_BATCH = 10_000
_SEALED_OR_LATER = frozenset(
    {OutState.SEALED, OutState.UPLOADED, OutState.OVERDUE, OutState.RECEIPTED, OutState.REFUSED}
)


@dataclass(slots=True)
class _Group:
    """One message being written: all records for one (partner, category), streaming
    into the gpg run that seals it."""

    message_id: MessageId
    partner: str
    category: str
    seal: PendingSeal
    hashes: DisclosedHashes
    count: int = 0

    def drop(self) -> None:
        """Stop gpg and forget what was written (the attempt failed)."""
        self.seal.abandon()
        self.hashes.discard()


def _batches(pairs: Iterator[tuple[str, int]]) -> Iterator[list[tuple[str, int]]]:
    batch: list[tuple[str, int]] = []
    for pair in pairs:
        batch.append(pair)
        if len(batch) == _HASH_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


class Sender:
    def __init__(
        self,
        config: Config,
        journal: Journal,
        gpg: Gpg,
        policy: Policy,
        *,
        clock: Callable[[], float],
        log: Any,
        enqueue_upload: Callable[[str, str], None],
        register: DisclosureRegister | None = None,
        bsn_hash_key: bytes | None = None,
        progress: Callable[[], None] = lambda: None,
    ) -> None:
        if (register is None) != (bsn_hash_key is None):
            raise ValueError("the disclosure register needs the BSN hashing key, and back")
        self._progress = progress
        self._register = register
        self._hash_key = bsn_hash_key
        self._config = config
        self._journal = journal
        self._gpg = gpg
        self._policy = policy
        self._clock = clock
        self._log = log
        self._enqueue = enqueue_upload
        self._spool = config.state_dir / "spool"

    def take(self, path: Path, outbox: Outbox) -> None:
        """Process one settled file of ``outbox``. Raises LocalSystemError (and leaves
        the file where it is) when this machine is the problem."""
        finish = self.begin(path, outbox)
        if finish is not None:
            finish()

    def begin(self, path: Path, outbox: Outbox) -> Callable[[], None] | None:
        """``take`` in two steps: read and minimise now, the records streaming into gpg
        as they pass; the returned step (None when there is nothing left to do) waits
        for gpg and finishes. The service begins the next file before finishing this
        one, so gpg's last work on one export overlaps the reading of the next. Until
        the second step has run, the file is in the outbox and its messages are not
        sealed: a crash or a failure of either step starts the file over, as ``take``
        would."""
        with opened_export(path) as (key, source):
            return self._take(path, source, key, outbox)

    def _take(
        self, path: Path, source: Path, key: str, outbox: Outbox
    ) -> Callable[[], None] | None:
        """``path`` is where the file lies (to archive it); ``source`` reads the very
        file that was checked when it was opened."""
        previous = self._journal.outgoing_by_source(key)
        if any(row["state"] in _SEALED_OR_LATER for row in previous):
            # A crash after sealing, before archiving: finish the job, send nothing new.
            self._log.info("export_resumed", message_ids=[r["message_id"] for r in previous])
            for row in previous:  # sealed and registered before the crash: not needed now
                (self._spool / f"{row['message_id']}.hashes").unlink(missing_ok=True)
            self._archive(path, outbox, [r["message_id"] for r in previous], "sent")
            for row in previous:
                if row["state"] == OutState.SEALED:
                    self._enqueue(row["partner"], row["message_id"])
            return None
        for row in previous:  # an attempt that crashed before sealing: start again
            self._discard(row["message_id"], rejected=False)
        category = self._category_of(path, outbox)
        try:
            groups, verdict = self._minimise(source, path, outbox, category, key)
        except OperatorInputError as exc:
            self._reject(path, outbox, error=exc.message)
            return None
        if not verdict.accepted:
            for group in groups.values():
                group.drop()
                self._discard(group.message_id.value, rejected=True)
            self._reject(path, outbox, verdict=verdict)
            return None
        return functools.partial(self._finish, path, outbox, list(groups.values()))

    def _finish(self, path: Path, outbox: Outbox, groups: list[_Group]) -> None:
        # Every message of the file is sealed before any is journaled as sealed, and all
        # are journaled in one transaction: a crash or a local failure half-way leaves
        # none sealed, so the retry starts the whole file over. Marking them one by one
        # would let the retry archive the file with some never sealed.
        sealed: list[tuple[_Group, tuple[str, int]]] = []
        try:
            for group in groups:
                sealed.append((group, self._end_seal(group.seal, group.message_id.value)))
        except BaseException:
            # Nothing of a failed attempt stays (no ciphertext, no row): the file is
            # still in the outbox and the retry starts it over.
            for group in groups[len(sealed) + 1 :]:
                group.seal.abandon()
            for group in groups:
                group.hashes.discard()
                self._discard(group.message_id.value, rejected=False)
            raise
        now = self._clock()
        with self._journal.transaction():
            for group, (digest, size) in sealed:
                self._journal.update_outgoing(
                    group.message_id.value, now=now, state=OutState.MINIMISED,
                    record_count=group.count,
                )  # fmt: skip
                disclosed = (h for h, _row in group.hashes)
                self._mark_sealed(group.message_id.value, group.partner, digest, size,
                                  what=group.category, count=group.count,
                                  disclosed=disclosed)  # fmt: skip
        for group, _ in sealed:
            group.hashes.discard()
        self._archive(path, outbox, [g.message_id.value for g, _ in sealed], "sent")
        for group, _ in sealed:
            self._enqueue(group.partner, group.message_id.value)

    def send_envelope(
        self, partner: str, kind: str, body: Mapping[str, Any], *, disclosed: Iterable[str] = ()
    ) -> str:
        """Seal and queue a small message (an incident notice, a withdrawal) through the
        same journaled path as an export; return its message id. ``disclosed``: the
        keyed BSN hashes the message carries (a withdrawal's subject)."""
        return self._send(
            partner, kind, lambda header: [envelope.encode_message(header, body)],
            what=kind, count=0, disclosed=disclosed,
        )  # fmt: skip

    def send_records(
        self,
        partner: str,
        kind: str,
        category: str,
        records: Sequence[Record],
        *,
        disclosed: Iterable[str],
    ) -> str:
        """Seal and queue a record-carrying message that is not an outbox export (a
        correction); the records come from the policy engine like an export's."""
        return self._send(
            partner, kind,
            lambda header: (c.encode() for c in envelope.export_chunks(header, category, records)),
            what=category, count=len(records), disclosed=disclosed,
        )  # fmt: skip

    def _send(
        self,
        partner: str,
        kind: str,
        encode: Callable[[envelope.Header], Iterable[bytes]],
        *,
        what: str,
        count: int,
        disclosed: Iterable[str],
    ) -> str:
        """Journal first, then seal, and ``sealed`` with the register rows in one
        transaction; queue the upload. A failure before ``sealed`` leaves nothing: no
        row, no ciphertext."""
        message_id = MessageId.new()
        now = self._clock()
        category = what if kind in ("export", "correction") else None
        self._journal.add_outgoing(
            message_id.value, partner, kind=kind, state=OutState.DETECTED, now=now,
            category=category,
        )  # fmt: skip
        try:
            header = envelope.Header(kind, message_id, self._config.party, partner, _utc(now))
            seal = self._begin_seal(message_id.value, partner)
            try:
                for chunk in encode(header):
                    seal.sink.write_bytes(chunk)
            except BaseException:
                seal.abandon()
                raise
            digest, size = self._end_seal(seal, message_id.value)
            with self._journal.transaction():
                self._journal.update_outgoing(
                    message_id.value, now=now, state=OutState.MINIMISED, record_count=count
                )
                self._mark_sealed(message_id.value, partner, digest, size, what=what,
                                  count=count, disclosed=disclosed, kind=kind)  # fmt: skip
        except BaseException:
            row = self._journal.outgoing(message_id.value)
            if row is None or row["state"] in (OutState.DETECTED, OutState.MINIMISED):
                self._discard(message_id.value, rejected=False)
            raise
        self._enqueue(partner, message_id.value)
        return message_id.value

    # -- steps ----------------------------------------------------------------------

    def _category_of(self, path: Path, outbox: Outbox) -> str | None:
        if outbox.category == CATEGORY_FROM_SUBFOLDER:
            return path.parent.name
        if outbox.category == CATEGORY_FROM_COLUMN:
            return None
        return outbox.category

    def _minimise(
        self, source: Path, path: Path, outbox: Outbox, category: str | None, key: str
    ) -> tuple[dict[tuple[str, str], _Group], Verdict]:
        groups: dict[tuple[str, str], _Group] = {}
        try:
            with open_table(source) as table:
                checker = RecordChecker(
                    self._policy, table.header, category=category,
                    today=_utc(self._clock()).date(),
                    routing=self._policy.routing if outbox.route else None,
                )  # fmt: skip
                for number, row in enumerate(table.rows, start=1):
                    if number % _PROGRESS_ROWS == 0:
                        self._progress()  # a long export is work, not a hang
                    record = checker.check(number, row)
                    if record is not None:
                        self._write(groups, record, outbox, path, key, row_number=number)
                for group in groups.values():  # complete the hash files before reading them
                    group.hashes.close()
                verdict = self._refuse_ended(groups, checker.finish())
            if verdict.accepted:
                for group in groups.values():
                    group.seal.sink.write(envelope.export_tail(group.count))
                    group.seal.sink.close()  # end of input: gpg finishes on its own meanwhile
        except BaseException:
            for group in groups.values():
                group.drop()
                self._discard(group.message_id.value, rejected=True)
            raise
        return groups, verdict

    def _write(
        self,
        groups: dict[tuple[str, str], _Group],
        record: Record,
        outbox: Outbox,
        path: Path,
        key: str,
        *,
        row_number: int,
    ) -> None:
        partner = record.route or outbox.partner
        if partner is None or partner not in self._config.partners:
            # The policy's routing map names a partner this configuration does not know.
            raise PolicyInputError(f"routing names partner {partner!r}, which is not configured")
        group = groups.get((partner, record.category))
        if group is None:
            message_id = MessageId.new()
            # Not flushed on its own: until ``sealed`` (durable, and so flushing this
            # row too) the export is still in the outbox, and a row lost to a power
            # failure only means it is started over; the start-up sweep removes what
            # the lost attempt left in the spool.
            self._journal.add_outgoing(
                message_id.value, partner, kind="export", state=OutState.DETECTED,
                now=self._clock(), category=record.category, source_key=key,
                source_path=str(path), durable=False,
            )  # fmt: skip
            try:
                seal = self._begin_seal(message_id.value, partner)
            except BaseException:
                self._discard(message_id.value, rejected=False)
                raise
            header = envelope.Header(
                kind="export",
                message_id=message_id,
                sender=self._config.party,
                recipient=partner,
                created_at=_utc(self._clock()),
            )
            hashes = DisclosedHashes(self._spool / f"{message_id.value}.hashes")
            group = _Group(message_id, partner, record.category, seal, hashes)
            groups[(partner, record.category)] = group
            seal.sink.write(envelope.export_head(header, record.category))
        group.seal.sink.write(envelope.export_record(record, first=group.count == 0))
        group.count += 1
        if self._hash_key is not None:
            group.hashes.add(bsn_hash(self._hash_key, record.fields["bsn"]), row_number)

    def _refuse_ended(self, groups: dict[tuple[str, str], _Group], verdict: Verdict) -> Verdict:
        """A subject whose processing ended is never sent again until an operator
        re-opens it: the export is rejected and the report names the rows."""
        register = self._register
        if register is None:
            return verdict
        errors: list[RowError] = []
        for group in groups.values():
            for batch in _batches(iter(group.hashes)):
                ended = register.ended_among(digest for digest, _row in batch)
                errors.extend(
                    RowError(row, "bsn", "processing-ended")
                    for digest, row in batch
                    if digest in ended
                )
        if not errors:
            return verdict
        errors.sort(key=lambda e: e.row)
        return replace(
            verdict,
            errors=(*verdict.errors, *errors),
            error_count=max(verdict.error_count, len(verdict.errors)) + len(errors),
        )

    def _begin_seal(self, message_id: str, partner: str) -> PendingSeal:
        """Start gpg on a message whose plaintext the caller then writes to its sink."""
        self._spool.mkdir(mode=0o700, parents=True, exist_ok=True)
        ciphertext = self._spool / f"{message_id}.pgp"
        return self._gpg.begin_seal(ciphertext, self._config.partners[partner].fingerprint)

    def _end_seal(self, seal: PendingSeal, message_id: str) -> tuple[str, int]:
        """Wait for gpg; return the ciphertext's (sha256, size)."""
        seal.finish()
        return sha256_file(self._spool / f"{message_id}.pgp")

    def _mark_sealed(
        self,
        message_id: str,
        partner: str,
        digest: str,
        size: int,
        *,
        what: str,
        count: int,
        disclosed: Iterable[str] = (),
        kind: str = "export",
    ) -> None:
        # Sealed and disclosed in one transaction: the register never lacks a message
        # that may leave, and never holds one that was dropped before sealing.
        with self._journal.transaction():
            self._journal.update_outgoing(
                message_id, now=self._clock(), state=OutState.SEALED, sha256=digest, size=size
            )
            if self._register is not None:
                category = what if kind in ("export", "correction") else None
                self._register.record(
                    "sent", partner, category, message_id, disclosed, self._clock(), kind=kind
                )
        self._log.info(
            "message_sealed", message_id=message_id, partner=partner, category=what,
            record_count=count, sha256=digest, size=size,
        )  # fmt: skip

    def sweep_abandoned(self, *, older_than: float) -> int:
        """Drop messages that never got sealed and never will: notices, withdrawals and
        corrections whose maker was killed, and exports whose outbox file is gone
        (their plaintext would otherwise stay in the spool). An export whose file is
        still there is left alone: taking the file again restarts it."""
        cutoff = self._clock() - older_than
        dropped = 0
        for row in self._journal.outgoing_in([OutState.DETECTED, OutState.MINIMISED]):
            if row["updated_at"] >= cutoff:
                continue
            source = row["source_path"]
            if row["kind"] != "export" or not source or not Path(source).exists():
                self._discard(row["message_id"], rejected=False)
                dropped += 1
        if dropped:
            self._log.warning("abandoned_messages_dropped", count=dropped)
        return dropped

    def _discard(self, message_id: str, *, rejected: bool) -> None:
        # ".json": a plaintext written by versions before the streamed seal, still
        # owned by a row of an attempt an upgrade interrupted.
        for suffix in (".json", ".hashes", ".pgp"):
            with contextlib.suppress(FileNotFoundError):
                (self._spool / f"{message_id}{suffix}").unlink()
        if rejected:
            self._journal.update_outgoing(message_id, now=self._clock(), state=OutState.REJECTED)
        else:
            self._journal.forget_outgoing(message_id)

    def _archive(self, path: Path, outbox: Outbox, message_ids: list[str], folder: str) -> None:
        if not path.exists():
            return
        target = move_into(path, outbox.path / folder, self._config.shared_folder_mode)
        # Retention in sent/ counts from archiving, not from whenever the operator's
        # software made the file (its mtime would otherwise be kept by the rename).
        os.utime(target)
        for message_id in message_ids:
            self._journal.update_outgoing(message_id, now=self._clock(), source_path=str(target))

    def _reject(
        self,
        path: Path,
        outbox: Outbox,
        *,
        verdict: Verdict | None = None,
        error: str | None = None,
    ) -> None:
        target = move_into(path, outbox.path / "rejected", self._config.shared_folder_mode)
        errors: tuple[RowError, ...] = verdict.errors if verdict else ()
        report = render_rejection_report(verdict=verdict, error=error)
        report_path = target.with_name(f"{target.name}.rejected.txt")
        write_atomic(report_path, [report.encode("utf-8")], self._config.shared_file_mode)
        self._log.warning(
            "export_rejected",
            outbox=str(outbox.path),
            partner=outbox.partner,
            error_count=len(errors),
            error_codes=sorted({e.code for e in errors}) or ["unreadable"],
            # Row and code only: a column label is the export's own header text, which
            # in a file without a header row is a child's data (the report in
            # rejected/ names the columns, for the operator).
            first_errors=[{"row": e.row, "code": e.code} for e in errors[:5]],
        )


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)
