"""paramiko adapter: one SFTP link per partner, with a pinned host key.

Trust comes only from the host key pinned in the configuration: no known_hosts file, no
"accept on first use". The server's key is compared with the pinned one right after the
key exchange and *before* we authenticate or send anything else, so a man-in-the-middle
learns neither our identity nor any file.

Uploads are atomic for the receiver: data goes to ``.<name>.part`` and is renamed with
``posix-rename`` when complete. Receivers skip dot-files, so they never see a half file.
Every operation is safe to repeat after a crash or a dropped connection.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import socket
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, TypeVar

import paramiko

from exchanged.errors import LocalSystemError, OperatorInputError, PartnerError

__all__ = [
    "ClientKeyError",
    "Endpoint",
    "HostKeyMismatch",
    "InvalidHostKey",
    "LinkError",
    "RemoteFile",
    "RemoteOperationError",
    "SftpLink",
    "probe",
]

_T = TypeVar("_T")

# Server-side host-key algorithms paramiko may negotiate for each pinned key type. RSA
# keys are one key type but are signed with SHA-2 algorithms that carry other names.
_HOST_KEY_ALGORITHMS: dict[str, tuple[str, ...]] = {
    "ssh-ed25519": ("ssh-ed25519",),
    "ecdsa-sha2-nistp256": ("ecdsa-sha2-nistp256",),
    "ecdsa-sha2-nistp384": ("ecdsa-sha2-nistp384",),
    "ecdsa-sha2-nistp521": ("ecdsa-sha2-nistp521",),
    "ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256"),
}

_KEEPALIVE_SECONDS = 15
_CHUNK = 64 * 1024
# Up to two 32 KiB write requests: a message of a few hundred records.
_ACKED_UPLOAD_MAX = 64 * 1024


class InvalidHostKey(OperatorInputError):
    """A pinned host key is not a usable OpenSSH public key line."""


class ClientKeyError(LocalSystemError):
    """Our own SFTP client key cannot be read or decrypted."""


class LinkError(PartnerError):
    """The SFTP link to a partner failed: unreachable, refused, or an I/O error."""


class RemoteOperationError(LinkError):
    """The link is fine but this one operation failed on the server (a quota, a
    permission, a missing folder): trying other files may still succeed."""


class HostKeyMismatch(PartnerError):
    """The server did not prove possession of the pinned host key."""


@dataclass(frozen=True, slots=True)
class _PinnedKey:
    key_type: str
    blob: bytes


def _parse_host_key(line: str) -> _PinnedKey:
    fields = line.split()
    if len(fields) < 2:
        raise InvalidHostKey(
            "pinned host key must look like 'ssh-ed25519 AAAA...' (type and base64 key)"
        )
    key_type, encoded = fields[0], fields[1]
    if key_type not in _HOST_KEY_ALGORITHMS:
        raise InvalidHostKey(
            f"pinned host key type {key_type!r} is not supported; "
            f"use one of {', '.join(sorted(_HOST_KEY_ALGORITHMS))}"
        )
    try:
        blob = base64.b64decode(encoded, validate=True)
        embedded = paramiko.Message(blob).get_text()
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise InvalidHostKey("pinned host key is not valid base64 key data") from exc
    # The type is also inside the key data; a mismatch means a mangled copy-paste.
    if embedded != key_type:
        raise InvalidHostKey(
            f"pinned host key says {key_type!r} but its key data is of type {embedded!r}"
        )
    return _PinnedKey(key_type, blob)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to reach one partner's SFTP server."""

    host: str
    port: int
    user: str
    key_file: Path
    # "ssh-ed25519 AAAA... [comment]", as in the server's ssh_host_*_key.pub.
    host_key: str
    key_passphrase: str | None = None
    connect_timeout: float = 10.0
    # Longest wait for any single SFTP reply before we give up on the connection.
    io_timeout: float = 60.0

    def __post_init__(self) -> None:
        _parse_host_key(self.host_key)  # fail at configuration time, not at first upload

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __repr__(self) -> str:
        # The passphrase must never reach a log line or a traceback.
        return f"Endpoint(host={self.host!r}, port={self.port}, key_file={str(self.key_file)!r})"


@dataclass(frozen=True, slots=True)
class RemoteFile:
    name: str
    size: int


def _check_name(name: str) -> None:
    # Wire names are "<uuid>.pgp"; anything path-like here is a bug, not partner input.
    if not name or name.startswith(".") or "/" in name or "\x00" in name:
        raise ValueError(f"not a plain remote file name: {name!r}")


