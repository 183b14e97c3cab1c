"""Throw-away GnuPG homes with fresh ed25519/cv25519 keys, for tests and the demo.

Keys are made with ``--quick-gen-key``: elliptic-curve keys need no prime search, so
a party costs a few milliseconds. Every home starts a gpg-agent; call ``kill_agent``
when done, or test runs leak agents.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from exchanged.core.model import Fingerprint, PartyId

__all__ = ["cross_import", "export_public", "kill_agent", "make_party_home", "run_gpg"]

# sockaddr_un.sun_path holds 108 bytes including the terminating NUL.
_SUN_PATH_MAX = 107
# The longest socket name gpg-agent creates in a home.
_LONGEST_SOCKET = "S.gpg-agent.browser"

# No smartcards in tests, so keep scdaemon from starting; loopback lets a test give a
# passphrase on the command line. The agent calibrates passphrase hashing to cost
# ~100 ms per use, which makes a protected test key take seconds to create; the
# minimum count is fine for keys that live for one test run.
_AGENT_CONF = "disable-scdaemon\nallow-loopback-pinentry\ns2k-count 65536\n"
# Keys must only ever arrive by explicit import; no network, no chatter.
_GPG_CONF = "no-greeting\nno-auto-key-retrieve\nno-auto-key-locate\n"


def run_gpg(
    home: Path, *args: str, passphrase: str = "", stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run gpg in batch mode on ``home``; raise with gpg's own message on failure."""
    cmd = [
        "gpg",
        "--homedir",
        str(home),
        "--batch",
        "--no-tty",
        # Status on stderr, so stdout carries only data (exports, ciphertext).
        "--status-fd",
        "2",
        "--pinentry-mode",
        "loopback",
        # One argument: a passphrase that starts with "-" (a random one does, one time
        # in 64) would otherwise be read as an option.
        f"--passphrase={passphrase}",
        *args,
    ]
    done = subprocess.run(cmd, input=stdin, capture_output=True, check=False, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(
            f"gpg {args[0] if args else ''} failed ({done.returncode}): "
            + done.stderr.decode("utf-8", "replace").strip()
        )
    return done


def make_party_home(
    home: Path,
    party: str,
    *,
    passphrase: str = "",
    expire: str = "2y",
    faked_system_time: str | None = None,
) -> str:
    """Create a 0700 GnuPG home with a new key for ``party``; return its fingerprint.

    The key is an ed25519 signing primary with a cv25519 encryption subkey, no
    passphrase unless one is given. ``faked_system_time`` (gpg syntax, e.g.
    ``20200101T000000``) backdates the key, which with a short ``expire`` gives an
    already expired key for tests.
    """
    name = PartyId(party).value
    _check_socket_room(home)
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    home.chmod(0o700)
    (home / "gpg-agent.conf").write_text(_AGENT_CONF, encoding="ascii")
    (home / "gpg.conf").write_text(_GPG_CONF, encoding="ascii")
    timing = ["--faked-system-time", faked_system_time] if faked_system_time else []
    made = run_gpg(
        home,
        *timing,
        "--quick-gen-key",
        f"{name} <{name}@exchanged.invalid>",
        "ed25519",
        "sign",
        expire,
        passphrase=passphrase,
    )
    fpr = _created_fingerprint(made.stderr)
    run_gpg(home, *timing, "--quick-add-key", fpr, "cv25519", "encr", expire, passphrase=passphrase)
    return fpr


def export_public(home: Path, fpr: str) -> bytes:
    """The binary public key ``fpr`` as stored in ``home``."""
    data = run_gpg(home, "--export", Fingerprint.parse(fpr).value).stdout
    if not data:
        raise RuntimeError(f"key {fpr} is not in {home}")
    return data


def cross_import(home_a: Path, fpr_a: str, home_b: Path, fpr_b: str) -> None:
    """Give each home the other's public key."""
    run_gpg(home_b, "--import", stdin=export_public(home_a, fpr_a))
    run_gpg(home_a, "--import", stdin=export_public(home_b, fpr_b))


def kill_agent(home: Path) -> None:
    """Stop the gpg-agent (and any dirmngr) serving ``home``."""
    subprocess.run(
        ["gpgconf", "--homedir", str(home), "--kill", "all"],
        capture_output=True,
        check=False,
        timeout=30,
    )


def _created_fingerprint(status: bytes) -> str:
    for line in status.decode("ascii", "replace").splitlines():
        parts = line.split()
        if parts[:3] == ["[GNUPG:]", "KEY_CREATED", "P"] and len(parts) >= 4:
            return Fingerprint.parse(parts[3]).value
    raise RuntimeError("gpg did not report the fingerprint of the key it created")


def _check_socket_room(home: Path) -> None:
    # gpg puts agent sockets under /run/user/<uid>/gnupg when that exists, else in
    # the home itself, where a long path silently breaks the agent.
    if Path(f"/run/user/{os.getuid()}").is_dir():
        return
    socket = home.resolve() / _LONGEST_SOCKET
    if len(os.fsencode(socket)) > _SUN_PATH_MAX:
        raise ValueError(
            f"GnuPG home path is too long for gpg-agent's sockets ({len(str(socket))} > "
            f"{_SUN_PATH_MAX} characters); use a shorter folder"
        )
