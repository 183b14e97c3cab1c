"""The fault-injection suite: two real daemons, real sshd, real gpg, and a lot of trouble.

What it does, in one run:

- builds the two-party workspace (``rbl`` and ``passendwijs``, each with its own sshd)
  and puts a :class:`~exchanged.testing.proxy.TcpProxy` in front of each sshd, so each
  daemon reaches its partner only through a proxy;
- drops small synthetic exports (3-5 records) into both outboxes over time, remembering
  the BSNs of every dropped file;
- meanwhile ``kill -9``s each daemon at random moments (and starts it again after a
  random pause), stops and starts each sshd during transfers, cuts all connections
  through a proxy, lets a proxy cut connections at random per forwarded chunk, and
  pauses a proxy for a moment;
- exercises the receiver's clock checks: per direction, a correctly signed export dated
  eight days ago and one dated an hour ahead (both must be refused ``failed/expired``
  and never delivered), and a valid one put on the channel twice (delivered once);
- waits until every dropped export has a verified receipt, stops the daemons, and counts
  from the receivers' inboxes and the senders' journals what was lost (a dropped export
  whose records never reached the partner's inbox) and what was delivered more than once
  (a record in two inbox files).

The last line printed is ``faults: K kills, N messages, L lost, D duplicated``.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import heapq
import itertools
import json
import random
import re
import shutil
import sqlite3
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TextIO

from exchanged.adapters.files import sha256_file
from exchanged.adapters.gpg import Gpg
from exchanged.adapters.journal import Journal
from exchanged.core import envelope
from exchanged.core.machine import OutState
from exchanged.core.model import CATEGORIES, MESSAGE_ID_PATTERN, MessageId, Record
from exchanged.core.policy import RecordChecker
from exchanged.demo import drop_export
from exchanged.policyfile import load_policy
from exchanged.testing.proxy import TcpProxy
from exchanged.testing.synthetic import synthetic_rows
from exchanged.testing.workspace import Party, Workspace, build_workspace

__all__ = ["FaultPlan", "FaultResult", "run_faults"]

_INBOX_NAME = re.compile(rf"_({MESSAGE_ID_PATTERN})\.csv$")
_TICK = 0.1
_PROGRESS_SECONDS = 15.0
_FAR_FUTURE = float("inf")
_MAX_CRASHES = 10


class _GaveUp(Exception):
    """The run cannot go on (daemons keep crashing); the result says why."""


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """How much trouble to make. The defaults are the full suite (``make faults``)."""

    messages: int = 200  # exports dropped per direction
    kills: int = 20  # kill -9 per daemon
    sshd_restarts: int = 3  # stop/start per sshd
    proxy_cuts: int = 15  # cut_all per proxy
    flaky_windows: int = 6  # windows of random cuts per proxy
    pauses: int = 4  # pauses per proxy
    cut_probability: float = 0.02  # per forwarded chunk, inside a flaky window
    drop_interval: float = 0.8  # seconds between two drops of one party
    records: tuple[int, int] = (3, 5)  # records per export, inclusive range
    settle_timeout: float = 240.0  # after the last fault, to have everything receipted
    seed: int | None = None
    root: Path | None = None  # where to build the workspace (default: a fresh temp dir)
    keep: bool = False  # keep the workspace even when the run passes


@dataclass(slots=True)
class FaultResult:
    kills: int = 0
    messages: int = 0
    lost: int = 0
    duplicated: int = 0
    crashes: int = 0
    clock_failures: int = 0
    unclean_stops: int = 0
    settled: bool = False
    elapsed: float = 0.0
    kills_by_party: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def line(self) -> str:
        return (
            f"faults: {self.kills} kills, {self.messages} messages, "
            f"{self.lost} lost, {self.duplicated} duplicated"
        )

    def passed(self, plan: FaultPlan) -> bool:
        enough = all(n >= plan.kills for n in self.kills_by_party.values()) and (
            self.messages >= 2 * plan.messages
        )
        return (
            enough
            and self.settled
            and self.lost == 0
            and self.duplicated == 0
            and self.crashes == 0
            and self.clock_failures == 0
            and self.unclean_stops == 0
        )


@dataclass(frozen=True, slots=True)
class _Drop:
    sender: str
    receiver: str
    name: str
    bsns: frozenset[str]


@dataclass(frozen=True, slots=True)
class _Crafted:
    """A message made by hand and put straight on the receiver's channel."""

    what: str  # "expired", "future" or "replayed"
    sender: str
    receiver: str
    message_id: str
    ciphertext: Path
    bsns: frozenset[str]

    @property
    def deliveries_expected(self) -> int:
        return 1 if self.what == "replayed" else 0


