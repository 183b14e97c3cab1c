"""Receipts owed to a partner: gathered during a pass over its channel, sealed together.

Sealing is a gpg run, most of which is gpg starting up; a receipt that answers every
message delivered (or refused) in one pass costs one run instead of one per message
(docs/PROTOCOL.md: a receipt answers one message, or several as ``answers``). Each
answer says exactly what a receipt of its own would.

Order, so that a crash anywhere is finished by the next attempt and nothing is lost:
the message is journaled ``delivered``/``refused`` before it is owed an answer; its
file stays on the channel until the receipt is sealed, journaled (``receipt_id`` on
every answered row, in one transaction) and queued; only then is each row marked
``answered`` and its file removed. A file still on the channel after a crash is taken
again, finds its row delivered, and is owed an answer again; a row that already has
its receipt gets that receipt queued again instead.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from exchanged.adapters.files import sha256_file
from exchanged.adapters.gpg import Gpg
from exchanged.adapters.journal import Journal
from exchanged.config import Partner
from exchanged.core import envelope
from exchanged.core.machine import InState, OutState
from exchanged.core.model import MessageId

__all__ = ["ANSWER_EVERY", "Answers"]

# Answer at least this often during a long pass (a backlog after an outage), so the
# sender is not kept waiting for the whole pass.
ANSWER_EVERY: Final = 100


class Answers:
    def __init__(
        self,
        party: str,
        journal: Journal,
        gpg: Gpg,
        spool: Path,
        *,
        clock: Callable[[], float],
        enqueue_upload: Callable[[str, str], None],
    ) -> None:
        self._party = party
        self._journal = journal
        self._gpg = gpg
        self._spool = spool
        self._clock = clock
        self._enqueue = enqueue_upload
        self._owed: dict[str, dict[str, Path]] = {}  # partner -> wire id -> channel file

    def owe(self, partner: Partner, row: sqlite3.Row, path: Path) -> None:
        """``row`` (delivered or refused) needs an answer; ``path`` is removed once it
        has one. A row that was answered before a crash gets its receipt queued again."""
        if row["receipt_id"]:
            receipt = self._journal.outgoing(row["receipt_id"])
            if receipt is not None and receipt["state"] == OutState.SEALED:
                self._enqueue(partner.id, row["receipt_id"])
            self._done([(row["message_id"], path)])
            return
        owed = self._owed.setdefault(partner.id, {})
        owed[row["message_id"]] = path
        if len(owed) >= ANSWER_EVERY:
            self.settle(partner)

    def settle(self, partner: Partner) -> int:
        """Seal one receipt for everything owed to ``partner``; returns how many
        messages it answered."""
        owed = self._owed.pop(partner.id, {})
        rows = []
        for message_id, path in owed.items():
            row = self._journal.incoming(message_id)
            if row is not None and row["state"] in (InState.DELIVERED, InState.REFUSED):
                rows.append((row, path))
        for start in range(0, len(rows), envelope.MAX_ANSWERS):
            chunk = rows[start : start + envelope.MAX_ANSWERS]
            self.seal(partner, [row for row, _ in chunk])
            self._done([(row["message_id"], path) for row, path in chunk])
        return len(rows)

    def seal(self, partner: Partner, rows: Sequence[sqlite3.Row]) -> str:
        """Seal, journal and queue one receipt answering ``rows``; returns its id."""
        receipt_id = MessageId.new()
        now = datetime.fromtimestamp(self._clock(), UTC)
        header = envelope.Header("receipt", receipt_id, self._party, partner.id, now)
        answers = [
            envelope.Receipt(
                in_reply_to=MessageId(row["message_id"]),
                disposition=row["disposition"],
                received_sha256=row["received_sha256"],
                record_count=row["record_count"] or 0,
                received_at=datetime.fromtimestamp(row["received_at"], UTC),
            )
            for row in rows
        ]
        self._spool.mkdir(mode=0o700, parents=True, exist_ok=True)
        ciphertext = self._spool / receipt_id.wire_name
        # Streamed into gpg like an export: no plaintext file to make and delete.
        seal = self._gpg.begin_seal(ciphertext, partner.fingerprint)
        seal.sink.write_bytes(envelope.encode_receipts(header, answers))
        seal.finish()
        try:
            self._journal_receipt(partner, rows, receipt_id.value, ciphertext)
        except BaseException:
            ciphertext.unlink(missing_ok=True)  # no row owns it: the retry seals anew
            raise
        self._enqueue(partner.id, receipt_id.value)
        return receipt_id.value

    def _journal_receipt(
        self, partner: Partner, rows: Sequence[sqlite3.Row], receipt_id: str, ciphertext: Path
    ) -> None:
        digest, size = sha256_file(ciphertext)
        with self._journal.transaction():
            self._journal.add_outgoing(
                receipt_id, partner.id, kind="receipt", state=OutState.SEALED,
                now=self._clock(),
                in_reply_to=rows[0]["message_id"] if len(rows) == 1 else None,
            )  # fmt: skip
            self._journal.update_outgoing(receipt_id, now=self._clock(), sha256=digest,
                                          size=size)  # fmt: skip
            for row in rows:
                self._journal.update_incoming(row["message_id"], now=self._clock(),
                                              receipt_id=receipt_id)  # fmt: skip

    def _done(self, answered: Sequence[tuple[str, Path]]) -> None:
        with self._journal.transaction():
            for message_id, _ in answered:
                self._journal.update_incoming(message_id, now=self._clock(),
                                              state=InState.ANSWERED)  # fmt: skip
        for _, path in answered:
            path.unlink(missing_ok=True)
