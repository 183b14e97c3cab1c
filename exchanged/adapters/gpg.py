"""OpenPGP through python-gnupg and the real ``gpg`` binary: seal, open, key handling.

Wire protocol v1 (DESIGN.md §3): one binary OpenPGP file per message, signed then
encrypted in one gpg pass. Keys are pinned by fingerprint; the gpg trust model is
never relied on, so every call runs with ``--trust-model always`` and the caller
compares the signer we report with the fingerprint it pinned.

Verdicts are drawn from gpg's machine-readable status lines, not from its exit code:
gpg exits 2 for a message that decrypted fine but whose signer is unknown, and 1 for
a bad signature, so the exit code alone cannot tell the failures apart.

gpg reads an input file by name, or a plaintext streamed to it, and writes its output
into a file we reserved (``exchanged.adapters.gpg_run``), so a large export costs no
memory here.
"""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import gnupg

from exchanged.adapters import gpg_run
from exchanged.adapters.gpg_run import PendingSeal, SealError, reserve
from exchanged.adapters.gpg_status import (
    BAD_SIGNATURE,
    DECRYPTION_FAILED,
    UNKNOWN_SIGNER,
    UNSIGNED,
    Event,
    Failure,
    Opened,
    error_code,
    split_files,
)
from exchanged.adapters.gpg_status import verdict as gpg_verdict
from exchanged.core.model import Fingerprint
from exchanged.errors import LocalSystemError, OperatorInputError

__all__ = [
    "BAD_SIGNATURE",
    "DECRYPTION_FAILED",
    "UNKNOWN_SIGNER",
    "UNSIGNED",
    "Failure",
    "Gpg",
    "KeyImportError",
    "KeyInfo",
    "KeyNotFoundError",
    "OpenError",
    "Opened",
    "PendingSeal",
    "SealError",
]

_MIN_VERSION: Final = (2, 2)

# At most this many messages per gpg run when opening several at once, so one run's
# command line and working files stay small; and only messages up to this size, since
# every plaintext of a run is on disk at the same time.
_BATCH_FILES: Final = 64
_BATCH_MAX_BYTES: Final = 1 << 20

# Reason codes of INV_RECP / INV_SGNR (GnuPG doc/DETAILS), worded for operators.
_KEY_REASONS: Final = {
    "1": "is not in the keyring",
    "2": "is ambiguous",
    "3": "cannot be used for this (wrong key usage)",
    "4": "is revoked",
    "5": "has expired",
    "9": "has no secret key here",
    "13": "is disabled",
}

# Status keywords that mean our own secret key could not be unlocked: a local
# problem, never the partner's fault, so it must not become a "decryption-failed"
# receipt that blames the message.
_UNLOCK_PROBLEMS: Final = frozenset(
    {"BAD_PASSPHRASE", "MISSING_PASSPHRASE", "NEED_PASSPHRASE", "PINENTRY_LAUNCHED"}
)

# libgpg-error codes (low 16 bits of ERROR/FAILURE values) that blame this machine:
# bad or missing passphrase, pinentry trouble, cancelled, no agent, agent error.
_PASSPHRASE_CODES: Final = frozenset({11, 85, 86, 99, 177})
_AGENT_CODES: Final = frozenset({77, 78})


class OpenError(LocalSystemError):
    """A message could not be opened for a reason on this machine, not in the message."""


class KeyImportError(OperatorInputError):
    """Key material given to import is not a usable public key."""