class _Schedule:
    """A time-ordered list of things to do, run from one thread."""

    def __init__(self, start: float) -> None:
        self._start = start
        self._heap: list[tuple[float, int, Callable[[], object]]] = []
        self._seq = itertools.count()

    def at(self, offset: float, action: Callable[[], object]) -> None:
        heapq.heappush(self._heap, (self._start + offset, next(self._seq), action))

    def after(self, delay: float, action: Callable[[], object]) -> None:
        heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), action))

    def next_due(self) -> float:
        return self._heap[0][0] if self._heap else _FAR_FUTURE

    def pop_due(self, now: float) -> Callable[[], object] | None:
        if self._heap and self._heap[0][0] <= now:
            return heapq.heappop(self._heap)[2]
        return None

    def __len__(self) -> int:
        return len(self._heap)


class _Run:
    def __init__(self, plan: FaultPlan, root: Path, out: TextIO) -> None:
        self.plan = plan
        self.root = root
        self.out = out
        self.rng = random.Random(plan.seed)  # noqa: S311 -- synthetic data and fault timing
        self.result = FaultResult()
        self.ws: Workspace | None = None
        self.proxies: dict[str, TcpProxy] = {}
        self.drops: list[_Drop] = []
        self.crafted: list[_Crafted] = []
        self.replayed: set[str] = set()
        self.used_bsns: set[str] = set()
        self.expected_down: set[str] = set()  # daemons we killed and not yet restarted
        self.started_at: dict[str, int] = {}  # party -> size of its log when last started
        self.started = time.monotonic()

    # -- output ---------------------------------------------------------------------

    def say(self, text: str) -> None:
        print(f"faults: [{time.monotonic() - self.started:6.1f}s] {text}", file=self.out,
              flush=True)  # fmt: skip

    # -- set-up ---------------------------------------------------------------------

    @property
    def workspace(self) -> Workspace:
        assert self.ws is not None  # noqa: S101 -- set up before use
        return self.ws

    def partner_of(self, party: Party) -> Party:
        return next(p for p in self.workspace.parties.values() if p.id != party.id)

    def set_up(self) -> None:
        self.say(f"setting up two parties in {self.root}")
        self.ws = build_workspace(self.root, settle_seconds=0.2)
        for party in self.workspace.parties.values():
            proxy = TcpProxy(party.sshd.host, party.sshd.port, seed=self.rng.randrange(2**32))
            proxy.start()
            self.proxies[party.id] = proxy
        for party in self.workspace.parties.values():
            # Each daemon reaches its partner's sshd only through that sshd's proxy.
            ports = {p: self.proxies[p].port for p in party.partners}
            self.workspace.write_config(party, ports=ports)
        self.craft_messages()

    def fresh_rows(self, category: str, n: int) -> tuple[list[str], list[list[str]], set[str]]:
        """Synthetic rows whose BSNs no earlier export used, so each BSN names one drop."""
        while True:
            header, rows = synthetic_rows(self.rng, category, n)
            bsns = {row[0].replace(".", "") for row in rows}
            if len(bsns) == n and not bsns & self.used_bsns:
                self.used_bsns |= bsns
                return header, rows, bsns

    def craft_messages(self) -> None:
        """Per direction, three exports sealed with the sender's real key and queued in
        its journal and spool as its daemon would have done, but dated as by a sender
        whose clock is wrong: eight days ago and an hour ahead (the receiver must refuse
        both ``failed/expired`` and deliver neither), and one dated now, which the suite
        later puts on the receiver's channel a second time (delivered once only)."""
        policy = load_policy(None)
        now = datetime.now(UTC)
        ages = {
            "expired": now - timedelta(days=8),
            "future": now + timedelta(hours=1),
            "replayed": now,
        }
        for sender in self.workspace.parties.values():
            receiver = self.partner_of(sender)
            spool = sender.state_dir / "spool"
            spool.mkdir(mode=0o700, parents=True, exist_ok=True)
            gpg = Gpg(sender.gpg_home, sender.fingerprint)
            journal = Journal(sender.state_dir / "journal.sqlite")
            try:
                for what, created_at in ages.items():
                    category = self.rng.choice(CATEGORIES)
                    header, rows, bsns = self.fresh_rows(category, 3)
                    checker = RecordChecker(policy, header, category=category, today=date.today())
                    checked = [checker.check(i, row) for i, row in enumerate(rows, start=1)]
                    records = [r for r in checked if isinstance(r, Record)]
                    if not checker.finish().accepted or len(records) != len(rows):
                        raise RuntimeError("synthetic rows failed the policy")
                    message_id = MessageId.new()
                    head = envelope.Header("export", message_id, sender.id, receiver.id, created_at)
                    plaintext = spool / f"{message_id.value}.json"
                    body = "".join(envelope.export_chunks(head, category, records))
                    plaintext.write_text(body, encoding="utf-8")
                    ciphertext = spool / message_id.wire_name
                    gpg.seal(plaintext, ciphertext, receiver.fingerprint)
                    plaintext.unlink()
                    digest, size = sha256_file(ciphertext)
                    stamp = time.time()
                    journal.add_outgoing(message_id.value, receiver.id, kind="export",
                                         state=OutState.MINIMISED, now=stamp,
                                         category=category)  # fmt: skip
                    journal.update_outgoing(message_id.value, now=stamp, state=OutState.SEALED,
                                            record_count=len(records), sha256=digest,
                                            size=size)  # fmt: skip
                    keep = self.root / "crafted"
                    keep.mkdir(mode=0o700, exist_ok=True)
                    copy = keep / message_id.wire_name
                    shutil.copyfile(ciphertext, copy)
                    self.crafted.append(
                        _Crafted(what, sender.id, receiver.id, message_id.value, copy,
                                 frozenset(bsns))
                    )  # fmt: skip
            finally:
                journal.close()
                gpg.close()

    # -- faults ---------------------------------------------------------------------

    def drop(self, party: Party, number: int) -> None:
        partner = self.partner_of(party)
        category = self.rng.choice(CATEGORIES)
        n = self.rng.randint(*self.plan.records)
        header, rows, bsns = self.fresh_rows(category, n)
        name = f"export-{number:04d}.csv"
        drop_export(party.outbox(partner.id, category), name, header, rows)
        self.drops.append(_Drop(party.id, partner.id, name, frozenset(bsns)))

    def kill(self, schedule: _Schedule, party: Party) -> None:
        process = party.process
        if process is None or party.id in self.expected_down:
            schedule.after(0.3, lambda: self.kill(schedule, party))
            return
        process.kill()
        process.wait()
        self.expected_down.add(party.id)
        self.workspace.stop_daemon(party)  # only closes the log handle now
        self.result.kills += 1
        self.result.kills_by_party[party.id] = self.result.kills_by_party.get(party.id, 0) + 1
        schedule.after(self.rng.uniform(0.05, 1.5), lambda: self.restart(party))

    def restart(self, party: Party) -> None:
        self.start(party)
        self.expected_down.discard(party.id)

    def start(self, party: Party) -> None:
        """Start ``party``'s daemon, remembering where its log stood (see ``calm``)."""
        self.started_at[party.id] = party.log_path.stat().st_size if party.log_path.exists() else 0
        self.workspace.start_daemon(party)

    def sshd_outage(self, schedule: _Schedule, party: Party) -> None:
        if not party.sshd.running:
            return
        party.sshd.stop()
        self.say(f"sshd of {party.id} stopped")
        schedule.after(self.rng.uniform(1.0, 4.0), lambda: self.sshd_start(party))

    def sshd_start(self, party: Party) -> None:
        party.sshd.start()
        self.say(f"sshd of {party.id} started")

    def flaky(self, schedule: _Schedule, proxy: TcpProxy) -> None:
        proxy.set_cut_probability(self.plan.cut_probability)
        schedule.after(self.rng.uniform(3.0, 8.0), lambda: proxy.set_cut_probability(0.0))

    def pause(self, schedule: _Schedule, proxy: TcpProxy) -> None:
        proxy.pause()
        schedule.after(self.rng.uniform(0.5, 3.0), proxy.resume)

    def replay(self, schedule: _Schedule, crafted: _Crafted) -> None:
        """Put a copy of a message the receiver already answered back on its channel, as
        its sshd would (a dot-name, then a rename). Until the first copy is answered this
        waits: an earlier copy would only replace a file not yet read."""
        receiver = self.workspace[crafted.receiver]
        target = receiver.incoming / crafted.ciphertext.name
        if target.exists() or self.incoming_state(receiver, crafted.message_id) != "answered":
            schedule.after(0.5, functools.partial(self.replay, schedule, crafted))
            return
        temp = receiver.incoming / f".{crafted.ciphertext.name}.part"
        shutil.copyfile(crafted.ciphertext, temp)
        temp.rename(target)
        self.replayed.add(crafted.message_id)
        self.say(f"replayed an answered message on {receiver.id}'s channel")

    def plan_faults(self, schedule: _Schedule) -> float:
        """Put every fault on the schedule; return when the last one happens.

        A daemon with little to do is idle most of the time, and a fault that hits an
        idle daemon proves little. So half of the kills, sshd outages and cuts are timed
        at random just after some drop, while that export is being minimised, sealed,
        uploaded, opened or receipted; the other half at any moment, start-up included,
        and kills also a little past the last drop, while the backlog is caught up with.
        """
        plan, rng = self.plan, self.rng
        window = plan.messages * plan.drop_interval
        drops: list[float] = []
        for party in self.workspace.parties.values():
            offset = rng.uniform(0, plan.drop_interval)
            for i in range(plan.messages):
                at = offset + i * plan.drop_interval
                schedule.at(at, functools.partial(self.drop, party, i))
                drops.append(at)

        def moment(start: float, end: float) -> float:
            if rng.random() < 0.5:
                return rng.choice(drops) + rng.uniform(0.05, 1.0)
            return rng.uniform(start, end)

        for party in self.workspace.parties.values():
            for _ in range(plan.kills):
                at = moment(0.5, window + 3.0)
                schedule.at(at, functools.partial(self.kill, schedule, party))
            for _ in range(plan.sshd_restarts):
                at = moment(0.1 * window, 0.9 * window)
                schedule.at(at, functools.partial(self.sshd_outage, schedule, party))
            proxy = self.proxies[party.id]
            for _ in range(plan.proxy_cuts):
                schedule.at(moment(0.5, window), proxy.cut_all)
            for _ in range(plan.flaky_windows):
                at = rng.uniform(0.5, window)
                schedule.at(at, functools.partial(self.flaky, schedule, proxy))
            for _ in range(plan.pauses):
                at = moment(0.5, window)
                schedule.at(at, functools.partial(self.pause, schedule, proxy))
        for crafted in self.crafted:
            if crafted.what == "replayed":
                at = rng.uniform(0.2 * window, 0.6 * window)
                schedule.at(at, functools.partial(self.replay, schedule, crafted))
        return max(*drops, window + 3.0)

    def watch_daemons(self) -> None:
        """A daemon that exited without being killed by us crashed: note it, restart."""
        for party in self.workspace.parties.values():
            process = party.process
            if process is None or party.id in self.expected_down:
                continue
            code = process.poll()
            if code is not None:
                self.result.crashes += 1
                self.workspace.stop_daemon(party)
                self.result.notes.append(f"{party.id} daemon crashed with status {code}")
                if self.result.crashes > _MAX_CRASHES:
                    # A daemon that cannot start (a configuration or credential problem)
                    # would be restarted in a tight loop for the rest of the run.
                    raise _GaveUp(f"daemons crashed {self.result.crashes} times; giving up")
                self.say(f"{party.id} daemon exited by itself with status {code}; restarting")
                self.start(party)

    def inject(self) -> None:
        for party in self.workspace.parties.values():
            self.start(party)
        schedule = _Schedule(time.monotonic())
        end = self.plan_faults(schedule)
        self.say(
            f"{2 * self.plan.messages} exports and {2 * self.plan.kills} kills over "
            f"{end:.0f} s; sshd outages, connection cuts and pauses on the way"
        )
        next_progress = time.monotonic() + _PROGRESS_SECONDS
        while len(schedule):
            now = time.monotonic()
            action = schedule.pop_due(now)
            if action is not None:
                action()
                continue
            self.watch_daemons()
            if now >= next_progress:
                next_progress = now + _PROGRESS_SECONDS
                self.progress()
            time.sleep(max(0.0, min(_TICK, schedule.next_due() - now)))
        self.calm()

    def calm(self) -> None:
        """Faults are over: every server up, every proxy clean, every daemon running."""
        for party in self.workspace.parties.values():
            proxy = self.proxies[party.id]
            proxy.set_cut_probability(0.0)
            proxy.resume()
            party.sshd.start()
            if party.process is None:
                self.restart(party)
            # Every daemon up before anything else happens to it, also one restarted a
            # moment before the faults ended: when every export is already receipted,
            # the final stop would otherwise reach a daemon still starting its
            # interpreter, and count as an unclean stop.
            self.wait_ready(party, self.started_at.get(party.id, 0))

    def wait_ready(self, party: Party, mark: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with party.log_path.open("rb") as handle:
                handle.seek(mark)
                if b'"service_ready"' in handle.read():
                    return
            time.sleep(0.05)

    def progress(self) -> None:
        parts = []
        for party in self.workspace.parties.values():
            owed = sum(1 for d in self.drops if d.sender == party.id)
            owed += sum(1 for c in self.crafted if c.sender == party.id and c.deliveries_expected)
            parts.append(f"{party.id} {self.receipted(party)}/{owed} receipted")
        self.say(f"{', '.join(parts)}; {self.result.kills} kills so far")

    # -- settling and counting ------------------------------------------------------

    def journal_rows(self, party: Party, query: str) -> list[tuple[object, ...]] | None:
        journal = party.state_dir / "journal.sqlite"
        if not journal.exists():
            return None
        try:
            with contextlib.closing(
                sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5)
            ) as db:
                return db.execute(query).fetchall()
        except sqlite3.Error:
            return None  # e.g. a hot WAL left by a kill, until the daemon recovers it

    def receipted(self, party: Party) -> int:
        rows = self.journal_rows(
            party, "SELECT COUNT(*) FROM outgoing WHERE kind = 'export' AND state = 'receipted'"
        )
        return int(rows[0][0]) if rows else 0  # type: ignore[call-overload]

    def incoming_state(self, party: Party, message_id: str) -> str | None:
        rows = self.journal_rows(
            party,
            f"SELECT state FROM incoming WHERE message_id = '{message_id}'",  # noqa: S608 -- ids are our own UUIDs
        )
        return str(rows[0][0]) if rows else None

    def crafted_answered(self) -> bool:
        """Each crafted message answered by its receiver and its answer back with the
        sender, and each replayed copy taken off the channel."""
        for crafted in self.crafted:
            receiver = self.workspace[crafted.receiver]
            if crafted.what == "replayed" and crafted.message_id not in self.replayed:
                return False
            if (receiver.incoming / crafted.ciphertext.name).exists():
                return False
            if self.incoming_state(receiver, crafted.message_id) != "answered":
                return False
            rows = self.journal_rows(
                self.workspace[crafted.sender],
                f"SELECT state FROM outgoing WHERE message_id = '{crafted.message_id}'",  # noqa: S608 -- ids are our own UUIDs
            )
            if not rows or rows[0][0] not in ("receipted", "refused"):
                return False
        return True

    def settle(self) -> bool:
        self.say("faults over; waiting for every export to be receipted")
        expected = Counter(d.sender for d in self.drops)
        expected.update(c.sender for c in self.crafted if c.deliveries_expected)
        deadline = time.monotonic() + self.plan.settle_timeout
        next_progress = time.monotonic() + _PROGRESS_SECONDS
        while time.monotonic() < deadline:
            self.watch_daemons()
            done = all(self.receipted(self.workspace[p]) >= n for p, n in expected.items())
            if done and self.crafted_answered():
                return True
            if time.monotonic() >= next_progress:
                next_progress = time.monotonic() + _PROGRESS_SECONDS
                self.progress()
            time.sleep(0.25)
        self.progress()
        return False

    def stop_daemons(self) -> None:
        for party in self.workspace.parties.values():
            code = self.workspace.stop_daemon(party)
            if code not in (0, None):
                self.result.unclean_stops += 1
                self.result.notes.append(f"{party.id} daemon exited {code} on SIGTERM")

    def count(self) -> None:
        result = self.result
        result.messages = len(self.drops)
        delivered: dict[str, Counter[str]] = {}  # receiver -> bsn -> inbox files holding it
        inbox_ids: dict[str, set[str]] = {}
        for party in self.workspace.parties.values():
            delivered[party.id], inbox_ids[party.id] = _read_inbox(party.inbox)
        for drop in self.drops:
            seen = delivered[drop.receiver]
            if any(seen[b] == 0 for b in drop.bsns):
                result.lost += 1
                result.notes.append(
                    f"lost: {drop.sender} -> {drop.receiver} {drop.name} "
                    f"({sum(1 for b in drop.bsns if seen[b] == 0)} of {len(drop.bsns)} records "
                    "missing)"
                )
            if any(seen[b] > 1 for b in drop.bsns):
                result.duplicated += 1
                result.notes.append(
                    f"duplicated: {drop.sender} -> {drop.receiver} {drop.name} "
                    f"(in {max(seen[b] for b in drop.bsns)} inbox files)"
                )
        self.check_journals(inbox_ids)
        for crafted in self.crafted:
            self.check_crafted(crafted, delivered[crafted.receiver], inbox_ids[crafted.receiver])

    def check_journals(self, inbox_ids: dict[str, set[str]]) -> None:
        """The senders' view: one export per dropped file, each receipted and in the
        partner's inbox under its message id; nothing in the inbox the sender never sent."""
        crafted_ids = {c.message_id for c in self.crafted}
        for party in self.workspace.parties.values():
            partner = self.partner_of(party)
            rows = self.journal_rows(
                party, "SELECT message_id, state FROM outgoing WHERE kind = 'export'"
            )
            if rows is None:
                self.result.notes.append(f"{party.id}: journal unreadable")
                continue
            states = Counter(str(state) for _, state in rows)
            dropped = sum(1 for d in self.drops if d.sender == party.id)
            self.say(f"{party.id} journal: {dict(states)} for {dropped} dropped exports")
            sent = {str(mid) for mid, _ in rows} - crafted_ids
            receipted = {str(mid) for mid, state in rows if state == "receipted"} - crafted_ids
            if len(sent) != dropped:
                self.result.notes.append(
                    f"{party.id}: journal holds {len(sent)} exports for {dropped} dropped files"
                )
            if len(receipted) != dropped:
                self.result.notes.append(
                    f"{party.id}: {len(receipted)} of {dropped} dropped exports receipted"
                )
            missing = receipted - inbox_ids[partner.id]
            if missing:
                # Receipted, so the partner said "processed", yet its inbox lacks the file.
                self.result.lost += len(missing)
                self.result.notes.append(
                    f"lost: {len(missing)} export(s) of {party.id} receipted but not in "
                    f"{partner.id}'s inbox: {sorted(missing)[:5]}"
                )
            strangers = inbox_ids[partner.id] - sent - crafted_ids
            if strangers:
                self.result.notes.append(
                    f"{partner.id}'s inbox holds {len(strangers)} file(s) that {party.id} "
                    f"never journaled: {sorted(strangers)[:5]}"
                )

    def check_crafted(self, crafted: _Crafted, seen: Counter[str], ids: set[str]) -> None:
        """Receiver: disposition and deliveries; sender: the receipt it got back."""
        rows = self.journal_rows(
            self.workspace[crafted.receiver],
            "SELECT disposition FROM incoming WHERE message_id = "  # noqa: S608 -- ids are our own UUIDs
            f"'{crafted.message_id}'",
        )
        disposition = str(rows[0][0]) if rows else None
        rows = self.journal_rows(
            self.workspace[crafted.sender],
            f"SELECT state FROM outgoing WHERE message_id = '{crafted.message_id}'",  # noqa: S608 -- ids are our own UUIDs
        )
        sender_state = str(rows[0][0]) if rows else None
        replay = crafted.what == "replayed"
        wanted = ("processed", "receipted") if replay else ("failed/expired", "refused")
        copies = max((seen[b] for b in crafted.bsns), default=0)
        in_inbox = crafted.message_id in ids
        ok = (disposition, sender_state) == wanted and copies == crafted.deliveries_expected
        ok = ok and in_inbox == replay and (not replay or crafted.message_id in self.replayed)
        label = f"{crafted.what} export {crafted.sender} -> {crafted.receiver}"
        self.say(
            f"clock/replay check: {label}: {disposition}, sender {sender_state}, "
            f"delivered {copies}x"
        )
        if not ok:
            self.result.clock_failures += 1
            self.result.notes.append(
                f"{label}: disposition {disposition}, sender state {sender_state} "
                f"(want {'/'.join(wanted)}), delivered {copies}x "
                f"(want {crafted.deliveries_expected}x)"
            )
        if replay and copies > 1:
            self.result.duplicated += 1

    def log_summary(self) -> None:
        """Errors the daemons logged, by event, to help read a failed run."""
        for party in self.workspace.parties.values():
            events: Counter[str] = Counter()
            tracebacks = 0
            for line in _lines(party.log_path):
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    tracebacks += line.startswith("Traceback")
                    continue
                if isinstance(event, dict) and event.get("level") in ("error", "critical"):
                    events[str(event.get("event"))] += 1
            summary = ", ".join(f"{name} {n}" for name, n in events.most_common(8)) or "none"
            self.say(f"{party.id} logged errors: {summary}; tracebacks: {tracebacks}")
            if tracebacks:
                self.result.notes.append(f"{party.id} daemon log holds {tracebacks} traceback(s)")

    def close(self) -> None:
        for proxy in self.proxies.values():
            proxy.stop()
        if self.ws is not None:
            self.ws.close()


