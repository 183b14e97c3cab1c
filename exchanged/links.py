"""One worker thread per partner: uploads that partner's messages and polls its folder.

Each partner has its own thread, SFTP connection and back-off, so a partner that is
down delays nobody else. A failed transfer is retried with exponential back-off and
jitter, capped; the message stays journaled as ``sealed`` (its ciphertext in the spool)
until an upload succeeds, so nothing is lost while a partner is away.
"""

from __future__ import annotations

import collections
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from exchanged.adapters.files import ensure_private_dir
from exchanged.adapters.journal import Journal
from exchanged.adapters.sftp import HostKeyMismatch, RemoteOperationError, SftpLink
from exchanged.config import Partner
from exchanged.core import machine
from exchanged.core.machine import OutState
from exchanged.errors import ExchangedError
from exchanged.receiving import wire_message_id

__all__ = ["SPOOL_MISSING", "PartnerLink", "backoff_delay"]

_FIRST_RETRY_SECONDS = 1.0
SPOOL_MISSING = "ciphertext missing from spool"


def backoff_delay(attempt: int, cap: float, rng: random.Random) -> float:
    """Full-jitter exponential back-off: uniform in [0.5, 1] x min(cap, base * 2^n)."""
    ceiling = min(cap, _FIRST_RETRY_SECONDS * 2.0 ** min(attempt, 30))
    return ceiling * (0.5 + rng.random() / 2)


