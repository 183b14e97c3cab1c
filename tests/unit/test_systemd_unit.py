"""The shipped systemd, sysusers, tmpfiles and sshd files say what the daemon relies on."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from exchanged.credentials import CREDENTIALS, load_credential_line

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
UNIT = SYSTEMD / "exchanged.service"
MAX_EXPOSURE = 1.5


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections of a unit file, each key with all its values in order (keys repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"assignment outside a section: {line}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    return parse_unit(UNIT.read_text(encoding="utf-8"))["Service"]


def one(service: dict[str, list[str]], key: str) -> str:
    values = service.get(key, [])
    assert len(values) == 1, f"{key}= should be set exactly once, found {values}"
    return values[0]


def test_the_daemon_reports_readiness_and_liveness(service: dict[str, list[str]]) -> None:
    assert one(service, "Type") == "notify"
    assert one(service, "NotifyAccess") == "main"
    watchdog = one(service, "WatchdogSec")
    assert re.fullmatch(r"[1-9][0-9]*(s|min)?", watchdog), watchdog
    assert one(service, "Restart") == "on-failure"
    assert one(service, "TimeoutStopSec") in {"15", "15s"}
    assert "-HUP" in one(service, "ExecReload")
    assert one(service, "ExecStart") == (
        "/opt/exchanged/bin/exchanged run -c /etc/exchanged/exchanged.toml"
    )


def test_it_runs_as_its_own_user_with_private_folders(service: dict[str, list[str]]) -> None:
    assert one(service, "User") == "exchanged"
    assert one(service, "UMask") == "0077"
    assert one(service, "StateDirectory") == "exchanged"
    assert one(service, "StateDirectoryMode") == "0700"
    assert one(service, "LogsDirectory") == "exchanged"
    assert one(service, "LogsDirectoryMode") == "0700"
    assert one(service, "ConfigurationDirectory") == "exchanged"
    assert "/srv/exchanged" in one(service, "ReadWritePaths").split()
    assert one(service, "ProtectSystem") == "strict"
    assert "DynamicUser" not in service


def test_credentials_loaded_are_exactly_those_the_daemon_reads(
    service: dict[str, list[str]],
) -> None:
    lines = [f"LoadCredentialEncrypted={v}" for v in service.get("LoadCredentialEncrypted", [])]
    lines += [f"LoadCredential={v}" for v in service.get("LoadCredential", [])]
    ids = {line.split("=", 1)[1].split(":", 1)[0] for line in lines}
    assert ids == set(CREDENTIALS)
    # The error messages tell operators to add exactly these lines.
    assert sorted(lines) == sorted(load_credential_line(name) for name in CREDENTIALS)


def test_no_secret_travels_through_the_environment(service: dict[str, list[str]]) -> None:
    assert "EnvironmentFile" not in service
    assert "PassEnvironment" not in service
    secretish = re.compile(r"pass|secret|token|key|pwd|cred", re.IGNORECASE)
    for value in service.get("Environment", []):
        assert not secretish.search(value), f"Environment={value} looks like a secret"


def test_the_header_records_the_measured_exposure() -> None:
    header = UNIT.read_text(encoding="utf-8").split("[Unit]", 1)[0]
    assert re.search(r"exposure level[^\n]*\b[01]\.[0-9]\b", header), header


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is missing (Debian package systemd); exposure not measured",
)
def test_systemd_analyze_rates_the_exposure_at_most_1_5() -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    match = re.search(r"Overall exposure level for exchanged\.service: ([0-9.]+)", output)
    assert match, output
    exposure = float(match.group(1))
    assert exposure <= MAX_EXPOSURE, output
    header = UNIT.read_text(encoding="utf-8").split("[Unit]", 1)[0]
    assert f"exposure level {exposure:.1f}" in header, (
        f"systemd-analyze now says {exposure:.1f}; update the comment at the top of the unit"
    )


def _account_id(table: str, name: str) -> int:
    match = re.search(rf"^{re.escape(name)}:x:(\d+):", table, re.MULTILINE)
    assert match, f"{name} missing from\n{table}"
    return int(match.group(1))


@pytest.mark.skipif(
    shutil.which("systemd-sysusers") is None or shutil.which("systemd-tmpfiles") is None,
    reason="systemd-sysusers/systemd-tmpfiles are missing (Debian package systemd)",
)
def test_sysusers_and_tmpfiles_create_the_folders_in_a_scratch_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for tool, conf in (
        ("systemd-sysusers", "exchanged.sysusers.conf"),
        # The ACL line names accounts that exist only inside the scratch root, which
        # the ACL parser cannot see; it is checked separately below.
        ("systemd-tmpfiles", "exchanged.tmpfiles.conf"),
    ):
        text = (SYSTEMD / conf).read_text(encoding="utf-8")
        if tool == "systemd-tmpfiles":
            text = "\n".join(ln for ln in text.splitlines() if not ln.startswith("a"))
            args = [tool, f"--root={root}", "--create", "-"]
        else:
            args = [tool, f"--root={root}", "-"]
        result = subprocess.run(
            args, input=text, capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stderr
    passwd = (root / "etc/passwd").read_text(encoding="utf-8")
    group = (root / "etc/group").read_text(encoding="utf-8")
    uid = _account_id(passwd, "exchanged")
    gid = _account_id(group, "exchanged-operators")
    daemon_gid = _account_id(group, "exchanged")
    assert re.search(r"^exchanged:.*:/usr/sbin/nologin$", passwd, re.MULTILINE)
    outbox = (root / "srv/exchanged/outbox").stat()
    assert (outbox.st_uid, outbox.st_gid, outbox.st_mode & 0o7777) == (uid, gid, 0o2770)
    inbox = (root / "srv/exchanged/inbox").stat()
    assert (inbox.st_uid, inbox.st_gid, inbox.st_mode & 0o7777) == (uid, gid, 0o2750)
    etc = (root / "etc/exchanged").stat()
    assert (etc.st_uid, etc.st_gid, etc.st_mode & 0o7777) == (0, daemon_gid, 0o750)
    top = (root / "srv/exchanged").stat()
    assert (top.st_uid, top.st_mode & 0o7777) == (0, 0o755)


@pytest.mark.skipif(
    shutil.which("systemd-tmpfiles") is None,
    reason="systemd-tmpfiles is missing (Debian package systemd)",
)
def test_the_outbox_default_acl_parses(tmp_path: Path) -> None:
    acl_lines = [
        ln
        for ln in (SYSTEMD / "exchanged.tmpfiles.conf").read_text(encoding="utf-8").splitlines()
        if ln.startswith("a")
    ]
    assert acl_lines
    # Same entries, with names this machine knows, so only the syntax is under test.
    text = "\n".join(
        ln.replace("user:exchanged:", "user:root:").replace(
            "group:exchanged-operators:", "group:root:"
        )
        for ln in acl_lines
    )
    (tmp_path / "srv/exchanged/outbox").mkdir(parents=True)
    result = subprocess.run(
        ["systemd-tmpfiles", f"--root={tmp_path}", "--create", "-"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Failed" not in result.stderr, result.stderr


@pytest.mark.skipif(not Path("/usr/sbin/sshd").exists(), reason="sshd is missing")
def test_the_sshd_example_is_valid_and_locks_partner_accounts_in(tmp_path: Path) -> None:
    host_key = tmp_path / "host_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)],
        check=True,
        timeout=60,
    )
    config = tmp_path / "sshd_config"
    config.write_text(
        f"HostKey {host_key}\nSubsystem sftp internal-sftp\n"
        f"Include {SYSTEMD / 'sshd_exchanged.conf'}\n",
        encoding="utf-8",
    )
    subprocess.run(["/usr/sbin/sshd", "-t", "-f", str(config)], check=True, timeout=60)
    result = subprocess.run(
        [
            "/usr/sbin/sshd",
            "-T",
            "-f",
            str(config),
            "-C",
            "user=xchg-passendwijs,host=partner.example,addr=192.0.2.1",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    effective = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    assert effective["chrootdirectory"] == "/srv/exchanged/sftp/xchg-passendwijs"
    assert effective["forcecommand"].startswith("internal-sftp")
    assert effective["authenticationmethods"] == "publickey"
    assert effective["passwordauthentication"] == "no"
    assert effective["kbdinteractiveauthentication"] == "no"
    assert effective["disableforwarding"] == "yes"
    assert effective["permittty"] == "no"


_UNDER_RESTRICTIONS = textwrap.dedent(
    """
    import ctypes, mmap, os, subprocess, sys, tempfile
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_NO_NEW_PRIVS, PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 38, 65, 1
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        sys.exit(77)  # kernel older than 6.3
    assert libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
    os.umask(0o077)
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except OSError:
        pass
    else:
        sys.exit("W^X is not enforced, so this check proves nothing")
    import gnupg, paramiko, sqlite3, structlog, openpyxl
    import watchdog.observers
    paramiko.Ed25519Key  # cryptography's Rust bindings load
    with tempfile.TemporaryDirectory() as home:
        run = subprocess.run(
            ["gpg", "--homedir", home, "--batch", "--pinentry-mode", "loopback",
             "--passphrase", "test", "--quick-gen-key", "restricted@example.org",
             "ed25519", "sign", "1d"], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        assert len(gnupg.GPG(gnupghome=home).list_keys(secret=True)) == 1
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], check=False)
    observer = watchdog.observers.Observer()
    observer.start(); observer.stop(); observer.join()
    sqlite3.connect(":memory:").execute("select 1")
    print("ok")
    """
)


@pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is missing (Debian package gnupg)")
def test_libraries_and_gpg_work_under_memory_deny_write_execute(tmp_path: Path) -> None:
    # MemoryDenyWriteExecute= and NoNewPrivileges= applied the way the kernel offers
    # them without systemd as PID 1 (prctl, inherited by gpg and gpg-agent).
    result = subprocess.run(
        [sys.executable, "-c", _UNDER_RESTRICTIONS],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    if result.returncode == 77:
        pytest.skip("kernel has no PR_SET_MDWE (needs Linux 6.3 or later)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
