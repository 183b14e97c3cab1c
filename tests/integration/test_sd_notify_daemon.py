"""The real daemon speaks sd_notify to a real datagram socket, as under systemd:
READY=1 after the start-up scan, WATCHDOG=1 while alive, STATUS= with queue counts,
STOPPING=1 on SIGTERM."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from exchanged.demo import drop_export
from exchanged.testing.synthetic import seeded_rng, synthetic_rows
from exchanged.testing.workspace import Workspace

pytestmark = pytest.mark.integration


def test_the_daemon_notifies_systemd(workspace: Workspace, short_tmp: Path) -> None:
    rbl, pw = workspace["rbl"], workspace["passendwijs"]
    address = short_tmp / "notify"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(address))
    listener.settimeout(0.2)
    workspace.start_daemon(pw)
    workspace.start_daemon(rbl, env={"NOTIFY_SOCKET": str(address), "WATCHDOG_USEC": "2000000"})
    header, rows = synthetic_rows(seeded_rng(12), "absoluut-verzuim", 3)
    drop_export(rbl.outbox("passendwijs", "absoluut-verzuim"), "a.csv", header, rows)
    assert workspace.wait_for({"rbl": 1}, timeout=30)
    time.sleep(1.5)
    workspace.stop_daemon(rbl)

    messages: list[str] = []
    while True:
        try:
            messages.append(listener.recv(4096).decode())
        except TimeoutError:
            break
    listener.close()
    assert messages[0].startswith("READY=1")
    assert any(m == "WATCHDOG=1" for m in messages)
    statuses = [m for m in messages if m.startswith("STATUS=")]
    assert any("1 receipted" in m for m in statuses), statuses
    assert "STOPPING=1" in messages
    assert messages.index("STOPPING=1") > messages.index(statuses[0])
