"""The receive path for one file on a partner's channel: open, check, deliver, answer.

Every incoming file is journaled (by the UUID of its wire name) before anything else
happens, and its receipt is journaled as an outgoing message before the file is
removed from the channel, so a crash anywhere either redoes the work idempotently or
finds it done. A message id seen before is never delivered twice: it is answered with
the receipt it got the first time.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from exchanged.adapters.disclosures import DisclosureRegister
from exchanged.adapters.gpg import Gpg
from exchanged.adapters.journal import Journal
from exchanged.answering import Answers
from exchanged.config import Config, Partner
from exchanged.core import disclosure, envelope, machine
from exchanged.core.machine import InState, OutState
from exchanged.core.model import MESSAGE_ID_PATTERN
from exchanged.core.policy import Policy, recheck_records
from exchanged.errors import PartnerError
from exchanged.inbox import Inbox
from exchanged.incidents import Detection
from exchanged.opening import Copy, NotARegularFile, Opener
from exchanged.withdrawals import Withdrawals

__all__ = ["Receiver", "wire_message_id"]


_WIRE_NAME: Final = re.compile(rf"^({MESSAGE_ID_PATTERN})\.pgp$")
_AWAITING: Final = (OutState.SEALED, OutState.UPLOADED, OutState.OVERDUE)


def wire_message_id(name: str) -> str | None:
    match = _WIRE_NAME.match(name)
    return match.group(1) if match else None


class Receiver:
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
        raise_incident: Callable[[Detection], None],
        on_partner_notice: Callable[[str, Mapping[str, Any], str], object],
        register: DisclosureRegister | None = None,
        bsn_hash_key: bytes | None = None,
    ) -> None:
        if (register is None) != (bsn_hash_key is None):
            raise ValueError("the disclosure register needs the BSN hashing key, and back")
        self._register = register
        self._hash_key = bsn_hash_key
        self._config = config
        self._journal = journal
        self._gpg = gpg
        self._policy = policy
        self._clock = clock
        self._log = log
        self._enqueue = enqueue_upload
        self._incident = raise_incident
        self._on_notice = on_partner_notice
        self._spool = config.state_dir / "spool"
        self._work = config.state_dir / "work"
        self._opener = Opener(self._work, gpg)
        self._answers = Answers(
            config.party, journal, gpg, self._spool, clock=clock, enqueue_upload=enqueue_upload
        )
        self._inbox = Inbox(config.inbox, file_mode=config.shared_file_mode)
        self._withdrawal = (
            Withdrawals(
                config, journal, register, bsn_hash_key, self._inbox, clock=clock, log=log,
                raise_incident=raise_incident,
            ).apply
            if register is not None and bsn_hash_key is not None
            else self._notice_only
        )  # fmt: skip

    def take(self, path: Path, partner: Partner) -> None:
        wire_id = wire_message_id(path.name)
        if wire_id is None:
            self._quarantine(path, partner, "unexpected-file-name")
            return
        try:
            copy = self._opener.copy(path, wire_id)
        except NotARegularFile:
            self._quarantine(path, partner, "not-a-regular-file")
            return
        try:
            self._take(path, copy, partner, wire_id)
        finally:
            copy.path.unlink(missing_ok=True)

    def prepare(self, paths: Sequence[Path], partner: Partner) -> int:
        """Open the new messages among ``paths`` in as few gpg runs as may be, before
        they are taken one by one (see ``exchanged.opening``); returns how many."""
        files = []
        for path in paths:
            wire_id = wire_message_id(path.name)
            row = self._journal.incoming(wire_id) if wire_id else None
            if wire_id and (row is None or (row["partner"] == partner.id
                                            and row["state"] == InState.RECEIVED)):  # fmt: skip
                files.append((path, wire_id))
        return self._opener.prepare(files) if len(files) > 1 else 0

    def release(self) -> None:
        """Forget what ``prepare`` opened and was not taken."""
        self._opener.release()

    def _take(self, path: Path, copy: Copy, partner: Partner, wire_id: str) -> None:
        digest = copy.sha256
        row = self._journal.incoming(wire_id)
        if row is None:
            # Not flushed on its own: the file stays on the channel until answered, so
            # a row lost to a power failure (before the durable ``delivered``) only
            # means the message is taken again, as from this state.
            self._journal.add_incoming(
                wire_id, partner.id, state=InState.RECEIVED, received_sha256=digest,
                now=self._clock(), durable=False,
            )  # fmt: skip
            row = self._journal.incoming(wire_id)
        elif row["partner"] != partner.id:
            # Another partner's message id on this channel: never answer it with (or
            # send down this link) the receipt that belongs to the other partner.
            self._incident(Detection("replayed", partner.id, wire_id, "foreign-message-id"))
            self._quarantine(path, partner, "foreign-message-id")
            return
        elif row["state"] == InState.ANSWERED:
            self._answer_duplicate(path, partner, row, digest)
            return
        assert row is not None  # noqa: S101 -- just inserted under the journal lock
        if row["state"] == InState.RECEIVED:
            self._open_and_deliver(copy, partner, wire_id)
            row = self._journal.incoming(wire_id)
            assert row is not None  # noqa: S101 -- just written under the journal lock
        if row["state"] in (InState.DELIVERED, InState.REFUSED) and row["kind"] != "receipt":
            self._answers.owe(partner, row, path)  # answered, and removed, at the pass's end
            return
        self._journal.update_incoming(wire_id, now=self._clock(), state=InState.ANSWERED)
        path.unlink(missing_ok=True)

    # -- opening and checking -------------------------------------------------------

    def _open_and_deliver(self, copy: Copy, partner: Partner, wire_id: str) -> None:
        self._work.mkdir(mode=0o700, parents=True, exist_ok=True)
        plaintext = self._work / f"{wire_id}.json"
        try:
            disposition, message = self._open(copy, partner, wire_id, plaintext)
        finally:
            plaintext.unlink(missing_ok=True)
        kind = message.header.kind if message else None
        category = message.category if message else None
        count = len(message.records) if message else 0
        if message is not None and disposition is None:
            if kind == "receipt":
                self._accept_receipt(partner, message)
                disposition = envelope.PROCESSED
            else:
                disposition = self._deliver(partner, message)
        state = InState.DELIVERED if disposition == envelope.PROCESSED else InState.REFUSED
        self._journal.update_incoming(
            wire_id, now=self._clock(), state=state, disposition=disposition, kind=kind,
            category=category, record_count=count,
        )  # fmt: skip
        event = "message_delivered" if state == InState.DELIVERED else "message_refused"
        (self._log.info if state == InState.DELIVERED else self._log.error)(
            event, message_id=wire_id, partner=partner.id, kind=kind, category=category,
            record_count=count, sha256=copy.sha256, size=copy.size, disposition=disposition,
        )  # fmt: skip

    def _open(
        self, copy: Copy, partner: Partner, wire_id: str, plaintext: Path
    ) -> tuple[str | None, envelope.Message | None]:
        opened = self._opener.open(wire_id, copy, plaintext)
        if opened.failure == "decryption-failed":
            return self._refuse(partner, wire_id, "decryption-failed", "decryption-failed")
        if opened.failure is not None:
            kind = {"unsigned": "unsigned-message", "bad-signature": "signature-invalid"}.get(
                opened.failure, "unknown-signer"
            )
            return self._refuse(partner, wire_id, "authentication-failed", kind)
        if opened.signer != partner.fingerprint:
            return self._refuse(partner, wire_id, "authentication-failed", "unknown-signer")
        try:
            message = envelope.decode(plaintext.read_bytes())
        except envelope.EnvelopeError as exc:
            return self._refuse(partner, wire_id, exc.reason, "malformed-message")
        header = message.header
        if header.message_id.value != wire_id or header.sender != partner.id:
            return self._refuse(partner, wire_id, "authentication-failed", "signature-invalid")
        if header.recipient != self._config.party:
            return self._refuse(partner, wire_id, "misaddressed", "misaddressed", message)
        now = datetime.fromtimestamp(self._clock(), UTC)
        limits = self._config.limits
        fresh = envelope.check_age(
            header.created_at,
            now,
            max_age=timedelta(seconds=limits.max_age_seconds),
            max_skew=timedelta(seconds=limits.max_skew_seconds),
        )
        if not fresh:
            return self._refuse(partner, wire_id, "expired", "expired", message)
        return None, message

    def _refuse(
        self,
        partner: Partner,
        wire_id: str,
        reason: str,
        incident_kind: str,
        message: envelope.Message | None = None,
    ) -> tuple[str, envelope.Message | None]:
        self._incident(Detection(incident_kind, partner.id, wire_id, reason))
        return f"failed/{reason}", message

    # -- delivering -----------------------------------------------------------------

    def _deliver(self, partner: Partner, message: envelope.Message) -> str:
        header = message.header
        if header.kind == "incident-notice":
            try:
                self._on_notice(partner.id, message.body, header.message_id.value)
            except (PartnerError, ValueError):
                mid = header.message_id.value
                self._incident(Detection("malformed-message", partner.id, mid, "bad-notice"))
                return "failed/malformed"
            return envelope.PROCESSED
        if header.kind == "withdrawal":
            return self._withdrawal(partner.id, message)
        if header.kind not in ("export", "correction"):
            # An unknown future kind is delivered as a file, so nothing sent is lost.
            self._inbox.deliver_notice(partner.id, message)
            return envelope.PROCESSED
        if header.kind == "correction":
            try:
                disclosure.parse_correction(message)
            except envelope.EnvelopeError as exc:
                self._incident(Detection("malformed-message", partner.id,
                                         header.message_id.value, exc.reason))  # fmt: skip
                return f"failed/{exc.reason}"
        assert message.category is not None  # noqa: S101 -- decode() guarantees it for exports
        verdict = recheck_records(
            self._policy, message.category, message.records,
            today=datetime.fromtimestamp(self._clock(), UTC).date(),
        )  # fmt: skip
        if not verdict.accepted:
            self._log.error(
                "partner_policy_violation", message_id=header.message_id.value,
                partner=partner.id, error_count=verdict.error_count,
                error_codes=sorted({e.code for e in verdict.errors}),
            )  # fmt: skip
            self._incident(
                Detection("partner-policy-violation", partner.id, header.message_id.value,
                          "policy-violation", len(message.records))
            )  # fmt: skip
            return "failed/policy-violation"
        self._inbox.deliver_records(partner.id, message)
        self._record_received(partner, message, [r["bsn"] for r in message.records])
        return envelope.PROCESSED

    def _record_received(
        self, partner: Partner, message: envelope.Message, bsns: Sequence[str]
    ) -> None:
        # Idempotent (one row per hash and message), so a replay after a crash
        # between delivering and committing ``delivered`` records nothing twice.
        if self._register is None or self._hash_key is None:
            return
        key = self._hash_key
        self._register.record(
            "received", partner.id, message.category, message.header.message_id.value,
            [disclosure.bsn_hash(key, b) for b in bsns], self._clock(),
            kind=message.header.kind,
        )  # fmt: skip

    def _notice_only(self, partner: str, message: envelope.Message) -> str:
        """Without a disclosure register there is nothing to end or purge here."""
        self._inbox.deliver_notice(partner, message)
        return envelope.PROCESSED

    # -- receipts -------------------------------------------------------------------

    def settle(self, partner: Partner) -> int:
        """Answer, in one receipt, what this pass delivered or refused from ``partner``."""
        return self._answers.settle(partner)

    def _answer_duplicate(
        self, path: Path, partner: Partner, row: sqlite3.Row, digest: str
    ) -> None:
        """A message id we answered before: never deliver again; resend the original
        receipt so a sender that lost it can still complete."""
        self._log.warning(
            "message_duplicate", message_id=row["message_id"], partner=partner.id,
            same_ciphertext=digest == row["received_sha256"],
        )  # fmt: skip
        if digest != row["received_sha256"]:
            self._incident(Detection("replayed", partner.id, row["message_id"], "replayed"))
        receipt_id = row["receipt_id"]
        receipt = self._journal.outgoing(receipt_id) if receipt_id else None
        if receipt is not None and (self._spool / f"{receipt_id}.pgp").exists():
            if receipt["state"] != OutState.SEALED:  # sealed: its upload is still queued
                step = machine.outgoing(receipt["state"], "resend")
                self._journal.update_outgoing(receipt_id, now=self._clock(), state=step.state)
            self._enqueue(partner.id, receipt_id)
        path.unlink(missing_ok=True)

    def _accept_receipt(self, partner: Partner, message: envelope.Message) -> None:
        found: list[Detection] = []
        with self._journal.transaction():  # one commit for all the answers it carries
            for receipt in envelope.decode_receipts(message.body):
                self._accept_answer(partner, receipt, found)
        # Raised once the states are committed: raising one may seal and queue a notice
        # to the partner, which must not ride on (or roll back with) this transaction.
        for detection in found:
            self._incident(detection)

    def _accept_answer(
        self, partner: Partner, receipt: envelope.Receipt, found: list[Detection]
    ) -> None:
        answered = receipt.in_reply_to.value
        row = self._journal.outgoing(answered)
        problem = None
        if row is None or row["partner"] != partner.id or row["kind"] == "receipt":
            problem = "unknown-in-reply-to"  # detail codes are machine codes (Observation)
        elif row["sha256"] != receipt.received_sha256:
            problem = "received-sha256-mismatch"
        if problem is not None:
            found.append(Detection("receipt-invalid", partner.id, answered, problem))
            return
        assert row is not None  # noqa: S101 -- checked above
        if row["state"] not in _AWAITING:
            self._log.info("receipt_duplicate", message_id=answered, partner=partner.id)
            return
        now = self._clock()
        step = machine.outgoing(row["state"], "receipt-ok" if receipt.ok else "receipt-failed")
        if receipt.ok:
            self._journal.update_outgoing(answered, now=now, state=step.state, receipted_at=now)
            self._log.info(
                "message_receipted", message_id=answered, partner=partner.id,
                category=row["category"], record_count=receipt.record_count,
                sha256=receipt.received_sha256, disposition=receipt.disposition,
                latency_s=round(now - row["created_at"], 3),
            )  # fmt: skip
        else:
            self._journal.update_outgoing(answered, now=now, state=step.state)
            found.append(Detection("receipt-failed", partner.id, answered, receipt.disposition))

    def _quarantine(self, path: Path, partner: Partner, reason: str) -> None:
        """Move a file we will not process out of the channel, under a name of our own
        (never the partner's), for the officers to inspect."""
        folder = self._config.state_dir / "quarantine" / partner.id
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.rename(folder / f"{uuid.uuid4()}.bin")
        self._log.error("incoming_quarantined", partner=partner.id, reason=reason)

    def abandon(self, path: Path, partner: Partner) -> None:
        """Give up on a file that keeps failing in an unexpected way (a bug, not a
        local outage): answer the sender with failed/unexpected-processing-error, so it
        is not left waiting for a receipt, then quarantine the file. Journal first, as
        everywhere: a crash half-way is finished by the next attempt."""
        wire_id = wire_message_id(path.name)
        row = self._journal.incoming(wire_id) if wire_id else None
        if row is not None and row["partner"] == partner.id:
            if row["state"] == InState.RECEIVED:
                self._journal.update_incoming(
                    row["message_id"], now=self._clock(), state=InState.REFUSED,
                    disposition="failed/unexpected-processing-error",
                )  # fmt: skip
                row = self._journal.incoming(row["message_id"])
                assert row is not None  # noqa: S101 -- just updated
            if row["state"] in (InState.DELIVERED, InState.REFUSED):
                if row["kind"] != "receipt" and not row["receipt_id"]:
                    self._answers.seal(partner, [row])
                self._journal.update_incoming(row["message_id"], now=self._clock(),
                                              state=InState.ANSWERED)  # fmt: skip
        self._quarantine(path, partner, "processing-failed-repeatedly")
