"""The daemon: wires the adapters to the core and runs the main loop.

Threads: the main thread owns the outboxes and incoming channels (minimise, seal,
open, deliver); one ``PartnerLink`` thread per partner owns that partner's SFTP
connection; watchdog's observer thread only sets a flag. The journal is the single
source of truth shared between them, so a restart resumes from it alone.
"""

from __future__ import annotations

import functools
import logging
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from exchanged.adapters.disclosures import DisclosureRegister, ensure_schema
from exchanged.adapters.files import ensure_private_dir
from exchanged.adapters.gpg import Gpg
from exchanged.adapters.journal import Journal
from exchanged.adapters.notify import IncidentNotifier
from exchanged.adapters.sftp import Endpoint, SftpLink
from exchanged.config import CATEGORY_FROM_SUBFOLDER, Config, Outbox, Partner
from exchanged.core import machine
from exchanged.core.incident import OrgInfo
from exchanged.core.machine import OutState
from exchanged.core.model import CATEGORIES
from exchanged.core.policy import Policy
from exchanged.errors import ExchangedError, LocalSystemError
from exchanged.incidents import Detection, IncidentDesk
from exchanged.links import SPOOL_MISSING, PartnerLink
from exchanged.logs import get_logger
from exchanged.outbox import Candidate, SettleTracker, UnsafeOutboxFile, list_candidates
from exchanged.receiving import Receiver
from exchanged.register_upkeep import RegisterUpkeep
from exchanged.sdnotify import Notifier
from exchanged.sending import Sender

__all__ = ["Service"]

_IDLE_WAIT_SECONDS = 5.0
# While files settle the loop wakes when the first may be ready, but not more often.
_SETTLING_WAIT_SECONDS = 0.01
_LOCAL_RETRY_SECONDS = 30.0
_TICK_SECONDS = 1.0
# An incoming file that fails this often in an unexpected way (a bug, not an outage)
# is quarantined and answered, so it cannot block the channel forever.
# An export whose gpg run is under way: its file, and the step that finishes it.
_Sealing = tuple[Path, Callable[[], None]]
_UNEXPECTED_LIMIT = 3
# A message another process began but never sealed (it was killed) is dropped after
# this long; far longer than sealing one takes, so a running command is never raced.
_ABANDONED_SECONDS = 600.0
_LOSS_REPORTED = "loss-in-transit reported"


