"""`exchanged keys`: real GnuPG homes; imports only what the operator verified."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from exchanged.doctor import doctor_main
from exchanged.keys_cmd import keys_main
from exchanged.status_cmd import status_main
from exchanged.testing.keys import export_public, kill_agent, make_party_home, run_gpg
from exchanged.testing.workspace import Workspace

pytestmark = pytest.mark.integration

# Throw-away test secrets, never used outside these homes.
PASSPHRASE = "correct horse battery staple"  # noqa: S105 -- a test key's, nothing real
WRONG = "wrong"


def _has_key(home: Path, fpr: str) -> bool:
    done = subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--list-keys", fpr],
        capture_output=True, check=False,
    )  # fmt: skip
    return done.returncode == 0


def _outside_key(root: Path, name: str, **kwargs: str) -> tuple[str, Path]:
    """A key made in another home (as a partner would), exported to a file."""
    home = root / f"g-{name}"
    try:
        fpr = make_party_home(home, name, **kwargs)
        key_file = root / f"{name}.pub"
        key_file.write_bytes(export_public(home, fpr))
    finally:
        kill_agent(home)
    return fpr, key_file


def _pin_partner(ws: Workspace, party: str, old: str, new: str) -> None:
    config = ws[party].config_path
    config.write_text(config.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")


def test_import_refuses_a_wrong_fingerprint_and_imports_nothing(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    rbl = workspace["rbl"]
    fpr, key_file = _outside_key(workspace.root, "mallory")
    verified = workspace["passendwijs"].fingerprint  # what the partner read out by phone
    code = keys_main(["import", str(key_file), "--partner", "passendwijs",
                      "--fingerprint", verified, "-c", str(rbl.config_path)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "fingerprint mismatch" in err and fpr in err and "Nothing imported" in err
    assert len(err.strip().splitlines()) == 1
    assert not _has_key(rbl.gpg_home, fpr)


def test_import_with_the_right_fingerprint_then_list_shows_expiry(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    rbl = workspace["rbl"]
    fpr, key_file = _outside_key(workspace.root, "passendwijs")  # the partner's new key
    spaced = " ".join(fpr[i : i + 4] for i in range(0, 40, 4))  # as read aloud
    code = keys_main(["import", str(key_file), "--partner", "passendwijs",
                      "--fingerprint", spaced, "-c", str(rbl.config_path)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"imported the key {fpr}" in out
    assert "still pins" in out  # the operator is told to switch the pin deliberately
    assert _has_key(rbl.gpg_home, fpr)

    assert keys_main(["list", "-c", str(rbl.config_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("own ") and rbl.fingerprint in lines[0]
    assert "expires 20" in lines[0] and "usable" in lines[0] and "warning" not in lines[0]


def test_import_refuses_secret_keys_and_several_keys(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    rbl = workspace["rbl"]
    config = str(rbl.config_path)
    home = workspace.root / "g-two"
    try:
        first = make_party_home(home, "one")
        make_party_home(home, "two")
        both = workspace.root / "both.pub"
        both.write_bytes(run_gpg(home, "--export").stdout)
        secret = workspace.root / "secret.key"
        secret.write_bytes(run_gpg(home, "--export-secret-keys", first).stdout)
    finally:
        kill_agent(home)
    assert keys_main(["import", str(both), "--partner", "passendwijs",
                      "--fingerprint", first, "-c", config]) == 2  # fmt: skip
    assert "holds 2 keys" in capsys.readouterr().err
    assert keys_main(["import", str(secret), "--partner", "passendwijs",
                      "--fingerprint", first, "-c", config]) == 2  # fmt: skip
    assert "secret key" in capsys.readouterr().err
    assert not _has_key(rbl.gpg_home, first)


def test_expiring_partner_key_warns_in_list_status_and_doctor(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    rbl, old = workspace["rbl"], workspace["passendwijs"].fingerprint
    # Made "two years minus ten days ago" with a two-year life: ten days left.
    fpr, key_file = _outside_key(
        workspace.root, "passendwijs", expire="2y", faked_system_time=_days_ago(720)
    )
    config = str(rbl.config_path)
    assert keys_main(["import", str(key_file), "--partner", "passendwijs",
                      "--fingerprint", fpr, "-c", config]) == 0  # fmt: skip
    _pin_partner(workspace, "rbl", old, fpr)
    capsys.readouterr()

    assert keys_main(["list", "-c", config]) == 0
    listed = capsys.readouterr().out
    assert "warning: partner key of passendwijs expires in" in listed

    assert status_main(["--json", "-c", config]) == 0
    status = json.loads(capsys.readouterr().out)
    partner_key = next(k for k in status["keys"] if k["role"] == "partner")
    assert partner_key["fingerprint"] == fpr and 0 <= partner_key["days_left"] <= 30
    assert any("expires in" in w for w in status["warnings"])

    assert doctor_main(["-c", config]) == 0  # expiring is a warning, not a failure
    doctor = capsys.readouterr().out.splitlines()
    assert any(
        line.startswith("warn  partner key passendwijs:") and "expires in" in line
        for line in doctor
    ), doctor


def test_expired_partner_key_fails_doctor_and_is_refused_by_import(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    rbl, old = workspace["rbl"], workspace["passendwijs"].fingerprint
    fpr, key_file = _outside_key(
        workspace.root, "passendwijs", expire="1d", faked_system_time="20200101T000000"
    )
    config = str(rbl.config_path)
    assert keys_main(["import", str(key_file), "--partner", "passendwijs",
                      "--fingerprint", fpr, "-c", config]) == 2  # fmt: skip
    assert "expired" in capsys.readouterr().err
    # Had it arrived some other way, doctor must fail it.
    run_gpg(rbl.gpg_home, "--import", stdin=key_file.read_bytes())
    _pin_partner(workspace, "rbl", old, fpr)
    assert doctor_main(["-c", config]) == 1
    doctor = capsys.readouterr().out.splitlines()
    assert any(line.startswith("FAIL  partner key passendwijs:") for line in doctor), doctor


def test_init_takes_the_passphrase_from_the_credential(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    creds = short_tmp / "creds"
    creds.mkdir(mode=0o700)
    (creds / "gpg-passphrase").write_text(PASSPHRASE + "\n")
    (creds / "gpg-passphrase").chmod(0o600)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    home = short_tmp / "gnupg"
    try:
        assert keys_main(["init", "--home", str(home), "--party", "rbl", "-c", "/nonexistent"]) == 0
        out = capsys.readouterr().out
        fpr = out.split()[2]
        assert f'fingerprint = "{fpr}"' in out
        assert home.stat().st_mode & 0o777 == 0o700
        assert "max-cache-ttl 0" in (home / "gpg-agent.conf").read_text()
        # The key is protected: signing with a wrong passphrase fails, the right one works.
        data = short_tmp / "data"
        data.write_text("x")
        with pytest.raises(RuntimeError):
            run_gpg(home, "--local-user", fpr, "--detach-sign", str(data), passphrase=WRONG)
        run_gpg(home, "--local-user", fpr, "--detach-sign", str(data),
                passphrase=PASSPHRASE)  # fmt: skip
        # A second init would silently fork the party's identity: refused.
        assert keys_main(["init", "--home", str(home), "--party", "rbl", "-c", "/nonexistent"]) == 2
        assert "keys rotate" in capsys.readouterr().err
    finally:
        kill_agent(home)


def _days_ago(days: int) -> str:
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC) - timedelta(days=days)).strftime("%Y%m%dT%H%M%S")


def test_rotate_keeps_the_old_key_and_exports_the_new_one(
    workspace: Workspace,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    short_tmp: Path,
) -> None:
    rbl = workspace["rbl"]
    creds = short_tmp / "creds"
    creds.mkdir(mode=0o700)
    (creds / "gpg-passphrase").write_text(PASSPHRASE)
    (creds / "gpg-passphrase").chmod(0o600)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    config = str(rbl.config_path)
    assert keys_main(["rotate", "-c", config]) == 0
    out = capsys.readouterr().out
    new = out.split()[4].rstrip(";")
    assert new != rbl.fingerprint and f"--fingerprint {new}" in out
    assert _has_key(rbl.gpg_home, new) and _has_key(rbl.gpg_home, rbl.fingerprint)

    assert keys_main(["export", "--fingerprint", new, "-c", config]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert "PRIVATE" not in captured.out
    assert captured.err.strip() == f"fingerprint: {new}"


def test_keys_refuse_an_open_gnupg_home(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    rbl = workspace["rbl"]
    rbl.gpg_home.chmod(0o750)
    try:
        assert keys_main(["list", "-c", str(rbl.config_path)]) == 1
    finally:
        rbl.gpg_home.chmod(0o700)
    err = capsys.readouterr().err.strip()
    assert "chmod 700" in err and len(err.splitlines()) == 1
