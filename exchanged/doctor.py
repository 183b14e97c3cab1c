"""``exchanged doctor [-c CONFIG]``: check an installation before (and while) it runs.

One line per check, ``ok|FAIL|warn  <check>: <detail>``, exit 1 if any check FAILs.
Checks do the real thing where that is cheap and harmless: a real sign-and-encrypt to
our own key and back with the configured passphrase, a real SFTP login against the
pinned host key, and a real write and removal of a dot-file in each partner's remote
folder (receivers skip dot-files, so a running partner daemon never sees it).
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import secrets
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from exchanged.commandline import CommandParser, run_command
from exchanged.config import Config, Partner, load_config
from exchanged.errors import EXIT_FAILURE, EXIT_OK, ExchangedError
from exchanged.status_cmd import DEFAULT_CONFIG, check_gnupg_home, key_states

__all__ = ["Check", "doctor_main", "run_checks"]

_PROG: Final = "exchanged doctor"
OK: Final = "ok"
WARN: Final = "warn"
FAIL: Final = "FAIL"
# No clock can be right before this release was built; bump it when releasing.
_RELEASED: Final = datetime(2026, 11, 1, tzinfo=UTC)
_PLAUSIBLE_YEARS: Final = 30
_DISK_FAIL: Final = 100 * 1024 * 1024
_DISK_WARN: Final = 1024 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Check:
    level: str  # ok, warn or FAIL
    name: str
    detail: str

    def line(self) -> str:
        return f"{self.level:<5} {self.name}: {self.detail}"


# -- individual checks -------------------------------------------------------------------


def _gpg_version() -> Iterator[Check]:
    try:
        done = subprocess.run(["gpg", "--version"], capture_output=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        yield Check(FAIL, "gpg", f"cannot run gpg ({exc}); install GnuPG 2.2 or newer")
        return
    first = done.stdout.decode("utf-8", "replace").splitlines()[:1]
    found = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", first[0]) if first else None
    if found is None:
        yield Check(FAIL, "gpg", "cannot tell the gpg version; install GnuPG 2.2 or newer")
    elif (int(found[1]), int(found[2])) < (2, 2):
        yield Check(FAIL, "gpg", f"gpg {found[0]} is too old; exchanged needs GnuPG 2.2+")
    else:
        yield Check(OK, "gpg", f"GnuPG {found[0]}")


def _mode_check(name: str, path: Path, *, max_mode: int, folder: bool) -> Check:
    try:
        info = path.stat()
    except FileNotFoundError:
        return Check(FAIL, name, f"{path} does not exist")
    except OSError as exc:
        return Check(FAIL, name, f"{path} cannot be read: {exc.strerror}")
    mode = stat.S_IMODE(info.st_mode)
    if folder != stat.S_ISDIR(info.st_mode):
        return Check(FAIL, name, f"{path} is not a {'folder' if folder else 'regular file'}")
    if info.st_uid != os.geteuid():
        return Check(FAIL, name, f"{path} is owned by uid {info.st_uid}, not by this user")
    if mode & ~max_mode:
        return Check(FAIL, name, f"{path} has mode {mode:04o}; chmod {max_mode:o} it")
    return Check(OK, name, f"{path} mode {mode:04o}")


def _permissions(config: Config) -> Iterator[Check]:
    if config.state_dir.exists():
        yield _mode_check("state folder", config.state_dir, max_mode=0o700, folder=True)
        journal = config.state_dir / "journal.sqlite"
        if journal.exists():
            yield _mode_check("journal", journal, max_mode=0o600, folder=False)
    else:
        yield Check(WARN, "state folder", f"{config.state_dir} does not exist yet")
    problems = check_gnupg_home(config.gpg_home)
    yield (
        Check(FAIL, "gnupg home", problems[0])
        if problems
        else Check(OK, "gnupg home", f"{config.gpg_home} mode 0700, ours")
    )
    for partner in config.partners.values():
        yield _mode_check(f"ssh key {partner.id}", partner.sftp.key_file, max_mode=0o600,
                          folder=False)  # fmt: skip
    # Outboxes may be group-writable (operators drop files there); nothing may be open to
    # everyone. The inbox and the daemon's own folders are created on first use.
    folders = [("inbox", config.inbox, True)]
    folders += [(f"outbox {o.path.name}", o.path, False) for o in config.outboxes]
    folders += [
        (f"incoming {p.id}", p.local_dir, False) for p in config.partners.values() if p.local_dir
    ]
    for name, folder, may_be_missing in folders:
        yield _folder_check(name, folder, may_be_missing=may_be_missing)


def _folder_check(name: str, folder: Path, *, may_be_missing: bool) -> Check:
    if may_be_missing and not folder.exists():
        return Check(WARN, name, f"{folder} does not exist yet (made on first use, mode 0700)")
    check = _mode_check(name, folder, max_mode=0o777, folder=True)
    if check.level != OK:
        return check
    mode = stat.S_IMODE(folder.stat().st_mode)
    if mode & 0o002:
        return Check(FAIL, name, f"{folder} is writable by everyone (mode {mode:04o}); chmod o-rwx")
    if not os.access(folder, os.R_OK | os.W_OK | os.X_OK):
        return Check(FAIL, name, f"{folder} is not readable and writable by this user")
    if mode & 0o007:
        return Check(WARN, name, f"{folder} is open to all users (mode {mode:04o}); chmod o-rwx")
    return check


def _keys(config: Config, now: datetime) -> Iterator[Check]:
    for key in key_states(config, now):
        name = f"{key.role} key {key.owner}"
        expires = key.expires.date().isoformat() if key.expires else "never"
        if key.failing:
            yield Check(FAIL, name, f"{key.problem}; fingerprint {key.fingerprint}")
        elif key.problem:
            yield Check(WARN, name, f"{key.problem} ({expires}); plan a rotation")
        else:
            yield Check(OK, name, f"{key.fingerprint} usable, expires {expires}")


def _own_key_works(config: Config) -> Iterator[Check]:
    """Sign and encrypt to ourselves, then decrypt and verify: the real daemon path."""
    from exchanged.adapters.gpg import Gpg
    from exchanged.credentials import GPG_KEY_CREDENTIAL, read_credential

    passphrase = read_credential(GPG_KEY_CREDENTIAL, required=False)
    gpg = Gpg(config.gpg_home, config.fingerprint, passphrase=passphrase)
    with tempfile.TemporaryDirectory(prefix="exchanged-doctor-") as tmp:
        plain, sealed, back = Path(tmp, "in"), Path(tmp, "out.pgp"), Path(tmp, "back")
        plain.write_bytes(b"exchanged doctor test signature\n")
        gpg.seal(plain, sealed, config.fingerprint)
        opened = gpg.open(sealed, back)
    if opened.failure is not None or opened.signer != config.fingerprint:
        yield Check(FAIL, "own key signs", f"test message did not verify ({opened.failure})")
    else:
        yield Check(OK, "own key signs", "test sign + encrypt + decrypt + verify succeeded")


def _sftp(config: Config, partner: Partner, max_skew: float) -> Iterator[Check]:
    import paramiko

    from exchanged.adapters.sftp import Endpoint, HostKeyMismatch, SftpLink
    from exchanged.credentials import SSH_KEY_CREDENTIAL, read_credential

    name = f"sftp {partner.id}"
    endpoint = Endpoint(
        host=partner.sftp.host, port=partner.sftp.port, user=partner.sftp.user,
        key_file=partner.sftp.key_file, host_key=partner.sftp.host_key,
        key_passphrase=read_credential(SSH_KEY_CREDENTIAL, required=False),
    )  # fmt: skip
    probe_name = f".exchanged-doctor-{secrets.token_hex(6)}"
    folder = partner.remote_dir.rstrip("/")
    remote = f"{folder}/{probe_name}" if folder else probe_name

    def write_and_remove(sftp: paramiko.SFTPClient) -> float:
        before = time.time()
        with sftp.open(remote, "wb") as handle:
            handle.write(b"exchanged doctor\n")
        after = time.time()
        try:
            server_mtime = sftp.stat(remote).st_mtime or 0
        finally:
            sftp.remove(remote)
        # mtime has one-second resolution; anything inside [before-1, after+1] is exact.
        if server_mtime < before - 1:
            return server_mtime - before
        return max(0.0, server_mtime - after - 1)

    try:
        with SftpLink(endpoint) as link:
            # SftpLink has no dot-file API on purpose (wire names are never hidden); its
            # retrying call wrapper is what a public "check_writable" would use.
            skew = link._call(f"write test in {partner.remote_dir!r}", write_and_remove)
            polled = ""
            if partner.poll_dir is not None:
                files = link.list(partner.poll_dir)
                polled = f", poll folder {partner.poll_dir!r} lists ({len(files)} waiting)"
    except HostKeyMismatch as exc:
        yield Check(FAIL, name, f"host key mismatch: {exc.message}")
        return
    except ExchangedError as exc:
        yield Check(FAIL, name, exc.message)
        return
    yield Check(OK, name, f"{endpoint.address} host key matches pin, remote folder "
                          f"{partner.remote_dir!r} writable{polled}")  # fmt: skip
    level = FAIL if abs(skew) > max_skew else OK
    yield Check(level, f"clock vs {partner.id}", f"server file time differs by {skew:+.0f} s "
                f"(limit {max_skew:.0f} s)")  # fmt: skip


def _disk(config: Config) -> Iterator[Check]:
    where = config.state_dir
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    text = f"{free / 1024**3:.1f} GiB free in {where}"
    if free < _DISK_FAIL:
        yield Check(FAIL, "disk space", text + "; exchanged needs at least 100 MB")
    elif free < _DISK_WARN:
        yield Check(WARN, "disk space", text + "; below 1 GiB")
    else:
        yield Check(OK, "disk space", text)


def _clock(now: datetime) -> Iterator[Check]:
    if now < _RELEASED:
        yield Check(FAIL, "clock", f"system time {now:%Y-%m-%d} is before this release; fix NTP")
    elif now.year > _RELEASED.year + _PLAUSIBLE_YEARS:
        yield Check(FAIL, "clock", f"system time {now:%Y-%m-%d} is implausibly late; fix NTP")
    else:
        yield Check(OK, "clock", f"system time {now:%Y-%m-%dT%H:%M:%SZ} is plausible")


# -- driver ------------------------------------------------------------------------------


def _guarded(name: str, checks: Callable[[], Iterator[Check]]) -> Iterator[Check]:
    """One check's lines; whatever goes wrong inside becomes one FAIL line, no traceback."""
    try:
        yield from checks()
    except ExchangedError as exc:
        yield Check(FAIL, name, exc.message)
    except Exception as exc:  # noqa: BLE001 - a check that crashes is a failed check
        yield Check(FAIL, name, f"check could not run ({type(exc).__name__}: {exc})")