class KeyNotFoundError(LocalSystemError):
    """A key the configuration names is not in the GnuPG home."""


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What doctor/status need to know about one key.

    ``expires`` is when the key stops being usable for our protocol: the earlier of
    the primary key's expiry and the latest expiry of its encryption subkeys.
    """

    fingerprint: str
    expires: datetime | None
    revoked: bool
    expired: bool
    usable: bool


class Gpg:
    """One GnuPG home with our own key in it.

    A single ``gnupg.GPG`` is kept for the life of the object: creating one runs gpg
    to probe its version, which we do not want to pay per message. It holds no open
    processes or files between calls, so calls from several threads are fine.
    """

    def __init__(self, home: Path, own_fingerprint: str, *, passphrase: str | None = None) -> None:
        if not home.is_dir():
            raise LocalSystemError(
                f"GnuPG home {home} does not exist or is not a folder; "
                "create it (mode 0700) and import the keys"
            )
        if passphrase is not None and ("\n" in passphrase or "\r" in passphrase):
            # gpg reads the passphrase as one line; a line break would silently cut it.
            raise OperatorInputError("the GnuPG passphrase must be a single line")
        self._home = home
        self._own = Fingerprint.parse(own_fingerprint).value
        # An empty passphrase is the same as none: python-gnupg would otherwise ask
        # gpg to read a passphrase from stdin.
        self._passphrase = passphrase or None
        try:
            self._gpg = gnupg.GPG(
                gnupghome=str(home),
                # Loopback always, so a key that unexpectedly needs a passphrase fails
                # at once instead of waiting for a pinentry no one will ever see; no
                # network look-ups: keys arrive only through import_public.
                options=["--pinentry-mode", "loopback", "--no-auto-key-retrieve"],
            )
        except (OSError, ValueError) as exc:
            raise LocalSystemError(
                f"cannot run gpg for the GnuPG home {home}: {exc}; "
                "check that GnuPG 2.2 or newer is installed"
            ) from None
        version = self._gpg.version
        if not version or tuple(version[:2]) < _MIN_VERSION:
            found = ".".join(str(v) for v in version) if version else "an unknown version"
            raise LocalSystemError(f"gpg {found} is too old; exchanged needs GnuPG 2.2 or newer")

    @property
    def own_fingerprint(self) -> str:
        return self._own

    def close(self) -> None:
        """Nothing to release: python-gnupg keeps no process open between calls.

        The gpg-agent belongs to the GnuPG home, not to this object; it is left running
        so the next call does not pay for starting it again.
        """

    # -- messages -------------------------------------------------------------------

    def seal(self, plaintext: Path, out: Path, recipient: str) -> None:
        """Sign with our key and encrypt to exactly ``recipient``, binary, into ``out``.

        ``out`` appears complete and fsynced, mode 0600, or not at all.
        """
        if not plaintext.is_file():
            raise SealError("the file to seal does not exist or is not a regular file")
        self._begin_seal(out, recipient, plaintext).finish()

    def begin_seal(self, out: Path, recipient: str) -> PendingSeal:
        """Start sealing (see ``seal``) a plaintext the caller writes to the returned
        seal's ``sink``; gpg works on it as it arrives, on its own core, and
        ``finish`` waits for the end. The plaintext never touches the disk."""
        return self._begin_seal(out, recipient, None)

    def _begin_seal(self, out: Path, recipient: str, plaintext: Path | None) -> PendingSeal:
        recipient_fpr = Fingerprint.parse(recipient).value
        tmp = reserve(out)
        args = [
            "--local-user", self._own,
            # The full fingerprint, so gpg cannot pick some other key whose user id
            # happens to match.
            "--recipient", recipient_fpr,
            # A gpg.conf "encrypt-to" would add readers behind our back.
            "--no-encrypt-to",
            # Keep the local file name out of the literal packet: the partner must
            # never learn what the operator called the file.
            "--set-filename", "",
            "--output", str(tmp), "--sign", "--encrypt",
        ]  # fmt: skip
        if plaintext is not None:
            args += ["--", str(plaintext.resolve())]
        try:
            process = gpg_run.start(
                self._home, self._passphrase, args, data_on_stdin=plaintext is None
            )
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        describe = functools.partial(self._seal_problem, recipient=recipient_fpr)
        return PendingSeal(process, tmp, out, describe)

    def open(self, ciphertext: Path, out: Path) -> Opened:
        """Decrypt and verify ``ciphertext`` in one pass; plaintext to ``out`` (0600).

        On any failure ``out`` is removed, so a caller can never read unverified data.
        """
        if not ciphertext.is_file():
            raise OpenError("the message to open does not exist or is not a regular file")
        tmp = reserve(out)
        opened = Opened(failure=DECRYPTION_FAILED, signer=None)
        try:
            _, events = self._run(
                "--output", str(tmp), "--decrypt", "--", str(ciphertext.resolve())
            )
            local = self._local_problem(events)
            if local is not None and not any(key == "DECRYPTION_OKAY" for key, _ in events):
                raise OpenError(local)
            verdict = gpg_verdict(events, finished=any(k == "DECRYPTION_OKAY" for k, _ in events))
            if verdict.failure is None:
                # No fsync: the plaintext is a working file, read and deleted at once;
                # after a crash the message is simply opened again from its ciphertext.
                tmp.replace(out)
            # Only now: an exception above must still take the clean-up path below.
            opened = verdict
        finally:
            if opened.failure is not None:
                tmp.unlink(missing_ok=True)
                # A plaintext left from an earlier attempt must not be mistaken for
                # this message's content.
                out.unlink(missing_ok=True)
        return opened

    def open_many(self, messages: Sequence[tuple[Path, Path]]) -> list[Opened]:
        """Open several ``(ciphertext, out)`` pairs; the same verdicts as ``open`` one
        by one, at a fraction of the cost: gpg starting up is most of what one small
        message costs, so small messages are opened in one ``--multifile`` run.

        A batch is believed only when gpg exited 0 and its status lines match the
        input file for file; otherwise every message of it is opened again on its
        own, so a damaged or hostile message costs speed, never strictness. Each
        ciphertext must be named ``*.pgp`` in a private folder: gpg writes the
        plaintext next to it, without the suffix.
        """
        results: list[Opened | None] = [None] * len(messages)
        batch: list[int] = []
        for index, (ciphertext, _) in enumerate(messages):
            if _batchable(ciphertext):
                batch.append(index)
            if len(batch) == _BATCH_FILES:
                self._open_batch(messages, batch, results)
                batch = []
        self._open_batch(messages, batch, results)
        return [
            opened if opened is not None else self.open(*messages[index])
            for index, opened in enumerate(results)
        ]

    def _open_batch(
        self, messages: Sequence[tuple[Path, Path]], batch: list[int], results: list[Opened | None]
    ) -> None:
        """Fill ``results`` for the messages of one clean batch; leave the rest None."""
        if len(batch) < 2:
            return  # one message: ``open`` costs the same and says more on failure
        names = [str(messages[i][0].resolve()) for i in batch]
        outputs = [Path(name).with_suffix("") for name in names]
        try:
            for output in outputs:
                output.unlink(missing_ok=True)
                # Created 0600 first: gpg keeps the mode of a file it overwrites.
                os.close(os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            code, events = self._run("--multifile", "--decrypt", "--", *names)
            per_file = split_files(events, names)
            if code != 0 or per_file is None:
                return
            for index, events, output in zip(batch, per_file, outputs, strict=True):
                opened = gpg_verdict(events, finished=True)
                if opened.failure is None:
                    output.replace(messages[index][1])
                results[index] = opened
        finally:
            for output in outputs:
                output.unlink(missing_ok=True)

    def _run(self, *args: str) -> tuple[int, list[Event]]:
        """Run gpg on our home for one message operation: (exit code, status lines)."""
        return gpg_run.wait(gpg_run.start(self._home, self._passphrase, args))

    # -- keys -----------------------------------------------------------------------

    def import_public(self, armored_or_binary: bytes) -> list[str]:
        """Import public keys; returns the primary fingerprints gpg accepted."""
        scanned: list[dict[str, Any]] = list(self._gpg.scan_keys_mem(armored_or_binary))
        if not scanned:
            raise KeyImportError("no OpenPGP key found in the given data")
        if any(key.get("type") == "sec" for key in scanned):
            # A partner's secret key has no business in our home; refusing it also
            # stops an operator from leaking our own secret key into a keyring export.
            raise KeyImportError("the given data contains a secret key; give only the public key")
        result = self._gpg.import_keys(armored_or_binary)
        fingerprints = list(dict.fromkeys(str(f).upper() for f in result.fingerprints))
        if not fingerprints:
            raise KeyImportError("gpg did not accept the given public key")
        return fingerprints

    def export_public(self, fingerprint: str) -> bytes:
        """Our (or any stored) public key, ASCII-armored, without third-party signatures."""
        fpr = Fingerprint.parse(fingerprint).value
        armored: str = self._gpg.export_keys(fpr, armor=True, minimal=True)
        if not armored.strip():
            raise KeyNotFoundError(f"key {fpr} is not in the GnuPG home {self._home}")
        return armored.encode("ascii")

    def key_info(self, fingerprint: str) -> KeyInfo | None:
        """Validity of one public key, or None when the home does not hold it."""
        fpr = Fingerprint.parse(fingerprint).value
        for key in self._gpg.list_keys(keys=[fpr]):
            if str(key.get("fingerprint", "")).upper() == fpr:
                return _key_info(fpr, key)
        return None

    # -- helpers --------------------------------------------------------------------

    def _local_problem(self, events: list[tuple[str, str]]) -> str | None:
        """An operator-facing reason when gpg failed because of our key or agent."""
        codes = {error_code(value) for key, value in events if key in ("ERROR", "FAILURE")}
        if codes & _AGENT_CODES:
            return f"gpg-agent for the GnuPG home {self._home} is not working; restart it"
        if codes & _PASSPHRASE_CODES or any(key in _UNLOCK_PROBLEMS for key, _ in events):
            return (
                f"our secret key {self._own} in {self._home} could not be unlocked; "
                "check the configured GnuPG passphrase"
            )
        return None

    def _seal_problem(self, events: list[Event], code: int, *, recipient: str) -> str:
        keys = {key for key, _ in events}
        for key, value in events:
            reason_code = value.split(" ", 1)[0]
            if key == "INV_RECP":
                if reason_code == "0" and "KEYEXPIRED" in keys:
                    # gpg 2.2 reports an expired recipient as "no specific reason"
                    # right after a KEYEXPIRED line.
                    reason_code = "5"
                reason = _KEY_REASONS.get(reason_code, "cannot be used")
                return (
                    f"partner key {recipient} {reason} in the GnuPG home {self._home}; "
                    "import the partner's current public key"
                )
            if key == "INV_SGNR":
                reason = _KEY_REASONS.get(reason_code, "cannot be used")
                return f"our own key {self._own} {reason} in the GnuPG home {self._home}"
        local = self._local_problem(events)
        if local is not None:
            return local
        if "KEYEXPIRED" in keys:
            return f"a key needed to seal has expired (partner {recipient}, own {self._own})"
        return f"gpg could not sign and encrypt the message (exit code {code})"


def _key_info(fpr: str, key: dict[str, Any]) -> KeyInfo:
    validity = str(key.get("trust", ""))
    revoked = validity == "r"
    expired = validity == "e"
    expires = _timestamp(key.get("expires"))
    # Sub-key validity: the protocol needs an encryption subkey that still works.
    latest_encrypt: datetime | None = None
    any_encrypt = False
    never = False
    for info in (key.get("subkey_info") or {}).values():
        if "e" not in str(info.get("cap", "")) or str(info.get("trust", "")) in ("r", "e"):
            continue
        any_encrypt = True
        sub_expires = _timestamp(info.get("expires"))
        if sub_expires is None:
            never = True
        elif latest_encrypt is None or sub_expires > latest_encrypt:
            latest_encrypt = sub_expires
    if any_encrypt and not never and latest_encrypt is not None:
        expires = latest_encrypt if expires is None else min(expires, latest_encrypt)
    # Upper-case capability letters describe the key as a whole and are dropped by
    # gpg once the key is revoked, expired or disabled.
    caps = str(key.get("cap", ""))
    usable = not revoked and not expired and "S" in caps and "E" in caps and "D" not in caps
    return KeyInfo(
        fingerprint=fpr, expires=expires, revoked=revoked, expired=expired, usable=usable
    )


def _timestamp(value: object) -> datetime | None:
    text = str(value or "").strip()
    if not text.isdigit():
        return None
    return datetime.fromtimestamp(int(text), tz=UTC)


def _batchable(ciphertext: Path) -> bool:
    try:
        info = ciphertext.lstat()
    except OSError:
        return False  # ``open`` reports it
    return (
        ciphertext.suffix == ".pgp"
        and stat.S_ISREG(info.st_mode)
        and (info.st_size <= _BATCH_MAX_BYTES)
    )