def _read_inbox(inbox: Path) -> tuple[Counter[str], set[str]]:
    """(bsn -> number of inbox files holding it, message ids in the inbox)."""
    holders: Counter[str] = Counter()
    ids: set[str] = set()
    if not inbox.exists():
        return holders, ids
    for path in sorted(inbox.glob("*.csv")):
        match = _INBOX_NAME.search(path.name)
        if match is None:
            continue
        ids.add(match.group(1))
        with path.open(encoding="utf-8-sig", newline="") as handle:
            bsns = {row["bsn"] for row in csv.DictReader(handle, delimiter=";")}
        holders.update(bsns)
    return holders, ids


def _lines(path: Path) -> Iterator[str]:
    if path.exists():
        yield from path.read_text(encoding="utf-8", errors="replace").splitlines()


def run_faults(plan: FaultPlan, out: TextIO) -> FaultResult:
    """Run the suite; progress goes to ``out``, the result line is the caller's to print."""
    if plan.root is None:
        root = Path(tempfile.mkdtemp(prefix="xf-"))  # short: gpg socket paths must fit
    else:
        root = plan.root
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
    root.chmod(0o700)
    run = _Run(plan, root, out)
    try:
        run.set_up()
        try:
            run.inject()
            run.result.settled = run.settle()
        except _GaveUp as exc:
            run.say(str(exc))
            run.result.notes.append(str(exc))
        run.stop_daemons()
        run.count()
        run.log_summary()
        for proxy_party, proxy in run.proxies.items():
            stats = proxy.stats()
            run.say(
                f"proxy to {proxy_party}'s sshd: {stats.accepted} connections, {stats.cuts} cut "
                f"({stats.random_cuts} at random), {stats.upstream_failures} refused upstream"
            )
    finally:
        run.close()
    result = run.result
    result.elapsed = time.monotonic() - run.started
    if not result.settled:
        result.notes.append(f"not everything was receipted within {plan.settle_timeout:.0f} s")
    for note in result.notes:
        print(f"faults: {note}", file=out, flush=True)
    passed = result.passed(plan)
    if plan.keep or not passed or plan.root is not None:
        print(f"faults: workspace kept in {root} (configs, journals, logs)", file=out, flush=True)
    else:
        shutil.rmtree(root, ignore_errors=True)
    print(f"faults: finished in {result.elapsed:.1f} s", file=out, flush=True)
    return result
