"""``exchanged keys init|export|import|list|rotate``: this party's OpenPGP keys and its partners'.

Keys are pinned by fingerprint in the configuration (DESIGN.md §3); this command is how
they get into the GnuPG home without anyone trusting a file they were handed:
``import`` reads the key in a throw-away keyring first and only copies it into the real
home when its fingerprint equals the one the operator verified out of band.

Passphrases come from the ``gpg-passphrase`` systemd credential or an interactive prompt,
never from the command line or the environment (both are visible to other users via
/proc), and reach gpg through a pipe (``--passphrase-fd``), never its argv.
"""

from __future__ import annotations

import argparse
import getpass
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, NoReturn

from exchanged.config import Config, load_config
from exchanged.core.model import Fingerprint, PartyId
from exchanged.errors import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    ExchangedError,
    LocalSystemError,
    OperatorInputError,
)
from exchanged.status_cmd import DEFAULT_CONFIG, check_gnupg_home, key_states

__all__ = ["keys_main"]

_PROG: Final = "exchanged keys"
_MAX_KEY_BYTES: Final = 1024 * 1024
_GPG_TIMEOUT: Final = 120
# No passphrase caching: a wrong credential must fail at once, not after the agent's
# cache from an earlier correct passphrase expires hours later. Loopback lets the daemon
# hand the passphrase over a pipe; no smartcards, so no scdaemon.
_AGENT_CONF: Final = (
    "default-cache-ttl 0\nmax-cache-ttl 0\nallow-loopback-pinentry\ndisable-scdaemon\n"
)
_GPG_CONF: Final = "no-greeting\nno-auto-key-retrieve\nno-auto-key-locate\n"


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse would print the whole usage block; the rule is one line on stderr.
        raise _UsageError(message)


# -- gpg plumbing ------------------------------------------------------------------------


