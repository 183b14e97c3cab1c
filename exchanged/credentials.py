"""Secrets from systemd credentials (``$CREDENTIALS_DIRECTORY``), and nowhere else.

The OpenPGP key passphrase, the SSH client-key passphrase, the SMTP password and the
BSN hashing key never sit in the configuration file or the environment: systemd
decrypts them at service start (``LoadCredentialEncrypted=``) into a private,
read-only, unswappable directory and names it in ``$CREDENTIALS_DIRECTORY``.

Permission rule, applied wherever the directory lives (systemd, ``systemd-run``, a
test, an administrator's shell): the file must be a regular file, owned by us or by
root, and readable by nobody else. systemd writes credentials with mode 0400 and, for
a service with ``User=``, grants that user read access through a POSIX ACL entry;
that ACL raises the group bits ``stat`` reports to the ACL mask, so the group bits
alone would wrongly reject every credential systemd hands us. The ACL itself is
therefore read, and only an entry for our own uid is accepted.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import struct
from pathlib import Path
from typing import Final

from exchanged.errors import LocalSystemError, OperatorInputError

__all__ = [
    "BSN_HASH_CREDENTIAL",
    "CREDENTIALS",
    "GPG_KEY_CREDENTIAL",
    "SMTP_CREDENTIAL",
    "SSH_KEY_CREDENTIAL",
    "CredentialError",
    "CredentialInsecure",
    "CredentialMissing",
    "CredentialUnreadable",
    "load_credential_line",
    "read_credential",
]

GPG_KEY_CREDENTIAL: Final = "gpg-passphrase"
SSH_KEY_CREDENTIAL: Final = "ssh-key-passphrase"
SMTP_CREDENTIAL: Final = "smtp-password"
BSN_HASH_CREDENTIAL: Final = "bsn-hash-key"

# Every credential exchanged reads, with what it is for; the unit file must load
# exactly these (tests/unit/test_systemd_unit.py holds the two together).
CREDENTIALS: Final[dict[str, str]] = {
    GPG_KEY_CREDENTIAL: "passphrase of this party's OpenPGP secret key",
    SSH_KEY_CREDENTIAL: "passphrase of the SSH client key used for SFTP",
    SMTP_CREDENTIAL: "password for the SMTP server that sends alert mail",
    BSN_HASH_CREDENTIAL: "secret key for hashing BSNs in the disclosure register",
}

# Where the shipped unit expects the encrypted file: systemd searches
# /etc/credstore.encrypted/ (and /run/, /usr/lib/) for a relative name, and a missing
# file there is skipped rather than failing the start, which optional ones rely on.
CREDSTORE_PREFIX: Final = "exchanged."

# systemd refuses credentials above 1 MiB; ours are passphrases and keys, so anything
# near that is a wrong file, and reading it whole into memory would be pointless.
_MAX_BYTES: Final = 64 * 1024

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")

# POSIX ACL extended attribute layout (linux/posix_acl_xattr.h).
_ACL_XATTR: Final = "system.posix_acl_access"
_ACL_VERSION: Final = 2
_ACL_USER: Final = 0x02
_ACL_GROUP_OBJ: Final = 0x04
_ACL_GROUP: Final = 0x08
_ACL_MASK: Final = 0x10
_ACL_READ: Final = 0x04


class CredentialError(Exception):
    """Marks every credential problem, whoever's fault it is."""


class CredentialMissing(CredentialError, OperatorInputError):
    """A required credential was not passed to the service."""


class CredentialInsecure(CredentialError, OperatorInputError):
    """A credential file others could read or replace; it is not used."""


class CredentialUnreadable(CredentialError, LocalSystemError):
    """The credential exists but could not be read or is not text."""


def load_credential_line(name: str) -> str:
    """The unit-file line that passes credential ``name`` to the service."""
    return f"LoadCredentialEncrypted={name}:{CREDSTORE_PREFIX}{name}"


def _how_to_add(name: str) -> str:
    return (
        f"create it with `systemd-creds encrypt --name={name} - "
        f"/etc/credstore.encrypted/{CREDSTORE_PREFIX}{name}` and make sure the unit "
        f"has `{load_credential_line(name)}` (see docs/OPERATIONS.md)"
    )


