"""A real OpenSSH ``sshd`` on a loopback port, for the tests and the demo.

The server gets its own config, host key and ``authorized_keys`` in a work folder and
serves only ``internal-sftp``. It runs as whoever runs the tests: as root it logs clients
in as root, as a normal user it can only log clients in as that same user (a non-root
sshd cannot switch users), so :attr:`SshServer.user` is always the current user.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

from exchanged.errors import LocalSystemError

__all__ = ["SSHD", "SshServer", "SshServerError", "free_port", "generate_ssh_keypair"]

# sshd refuses to start when invoked by a relative path (it re-executes itself).
SSHD = Path("/usr/sbin/sshd")

_HOST = "127.0.0.1"
_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0


class SshServerError(LocalSystemError):
    """The test sshd could not be set up, started or stopped."""


def generate_ssh_keypair(path: Path, comment: str = "exchanged") -> str:
    """Create an unencrypted ed25519 key pair at ``path`` / ``path.pub``.

    Returns the public key line (``ssh-ed25519 AAAA... comment``).
    """
    for stale in (path, path.with_name(path.name + ".pub")):
        # ssh-keygen asks "Overwrite (y/n)?" on an existing file and would hang or fail.
        stale.unlink(missing_ok=True)
    result = subprocess.run(
        ["ssh-keygen", "-t", "ed25519", "-N", "", "-f", str(path), "-C", comment, "-q"],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise SshServerError(
            f"ssh-keygen failed (exit {result.returncode}): {result.stderr.strip()}"
        )
    path.chmod(0o600)
    return path.with_name(path.name + ".pub").read_text(encoding="ascii").strip()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _check_config_path(path: Path) -> str:
    text = str(path)
    # sshd_config splits on whitespace and treats quotes and '%' specially; test folders
    # never need them, so refuse rather than half-escape.
    if any(ch.isspace() or ch in "\"'%#" for ch in text):
        raise SshServerError(f"path not usable in sshd_config: {text!r}")
    return text


class SshServer:
    """A running ``sshd -D`` serving ``internal-sftp`` rooted at ``sftp_root``.

    Use as a context manager (starts on enter, stops on exit) or call :meth:`start` and
    :meth:`stop`. The port stays the same across :meth:`restart`, so clients configured
    for the server keep pointing at it.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        sftp_root: Path,
        authorized_keys: Sequence[str],
        port: int | None = None,
    ) -> None:
        self._workdir = workdir
        self._sftp_root = sftp_root
        self._port = port if port is not None else free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._host_key = workdir / "ssh_host_ed25519_key"
        self._config = workdir / "sshd_config"
        self._log = workdir / "sshd.log"
        self._authorized_keys = workdir / "authorized_keys"

        workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        sftp_root.mkdir(parents=True, exist_ok=True)
        self.set_authorized_keys(authorized_keys)
        # Made up front so tests can pin the host key before the server first starts.
        generate_ssh_keypair(self._host_key, comment="exchanged-test-host")
        self._write_config()

    # -- properties -------------------------------------------------------------------

    @property
    def host(self) -> str:
        return _HOST

    @property
    def port(self) -> int:
        return self._port

    @property
    def user(self) -> str:
        return getpass.getuser()

    @property
    def host_key_line(self) -> str:
        """The server's public host key as ``ssh-ed25519 AAAA...`` (no comment)."""
        fields = self._host_key.with_name(self._host_key.name + ".pub").read_text().split()
        return f"{fields[0]} {fields[1]}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- control ----------------------------------------------------------------------

    def set_authorized_keys(self, keys: Sequence[str]) -> None:
        """Replace the client keys allowed in; sshd rereads the file on every login."""
        text = "".join(f"{key.strip()}\n" for key in keys)
        tmp = self._authorized_keys.with_name(self._authorized_keys.name + ".tmp")
        tmp.write_text(text, encoding="ascii")
        tmp.chmod(0o600)
        tmp.replace(self._authorized_keys)

    def start(self) -> None:
        if self.running:
            return
        self._ensure_privsep_dir()
        log = self._log.open("ab")
        try:
            self._proc = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(self._config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        except OSError as exc:
            raise SshServerError(f"cannot run {SSHD}: {exc}") from exc
        finally:
            log.close()
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        # Connection handlers call setsid() and outlive the listener; a stopped server
        # must also drop live sessions, or a "down" partner would still serve clients.
        # They go first, leaves before parents, so each is usually reaped by a live parent
        # rather than orphaned to an init that may never reap (as in some containers).
        _end_sessions(proc.pid)
        proc.terminate()
        try:
            proc.wait(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self, *, new_host_key: bool = False) -> None:
        self.stop()
        if new_host_key:
            generate_ssh_keypair(self._host_key, comment="exchanged-test-host")
        self.start()

    def __enter__(self) -> SshServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals --------------------------------------------------------------------

    def _write_config(self) -> None:
        root = _check_config_path(self._sftp_root.resolve())
        lines = [
            f"HostKey {_check_config_path(self._host_key)}",
            f"ListenAddress {_HOST}",
            f"Port {self._port}",
            f"PidFile {_check_config_path(self._workdir / 'sshd.pid')}",
            f"AuthorizedKeysFile {_check_config_path(self._authorized_keys)}",
            # tmp folders are often group/world readable; StrictModes would refuse them.
            "StrictModes no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password",
            # Without PAM, sshd refuses accounts whose password is locked ("!" in
            # /etc/shadow), even for key logins; root is locked that way on some CI
            # runners. PAM's account check allows key logins to such accounts.
            f"UsePAM {'yes' if _password_locked(self.user) else 'no'}",
            "AllowTcpForwarding no",
            "AllowAgentForwarding no",
            "X11Forwarding no",
            "PermitTunnel no",
            "Subsystem sftp internal-sftp",
            # No ChrootDirectory: a non-root sshd cannot chroot. Starting in the root lets
            # clients use relative folders like "incoming", as with a chrooted account.
            # -u 0077: uploads land 0600, as every file the daemon writes itself does.
            f"ForceCommand internal-sftp -u 0077 -d {root}",
            "LogLevel ERROR",
        ]
        self._config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self._config.chmod(0o600)

    def _ensure_privsep_dir(self) -> None:
        if os.geteuid() != 0:
            return
        # Root sshd chroots its pre-auth child here and refuses to start without it.
        privsep = Path("/run/sshd")
        try:
            privsep.mkdir(mode=0o755, parents=True, exist_ok=True)
        except OSError as exc:
            raise SshServerError(f"cannot create {privsep}: {exc}") from exc

    def _wait_until_ready(self) -> None:
        proc = self._proc
        if proc is None:
            raise SshServerError("sshd is not running")
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SshServerError(
                    f"sshd exited with status {proc.returncode} on start: {self._log_tail()}"
                )
            if self._answers_ssh():
                return
            time.sleep(0.02)
        raise SshServerError(
            f"sshd did not accept connections on {_HOST}:{self._port} within "
            f"{_START_TIMEOUT:.0f} s: {self._log_tail()}"
        )

    def _answers_ssh(self) -> bool:
        # Reading the banner (not just connecting) proves it is sshd that listens.
        try:
            with socket.create_connection((_HOST, self._port), timeout=1.0) as sock:
                return sock.recv(64).startswith(b"SSH-")
        except OSError:
            return False

    def _log_tail(self) -> str:
        try:
            text = self._log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no sshd log)"
        return text.strip()[-2000:] or "(sshd wrote nothing to stderr)"


