"""A throw-away two-party set-up on this machine: GnuPG homes, SSH keys, one real sshd
per party on loopback, and a configuration file per party. Used by ``exchanged demo``
and by the end-to-end tests, so both exercise the same thing an operator would.

Each party hosts its own SFTP server; each partner uploads into ``sftp/from-<partner>``,
which the party's daemon watches as that partner's channel (receive mode ``local``).
Every party is a partner of every other one.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from exchanged.core.model import CATEGORIES
from exchanged.testing.keys import cross_import, kill_agent, make_party_home
from exchanged.testing.sshd import SshServer, generate_ssh_keypair

__all__ = ["Party", "Workspace", "build_workspace"]


@dataclass(slots=True)
class Party:
    id: str
    name: str
    root: Path
    fingerprint: str
    ssh_public: str
    sshd: SshServer
    process: subprocess.Popen[bytes] | None = None
    log_handle: IO[bytes] | None = None
    partners: tuple[str, ...] = ()

    @property
    def config_path(self) -> Path:
        return self.root / "exchanged.toml"

    @property
    def gpg_home(self) -> Path:
        return self.root / "gnupg"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def log_path(self) -> Path:
        return self.root / "daemon.log"

    def incoming_from(self, partner: str) -> Path:
        """Where ``partner``'s uploads land (this party's sshd writes here)."""
        return self.root / "sftp" / f"from-{partner}"

    @property
    def incoming(self) -> Path:
        """The one partner's channel, in a two-party workspace."""
        (partner,) = self.partners
        return self.incoming_from(partner)

    def outbox(self, partner: str, category: str | None = None) -> Path:
        base = self.root / "outbox" / partner
        return base / category if category else base