def read_credential(name: str, *, required: bool) -> str | None:
    """The credential's text, without one trailing newline; None if absent and optional.

    Raises CredentialMissing (required but absent), CredentialInsecure (readable by
    others, not ours, not a regular file) or CredentialUnreadable (I/O, size, encoding,
    empty). Messages name the credential, never its contents.
    """
    if not _NAME.fullmatch(name) or name in {".", ".."}:
        raise ValueError(f"not a valid credential name: {name!r}")
    directory = os.environ.get("CREDENTIALS_DIRECTORY", "")
    if not directory:
        if not required:
            return None
        raise CredentialMissing(
            f"credential {name!r} ({_purpose(name)}) is required, but exchanged was "
            f"started without $CREDENTIALS_DIRECTORY, so no credentials reach it; "
            + _how_to_add(name)
        )
    path = Path(directory) / name
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        if not required:
            return None
        raise CredentialMissing(
            f"credential {name!r} ({_purpose(name)}) is required but not in "
            f"{directory}; " + _how_to_add(name)
        ) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CredentialInsecure(
                f"credential {name!r} at {path} is a symbolic link; refusing it. "
                + _how_to_add(name)
            ) from None
        raise CredentialUnreadable(
            f"credential {name!r} at {path} cannot be opened: {exc.strerror}"
        ) from None
    try:
        _check_private(fd, name, path)
        data = _read_bounded(fd, name, path)
    except OSError as exc:
        raise CredentialUnreadable(
            f"credential {name!r} at {path} cannot be checked or read: {exc.strerror}"
        ) from None
    finally:
        os.close(fd)
    return _decode(data, name, path)


def _purpose(name: str) -> str:
    return CREDENTIALS.get(name, "used by exchanged")


def _check_private(fd: int, name: str, path: Path) -> None:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise CredentialInsecure(f"credential {name!r} at {path} is not a regular file")
    uid = os.geteuid()
    if st.st_uid not in {uid, 0}:
        raise CredentialInsecure(
            f"credential {name!r} at {path} belongs to uid {st.st_uid}, not to this "
            f"service (uid {uid}) or root; another account could replace it"
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o007:
        raise _too_open(name, path, mode)
    acl = _read_acl(fd)
    if acl is None:
        if mode & 0o070:
            raise _too_open(name, path, mode)
        return
    mask = 0o7
    for tag, _perm, _id in acl:
        if tag == _ACL_MASK:
            mask = _perm
    for tag, perm, entry_id in acl:
        effective = perm & mask
        if not effective & _ACL_READ:
            continue
        if tag in {_ACL_GROUP_OBJ, _ACL_GROUP} or (tag == _ACL_USER and entry_id != uid):
            raise CredentialInsecure(
                f"credential {name!r} at {path} has an ACL that lets another user or a "
                "group read it; remove it (`setfacl -b`) or let systemd create it"
            )


def _too_open(name: str, path: Path, mode: int) -> CredentialInsecure:
    return CredentialInsecure(
        f"credential {name!r} at {path} has mode {mode:04o}, so others can read it; "
        "it must be 0400 or 0600 (systemd creates it 0400). Treat the secret as "
        "disclosed: change it, then `chmod 0400` the new file"
    )


def _read_acl(fd: int) -> list[tuple[int, int, int]] | None:
    try:
        raw = os.getxattr(fd, _ACL_XATTR)
    except OSError as exc:
        if exc.errno in {errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP}:
            return None
        raise
    if len(raw) < 4 or (len(raw) - 4) % 8 or struct.unpack_from("<I", raw)[0] != _ACL_VERSION:
        # An ACL we cannot read could grant anything; treat it as granting too much.
        return [(_ACL_GROUP, _ACL_READ, 0)]
    return [struct.unpack_from("<HHI", raw, offset) for offset in range(4, len(raw), 8)]


def _read_bounded(fd: int, name: str, path: Path) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while chunk := os.read(fd, 8192):
        total += len(chunk)
        if total > _MAX_BYTES:
            raise CredentialUnreadable(
                f"credential {name!r} at {path} is larger than {_MAX_BYTES} bytes;"
                " it is not a passphrase or key, check which file was loaded"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _decode(data: bytes, name: str, path: Path) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CredentialUnreadable(f"credential {name!r} at {path} is not UTF-8 text") from None
    # `echo secret | systemd-creds encrypt` stores the newline echo adds; exactly one is
    # taken off, so a passphrase that really ends in whitespace survives.
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    if not text:
        raise CredentialUnreadable(
            f"credential {name!r} at {path} is empty; an empty secret is never intended"
        )
    return text