def _join(remote_dir: str, name: str) -> str:
    return f"{remote_dir.rstrip('/')}/{name}" if remote_dir else name


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class _Connection:
    """One authenticated SSH transport with its SFTP session."""

    __slots__ = ("sftp", "transport")

    def __init__(self, transport: paramiko.Transport, sftp: paramiko.SFTPClient) -> None:
        self.transport = transport
        self.sftp = sftp

    @property
    def alive(self) -> bool:
        return self.transport.is_active()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.sftp.close()
        with contextlib.suppress(Exception):
            self.transport.close()


def _load_client_key(endpoint: Endpoint) -> paramiko.PKey:
    try:
        return paramiko.PKey.from_path(endpoint.key_file, password=endpoint.key_passphrase)
    except paramiko.PasswordRequiredException as exc:
        raise ClientKeyError(
            f"SFTP client key {endpoint.key_file} is encrypted and no passphrase is configured"
        ) from exc
    except OSError as exc:
        raise ClientKeyError(
            f"cannot read SFTP client key {endpoint.key_file}: {_reason(exc)}"
        ) from exc
    except (paramiko.SSHException, ValueError, TypeError) as exc:
        # Wrong passphrase and unknown formats both end up here; the text is paramiko's.
        raise ClientKeyError(
            f"SFTP client key {endpoint.key_file} cannot be loaded "
            f"(wrong passphrase or not an OpenSSH private key): {exc}"
        ) from exc


def _connect(endpoint: Endpoint, client_key: paramiko.PKey) -> _Connection:
    pinned = _parse_host_key(endpoint.host_key)
    where = endpoint.address
    try:
        sock = socket.create_connection(
            (endpoint.host, endpoint.port), timeout=endpoint.connect_timeout
        )
    except OSError as exc:
        raise LinkError(f"cannot connect to SFTP server {where}: {_reason(exc)}") from exc

    transport: paramiko.Transport | None = None
    try:
        transport = paramiko.Transport(sock)
        _verify_server(transport, endpoint, pinned)
        _authenticate(transport, endpoint, client_key)
        return _open_sftp(transport, endpoint)
    except (HostKeyMismatch, LinkError):
        _close_quietly(transport, sock)
        raise
    except (paramiko.SSHException, OSError, EOFError) as exc:
        _close_quietly(transport, sock)
        raise LinkError(f"SSH handshake with SFTP server {where} failed: {_reason(exc)}") from exc
    except BaseException:
        _close_quietly(transport, sock)
        raise


def _verify_server(transport: paramiko.Transport, endpoint: Endpoint, pinned: _PinnedKey) -> None:
    where = endpoint.address
    transport.banner_timeout = endpoint.connect_timeout
    transport.auth_timeout = endpoint.connect_timeout
    transport.handshake_timeout = endpoint.connect_timeout
    # Ask only for the pinned key's type: a server with several host keys then presents
    # the one we can check, instead of one we would have to reject.
    transport.get_security_options().key_types = _HOST_KEY_ALGORITHMS[pinned.key_type]
    try:
        transport.start_client(timeout=endpoint.connect_timeout)
    except paramiko.SSHException as exc:
        # paramiko's IncompatiblePeer; matched by text because the stubs lack the class.
        if "no acceptable host key" not in str(exc):
            raise
        raise HostKeyMismatch(
            f"SFTP server {where} has no host key of the pinned type {pinned.key_type}, "
            "so it cannot prove it is the partner's server. This may be a "
            "man-in-the-middle attack, or the partner changed keys: verify the new key "
            "with the partner out of band before re-pinning. Nothing was sent."
        ) from exc

    # start_client has checked the server's signature with this key; what is left is to
    # check that it is the pinned key.
    server_key = transport.get_remote_server_key()
    if server_key.asbytes() != pinned.blob:
        raise HostKeyMismatch(
            f"the host key of SFTP server {where} does not match the pinned key "
            f"(server presents {server_key.get_name()} {server_key.fingerprint}). "
            "This may be a man-in-the-middle attack, or the partner changed keys: verify "
            "the new key with the partner out of band before re-pinning. Nothing was sent."
        )


def _authenticate(
    transport: paramiko.Transport, endpoint: Endpoint, client_key: paramiko.PKey
) -> None:
    failed = (
        f"authentication failed at SFTP server {endpoint.address}: the server did not "
        f"accept our client key {client_key.fingerprint} for the configured user; ask the "
        "partner to check its authorized keys"
    )
    try:
        transport.auth_publickey(endpoint.user, client_key)
    except paramiko.SSHException as exc:
        raise LinkError(failed) from exc
    if not transport.is_authenticated():
        raise LinkError(failed)


