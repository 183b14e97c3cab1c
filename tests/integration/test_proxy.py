"""The fault-injecting TCP proxy: forwarding, cuts, pauses, counting, clean stops; and an
SFTP link through it to a real sshd surviving a cut."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchanged.adapters.sftp import Endpoint, LinkError, SftpLink
from exchanged.testing.proxy import TcpProxy
from exchanged.testing.sshd import SshServer, free_port, generate_ssh_keypair

pytestmark = pytest.mark.integration


class EchoServer:
    """Echoes every byte back; counts connections."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.connections = 0
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        self._stop = False
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            self._socks.append(conn)
            thread = threading.Thread(target=self._echo, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                try:
                    conn.sendall(data)
                except OSError:
                    return

    def close(self) -> None:
        self._stop = True
        self.listener.close()
        for sock in self._socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=5)


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


def _connect(proxy: TcpProxy) -> socket.socket:
    sock = socket.create_connection((proxy.host, proxy.port), timeout=5)
    sock.settimeout(5)
    return sock


def _roundtrip(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    received = b""
    while len(received) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def _is_cut(sock: socket.socket) -> bool:
    """True when the peer ended the connection (reset or end of stream)."""
    try:
        sock.sendall(b"x")
        return sock.recv(10) == b""
    except ConnectionError:
        return True


def _wait(predicate: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return True
        time.sleep(0.01)
    return False


def test_forwards_both_ways_and_counts(echo: EchoServer) -> None:
    with TcpProxy("127.0.0.1", echo.port) as proxy:
        payload = bytes(range(256)) * 1000
        with _connect(proxy) as sock:
            assert _roundtrip(sock, payload) == payload
            # The proxy counts a chunk after forwarding it, so the client can have the
            # last bytes a moment before the count does.
            assert _wait(lambda: proxy.stats().bytes_down == len(payload))
            stats = proxy.stats()
            assert stats.accepted == 1 and stats.active == 1 and stats.cuts == 0
            assert stats.bytes_up == len(payload)
        assert _wait(lambda: proxy.stats().active == 0)


def test_cut_all_resets_every_live_connection(echo: EchoServer) -> None:
    with TcpProxy("127.0.0.1", echo.port) as proxy:
        first, second = _connect(proxy), _connect(proxy)
        with first, second:
            assert _roundtrip(first, b"hello") == b"hello"
            assert _roundtrip(second, b"hello") == b"hello"
            assert proxy.cut_all() == 2
            assert _is_cut(first) and _is_cut(second)
        assert proxy.stats().cuts == 2 and proxy.stats().random_cuts == 0
        assert _wait(lambda: proxy.stats().active == 0)
        # The proxy itself keeps serving new connections after a cut.
        with _connect(proxy) as third:
            assert _roundtrip(third, b"again") == b"again"


def test_random_cuts_with_probability_one_cut_at_the_first_chunk(echo: EchoServer) -> None:
    with TcpProxy("127.0.0.1", echo.port, seed=1) as proxy:
        proxy.set_cut_probability(1.0)
        with _connect(proxy) as sock:
            sock.sendall(b"doomed")
            assert _is_cut(sock)
        stats = proxy.stats()
        assert stats.cuts == 1 and stats.random_cuts == 1 and stats.bytes_up == 0
        proxy.set_cut_probability(0.0)
        with _connect(proxy) as sock:
            assert _roundtrip(sock, b"fine") == b"fine"
        with pytest.raises(ValueError, match="probability"):
            proxy.set_cut_probability(1.5)


def test_random_cuts_happen_at_about_the_given_rate(echo: EchoServer) -> None:
    with TcpProxy("127.0.0.1", echo.port, seed=7) as proxy:
        proxy.set_cut_probability(0.2)
        lived: list[int] = []
        for _ in range(20):
            with _connect(proxy) as sock:
                rounds = 0
                try:
                    while rounds < 100 and _roundtrip(sock, b"ping") == b"ping":
                        rounds += 1
                except OSError:
                    pass
                lived.append(rounds)
        # Two chunks per round (there and back) at 0.2 each: most die within a few rounds.
        assert max(lived) < 100
        assert proxy.stats().random_cuts == 20


def test_pause_holds_data_until_resume(echo: EchoServer) -> None:
    with TcpProxy("127.0.0.1", echo.port) as proxy, _connect(proxy) as sock:
        proxy.pause()
        assert proxy.paused
        sock.sendall(b"held")
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(10)
        proxy.resume()
        sock.settimeout(5)
        assert sock.recv(10) == b"held"
        assert proxy.stats().cuts == 0


def test_unreachable_upstream_closes_the_client_and_is_counted() -> None:
    with TcpProxy("127.0.0.1", free_port()) as proxy:
        try:
            sock = _connect(proxy)
        except ConnectionError:
            pass  # the reset can beat the end of our own connect()
        else:
            with sock:
                assert _is_cut(sock)
        assert _wait(lambda: proxy.stats().upstream_failures == 1)
        assert proxy.stats().accepted == 1


def test_stop_ends_connections_and_threads(echo: EchoServer) -> None:
    before = threading.active_count()
    proxy = TcpProxy("127.0.0.1", echo.port)
    proxy.start()
    socks = [_connect(proxy) for _ in range(3)]
    for sock in socks:
        assert _roundtrip(sock, b"x") == b"x"
    proxy.pause()  # a paused proxy must stop too
    proxy.stop()
    for sock in socks:
        with sock:
            assert _is_cut(sock)
    assert _wait(lambda: threading.active_count() <= before)
    with pytest.raises(OSError):
        socket.create_connection((proxy.host, proxy.port), timeout=1).close()


def test_sftp_link_through_the_proxy_survives_a_cut(tmp_path: Path) -> None:
    key_file = tmp_path / "client_ed25519"
    public = generate_ssh_keypair(key_file, comment="test-client")
    root = tmp_path / "sftp-root"
    (root / "incoming").mkdir(parents=True)
    local = tmp_path / "message.pgp"
    local.write_bytes(b"\x85" * 200_000)
    with (
        SshServer(tmp_path / "sshd", sftp_root=root, authorized_keys=[public]) as server,
        TcpProxy(server.host, server.port) as proxy,
    ):
        endpoint = Endpoint(
            host=proxy.host, port=proxy.port, user=server.user, key_file=key_file,
            host_key=server.host_key_line, connect_timeout=5.0, io_timeout=10.0,
        )  # fmt: skip
        with SftpLink(endpoint) as link:
            assert link.upload(local, "incoming", "a.pgp") == 200_000
            proxy.cut_all()
            # The dead connection is noticed and replaced; the upload is not lost.
            assert link.upload(local, "incoming", "b.pgp") == 200_000
            proxy.set_cut_probability(1.0)
            with pytest.raises(LinkError):
                link.upload(local, "incoming", "c.pgp")
            proxy.set_cut_probability(0.0)
            assert link.upload(local, "incoming", "c.pgp") == 200_000
        assert sorted(p.name for p in (root / "incoming").iterdir()) == [
            "a.pgp", "b.pgp", "c.pgp",
        ]  # fmt: skip
        assert (root / "incoming" / "c.pgp").read_bytes() == local.read_bytes()
        assert proxy.stats().accepted >= 3
