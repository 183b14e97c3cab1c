"""Reading secrets from $CREDENTIALS_DIRECTORY, laid out the way systemd lays it out."""

from __future__ import annotations

import errno
import os
import struct
from pathlib import Path

import pytest

from exchanged.credentials import (
    BSN_HASH_CREDENTIAL,
    CREDENTIALS,
    GPG_KEY_CREDENTIAL,
    SMTP_CREDENTIAL,
    CredentialInsecure,
    CredentialMissing,
    CredentialUnreadable,
    load_credential_line,
    read_credential,
)
from exchanged.errors import LocalSystemError, OperatorInputError

PHRASE = "correct horse battery staple"


@pytest.fixture
def creds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "credentials"
    directory.mkdir(mode=0o500)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(directory))
    return directory


def _put(directory: Path, name: str, data: bytes, mode: int = 0o400) -> Path:
    directory.chmod(0o700)
    path = directory / name
    path.write_bytes(data)
    path.chmod(mode)
    directory.chmod(0o500)
    return path


def _set_acl(path: Path, entries: list[tuple[int, int, int]]) -> None:
    blob = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)
    try:
        os.setxattr(path, "system.posix_acl_access", blob)
    except OSError as exc:
        if exc.errno in {errno.ENOTSUP, errno.EOPNOTSUPP}:
            pytest.skip(f"the file system under {path.parent} has no POSIX ACLs")
        raise


_UNDEF = 0xFFFFFFFF
_USER_OBJ, _USER, _GROUP_OBJ, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x10, 0x20


def test_reads_the_secret_without_the_newline_echo_added(creds: Path) -> None:
    _put(creds, GPG_KEY_CREDENTIAL, (PHRASE + "\n").encode())
    assert read_credential(GPG_KEY_CREDENTIAL, required=True) == PHRASE


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (PHRASE, PHRASE),
        (PHRASE + "\r\n", PHRASE),
        (PHRASE + "\n\n", PHRASE + "\n"),
        (" " + PHRASE + " \n", " " + PHRASE + " "),
    ],
)
def test_only_one_trailing_newline_is_removed(creds: Path, stored: str, expected: str) -> None:
    _put(creds, SMTP_CREDENTIAL, stored.encode())
    assert read_credential(SMTP_CREDENTIAL, required=True) == expected


def test_a_0600_file_from_a_manual_set_up_is_accepted(creds: Path) -> None:
    _put(creds, BSN_HASH_CREDENTIAL, b"k" * 64, mode=0o600)
    assert read_credential(BSN_HASH_CREDENTIAL, required=True) == "k" * 64


def test_absent_optional_credential_is_none(creds: Path) -> None:
    assert read_credential(SMTP_CREDENTIAL, required=False) is None


def test_absent_directory_and_optional_credential_is_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert read_credential(SMTP_CREDENTIAL, required=False) is None


def test_absent_required_credential_names_the_unit_line_to_add(creds: Path) -> None:
    with pytest.raises(CredentialMissing) as caught:
        read_credential(GPG_KEY_CREDENTIAL, required=True)
    message = str(caught.value)
    assert "'gpg-passphrase'" in message
    assert "LoadCredentialEncrypted=gpg-passphrase:exchanged.gpg-passphrase" in message
    assert "systemd-creds encrypt" in message
    assert isinstance(caught.value, OperatorInputError)


def test_no_credentials_directory_at_all_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(CredentialMissing, match=r"\$CREDENTIALS_DIRECTORY") as caught:
        read_credential(BSN_HASH_CREDENTIAL, required=True)
    assert load_credential_line(BSN_HASH_CREDENTIAL) in str(caught.value)


@pytest.mark.parametrize("mode", [0o404, 0o440, 0o444, 0o640, 0o604])
def test_a_file_others_can_read_is_refused(creds: Path, mode: int) -> None:
    _put(creds, GPG_KEY_CREDENTIAL, PHRASE.encode(), mode=mode)
    with pytest.raises(CredentialInsecure, match=f"mode {mode:04o}") as caught:
        read_credential(GPG_KEY_CREDENTIAL, required=True)
    assert PHRASE not in str(caught.value)


