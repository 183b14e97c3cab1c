"""systemctl reload (SIGHUP): a valid new configuration is taken up in the same process;
an invalid one is refused and the daemon goes on with what it had."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import time
from pathlib import Path

import pytest

from exchanged.demo import drop_export
from exchanged.testing.synthetic import seeded_rng, synthetic_rows
from exchanged.testing.workspace import Party, Workspace

pytestmark = pytest.mark.integration


def _events(party: Party) -> list[str]:
    return [json.loads(line)["event"] for line in party.log_path.read_text().splitlines()]


def _wait(condition: object, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_reload_takes_up_a_valid_configuration_and_refuses_a_broken_one(
    workspace: Workspace,
) -> None:
    rbl, pw = workspace["rbl"], workspace["passendwijs"]
    workspace.start_daemon(pw)
    workspace.start_daemon(rbl)
    assert rbl.process is not None
    pid = rbl.process.pid
    assert _wait(lambda: "service_ready" in _events(rbl))

    good = rbl.config_path.read_text()
    rbl.config_path.write_text(good.replace("[gpg]", "typo_key = 1\n[gpg]"))
    rbl.process.send_signal(signal.SIGHUP)
    assert _wait(lambda: "reload_refused" in _events(rbl))
    assert rbl.process.poll() is None  # still running, on the old configuration

    rbl.config_path.write_text(good)
    rbl.process.send_signal(signal.SIGHUP)
    assert _wait(lambda: _events(rbl).count("service_ready") == 2)
    assert rbl.process.pid == pid and rbl.process.poll() is None  # same process, re-executed
    header, rows = synthetic_rows(seeded_rng(31), "absoluut-verzuim", 2)
    drop_export(rbl.outbox("passendwijs", "absoluut-verzuim"), "na-reload.csv", header, rows)
    assert workspace.wait_for({"rbl": 1}, timeout=30)  # and it works
    assert workspace.stop_daemon(rbl) == 0


def test_reload_keeps_talking_to_systemd_and_survives_a_second_sighup(
    workspace: Workspace, short_tmp: Path
) -> None:
    rbl = workspace["rbl"]
    address = short_tmp / "notify"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(address))
    listener.settimeout(0.2)
    workspace.start_daemon(rbl, env={"NOTIFY_SOCKET": str(address), "WATCHDOG_USEC": "2000000"})
    assert rbl.process is not None
    assert _wait(lambda: "service_ready" in _events(rbl))
    rbl.process.send_signal(signal.SIGHUP)
    assert _wait(lambda: "service_reloading" in _events(rbl))
    rbl.process.send_signal(signal.SIGHUP)  # a second reload while the first restarts
    assert _wait(lambda: _events(rbl).count("service_ready") >= 2)
    time.sleep(1.5)
    assert rbl.process.poll() is None

    messages: list[str] = []
    with contextlib.suppress(TimeoutError):
        while True:
            messages.append(listener.recv(4096).decode())
    listener.close()
    reloading = messages.index("RELOADING=1")
    after = messages[reloading + 1 :]
    assert (
        "STOPPING=1" not in after[: after.index(next(m for m in after if m.startswith("READY=1")))]
    )
    assert any(m.startswith("READY=1") for m in after)  # systemd hears the new process
    assert "WATCHDOG=1" in after  # and its watchdog pings
    assert workspace.stop_daemon(rbl) == 0


def test_reload_refuses_a_broken_policy_file(workspace: Workspace, short_tmp: Path) -> None:
    rbl = workspace["rbl"]
    workspace.start_daemon(rbl)
    assert rbl.process is not None
    assert _wait(lambda: "service_ready" in _events(rbl))
    broken = short_tmp / "policy.toml"
    broken.write_text("[categories\n")
    good = rbl.config_path.read_text()
    rbl.config_path.write_text(good.replace("[gpg]", f'policy = "{broken}"\n[gpg]'))
    rbl.process.send_signal(signal.SIGHUP)
    assert _wait(lambda: "reload_refused" in _events(rbl))
    time.sleep(0.5)
    assert rbl.process.poll() is None
    assert _events(rbl).count("service_ready") == 1
