"""sd_notify against a real Unix datagram socket standing in for systemd."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchanged.errors import LocalSystemError
from exchanged.sdnotify import Notifier


def _receive(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096)
    return dict(line.split("=", 1) for line in data.decode("utf-8").split("\n"))


@pytest.fixture
def path_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        sock.settimeout(5)
        yield address, sock


@pytest.fixture
def abstract_socket() -> Iterator[tuple[str, socket.socket]]:
    name = f"exchanged-test-{uuid.uuid4()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        yield "@" + name, sock


@pytest.fixture(params=["path", "abstract"])
def manager(
    request: pytest.FixtureRequest,
    path_socket: tuple[str, socket.socket],
    abstract_socket: tuple[str, socket.socket],
) -> tuple[str, socket.socket]:
    return path_socket if request.param == "path" else abstract_socket


def test_ready_watchdog_status_stopping_reach_the_manager(
    manager: tuple[str, socket.socket],
) -> None:
    address, sock = manager
    with Notifier({"NOTIFY_SOCKET": address}) as notifier:
        assert notifier.enabled
        assert notifier.ready("scanned outbox: 0 queued")
        assert _receive(sock) == {"READY": "1", "STATUS": "scanned outbox: 0 queued"}
        assert notifier.watchdog()
        assert _receive(sock) == {"WATCHDOG": "1"}
        assert notifier.status("queued 2, awaiting receipt 1")
        assert _receive(sock) == {"STATUS": "queued 2, awaiting receipt 1"}
        assert notifier.reloading()
        assert _receive(sock) == {"RELOADING": "1"}
        assert notifier.extend_timeout(1.5)
        assert _receive(sock) == {"EXTEND_TIMEOUT_USEC": "1500000"}
        assert notifier.stopping()
        assert _receive(sock) == {"STOPPING": "1"}


def test_ready_without_status_sends_only_ready(path_socket: tuple[str, socket.socket]) -> None:
    address, sock = path_socket
    with Notifier({"NOTIFY_SOCKET": address}) as notifier:
        notifier.ready()
        assert _receive(sock) == {"READY": "1"}


def test_status_cannot_smuggle_a_second_assignment(
    path_socket: tuple[str, socket.socket],
) -> None:
    address, sock = path_socket
    with Notifier({"NOTIFY_SOCKET": address}) as notifier:
        notifier.status("file a.csv\nREADY=1")
        assert _receive(sock) == {"STATUS": "file a.csv READY=1"}


def test_without_notify_socket_every_call_is_a_no_op() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert not notifier.ready("x")
    assert not notifier.watchdog()
    assert not notifier.status("x")
    assert not notifier.stopping()
    assert notifier.watchdog_interval() is None


def test_a_relative_notify_socket_is_refused_at_start() -> None:
    with pytest.raises(LocalSystemError, match="NOTIFY_SOCKET"):
        Notifier({"NOTIFY_SOCKET": "run/notify"})


def test_a_vanished_manager_is_reported_not_raised(tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.enabled
    assert not notifier.watchdog()
    notifier.close()


def test_the_socket_is_reused_and_survives_a_manager_restart(tmp_path: Path) -> None:
    address = str(tmp_path / "notify")
    with Notifier({"NOTIFY_SOCKET": address}) as notifier:
        for _ in range(2):
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.bind(address)
                sock.settimeout(5)
                assert notifier.watchdog()
                assert notifier.watchdog()
                assert _receive(sock) == {"WATCHDOG": "1"}
                assert _receive(sock) == {"WATCHDOG": "1"}
            Path(address).unlink()


def test_unset_environment_keeps_children_from_inheriting_the_socket(
    path_socket: tuple[str, socket.socket],
) -> None:
    address, _ = path_socket
    env = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "30000000", "OTHER": "kept"}
    notifier = Notifier(env, unset_environment=True)
    assert env == {"OTHER": "kept"}
    assert notifier.enabled
    assert notifier.watchdog_interval() == 15.0
    notifier.close()


@pytest.mark.parametrize(
    ("env", "timeout", "interval"),
    [
        ({"WATCHDOG_USEC": "60000000"}, 60.0, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid())}, 60.0, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None, None),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "self"}, None, None),
        ({"WATCHDOG_USEC": "0"}, None, None),
        ({"WATCHDOG_USEC": "-5"}, None, None),
        ({"WATCHDOG_USEC": "soon"}, None, None),
        ({}, None, None),
    ],
)
def test_watchdog_interval_follows_watchdog_usec_and_pid(
    env: dict[str, str], timeout: float | None, interval: float | None
) -> None:
    notifier = Notifier(env)
    assert notifier.watchdog_timeout() == timeout
    assert notifier.watchdog_interval() == interval