def _open_sftp(transport: paramiko.Transport, endpoint: Endpoint) -> _Connection:
    transport.set_keepalive(_KEEPALIVE_SECONDS)
    sftp = paramiko.SFTPClient.from_transport(transport)
    channel = sftp.get_channel() if sftp is not None else None
    if sftp is None or channel is None:
        raise LinkError(f"SFTP server {endpoint.address} refused to open an SFTP session")
    channel.settimeout(endpoint.io_timeout)
    return _Connection(transport, sftp)


def _close_quietly(transport: paramiko.Transport | None, sock: socket.socket) -> None:
    if transport is not None:
        with contextlib.suppress(Exception):
            transport.close()
    with contextlib.suppress(OSError):
        sock.close()


def probe(endpoint: Endpoint) -> None:
    """Connect, check the pinned host key, log in, open SFTP, and close again.

    Raises :class:`HostKeyMismatch`, :class:`LinkError` or :class:`ClientKeyError`.
    """
    _connect(endpoint, _load_client_key(endpoint)).close()


class SftpLink:
    """The SFTP connection to one partner, opened on first use and then reused.

    A lost connection is noticed on the next call, which reconnects. If a call fails on
    a connection that was reused (it may have died silently, e.g. the partner restarted
    sshd) it is retried once on a fresh connection; all operations are idempotent, so a
    repeat is harmless. Nothing is retried after :class:`HostKeyMismatch`.

    Meant to be used by one worker thread per link. A lock serialises calls, so sharing
    a link between threads is safe but gives no parallelism.
    """

    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint
        self._lock = threading.Lock()
        self._conn: _Connection | None = None
        self._client_key: paramiko.PKey | None = None

    @property
    def endpoint(self) -> Endpoint:
        return self._endpoint

    # -- operations -------------------------------------------------------------------

    def upload(self, local: Path, remote_dir: str, name: str) -> int:
        """Put ``local`` at ``<remote_dir>/<name>`` atomically; return its size in bytes.

        If ``<name>`` is already there with the same size, nothing is sent: this is the
        re-upload after a crash between rename and journal commit.
        """
        _check_name(name)
        final = _join(remote_dir, name)
        part = _join(remote_dir, f".{name}.part")
        try:
            handle = local.open("rb")
        except OSError as exc:
            raise LocalSystemError(f"cannot read {local} for upload: {_reason(exc)}") from exc
        with handle:
            size = os.fstat(handle.fileno()).st_size

            def op(sftp: paramiko.SFTPClient) -> int:
                if _remote_size(sftp, final) == size:
                    return size
                handle.seek(0)
                # Opening with "w" truncates a .part left by an interrupted attempt.
                if size <= _ACKED_UPLOAD_MAX:
                    _put_acked(sftp, handle, part)
                else:
                    sftp.putfo(handle, part, file_size=size, confirm=True)
                sftp.posix_rename(part, final)
                return size

            return self._call(f"upload to {remote_dir!r}", op)

    def stat_size(self, remote_dir: str, name: str) -> int | None:
        """Size of ``<remote_dir>/<name>``, or ``None`` if there is no such file."""
        _check_name(name)
        path = _join(remote_dir, name)
        return self._call(f"stat in {remote_dir!r}", lambda sftp: _remote_size(sftp, path))

    def list(self, remote_dir: str) -> list[RemoteFile]:
        """Regular, non-hidden files in ``remote_dir``, sorted by name."""

        def op(sftp: paramiko.SFTPClient) -> list[RemoteFile]:
            found = [
                RemoteFile(attr.filename, attr.st_size or 0)
                for attr in sftp.listdir_attr(remote_dir or ".")
                if not attr.filename.startswith(".")
                and attr.st_mode is not None
                and stat.S_ISREG(attr.st_mode)
            ]
            return sorted(found, key=lambda f: f.name)

        return self._call(f"list {remote_dir!r}", op)

    def download(self, remote_dir: str, name: str, local: Path) -> int:
        """Fetch ``<remote_dir>/<name>`` to ``local`` (mode 0600, atomic); return bytes."""
        _check_name(name)
        remote = _join(remote_dir, name)

        def op(sftp: paramiko.SFTPClient) -> int:
            return _download_atomic(sftp, remote, local)

        return self._call(f"download from {remote_dir!r}", op)

    def remove(self, remote_dir: str, name: str) -> None:
        """Delete ``<remote_dir>/<name>``; a file that is already gone is fine."""
        _check_name(name)
        path = _join(remote_dir, name)

        def op(sftp: paramiko.SFTPClient) -> None:
            with contextlib.suppress(FileNotFoundError):
                sftp.remove(path)

        self._call(f"remove in {remote_dir!r}", op)

    def close(self) -> None:
        with self._lock:
            self._drop()

    def abort(self) -> None:
        """Cut the connection from another thread, without waiting for the lock.

        paramiko can block on a silent peer for far longer than any timeout we set; this
        is how a deadline kept outside the blocking call ends it. The blocked call then
        fails with LinkError and the next call reconnects.
        """
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.transport.close()

    def __enter__(self) -> SftpLink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------

    def _call(self, what: str, op: Callable[[paramiko.SFTPClient], _T]) -> _T:
        with self._lock:
            reused = self._conn is not None and self._conn.alive
            for attempt in (1, 2):
                conn = self._connection()
                try:
                    return op(conn.sftp)
                except LocalSystemError:
                    raise
                except (OSError, EOFError, paramiko.SSHException) as exc:
                    # An SFTP status reply (no such folder, permission denied) arrives on
                    # a healthy connection; a timeout leaves replies out of step, and a
                    # dead transport is dead: both mean start over.
                    if conn.alive and not isinstance(exc, TimeoutError | EOFError):
                        raise RemoteOperationError(
                            f"SFTP server {self._endpoint.address}: {what} failed: {_reason(exc)}"
                        ) from exc
                    self._drop()
                    if attempt == 1 and reused:
                        continue
                    raise LinkError(
                        f"connection to SFTP server {self._endpoint.address} was lost "
                        f"during {what}: {_reason(exc)}"
                    ) from exc
            raise AssertionError("unreachable")  # pragma: no cover

    def _connection(self) -> _Connection:
        if self._conn is not None and not self._conn.alive:
            self._drop()
        if self._conn is None:
            if self._client_key is None:
                self._client_key = _load_client_key(self._endpoint)
            self._conn = _connect(self._endpoint, self._client_key)
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _put_acked(sftp: paramiko.SFTPClient, source: BinaryIO, remote: str) -> None:
    # putfo pipelines its writes and does not read the status of those still in flight
    # when it closes the file, so it stats the file afterwards to see it whole (one
    # more round trip). Unpipelined, every write's status is read before the next
    # request and a failed write raises here: the temp is complete before the rename
    # without that stat. Waiting for each ack costs nothing for a write or two.
    with sftp.open(remote, "wb") as out:
        out.write(source.read())