class PartnerLink(threading.Thread):
    def __init__(
        self,
        partner: Partner,
        link: SftpLink,
        journal: Journal,
        *,
        spool: Path,
        inbound: Path,
        clock: Callable[[], float],
        log: Any,
        retry_cap: float,
        transfer_deadline: float,
        on_received: Callable[[], None],
        on_host_key_mismatch: Callable[[Partner, str], None],
        stop: threading.Event,
    ) -> None:
        super().__init__(name=f"link-{partner.id}", daemon=True)
        self.partner = partner
        self._link = link
        self._journal = journal
        self._spool = spool
        self._inbound = inbound
        self._clock = clock
        self._log = log.bind(partner=partner.id)
        self._retry_cap = retry_cap
        self._deadline = transfer_deadline
        self._on_received = on_received
        self._on_mismatch = on_host_key_mismatch
        self._stopping = stop
        self._queue: collections.deque[str] = collections.deque()
        self._queued: set[str] = set()
        self._wake = threading.Condition()
        self._failures = 0
        self._timed_out = False
        self._rng = random.Random()  # noqa: S311 -- jitter, not a secret
        self._next_poll = 0.0
        self.last_success: float | None = None

    def enqueue(self, message_id: str) -> None:
        with self._wake:
            if message_id not in self._queued:
                self._queued.add(message_id)
                self._queue.append(message_id)
            self._wake.notify()

    def poke(self) -> None:
        with self._wake:
            self._wake.notify()

    def backlog(self) -> int:
        with self._wake:
            return len(self._queue)

    def run(self) -> None:
        try:
            while not self._stopping.is_set():
                job = self._next_job()
                if job is None:
                    continue
                # The deadline is kept by a timer outside the blocking call: paramiko can
                # hang on a peer that stops answering without closing the connection.
                timer = threading.Timer(self._deadline, self._transfer_timed_out)
                timer.daemon = True
                timer.start()
                try:
                    job()
                except HostKeyMismatch as exc:
                    self._on_mismatch(self.partner, exc.message)
                    self._back_off(exc)
                except ExchangedError as exc:
                    self._back_off(exc)
                except OSError as exc:
                    self._back_off(exc)
                else:
                    self._failures = 0
                    self.last_success = self._clock()
                finally:
                    timer.cancel()
        finally:
            self._link.close()

    def abort(self) -> None:
        """Break off the transfer in flight (shutdown, or a deadline passed)."""
        self._link.abort()

    def _transfer_timed_out(self) -> None:
        self._timed_out = True
        self._log.warning("transfer_deadline_passed", deadline_s=self._deadline)
        self._link.abort()

    # -- scheduling -----------------------------------------------------------------

    def _next_job(self) -> Callable[[], None] | None:
        with self._wake:
            if not self._queue and not self._poll_due():
                self._wake.wait(timeout=self._poll_wait())
            if self._stopping.is_set():
                return None
            if self._queue:
                message_id = self._queue[0]
                return lambda: self._upload(message_id)
            if self._poll_due():
                return self._poll
        return None

    def _poll_due(self) -> bool:
        return self.partner.receive == "poll" and self._clock() >= self._next_poll

    def _poll_wait(self) -> float:
        if self.partner.receive != "poll":
            return 5.0
        return max(0.05, self._next_poll - self._clock())

    def _back_off(self, exc: BaseException) -> None:
        delay = backoff_delay(self._failures, self._retry_cap, self._rng)
        self._failures += 1
        error = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        self._log.warning(
            "link_failed", error=error, error_type=type(exc).__name__,
            attempt=self._failures, retry_in_s=round(delay, 2), backlog=self.backlog(),
        )  # fmt: skip
        if isinstance(exc, RemoteOperationError) or self._timed_out:
            with self._wake:
                # The trouble is this message (a remote quota, a transfer that always
                # times out): it goes to the back so the others still go. Not when the
                # link itself is down: then order is kept, so a withdrawal never
                # overtakes the export it withdraws.
                if len(self._queue) > 1:
                    self._queue.rotate(-1)
        self._timed_out = False
        self._stopping.wait(delay)

    # -- jobs -----------------------------------------------------------------------

    def _upload(self, message_id: str) -> None:
        row = self._journal.outgoing(message_id)
        if row is None or row["state"] != OutState.SEALED:
            self._done(message_id)
            return
        ciphertext = self._spool / f"{message_id}.pgp"
        if not ciphertext.exists():
            # Removed by hand or lost with the disk: it cannot be sent, and retrying
            # would only block the queue. Marked so it is not queued again; status shows
            # it as queued and the log says why.
            self._journal.update_outgoing(message_id, now=self._clock(), last_error=SPOOL_MISSING)
            self._log.error("ciphertext_missing", message_id=message_id, kind=row["kind"])
            self._done(message_id)
            return
        size = self._link.upload(ciphertext, self.partner.remote_dir, f"{message_id}.pgp")
        now = self._clock()
        with self._journal.transaction():
            # The partner may have answered already (its receipt raced our journal
            # write), in which case the message is past "uploaded" and stays there.
            current = self._journal.outgoing(message_id)
            if current is not None and current["state"] == OutState.SEALED:
                step = machine.outgoing(current["state"], "uploaded")
                self._journal.update_outgoing(
                    message_id, now=now, state=step.state, uploaded_at=now
                )
        self._done(message_id)
        self._log.info(
            "message_uploaded", message_id=message_id, kind=row["kind"],
            category=row["category"], record_count=row["record_count"], sha256=row["sha256"],
            size=size,
        )  # fmt: skip

    def _done(self, message_id: str) -> None:
        with self._wake:
            if self._queue and self._queue[0] == message_id:
                self._queue.popleft()
            self._queued.discard(message_id)

    def _poll(self) -> None:
        self._next_poll = self._clock() + self.partner.poll_seconds
        remote_dir = self.partner.poll_dir
        assert remote_dir is not None  # noqa: S101 -- config guarantees it in poll mode
        ensure_private_dir(self._inbound)
        fetched = 0
        for remote in self._link.list(remote_dir):
            if wire_message_id(remote.name) is None:
                continue
            target = self._inbound / remote.name
            if not target.exists():
                self._link.download(remote_dir, remote.name, target)
            self._link.remove(remote_dir, remote.name)
            fetched += 1
        if fetched:
            self._log.info("poll_fetched", count=fetched)
            self._on_received()