def run_checks(config_path: Path, now: datetime | None = None) -> Iterator[Check]:
    """Every check, in the order an administrator fixes things."""
    now = now or datetime.now(UTC)
    try:
        config = load_config(config_path)
    except ExchangedError as exc:
        yield Check(FAIL, "config", exc.message)
        return
    yield Check(OK, "config", f"{config_path} valid (party {config.party}, "
                f"{len(config.partners)} partner(s))")  # fmt: skip
    yield from _guarded("clock", lambda: _clock(now))
    yield from _guarded("gpg", _gpg_version)
    yield from _guarded("permissions", lambda: _permissions(config))
    yield from _guarded("keys", lambda: _keys(config, now))
    yield from _guarded("own key signs", lambda: _own_key_works(config))
    for partner in config.partners.values():
        check_link = functools.partial(_sftp, config, partner, config.limits.max_skew_seconds)
        yield from _guarded(f"sftp {partner.id}", check_link)
    yield from _guarded("disk space", lambda: _disk(config))


def _run(args: argparse.Namespace) -> int:
    failed = False
    for check in run_checks(args.config):
        print(check.line(), flush=True)
        failed = failed or check.level == FAIL
    return EXIT_FAILURE if failed else EXIT_OK


def doctor_main(argv: list[str]) -> int:
    """Run ``exchanged doctor``; returns 1 if any check failed."""
    parser = CommandParser(prog=_PROG, description="Check configuration, keys, links and the host.")
    parser.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG, metavar="CONFIG",
                        help="configuration file (default: %(default)s)")  # fmt: skip
    return run_command(_PROG, parser, _run, argv)