def test_systemds_acl_for_the_service_user_is_accepted(creds: Path) -> None:
    # systemd writes 0400 and adds user:<service uid>:r--; stat then shows 0440.
    path = _put(creds, GPG_KEY_CREDENTIAL, PHRASE.encode())
    _set_acl(
        path,
        [
            (_USER_OBJ, 4, _UNDEF),
            (_USER, 4, os.geteuid()),
            (_GROUP_OBJ, 0, _UNDEF),
            (_MASK, 4, _UNDEF),
            (_OTHER, 0, _UNDEF),
        ],
    )
    assert path.stat().st_mode & 0o777 == 0o440
    assert read_credential(GPG_KEY_CREDENTIAL, required=True) == PHRASE


def test_an_acl_for_another_user_is_refused(creds: Path) -> None:
    path = _put(creds, GPG_KEY_CREDENTIAL, PHRASE.encode())
    _set_acl(
        path,
        [
            (_USER_OBJ, 4, _UNDEF),
            (_USER, 4, os.geteuid() + 4242),
            (_GROUP_OBJ, 0, _UNDEF),
            (_MASK, 4, _UNDEF),
            (_OTHER, 0, _UNDEF),
        ],
    )
    with pytest.raises(CredentialInsecure, match="ACL"):
        read_credential(GPG_KEY_CREDENTIAL, required=True)


def test_an_acl_granting_the_owning_group_is_refused(creds: Path) -> None:
    path = _put(creds, GPG_KEY_CREDENTIAL, PHRASE.encode())
    _set_acl(
        path,
        [
            (_USER_OBJ, 4, _UNDEF),
            (_USER, 4, os.geteuid()),
            (_GROUP_OBJ, 4, _UNDEF),
            (_MASK, 4, _UNDEF),
            (_OTHER, 0, _UNDEF),
        ],
    )
    with pytest.raises(CredentialInsecure, match="ACL"):
        read_credential(GPG_KEY_CREDENTIAL, required=True)


def test_a_symlink_is_refused(creds: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text(PHRASE)
    target.chmod(0o400)
    creds.chmod(0o700)
    (creds / GPG_KEY_CREDENTIAL).symlink_to(target)
    with pytest.raises(CredentialInsecure, match="symbolic link"):
        read_credential(GPG_KEY_CREDENTIAL, required=True)


def test_a_directory_is_refused(creds: Path) -> None:
    creds.chmod(0o700)
    (creds / GPG_KEY_CREDENTIAL).mkdir(mode=0o700)
    with pytest.raises(CredentialInsecure, match="not a regular file"):
        read_credential(GPG_KEY_CREDENTIAL, required=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_a_file_owned_by_another_account_is_refused(creds: Path) -> None:
    path = _put(creds, GPG_KEY_CREDENTIAL, PHRASE.encode())
    os.chown(path, 4242, 4242)
    with pytest.raises(CredentialInsecure, match="uid 4242"):
        read_credential(GPG_KEY_CREDENTIAL, required=True)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "empty"),
        (b"\n", "empty"),
        (b"\xff\xfe secret", "not UTF-8"),
        (b"x" * (64 * 1024 + 1), "larger than"),
    ],
)
def test_unusable_contents_are_a_local_error(creds: Path, data: bytes, problem: str) -> None:
    _put(creds, BSN_HASH_CREDENTIAL, data)
    with pytest.raises(CredentialUnreadable, match=problem) as caught:
        read_credential(BSN_HASH_CREDENTIAL, required=True)
    assert isinstance(caught.value, LocalSystemError)
    assert "'bsn-hash-key'" in str(caught.value)


@pytest.mark.parametrize("name", ["", ".", "..", "../etc/shadow", "a/b", ".hidden"])
def test_a_name_that_is_not_a_file_name_is_a_programming_error(name: str) -> None:
    with pytest.raises(ValueError, match="credential name"):
        read_credential(name, required=False)


def test_the_four_credentials_the_daemon_uses() -> None:
    assert set(CREDENTIALS) == {
        "gpg-passphrase",
        "ssh-key-passphrase",
        "smtp-password",
        "bsn-hash-key",
    }
