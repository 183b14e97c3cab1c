"""`exchanged doctor` against the real two-party workspace (real sshd, real gpg)."""

from __future__ import annotations

import pytest

from exchanged.doctor import doctor_main
from exchanged.testing.workspace import Workspace

pytestmark = pytest.mark.integration


def _doctor(workspace: Workspace, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = doctor_main(["-c", str(workspace["rbl"].config_path)])
    captured = capsys.readouterr()
    assert captured.err == ""  # never a traceback, never anything off the one-line format
    lines = captured.out.splitlines()
    for line in lines:
        assert line.split(" ", 1)[0] in ("ok", "warn", "FAIL"), line
    return code, lines


def _line(lines: list[str], check: str) -> str:
    found = [line for line in lines if line[6:].startswith(f"{check}:")]
    assert len(found) == 1, lines
    return found[0]


def test_doctor_passes_on_the_demo_workspace(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = _doctor(workspace, capsys)
    assert code == 0, lines
    assert not [line for line in lines if line.startswith("FAIL")]
    for check in ("config", "gpg", "gnupg home", "own key rbl", "partner key passendwijs",
                  "own key signs", "sftp passendwijs", "clock vs passendwijs", "disk space",
                  "clock"):  # fmt: skip
        assert _line(lines, check).startswith("ok "), check
    # The write test leaves nothing behind in the partner's incoming folder.
    assert list(workspace["passendwijs"].incoming.iterdir()) == []


def test_doctor_fails_the_link_line_when_the_partner_is_down_or_changes_host_key(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    sshd = workspace["passendwijs"].sshd
    sshd.stop()
    code, lines = _doctor(workspace, capsys)
    assert code == 1
    down = _line(lines, "sftp passendwijs")
    assert down.startswith("FAIL") and "cannot connect" in down
    assert [line for line in lines if line.startswith("FAIL")] == [down]

    sshd.restart(new_host_key=True)
    code, lines = _doctor(workspace, capsys)
    assert code == 1
    changed = _line(lines, "sftp passendwijs")
    assert changed.startswith("FAIL") and "host key" in changed
    assert [line for line in lines if line.startswith("FAIL")] == [changed]


def test_doctor_reports_a_broken_config_in_one_line(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    config = workspace["rbl"].config_path
    config.write_text(config.read_text(encoding="utf-8") + "\nsurprise = 1\n", encoding="utf-8")
    code, lines = _doctor(workspace, capsys)
    assert code == 1
    assert lines == [lines[0]] and lines[0].startswith("FAIL  config:") and "surprise" in lines[0]


def test_doctor_fails_open_permissions(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    rbl = workspace["rbl"]
    rbl.gpg_home.chmod(0o755)
    rbl.state_dir.mkdir(mode=0o755)
    try:
        code, lines = _doctor(workspace, capsys)
    finally:
        rbl.gpg_home.chmod(0o700)
    assert code == 1
    gnupg = _line(lines, "gnupg home")
    assert gnupg.startswith("FAIL") and "chmod 700" in gnupg
    assert _line(lines, "state folder").startswith("FAIL")
