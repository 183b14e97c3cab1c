"""The systemd notification protocol (sd_notify(3)) in pure Python.

systemd hands a ``Type=notify`` service the address of a Unix datagram socket in
``$NOTIFY_SOCKET``: a file-system path (``/run/systemd/notify``) or an abstract name
written with a leading ``@``. Each datagram carries newline-separated ``KEY=VALUE``
assignments. Without ``$NOTIFY_SOCKET`` (run by hand, under a test) every call is a
no-op, so the daemon never has to ask whether it runs under systemd.

A failed send is reported by the return value and never raised: systemd's own
client library behaves the same way, and a daemon that is otherwise healthy must not
stop working because the manager is briefly unreachable. A malformed
``$NOTIFY_SOCKET`` is raised at construction instead, because under systemd it would
otherwise surface much later as an unexplained start-up timeout.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, MutableMapping
from types import TracebackType

from exchanged.errors import LocalSystemError

__all__ = ["Notifier"]

# systemd waits for these; inheriting them would let a child (gpg, gpg-agent) speak
# for the daemon or make it believe the watchdog is meant for it.
_NOTIFY_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")

# A send must not hang the main loop (and so starve the watchdog) if the manager's
# receive queue is full; libsystemd uses a similarly short bound.
_SEND_TIMEOUT_SECONDS = 2.0


def _address(value: str) -> str | bytes:
    if value.startswith("@"):
        # Abstract names start with a NUL byte and are not NUL-terminated; the kernel
        # compares the exact length, so nothing may be appended.
        return b"\0" + os.fsencode(value[1:])
    if value.startswith("/"):
        return value
    raise LocalSystemError(
        f"NOTIFY_SOCKET={value!r} is neither an absolute path nor an abstract '@name';"
        " systemd would never set that, so check what starts exchanged"
    )


def _one_line(text: str) -> str:
    # A newline would end the assignment and could smuggle in a second one
    # (e.g. a file name containing "\nREADY=1").
    return " ".join(text.splitlines())


class Notifier:
    """Tells the service manager about start-up, liveness, status and shutdown.

    Read the environment once, at start-up, with ``unset_environment=True`` so that
    the processes the daemon starts later do not inherit the socket.
    """

    def __init__(
        self,
        environ: MutableMapping[str, str] | None = None,
        *,
        unset_environment: bool = False,
    ) -> None:
        env: MutableMapping[str, str] = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        self._address: str | bytes | None = _address(raw) if raw else None
        self._watchdog_usec = _watchdog_usec(env)
        self._socket: socket.socket | None = None
        if unset_environment:
            for key in _NOTIFY_ENV:
                env.pop(key, None)

    @property
    def enabled(self) -> bool:
        """True when a service manager is listening."""
        return self._address is not None

    def notify(self, **fields: str) -> bool:
        """Send one datagram of ``KEY=VALUE`` lines; True when it was delivered."""
        if self._address is None:
            return False
        payload = "\n".join(f"{key}={_one_line(value)}" for key, value in fields.items())
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                )
                self._socket.settimeout(_SEND_TIMEOUT_SECONDS)
            self._socket.sendto(payload.encode("utf-8"), self._address)
        except OSError:
            self.close()
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Start-up is complete (after the first outbox scan)."""
        if status is None:
            return self.notify(READY="1")
        return self.notify(READY="1", STATUS=status)

    def reloading(self) -> bool:
        """A reload (SIGHUP) has begun; follow with :meth:`ready` when it is done."""
        return self.notify(RELOADING="1")

    def watchdog(self) -> bool:
        """The daemon is alive; send at least every :meth:`watchdog_interval` seconds."""
        return self.notify(WATCHDOG="1")

    def status(self, text: str) -> bool:
        """A one-line status shown by ``systemctl status`` (queue counts, not data)."""
        return self.notify(STATUS=text)

    def stopping(self) -> bool:
        """Shut-down has begun."""
        return self.notify(STOPPING="1")

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for more time to start or stop, counted from now."""
        return self.notify(EXTEND_TIMEOUT_USEC=str(max(0, int(seconds * 1_000_000))))

    def watchdog_timeout(self) -> float | None:
        """The watchdog deadline systemd enforces, in seconds, or None when off."""
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 1_000_000

    def watchdog_interval(self) -> float | None:
        """How often to call :meth:`watchdog`, in seconds, or None when off.

        Half the deadline, as sd_watchdog_enabled(3) recommends, so that one late
        iteration of the main loop does not get the daemon killed.
        """
        timeout = self.watchdog_timeout()
        return None if timeout is None else timeout / 2

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _watchdog_usec(env: Mapping[str, str]) -> int | None:
    raw_usec = env.get("WATCHDOG_USEC", "")
    if not raw_usec:
        return None
    raw_pid = env.get("WATCHDOG_PID", "")
    # Without a PID the variables are for whoever reads them; with one they are for
    # that process only (a child that inherited them must not ping).
    if raw_pid and (not raw_pid.isdigit() or int(raw_pid) != os.getpid()):
        return None
    if not raw_usec.isdigit() or int(raw_usec) == 0:
        return None
    return int(raw_usec)