def _remote_size(sftp: paramiko.SFTPClient, path: str) -> int | None:
    try:
        attrs = sftp.stat(path)
    except FileNotFoundError:
        return None
    return attrs.st_size


def _download_atomic(sftp: paramiko.SFTPClient, remote: str, local: Path) -> int:
    folder = local.parent
    tmp = folder / f".{local.name}.{os.getpid()}.{threading.get_ident()}.part"
    # Local failures (disk full, folder gone) are ours, not the partner's: they are raised
    # as LocalSystemError here, so SftpLink._call never mistakes them for link trouble.
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise LocalSystemError(f"cannot write into {folder}: {_reason(exc)}") from exc
    try:
        with os.fdopen(fd, "wb") as out, sftp.open(remote, "rb") as src:
            received = _copy_remote(src, out, folder)
        try:
            tmp.replace(local)
            dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise LocalSystemError(f"cannot write into {folder}: {_reason(exc)}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return received


def _copy_remote(src: paramiko.SFTPFile, out: BinaryIO, folder: Path) -> int:
    expected = src.stat().st_size
    if expected:
        # Pipelines the read requests; one round trip per block would crawl.
        src.prefetch(expected)
    received = 0
    while chunk := src.read(_CHUNK):
        try:
            out.write(chunk)
        except OSError as exc:
            raise LocalSystemError(f"cannot write into {folder}: {_reason(exc)}") from exc
        received += len(chunk)
    if expected is not None and received != expected:
        # The file shrank or the stream ended early; the caller's retry fetches it whole.
        raise EOFError(f"download ended after {received} of {expected} bytes")
    try:
        out.flush()
        os.fsync(out.fileno())
    except OSError as exc:
        raise LocalSystemError(f"cannot write into {folder}: {_reason(exc)}") from exc
    return received