class _Wake(FileSystemEventHandler):
    """watchdog callback: any change in a watched folder just wakes the main loop,
    which then lists the folder itself (robust against coalesced or lost events)."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in ("opened", "closed_no_write"):
            self._wake()


class Service:
    def __init__(
        self,
        config: Config,
        *,
        policy: Policy,
        gpg_passphrase: str | None = None,
        ssh_key_passphrase: str | None = None,
        clock: Callable[[], float] = time.time,
        notifiers: tuple[IncidentNotifier, ...] = (),
        sd_notify: Notifier | None = None,
        bsn_hash_key: bytes | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._log = get_logger(party=config.party)
        self._stop = threading.Event()
        self._wake = threading.Event()
        state = ensure_private_dir(config.state_dir)
        self._spool = ensure_private_dir(state / "spool")
        self.journal = Journal(state / "journal.sqlite")
        with self.journal.lock:
            ensure_schema(self.journal.connection)
        # Without the key there is no register: only tests that do not exercise
        # accountability construct a Service so; `exchanged run` always passes it.
        self.register = (
            DisclosureRegister(self.journal.connection, lock=self.journal.lock)
            if bsn_hash_key is not None
            else None
        )
        self._upkeep = RegisterUpkeep(self.register, self._log)
        self._gpg = Gpg(config.gpg_home, config.fingerprint, passphrase=gpg_passphrase)
        self._sd = sd_notify or Notifier(unset_environment=True)
        self._links: dict[str, PartnerLink] = {}
        for partner in config.partners.values():
            endpoint = Endpoint(
                host=partner.sftp.host,
                port=partner.sftp.port,
                user=partner.sftp.user,
                key_file=partner.sftp.key_file,
                host_key=partner.sftp.host_key,
                key_passphrase=ssh_key_passphrase,
            )
            self._links[partner.id] = PartnerLink(
                partner,
                SftpLink(endpoint),
                self.journal,
                spool=self._spool,
                inbound=state / "inbound" / partner.id,
                clock=clock,
                log=self._log,
                retry_cap=config.limits.retry_cap_seconds,
                transfer_deadline=config.limits.transfer_deadline_seconds,
                on_received=self._wake.set,
                on_host_key_mismatch=self._host_key_mismatch,
                stop=self._stop,
            )
        self._sender = Sender(
            config, self.journal, self._gpg, policy, clock=clock, log=self._log,
            enqueue_upload=self._enqueue, register=self.register, bsn_hash_key=bsn_hash_key,
            progress=self._heartbeat,
        )  # fmt: skip
        org = config.organisation
        self.incidents = IncidentDesk(
            self.journal,
            OrgInfo(name=org.name, party_id=config.party, contact_role=org.contact_role,
                    contact_email=org.contact_email, contact_phone=org.contact_phone),
            clock=clock, log=self._log, notifiers=notifiers,
            send_notice=lambda partner, body: self._sender.send_envelope(
                partner, "incident-notice", body),
        )  # fmt: skip
        self._receiver = Receiver(
            config, self.journal, self._gpg, policy, clock=clock, log=self._log,
            enqueue_upload=self._enqueue, raise_incident=self._incident,
            on_partner_notice=self.incidents.partner_notice,
            register=self.register, bsn_hash_key=bsn_hash_key,
        )  # fmt: skip
        self._settle = SettleTracker(config.limits.settle_seconds)
        self._local_failures: dict[Path, float] = {}
        self._refused: set[Candidate] = set()
        self._observer: Any = None
        self._next_tick = 0.0
        self._next_metrics = 0.0
        self._next_heartbeat = 0.0
        self._hup_pending = False
        self.reload_requested = False  # after run(): re-execute with the new configuration
        self.stop_signalled = False
        self._unexpected: dict[Path, int] = {}
        self._unexpected_now = False

    # -- life cycle -----------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def install_signal_handlers(self) -> None:
        def stop(_signum: int, _frame: FrameType | None) -> None:
            self.stop_signalled = True  # wins over a reload in progress: no re-exec
            self.request_stop()

        def reload(_signum: int, _frame: FrameType | None) -> None:
            self._hup_pending = True
            self._wake.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, reload)

    def run(self, *, on_ready: Callable[[], None] | None = None) -> None:
        self._log.info("service_starting", partners=sorted(self.config.partners))
        self._start_observer()  # first, so nothing dropped during the first scan is missed
        self._sweep_leftovers()
        self._resume()
        for link in self._links.values():
            link.start()
        self._cycle()
        self._log.info("service_ready")
        self._sd.ready(self._status_line())
        if on_ready is not None:
            on_ready()
        # Every pass lists all folders (cheap), so the periodic rescan that covers lost
        # inotify events and network file systems is simply a bounded wait.
        idle = min(_IDLE_WAIT_SECONDS, self.config.limits.rescan_seconds)
        ping = self._sd.watchdog_interval()
        if ping is not None:  # an idle loop still feeds the watchdog in time
            idle = min(idle, ping)
        try:
            while not self._stop.is_set():
                settling = self._settle.next_ready_in(self._clock())
                wait = idle
                if settling is not None:
                    wait = min(idle, max(_SETTLING_WAIT_SECONDS, settling))
                woken = self._wake.wait(timeout=self._upkeep.wait(wait))
                self._wake.clear()
                if self._hup_pending:
                    self._reload()
                    continue
                self._cycle()
                # Quiet: the wait ran out with nothing to wake the loop and no file
                # being written.
                quiet = not woken and settling is None
                self._guard(functools.partial(self._upkeep.after_pass, quiet=quiet))
                self._periodic()
        finally:
            self._shutdown()

    def _reload(self) -> None:
        """SIGHUP: check the configuration on disk; if it is valid, stop cleanly and let
        the caller re-execute the daemon with it (same PID, so systemd follows; the
        journal makes the restart lose nothing). An invalid file is refused and the
        daemon goes on with the configuration it has."""
        self._hup_pending = False
        from exchanged.adapters.disclosures import load_hash_key
        from exchanged.config import load_config
        from exchanged.policyfile import load_policy

        try:
            # Everything the new process needs before it can run; a failure here would
            # otherwise stop the daemon with no way back but a restart loop.
            new = load_config(self.config.path)
            load_policy(new.policy_file)
            load_hash_key()
        except ExchangedError as exc:
            self._log.error(
                "reload_refused", error=exc.message,
                hint="still running with the configuration it had; fix the file, reload again",
            )  # fmt: skip
            return
        self._log.info("service_reloading")
        self._sd.reloading()
        self.reload_requested = True
        self.request_stop()

    def _periodic(self) -> None:
        """Once a second at most: receipt deadlines, incident reminders, systemd pings."""
        now = self._clock()
        if now < self._next_tick:
            return
        self._next_tick = now + _TICK_SECONDS
        self._guard(self._check_deadlines)
        # Messages sealed by another process (exchanged correct / withdraw) share this
        # journal and spool; picking them up here means no side channel is needed.
        self._guard(self._resume)
        self._guard(lambda: self._sender.sweep_abandoned(older_than=_ABANDONED_SECONDS))
        self._guard(self.incidents.remind)
        self._guard(self._write_metrics)
        if self.healthy():
            self._sd.watchdog()
        else:
            self._log.error("service_unhealthy", hint="a worker thread or the observer died")
        self._sd.status(self._status_line())

    def _write_metrics(self) -> None:
        settings = self.config.metrics
        now = self._clock()
        if settings is None or now < self._next_metrics:
            return
        self._next_metrics = now + settings.interval_seconds
        from exchanged.metrics import write_metrics

        write_metrics(
            self.config, self.config.state_dir / "journal.sqlite", settings.path,
            datetime.fromtimestamp(now, tz=UTC),
        )  # fmt: skip

    def _heartbeat(self) -> None:
        """Called from inside long work: the loop is busy, not hung, so the systemd
        watchdog is fed (at most once a second, and only while the workers live)."""
        now = self._clock()
        if now >= self._next_heartbeat and self.healthy():
            self._next_heartbeat = now + _TICK_SECONDS
            self._sd.watchdog()

    def _status_line(self) -> str:
        counts: dict[str, int] = {}
        for states in self.journal.counts()["out"].values():
            for state, n in states.items():
                counts[state] = counts.get(state, 0) + n
        queued = sum(counts.get(s, 0) for s in (OutState.DETECTED, OutState.MINIMISED,
                                                  OutState.SEALED))  # fmt: skip
        return (
            f"{queued} queued, {counts.get(OutState.UPLOADED, 0)} awaiting receipt, "
            f"{counts.get(OutState.OVERDUE, 0)} overdue, "
            f"{counts.get(OutState.RECEIPTED, 0)} receipted"
        )

    def _check_deadlines(self) -> None:
        """Uploaded messages without a receipt become overdue (a warning), and past the
        second deadline an incident of possible loss in transit (once per message)."""
        now = self._clock()
        limits = self.config.limits
        for row in self.journal.outgoing_in([OutState.UPLOADED, OutState.OVERDUE]):
            if row["kind"] == "receipt":
                continue
            age = now - (row["uploaded_at"] or row["created_at"])
            if row["state"] == OutState.UPLOADED and age >= limits.receipt_deadline_seconds:
                step = machine.outgoing(row["state"], "deadline")
                self.journal.update_outgoing(row["message_id"], now=now, state=step.state)
                self._log.warning(
                    "message_overdue", message_id=row["message_id"], partner=row["partner"],
                    category=row["category"], waited_s=round(age),
                )  # fmt: skip
            elif (
                row["state"] == OutState.OVERDUE
                and age >= limits.loss_deadline_seconds
                and row["last_error"] != _LOSS_REPORTED
            ):
                self.journal.update_outgoing(row["message_id"], now=now, last_error=_LOSS_REPORTED)
                self._incident(Detection("loss-in-transit", row["partner"], row["message_id"],
                                         "no-receipt", row["record_count"]))  # fmt: skip

    def _shutdown(self) -> None:
        if not self.reload_requested or self.stop_signalled:
            self._sd.stopping()  # not on a reload: systemd waits for READY=1 instead
        self._log.info("service_stopping")
        self._stop.set()
        for link in self._links.values():
            link.poke()
        if self._observer is not None:
            # watchdog's inotify emitter logs a spurious ERROR when it is stopped while an
            # event is in flight (watchdog PR #963); on the way out that is noise.
            logging.getLogger("watchdog.observers.inotify").setLevel(logging.CRITICAL)
            self._observer.stop()
        # systemd waits TimeoutStopSec; finish quickly: a transfer still running after a
        # few seconds is cut (it is idempotent and will be redone after the restart).
        _join_all(self._links.values(), seconds=3.0)
        for link in self._links.values():
            if link.is_alive():
                link.abort()
        _join_all(self._links.values(), seconds=3.0)
        if self._observer is not None:
            self._observer.join(timeout=2)
        self._gpg.close()
        self._guard(self._upkeep.before_stop)
        self.journal.close()
        self._log.info("service_stopped")

    def healthy(self) -> bool:
        """For the systemd watchdog: every worker and the folder observer are alive."""
        links_ok = all(link.is_alive() for link in self._links.values())
        return links_ok and self._observer is not None and self._observer.is_alive()

    def _start_observer(self) -> None:
        observer = Observer()
        handler = _Wake(self._wake.set)
        for folder in self._watched_folders():
            ensure_private_dir(folder)
            observer.schedule(handler, str(folder), recursive=False)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def _watched_folders(self) -> list[Path]:
        folders = [folder for outbox in self.config.outboxes for folder in _folders_of(outbox)]
        for partner in self.config.partners.values():
            folders.append(self._channel(partner))
        return folders

    def _channel(self, partner: Partner) -> Path:
        if partner.local_dir is not None:
            return partner.local_dir
        return self.config.state_dir / "inbound" / partner.id

    def _sweep_leftovers(self) -> None:
        """Remove what a killed daemon left half-done, before anything else runs:
        decrypted plaintext in the work folder, half-written files under temporary
        dot-names, export plaintext in the spool that no journal row still owns (all
        of it personal data outside every retention window otherwise), and sealed
        files in the spool that no row owns at all (an attempt whose unflushed first
        row a power failure took)."""
        removed = 0
        work = self.config.state_dir / "work"
        temporary = [*work.glob("*"), *work.glob(".*")] if work.exists() else []
        for folder in (self.config.inbox, self._spool, self.config.state_dir / "inbound"):
            temporary += folder.rglob(".*.tmp") if folder.exists() else []
            temporary += folder.rglob(".*.part") if folder.exists() else []
        live = {
            row["message_id"]
            for row in self.journal.outgoing_in([OutState.DETECTED, OutState.MINIMISED])
        }
        # Plaintexts in the spool were written by versions before the streamed seal.
        temporary += [p for p in self._spool.glob("*.json") if p.stem not in live]
        # Disclosure lists of messages no longer being minimised (sealed and registered,
        # or dropped): keyed hashes only, but kept nowhere else for a reason.
        temporary += [p for p in self._spool.glob("*.hashes") if p.stem not in live]
        # Ciphertext of an attempt whose (unflushed) first row a power failure took.
        temporary += [p for p in self._spool.glob("*.pgp") if self.journal.outgoing(p.stem) is None]
        for path in temporary:
            if path.is_file():
                path.unlink(missing_ok=True)
                removed += 1
        if removed:
            self._log.warning("leftovers_removed", count=removed)

    def _resume(self) -> None:
        """Replay what the journal says is owed: uploads of sealed messages (enqueueing
        is idempotent, so doing this on every tick is cheap and safe)."""
        for row in self.journal.outgoing_in([OutState.SEALED]):
            if row["last_error"] != SPOOL_MISSING:
                self._enqueue(row["partner"], row["message_id"])

    # -- one pass over the folders --------------------------------------------------

    def _cycle(self) -> None:
        now = self._clock()
        seen: set[Path] = set()
        for partner in self.config.partners.values():
            # Symlinks too: the receiver opens nothing through them and quarantines them.
            # Oldest first: a partner's withdrawal must not be taken before the export it
            # withdraws when several files wait on the channel (after an outage).
            channel = sorted(list_candidates(self._channel(partner)), key=lambda c: c.mtime_ns)
            # Several messages waiting: open them in one gpg run before taking each.
            waiting = [c.path for c in channel if not c.symlink
                       and now >= self._local_failures.get(c.path, now)]  # fmt: skip
            if len(waiting) > 1:
                self._guard(functools.partial(self._prepare, waiting, partner))
            try:
                for candidate in channel:
                    seen.add(candidate.path)
                    take = functools.partial(self._receiver.take, candidate.path, partner)
                    self._attempt(candidate.path, take, now)
                    if self._unexpected.get(candidate.path, 0) >= _UNEXPECTED_LIMIT:
                        del self._unexpected[candidate.path]
                        abandon = functools.partial(self._receiver.abandon, candidate.path, partner)
                        self._guard(abandon)
            finally:
                self._guard(functools.partial(self._receiver.settle, partner))
                self._receiver.release()
        present: set[Candidate] = set()
        sealing: _Sealing | None = None
        try:
            for outbox in self.config.outboxes:
                for folder in _folders_of(outbox):
                    for candidate in list_candidates(folder):
                        present.add(candidate)
                        sealing = self._consider(candidate, outbox, now, sealing)
        finally:
            self._finish_sealing(sealing, now)
        seen |= {c.path for c in present}
        self._settle.prune(seen)
        self._refused &= present  # a refused file that changes or goes is judged anew
        for gone in self._local_failures.keys() - seen:
            del self._local_failures[gone]
        for gone in self._unexpected.keys() - seen:
            del self._unexpected[gone]

    def _prepare(self, waiting: list[Path], partner: Partner) -> None:
        opened = self._receiver.prepare(waiting, partner)
        if opened:
            self._log.info("incoming_opened_together", partner=partner.id, count=opened)

    def _consider(
        self, candidate: Candidate, outbox: Outbox, now: float, sealing: _Sealing | None
    ) -> _Sealing | None:
        """Begin ``candidate`` if it is ready, then finish the export begun before it
        (whose gpg run went on meanwhile); return what is now being sealed."""
        if candidate.symlink:
            self._refuse_unsafe(candidate, outbox, UnsafeOutboxFile("symlink"))
            return sealing
        if not self._settle.observe(candidate, now):
            return sealing
        begun: list[Callable[[], None] | None] = []
        try:
            done = self._attempt(
                candidate.path,
                lambda: begun.append(self._sender.begin(candidate.path, outbox)),
                now,
            )
        except UnsafeOutboxFile as exc:
            self._refuse_unsafe(candidate, outbox, exc)
            return sealing
        self._finish_sealing(sealing, now)
        if not done:
            return None
        if begun[0] is None:  # rejected, or finished before a crash: nothing to seal
            self._settle.forget(candidate.path)
            return None
        return candidate.path, begun[0]

    def _finish_sealing(self, sealing: _Sealing | None, now: float) -> None:
        if sealing is not None and self._attempt(sealing[0], sealing[1], now):
            self._settle.forget(sealing[0])

    def _attempt(self, path: Path, work: Callable[[], object], now: float) -> bool:
        """Work on one file unless it failed for a local reason a short while ago: a
        file that cannot be processed now waits, instead of being retried every pass."""
        retry_at = self._local_failures.get(path)
        if retry_at is not None and now < retry_at:
            return False
        self._unexpected_now = False
        if self._guard(work):
            self._local_failures.pop(path, None)
            self._unexpected.pop(path, None)
            return True
        self._local_failures[path] = now + _LOCAL_RETRY_SECONDS
        if self._unexpected_now:
            self._unexpected[path] = self._unexpected.get(path, 0) + 1
        return False

    def _refuse_unsafe(self, candidate: Candidate, outbox: Outbox, exc: UnsafeOutboxFile) -> None:
        """Left in place for inspection; reported once per file, not on every pass."""
        self._settle.forget(candidate.path)
        if candidate in self._refused:
            return
        self._refused.add(candidate)
        self._log.error("outbox_file_refused", outbox=str(outbox.path), reason=exc.reason)
        self._incident(Detection("outbox-unsafe-file", outbox.partner, None, exc.reason))

    def _guard(self, work: Callable[[], object]) -> bool:
        """Run one unit of work; a failure is logged and retried later, never fatal to
        the daemon and never losing the file it was about.

        What is logged is chosen so that it cannot carry personal data: our own error
        messages (written for that), the strerror and errno of an OSError (never its
        str(), which holds the path, and so an operator's file name), and only the
        type of anything unexpected (its message could quote a value)."""
        try:
            work()
        except UnsafeOutboxFile:
            raise
        except ExchangedError as exc:
            self._log.error("local_failure", error=exc.message, error_type=type(exc).__name__,
                            retry_in_s=_LOCAL_RETRY_SECONDS)  # fmt: skip
            return False
        except OSError as exc:
            self._log.error("local_failure", error=exc.strerror or type(exc).__name__,
                            errno=exc.errno, error_type=type(exc).__name__,
                            retry_in_s=_LOCAL_RETRY_SECONDS)  # fmt: skip
            return False
        except Exception as exc:  # noqa: BLE001 -- one bad file must not stop the daemon
            self._unexpected_now = True
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            self._log.critical(
                "unexpected_error", error_type=type(exc).__name__,
                where=f"{Path(frame.filename).name}:{frame.lineno}",
                retry_in_s=_LOCAL_RETRY_SECONDS,
            )  # fmt: skip
            return False
        return True

    # -- callbacks ------------------------------------------------------------------

    def _enqueue(self, partner: str, message_id: str) -> None:
        self._links[partner].enqueue(message_id)

    def _incident(self, detection: Detection) -> None:
        try:
            self.incidents.detect(detection)
        except Exception as exc:
            # The register failing must not hide the incident: say it in the log at least,
            # and fail the unit of work so it is retried (the file stays where it is).
            # The type only, as _guard does: an exception's text could quote a value.
            self._log.critical(
                "incident_register_failed", kind=detection.kind, partner=detection.partner,
                error_type=type(exc).__name__,
            )  # fmt: skip
            raise LocalSystemError(
                f"the incident register cannot be written ({type(exc).__name__})"
            ) from exc

    def _host_key_mismatch(self, partner: Partner, message: str) -> None:
        self._log.error("host_key_mismatch", partner=partner.id, error=message)
        self._incident(Detection("host-key-mismatch", partner.id, None, "host-key-mismatch"))


def _join_all(threads: Iterable[threading.Thread], *, seconds: float) -> None:
    """Join several threads within one shared time budget."""
    deadline = time.monotonic() + seconds
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))


def _folders_of(outbox: Outbox) -> list[Path]:
    if outbox.category == CATEGORY_FROM_SUBFOLDER:
        return [outbox.path / category for category in CATEGORIES]
    return [outbox.path]
