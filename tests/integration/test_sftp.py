"""The paramiko SFTP adapter against a real OpenSSH sshd on a loopback port."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from exchanged.adapters.sftp import (
    Endpoint,
    HostKeyMismatch,
    InvalidHostKey,
    LinkError,
    RemoteFile,
    SftpLink,
    probe,
)
from exchanged.errors import PartnerError
from exchanged.testing.sshd import SshServer, generate_ssh_keypair

pytestmark = pytest.mark.integration

INCOMING = "incoming"


@dataclass(frozen=True, slots=True)
class Site:
    server: SshServer
    root: Path
    endpoint: Endpoint

    @property
    def incoming(self) -> Path:
        return self.root / INCOMING


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    key_file = tmp_path / "client_ed25519"
    public = generate_ssh_keypair(key_file, comment="test-client")
    root = tmp_path / "sftp-root"
    (root / INCOMING).mkdir(parents=True)
    with SshServer(tmp_path / "sshd", sftp_root=root, authorized_keys=[public]) as server:
        endpoint = Endpoint(
            host=server.host,
            port=server.port,
            user=server.user,
            key_file=key_file,
            host_key=server.host_key_line,
            connect_timeout=5.0,
            io_timeout=10.0,
        )
        yield Site(server, root, endpoint)


@pytest.fixture
def link(site: Site) -> Iterator[SftpLink]:
    with SftpLink(site.endpoint) as link:
        yield link


def _payload(tmp_path: Path, name: str = "message.pgp", size: int = 200_000) -> Path:
    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    return path


def _dot_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_upload_renames_into_place_and_leaves_no_part(
    site: Site, link: SftpLink, tmp_path: Path
) -> None:
    local = _payload(tmp_path)

    size = link.upload(local, INCOMING, "m1.pgp")

    assert size == local.stat().st_size
    assert (site.incoming / "m1.pgp").read_bytes() == local.read_bytes()
    assert _dot_files(site.incoming) == []
    assert link.stat_size(INCOMING, "m1.pgp") == size


# Small files go up in acknowledged writes, larger ones pipelined: both sides of the
# boundary, and the typical 3 KB message.
@pytest.mark.parametrize("size", [0, 3100, 64 * 1024, 64 * 1024 + 1])
def test_upload_of_any_size_arrives_whole(
    site: Site, link: SftpLink, tmp_path: Path, size: int
) -> None:
    local = _payload(tmp_path, size=size)
    (site.incoming / ".m1.pgp.part").write_bytes(b"junk " * 20_000)

    assert link.upload(local, INCOMING, "m1.pgp") == size

    assert (site.incoming / "m1.pgp").read_bytes() == local.read_bytes()
    assert _dot_files(site.incoming) == []


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("size", [3100, 200_000])
def test_a_failed_write_is_never_renamed_into_place(
    site: Site, link: SftpLink, tmp_path: Path, size: int
) -> None:
    # Every write fails as on a full disk (the test sshd is not chrooted, so the temp
    # name can point there).
    (site.incoming / ".m1.pgp.part").symlink_to("/dev/full")
    with pytest.raises(LinkError):
        link.upload(_payload(tmp_path, size=size), INCOMING, "m1.pgp")
    assert not (site.incoming / "m1.pgp").exists()
    assert link.list(INCOMING) == []  # and the link is still usable


def test_upload_again_is_a_no_op(site: Site, link: SftpLink, tmp_path: Path) -> None:
    local = _payload(tmp_path)
    link.upload(local, INCOMING, "m1.pgp")
    inode = (site.incoming / "m1.pgp").stat().st_ino

    assert link.upload(local, INCOMING, "m1.pgp") == local.stat().st_size

    # A real re-upload would rename a new file over it and change the inode.
    assert (site.incoming / "m1.pgp").stat().st_ino == inode


def test_leftover_part_file_is_overwritten(site: Site, link: SftpLink, tmp_path: Path) -> None:
    local = _payload(tmp_path, size=1000)
    # Longer than the payload, so a missing truncate would show as trailing junk.
    (site.incoming / ".m1.pgp.part").write_bytes(b"half-written junk " * 500)

    link.upload(local, INCOMING, "m1.pgp")

    assert (site.incoming / "m1.pgp").read_bytes() == local.read_bytes()
    assert _dot_files(site.incoming) == []


def test_list_download_remove(site: Site, link: SftpLink, tmp_path: Path) -> None:
    (site.incoming / "b.pgp").write_bytes(b"b" * 10)
    (site.incoming / "a.pgp").write_bytes(b"a" * 3)
    (site.incoming / ".c.pgp.part").write_bytes(b"in flight")
    (site.incoming / "folder").mkdir()

    assert link.list(INCOMING) == [RemoteFile("a.pgp", 3), RemoteFile("b.pgp", 10)]

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    target = inbox / "b.pgp"
    assert link.download(INCOMING, "b.pgp", target) == 10
    assert target.read_bytes() == b"b" * 10
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in inbox.iterdir()] == ["b.pgp"]

    link.remove(INCOMING, "b.pgp")
    link.remove(INCOMING, "b.pgp")  # already gone: still fine, removal is idempotent
    assert link.stat_size(INCOMING, "b.pgp") is None
    assert link.list(INCOMING) == [RemoteFile("a.pgp", 3)]


def test_remote_error_keeps_the_link_usable(site: Site, link: SftpLink, tmp_path: Path) -> None:
    with pytest.raises(LinkError, match=rf"{site.server.port}.*no-such-folder"):
        link.list("no-such-folder")
    with pytest.raises(LinkError):
        link.download(INCOMING, "missing.pgp", tmp_path / "missing.pgp")
    assert not (tmp_path / "missing.pgp").exists()
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    assert link.list(INCOMING) == []


def test_new_host_key_is_refused_and_nothing_is_uploaded(
    site: Site, link: SftpLink, tmp_path: Path
) -> None:
    link.upload(_payload(tmp_path, "first.pgp"), INCOMING, "first.pgp")

    site.server.restart(new_host_key=True)

    with pytest.raises(HostKeyMismatch) as caught:
        link.upload(_payload(tmp_path, "second.pgp"), INCOMING, "second.pgp")
    message = str(caught.value)
    assert f"127.0.0.1:{site.server.port}" in message
    assert "does not match the pinned key" in message
    assert "man-in-the-middle" in message
    assert isinstance(caught.value, PartnerError)
    assert sorted(p.name for p in site.incoming.iterdir()) == ["first.pgp"]

    with pytest.raises(HostKeyMismatch):
        probe(site.endpoint)


def test_wrong_client_key_fails_authentication(site: Site, tmp_path: Path) -> None:
    other_key = tmp_path / "other_ed25519"
    generate_ssh_keypair(other_key)
    endpoint = Endpoint(
        host=site.server.host,
        port=site.server.port,
        user=site.server.user,
        key_file=other_key,
        host_key=site.endpoint.host_key,
        connect_timeout=5.0,
    )

    with SftpLink(endpoint) as link, pytest.raises(LinkError, match="authentication failed"):
        link.upload(_payload(tmp_path), INCOMING, "m1.pgp")
    assert list(site.incoming.iterdir()) == []


def test_stopped_server_is_a_link_error_and_the_link_recovers(
    site: Site, link: SftpLink, tmp_path: Path
) -> None:
    local = _payload(tmp_path)
    link.upload(local, INCOMING, "m1.pgp")

    site.server.stop()
    with pytest.raises(LinkError, match=rf"127\.0\.0\.1:{site.server.port}"):
        link.list(INCOMING)
    with pytest.raises(LinkError):
        probe(site.endpoint)

    site.server.start()
    assert link.list(INCOMING) == [RemoteFile("m1.pgp", local.stat().st_size)]


def test_reused_connection_dropped_by_restart_is_retried(
    site: Site, link: SftpLink, tmp_path: Path
) -> None:
    link.upload(_payload(tmp_path, "first.pgp"), INCOMING, "first.pgp")

    site.server.restart()

    second = _payload(tmp_path, "second.pgp")
    assert link.upload(second, INCOMING, "second.pgp") == second.stat().st_size
    assert (site.incoming / "second.pgp").read_bytes() == second.read_bytes()


def test_probe_accepts_the_pinned_server(site: Site) -> None:
    probe(site.endpoint)


def test_pinned_key_with_comment_is_accepted(site: Site) -> None:
    endpoint = Endpoint(
        host=site.endpoint.host,
        port=site.endpoint.port,
        user=site.endpoint.user,
        key_file=site.endpoint.key_file,
        host_key=f"{site.server.host_key_line} partner-sftp-host",
    )
    probe(endpoint)


@pytest.mark.parametrize(
    "line",
    [
        "",
        "ssh-ed25519",
        "ssh-ed25519 not*base64",
        "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
        # An RSA key blob labelled as ed25519: a mangled copy-paste.
        "ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAABAQ==",
    ],
)
def test_unusable_pinned_key_is_rejected_up_front(line: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidHostKey):
        Endpoint(host="127.0.0.1", port=22, user="x", key_file=tmp_path / "k", host_key=line)