def _password_locked(user: str) -> bool:
    # Only a root sshd can read /etc/shadow and so only it applies the lock check.
    if os.geteuid() != 0:
        return False
    try:
        lines = Path("/etc/shadow").read_text(encoding="utf-8").splitlines()
    except OSError:
        return False
    for line in lines:
        fields = line.split(":")
        if len(fields) > 1 and fields[0] == user:
            return fields[1].startswith("!")
    return False


def _proc_children() -> Iterator[tuple[int, int]]:
    """(pid, ppid) for every process we can see, from Linux /proc."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name (field 2) may hold spaces and ')', so split after the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        yield int(entry.name), int(fields[1])


def _descendants(root: int) -> list[tuple[int, int]]:
    """(pid, parent pid) of every process below ``root``."""
    by_parent: dict[int, list[int]] = {}
    for pid, ppid in _proc_children():
        by_parent.setdefault(ppid, []).append(pid)
    found: list[tuple[int, int]] = []
    todo = [root]
    while todo:
        parent = todo.pop()
        for child in by_parent.get(parent, []):
            found.append((child, parent))
            todo.append(child)
    return found


def _end_sessions(listener: int) -> None:
    deadline = time.monotonic() + _STOP_TIMEOUT
    while time.monotonic() < deadline:
        tree = [(pid, parent) for pid, parent in _descendants(listener) if _running(pid)]
        if not tree:
            return
        parents = {parent for _, parent in tree}
        leaves = [pid for pid, _ in tree if pid not in parents]
        # SIGKILL because the in-process internal-sftp inherits sshd's blocked SIGTERM
        # and would ignore it; a killed session is a fair stand-in for a partner outage.
        _signal_all(leaves, signal.SIGKILL)
        while any(_running(pid) for pid in leaves) and time.monotonic() < deadline:
            time.sleep(0.01)
        # Give the parents a moment to reap, so the next round sees the new leaves.
        time.sleep(0.01)


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # A zombie is done. A parent that exits before reaping leaves it to init, which in
    # some containers never reaps, so waiting for it to vanish could take forever.
    return stat[stat.rfind(")") + 2 :].split()[0] != "Z"


def _signal_all(pids: Sequence[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