@dataclass(slots=True)
class Workspace:
    root: Path
    parties: dict[str, Party] = field(default_factory=dict)
    settle_seconds: float = 0.3

    def __getitem__(self, party: str) -> Party:
        return self.parties[party]

    def write_config(
        self, party: Party, *, extra: str = "", ports: dict[str, int] | None = None
    ) -> None:
        """Write ``party``'s configuration. ``ports`` overrides the SFTP port used for a
        partner (to put a proxy in between); ``extra`` is top-level TOML."""
        text = f"""\
party = "{party.id}"
state_dir = "{party.state_dir}"
inbox = "{party.inbox}"
{extra}
[gpg]
home = "{party.gpg_home}"
fingerprint = "{party.fingerprint}"

[limits]
settle_seconds = {self.settle_seconds}
rescan_seconds = 5
retry_cap_seconds = 2
"""
        for partner_id in party.partners:
            partner = self.parties[partner_id]
            port = (ports or {}).get(partner_id, partner.sshd.port)
            text += f"""
[[outbox]]
path = "{party.outbox(partner.id)}"
partner = "{partner.id}"
category = "subfolder"

[[partner]]
id = "{partner.id}"
name = "{partner.name}"
fingerprint = "{partner.fingerprint}"
remote_dir = "from-{party.id}"
receive = "local"
local_dir = "{party.incoming_from(partner.id)}"

[partner.sftp]
host = "{partner.sshd.host}"
port = {port}
user = "{partner.sshd.user}"
key_file = "{party.root / "ssh" / "id_ed25519"}"
host_key = "{partner.sshd.host_key_line}"
"""
        party.config_path.write_text(text, encoding="utf-8")

    # -- daemons --------------------------------------------------------------------

    def start_daemon(
        self,
        party: Party,
        *,
        private_mounts: bool = False,
        sandboxed: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        """Run ``party``'s daemon as a subprocess, logging to ``party.log_path``. With
        ``private_mounts`` it gets its own mount namespace (root only), so a test can
        make its folders read-only for it alone (``make_read_only``). ``sandboxed``
        also applies the unit's restrictions that work without systemd
        (``exchanged.testing.sandbox``): only state, inbox, outboxes and channels are
        writable; configuration, keys and credentials are not."""
        party.log_handle = party.log_path.open("ab")
        prefix = ["unshare", "--mount", "--propagation", "private"] if private_mounts else []
        if sandboxed:
            writable = [party.state_dir, party.inbox, party.root / "outbox", party.gpg_home]
            writable += [party.incoming_from(p) for p in party.partners]
            for folder in writable:
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            prefix = [
                "unshare", "--mount", "--propagation", "private", "--",
                sys.executable, "-m", "exchanged.testing.sandbox",
                *(f"--rw={folder}" for folder in writable), "--",
            ]  # fmt: skip
        party.process = subprocess.Popen(
            [*prefix, sys.executable, "-m", "exchanged", "run", "-c", str(party.config_path)],
            stdout=party.log_handle,
            stderr=subprocess.STDOUT,
            env={
                **os.environ,
                "PYTHONUNBUFFERED": "1",
                "CREDENTIALS_DIRECTORY": str(self.credentials(party)),
                **(env or {}),
            },
        )

    def credentials(self, party: Party) -> Path:
        """A $CREDENTIALS_DIRECTORY as systemd makes it, holding the BSN hashing key
        (the daemon does not start without its disclosure register)."""
        folder = party.root / "credentials"
        folder.mkdir(mode=0o700, exist_ok=True)
        key = folder / "bsn-hash-key"
        if not key.exists():
            key.write_text(secrets.token_hex(32), encoding="ascii")
            key.chmod(0o400)
        return folder

    def make_read_only(self, party: Party, folder: Path) -> None:
        """Remount ``folder`` read-only inside the daemon's private mount namespace."""
        assert party.process is not None  # noqa: S101 -- a test helper's precondition
        subprocess.run(
            ["nsenter", "-t", str(party.process.pid), "-m", "sh", "-c",
             'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1"', "sh", str(folder)],
            check=True,
        )  # fmt: skip

    def stop_daemon(self, party: Party, *, timeout: float = 15.0) -> int | None:
        if party.process is None:
            return None
        if party.process.poll() is None:
            party.process.send_signal(signal.SIGTERM)
            try:
                party.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                party.process.kill()
                party.process.wait()
        code = party.process.returncode
        party.process = None
        if party.log_handle is not None:
            party.log_handle.close()
            party.log_handle = None
        return code

    def close(self) -> None:
        for party in self.parties.values():
            self.stop_daemon(party)
            party.sshd.stop()
            kill_agent(party.gpg_home)

    # -- reading results ------------------------------------------------------------

    def outgoing_states(self, party: Party, kind: str = "export") -> dict[str, int]:
        """{state: count} of ``party``'s outgoing messages, read from its journal."""
        journal = party.state_dir / "journal.sqlite"
        if not journal.exists():
            return {}
        with contextlib.closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True)) as db:
            try:
                rows = db.execute(
                    "SELECT state, COUNT(*) FROM outgoing WHERE kind = ? GROUP BY state", (kind,)
                ).fetchall()
            except sqlite3.OperationalError:
                return {}
        return dict(rows)

    def wait_for(self, expected: dict[str, int], *, timeout: float) -> bool:
        """Wait until each party has ``expected[party]`` exports receipted."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(
                self.outgoing_states(self.parties[p]).get("receipted", 0) >= n
                for p, n in expected.items()
            ):
                return True
            for party in self.parties.values():
                if party.process is not None and party.process.poll() is not None:
                    return False
            time.sleep(0.1)
        return False

    def log_lines(self) -> Iterator[str]:
        for party in self.parties.values():
            if party.log_path.exists():
                yield from party.log_path.read_text(encoding="utf-8").splitlines()


def build_workspace(
    root: Path,
    parties: Sequence[tuple[str, str]] = (
        ("rbl", "RBL Midden-Gelre"),
        ("passendwijs", "Passend Wijs"),
    ),
    *,
    settle_seconds: float = 0.3,
) -> Workspace:
    """Create keys, sshd servers (started) and configs for ``parties`` under ``root``;
    every party is the partner of every other one."""
    if len(parties) < 2:
        raise ValueError("a workspace connects at least two parties")
    workspace = Workspace(root=root, settle_seconds=settle_seconds)
    ids = [party_id for party_id, _ in parties]
    ssh_public: dict[str, str] = {}
    fingerprints: dict[str, str] = {}
    for party_id in ids:
        party_root = root / party_id
        (party_root / "ssh").mkdir(mode=0o700, parents=True, exist_ok=True)
        ssh_public[party_id] = generate_ssh_keypair(party_root / "ssh" / "id_ed25519", party_id)
        fingerprints[party_id] = make_party_home(party_root / "gnupg", party_id)
    for index, a in enumerate(ids):
        for b in ids[index + 1 :]:
            cross_import(root / a / "gnupg", fingerprints[a], root / b / "gnupg", fingerprints[b])
    for party_id, name in parties:
        others = tuple(i for i in ids if i != party_id)
        party_root = root / party_id
        sshd = SshServer(
            party_root / "sshd",
            sftp_root=party_root / "sftp",
            authorized_keys=[ssh_public[other] for other in others],
        )
        workspace.parties[party_id] = Party(
            id=party_id,
            name=name,
            root=party_root,
            fingerprint=fingerprints[party_id],
            ssh_public=ssh_public[party_id],
            sshd=sshd,
            partners=others,
        )
    for party in workspace.parties.values():
        (party.root / "outbox").mkdir(mode=0o700, exist_ok=True)
        for partner in party.partners:
            party.outbox(partner).mkdir(mode=0o700, exist_ok=True)
            party.incoming_from(partner).mkdir(mode=0o700, parents=True, exist_ok=True)
            for category in CATEGORIES:
                party.outbox(partner, category).mkdir(mode=0o700, parents=True, exist_ok=True)
        party.sshd.start()
    for party in workspace.parties.values():
        workspace.write_config(party)
    return workspace
