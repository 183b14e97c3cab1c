"""AVG art. 19 on the receiving side: a partner ended processing of a child it shared
with us. Deliver the notice to the operator, end processing here too, and purge our
copies when the ground requires it. Every step is idempotent, so a replay is harmless.

A partner may end only what it exchanged with us: a withdrawal of any other child
would stop our processing (and purge our copies) of a child it has nothing to do with,
and disclosed a BSN it had no business sending; it is refused as a policy violation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from exchanged.adapters.disclosures import DisclosureRegister
from exchanged.adapters.journal import Journal
from exchanged.config import Config
from exchanged.core import disclosure, envelope
from exchanged.core.machine import OutState
from exchanged.inbox import Inbox
from exchanged.incidents import Detection
from exchanged.purge import purge_subject

__all__ = ["Withdrawals"]


class Withdrawals:
    def __init__(
        self,
        config: Config,
        journal: Journal,
        register: DisclosureRegister,
        hash_key: bytes,
        inbox: Inbox,
        *,
        clock: Callable[[], float],
        log: Any,
        raise_incident: Callable[[Detection], None],
    ) -> None:
        self._config = config
        self._journal = journal
        self._register = register
        self._hash_key = hash_key
        self._inbox = inbox
        self._clock = clock
        self._log = log
        self._incident = raise_incident

    def apply(self, partner: str, message: envelope.Message) -> str:
        """Handle one withdrawal from ``partner``; return the receipt's disposition."""
        mid = message.header.message_id.value
        try:
            withdrawal = disclosure.parse_withdrawal(message.body)
        except envelope.EnvelopeError as exc:
            self._incident(Detection("malformed-message", partner, mid, exc.reason))
            return f"failed/{exc.reason}"
        subject = disclosure.bsn_hash(self._hash_key, withdrawal.bsn)
        if partner not in {d.partner for d in self._register.subject(subject).disclosures}:
            self._incident(Detection("partner-policy-violation", partner, mid,
                                     "withdrawal-of-unshared-subject"))  # fmt: skip
            return "failed/policy-violation"
        self._inbox.deliver_notice(partner, message)
        now = self._clock()
        with self._journal.transaction():
            self._register.record("received", partner, None, mid, [subject], now,
                                  kind="withdrawal")  # fmt: skip
            self._register.end_processing(subject, withdrawal.ground.value, now,
                                          ended_by=partner)  # fmt: skip
        if withdrawal.ground.purges:
            # Only ciphertext whose receipt arrived: an unreceipted message is still
            # ours to deliver (or to prove lost), so its copy stays until then.
            carried = [
                m for m in self._register.messages_for(subject, "sent")
                if (row := self._journal.outgoing(m)) is not None
                and row["state"] == OutState.RECEIPTED
            ]  # fmt: skip
            spool = self._config.state_dir / "spool"
            purged = purge_subject(self._config.inbox, spool, withdrawal.bsn, carried)
            self._log.info(
                "subject_purged", partner=partner, message_id=mid,
                ground=withdrawal.ground.value, inbox_rows=purged.inbox_rows,
                inbox_files_rewritten=purged.inbox_files_rewritten,
                inbox_files_removed=purged.inbox_files_removed,
                spool_files=purged.spool_files,
            )  # fmt: skip
        return envelope.PROCESSED