def _gpg(
    home: Path, *args: str, passphrase: str | None = None, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    cmd = ["gpg", "--homedir", str(home), "--batch", "--no-tty", "--status-fd", "2"]
    data = stdin
    if passphrase is not None:
        # The passphrase travels on fd 0, never in argv where `ps` would show it.
        cmd += ["--pinentry-mode", "loopback", "--passphrase-fd", "0"]
        data = passphrase.encode("utf-8") + b"\n"
    try:
        return subprocess.run(
            [*cmd, *args], input=data, capture_output=True, check=False, timeout=_GPG_TIMEOUT
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LocalSystemError(f"cannot run gpg: {exc}; is GnuPG 2.2+ installed?") from None


def _gpg_error(done: subprocess.CompletedProcess[bytes]) -> str:
    lines = [
        line
        for line in done.stderr.decode("utf-8", "replace").splitlines()
        if line.strip() and not line.startswith("[GNUPG:]")
    ]
    return lines[-1].strip() if lines else f"exit code {done.returncode}"


def _passphrase(*, confirm: bool) -> str:
    from exchanged.credentials import GPG_KEY_CREDENTIAL, read_credential

    secret = read_credential(GPG_KEY_CREDENTIAL, required=False)
    if secret is None:
        if not sys.stdin.isatty():
            raise OperatorInputError(
                f"no passphrase: pass the {GPG_KEY_CREDENTIAL!r} credential "
                "($CREDENTIALS_DIRECTORY) or run this command in a terminal to be asked"
            )
        secret = getpass.getpass("Passphrase for the new OpenPGP key: ")
        if confirm and getpass.getpass("Repeat the passphrase: ") != secret:
            raise OperatorInputError("the two passphrases differ; nothing was created")
    if not secret or "\n" in secret or "\r" in secret:
        raise OperatorInputError("the passphrase must be a single, non-empty line")
    return secret


def _generate(home: Path, party: str, expire: str, passphrase: str) -> str:
    uid = f"{party} <{party}@exchanged.invalid>"
    # --yes: on rotation the old key carries the same user id; keys are only ever
    # addressed by fingerprint, so a shared user id is harmless.
    made = _gpg(
        home, "--yes", "--quick-gen-key", uid, "ed25519", "sign", expire, passphrase=passphrase
    )
    fpr = None
    for line in made.stderr.decode("ascii", "replace").splitlines():
        parts = line.split()
        if parts[:3] == ["[GNUPG:]", "KEY_CREATED", "P"] and len(parts) >= 4:
            fpr = Fingerprint.parse(parts[3]).value
    if made.returncode != 0 or fpr is None:
        raise LocalSystemError(f"gpg could not create the key: {_gpg_error(made)}")
    sub = _gpg(home, "--quick-add-key", fpr, "cv25519", "encr", expire, passphrase=passphrase)
    if sub.returncode != 0:
        raise LocalSystemError(f"gpg could not add the encryption subkey: {_gpg_error(sub)}")
    return fpr


def _secret_fingerprints(home: Path) -> list[str]:
    done = _gpg(home, "--with-colons", "--list-secret-keys")
    return _colon_fingerprints(done.stdout, "sec")


def _colon_fingerprints(listing: bytes, primary: str) -> list[str]:
    found: list[str] = []
    expect_fpr = False
    for line in listing.decode("utf-8", "replace").splitlines():
        fields = line.split(":")
        if fields[0] in ("pub", "sec", "sub", "ssb"):
            expect_fpr = fields[0] == primary
        elif fields[0] == "fpr" and expect_fpr and len(fields) > 9:
            found.append(fields[9].upper())
            expect_fpr = False
    return found


def _primary_validity(listing: bytes) -> str:
    """gpg's validity letter of the first primary key in a colon listing."""
    for line in listing.decode("utf-8", "replace").splitlines():
        fields = line.split(":")
        if fields[0] == "pub" and len(fields) > 1:
            return fields[1]
    return ""


def _prepare_home(home: Path) -> None:
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    problems = check_gnupg_home(home)
    if problems:
        raise LocalSystemError(problems[0])
    for name, text in (("gpg-agent.conf", _AGENT_CONF), ("gpg.conf", _GPG_CONF)):
        path = home / name
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(text)
    # A running agent would keep the caching rules it started with.
    subprocess.run(
        ["gpgconf", "--homedir", str(home), "--reload", "gpg-agent"],
        capture_output=True, check=False, timeout=30,
    )  # fmt: skip


# -- configuration -----------------------------------------------------------------------


def _load(path: Path) -> Config:
    config = load_config(path)
    problems = check_gnupg_home(config.gpg_home)
    if problems:
        raise LocalSystemError(problems[0])
    return config


def _raw_settings(path: Path) -> tuple[Path | None, str | None]:
    """gpg.home and party from a configuration that may not validate yet (no key yet)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None, None
    gpg = data.get("gpg")
    home = gpg.get("home") if isinstance(gpg, dict) else None
    party = data.get("party")
    home_path = None
    if isinstance(home, str) and home:
        home_path = Path(home) if Path(home).is_absolute() else (path.parent / home).resolve()
    return home_path, party if isinstance(party, str) else None


# -- commands ----------------------------------------------------------------------------


def _cmd_init(args: argparse.Namespace) -> int:
    raw_home, raw_party = _raw_settings(args.config)
    home: Path | None = args.home or raw_home
    party: str | None = args.party or raw_party
    if home is None or party is None:
        raise OperatorInputError(
            "need the GnuPG home and the party id: give --home and --party, or a "
            "configuration with gpg.home and party (-c)"
        )
    party = PartyId(party).value
    _prepare_home(home)
    if _secret_fingerprints(home):
        raise OperatorInputError(
            f"the GnuPG home {home} already holds a secret key; "
            "use `exchanged keys rotate` to make a new one"
        )
    fpr = _generate(home, party, args.expire, _passphrase(confirm=True))
    print(f"created key {fpr} for {party} in {home} (expires in {args.expire})")
    print("add to the configuration:")
    print(f'[gpg]\nhome = "{home}"\nfingerprint = "{fpr}"')
    print("then give partners `exchanged keys export` and this fingerprint, by another channel")
    return EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    from exchanged.adapters.gpg import Gpg

    config = _load(args.config)
    fpr = Fingerprint.parse(args.fingerprint).value if args.fingerprint else config.fingerprint
    armored = Gpg(config.gpg_home, config.fingerprint).export_public(fpr)
    if args.out is None:
        sys.stdout.write(armored.decode("ascii"))
        print(f"fingerprint: {fpr}", file=sys.stderr)
        return EXIT_OK
    from exchanged.adapters.files import atomic_writer

    with atomic_writer(args.out) as handle:
        handle.write(armored)
    # A public key is meant to be handed around; 0644 so it can be copied off.
    args.out.chmod(0o644)
    print(f"wrote public key {fpr} to {args.out}")
    print(f"fingerprint: {fpr}  (tell partners by phone or in person, not with the file)")
    return EXIT_OK


def _cmd_import(args: argparse.Namespace) -> int:
    from exchanged.adapters.gpg import Gpg

    config = _load(args.config)
    try:
        expected = Fingerprint.parse(args.fingerprint).value
    except ValueError as exc:
        raise OperatorInputError(f"--fingerprint: {exc}") from None
    if args.partner not in config.partners:
        raise OperatorInputError(
            f"partner {args.partner!r} is not configured; add its [[partner]] first"
        )
    try:
        if args.file.stat().st_size > _MAX_KEY_BYTES:
            raise OperatorInputError(f"{args.file} is too large to be a public key")
        data = args.file.read_bytes()
    except OSError as exc:
        raise OperatorInputError(f"cannot read {args.file}: {exc.strerror}") from None
    clean = _vet_in_scratch_keyring(data, expected)
    imported = Gpg(config.gpg_home, config.fingerprint).import_public(clean)
    if imported != [expected]:
        raise LocalSystemError(f"gpg imported {', '.join(imported)} instead of {expected}")
    print(f"imported the key {expected} of partner {args.partner}")
    if config.partners[args.partner].fingerprint != expected:
        print(
            f"the configuration still pins {config.partners[args.partner].fingerprint}; "
            f'to use the new key set partner.{args.partner}.fingerprint = "{expected}" '
            "and restart the service"
        )
    return EXIT_OK


def _vet_in_scratch_keyring(data: bytes, expected: str) -> bytes:
    """The key in ``data`` re-exported minimal, only if it is exactly ``expected``."""
    # Short path under /tmp: gpg's agent sockets must fit in sun_path.
    scratch = Path(tempfile.mkdtemp(prefix="xk-"))
    try:
        scratch.chmod(0o700)
        done = _gpg(scratch, "--import", stdin=data)
        listing = _gpg(scratch, "--with-colons", "--list-keys").stdout
        found = _colon_fingerprints(listing, "pub")
        if _secret_fingerprints(scratch):
            raise OperatorInputError("the file contains a secret key; give only the public key")
        if not found:
            raise OperatorInputError(
                f"no usable OpenPGP public key in the file ({_gpg_error(done)})"
            )
        if len(found) > 1:
            raise OperatorInputError(
                f"the file holds {len(found)} keys; give exactly the partner's key. "
                "Nothing imported."
            )
        if found[0] != expected:
            raise OperatorInputError(
                f"fingerprint mismatch: the file holds {found[0]}, not {expected} as verified "
                "with the partner. Nothing imported; check with the partner out of band."
            )
        validity = _primary_validity(listing)
        if validity in ("e", "r"):
            what = "has expired" if validity == "e" else "is revoked"
            raise OperatorInputError(
                f"the key {expected} {what}; ask the partner for its current key. Nothing imported."
            )
        exported = _gpg(scratch, "--export", "--export-options", "export-minimal", expected)
        if exported.returncode != 0 or not exported.stdout:
            raise LocalSystemError(f"gpg could not re-export the key: {_gpg_error(exported)}")
        return exported.stdout
    finally:
        subprocess.run(
            ["gpgconf", "--homedir", str(scratch), "--kill", "all"],
            capture_output=True, check=False, timeout=30,
        )  # fmt: skip
        shutil.rmtree(scratch, ignore_errors=True)


def _cmd_list(args: argparse.Namespace) -> int:
    config = _load(args.config)
    now = datetime.now(UTC)
    for state in key_states(config, now):
        expires = state.expires.date().isoformat() if state.expires else "never"
        if not state.present:
            expires = "-"
        line = (
            f"{state.role:<7} {state.owner:<16} {state.fingerprint}  expires {expires:<10}  "
            f"{'usable' if state.usable else 'NOT USABLE'}"
        )
        if state.problem:
            line += f"  warning: {state.problem}"
        print(line)
    return EXIT_OK


def _cmd_rotate(args: argparse.Namespace) -> int:
    config = _load(args.config)
    fpr = _generate(config.gpg_home, config.party, args.expire, _passphrase(confirm=True))
    print(f"created the new key {fpr}; the old key {config.fingerprint} stays in the home")
    print("next steps (the old key keeps working until you switch):")
    print(f"  1. exchanged keys export --fingerprint {fpr} --out {config.party}-new.asc")
    print("  2. give each partner the file, and the fingerprint by phone or in person")
    print(
        f"  3. each partner runs: exchanged keys import {config.party}-new.asc "
        f"--partner {config.party} --fingerprint {fpr}"
    )
    print(f'  4. when all partners confirmed: set gpg.fingerprint = "{fpr}" and restart')
    print("  5. keep the old secret key until every message sealed to it has been received")
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=_PROG, description="Manage this party's and partners' OpenPGP keys.")
    commands = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    def sub(name: str, text: str) -> argparse.ArgumentParser:
        p = commands.add_parser(name, help=text, description=text)
        p.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG, metavar="CONFIG",
                       help="configuration file (default: %(default)s)")  # fmt: skip
        return p

    init = sub("init", "create this party's key (ed25519 signing + cv25519 encryption)")
    init.add_argument("--home", type=Path, help="GnuPG home (default: gpg.home of CONFIG)")
    init.add_argument("--party", help="party id (default: party of CONFIG)")
    init.add_argument("--expire", default="2y", help="validity, gpg syntax (default: 2y)")
    export = sub("export", "print the public key to give to partners")
    export.add_argument("--out", type=Path, metavar="FILE", help="write to FILE, not stdout")
    export.add_argument("--fingerprint", help="another key than the configured one (rotation)")
    imp = sub("import", "import a partner key whose fingerprint was verified out of band")
    imp.add_argument("file", type=Path, metavar="FILE")
    imp.add_argument("--partner", required=True, metavar="ID")
    imp.add_argument("--fingerprint", required=True, metavar="FPR")
    sub("list", "own and partner keys with expiry")
    rotate = sub("rotate", "create a successor for this party's key")
    rotate.add_argument("--expire", default="2y", help="validity, gpg syntax (default: 2y)")
    return parser


_COMMANDS: Final = {
    "init": _cmd_init,
    "export": _cmd_export,
    "import": _cmd_import,
    "list": _cmd_list,
    "rotate": _cmd_rotate,
}


def keys_main(argv: list[str]) -> int:
    """Run ``exchanged keys ...``; returns the exit code."""
    try:
        args = _parser().parse_args(argv)
    except _UsageError as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return _COMMANDS[args.action](args)
    except ExchangedError as exc:
        print(f"{_PROG} {args.action}: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except ValueError as exc:
        print(f"{_PROG} {args.action}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (KeyboardInterrupt, EOFError):
        return 130
    except Exception as exc:  # noqa: BLE001 - an operator gets one line, never a traceback
        print(f"{_PROG} {args.action}: unexpected internal error ({type(exc).__name__})",
              file=sys.stderr)  # fmt: skip
        return EXIT_FAILURE
