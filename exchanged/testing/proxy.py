"""A small threaded TCP proxy on loopback, for putting faults between a client and a server.

The fault-injection suite puts one in front of each party's sshd, so that the partner's
daemon reaches the server only through it. The proxy can then:

- cut every live connection at once (:meth:`TcpProxy.cut_all`), as a network drop would;
- cut a connection at random, with a probability per forwarded chunk
  (:meth:`TcpProxy.set_cut_probability`), which lands cuts in the middle of handshakes,
  uploads and receipts alike;
- pause forwarding (:meth:`TcpProxy.pause` / :meth:`TcpProxy.resume`): data is held, not
  lost, as on a congested or briefly partitioned link;
- count what it did (:meth:`TcpProxy.stats`).

A cut closes both sides with a TCP reset (``SO_LINGER`` 0), so neither end gets an orderly
end of stream. Each connection uses two threads, one per direction; :meth:`TcpProxy.stop`
ends them all and returns only when they are gone.
"""

from __future__ import annotations

import contextlib
import random
import selectors
import socket
import struct
import threading
from dataclasses import dataclass
from types import TracebackType

__all__ = ["ProxyStats", "TcpProxy"]

_HOST = "127.0.0.1"
_CHUNK = 16 * 1024
_ACCEPT_POLL_SECONDS = 0.1
_UPSTREAM_TIMEOUT = 5.0
_JOIN_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class ProxyStats:
    """What the proxy has done since it was made."""

    accepted: int  # client connections accepted
    active: int  # connections open right now
    upstream_failures: int  # accepted, but the server could not be reached
    cuts: int  # connections cut on purpose (cut_all and random cuts together)
    random_cuts: int  # of which at random, by the per-chunk probability
    bytes_up: int  # client -> server
    bytes_down: int  # server -> client


class _Pair:
    """One proxied connection: the client's socket and ours to the server."""

    __slots__ = ("client", "closed", "running", "server", "threads")

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client = client
        self.server = server
        self.closed = False
        self.running = 2  # pump threads not yet finished
        self.threads: list[threading.Thread] = []


def _abort(sock: socket.socket) -> None:
    """End ``sock`` with a reset and wake any thread blocked reading it."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target_host:target_port``.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. ``listen_port`` 0
    picks a free port; :attr:`port` tells which. ``seed`` makes the random cuts
    repeatable for a given sequence of chunks.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        listen_port: int = 0,
        seed: int | None = None,
    ) -> None:
        self._target = (target_host, target_port)
        self._lock = threading.Lock()
        self._rng = random.Random(seed)  # noqa: S311 -- fault injection, not a secret
        self._cut_probability = 0.0
        self._resumed = threading.Event()
        self._resumed.set()
        self._stopping = threading.Event()
        self._pairs: set[_Pair] = set()
        self._accepted = 0
        self._upstream_failures = 0
        self._cuts = 0
        self._random_cuts = 0
        self._bytes_up = 0
        self._bytes_down = 0
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((_HOST, listen_port))
        self._port: int = self._listener.getsockname()[1]
        self._acceptor: threading.Thread | None = None

    # -- properties -------------------------------------------------------------------

    @property
    def host(self) -> str:
        return _HOST

    @property
    def port(self) -> int:
        return self._port

    @property
    def paused(self) -> bool:
        return not self._resumed.is_set()

    @property
    def cut_probability(self) -> float:
        with self._lock:
            return self._cut_probability

    # -- control ----------------------------------------------------------------------

    def start(self) -> None:
        if self._acceptor is not None:
            return
        self._listener.listen(64)
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"proxy-{self._port}", daemon=True
        )
        self._acceptor.start()

    def stop(self) -> None:
        """Stop accepting, cut every connection, and wait for all threads to end."""
        self._stopping.set()
        self._resumed.set()  # release pumps held by a pause, so they can see the stop
        if self._acceptor is not None:
            self._acceptor.join(timeout=_JOIN_TIMEOUT)
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            self._close_pair(pair)
        for pair in pairs:
            for thread in pair.threads:
                if thread is not threading.current_thread():
                    thread.join(timeout=_JOIN_TIMEOUT)

    def cut_all(self) -> int:
        """Cut every live connection now; return how many were cut."""
        with self._lock:
            pairs = [p for p in self._pairs if not p.closed]
        return sum(1 for pair in pairs if self._close_pair(pair, cut=True))

    def set_cut_probability(self, probability: float) -> None:
        """Cut a connection with this probability each time it forwards a chunk."""
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"a probability lies in [0, 1], not {probability}")
        with self._lock:
            self._cut_probability = probability

    def pause(self) -> None:
        """Hold all data in flight (in both directions) until :meth:`resume`."""
        self._resumed.clear()

    def resume(self) -> None:
        self._resumed.set()

    def stats(self) -> ProxyStats:
        with self._lock:
            return ProxyStats(
                accepted=self._accepted,
                active=sum(1 for p in self._pairs if not p.closed),
                upstream_failures=self._upstream_failures,
                cuts=self._cuts,
                random_cuts=self._random_cuts,
                bytes_up=self._bytes_up,
                bytes_down=self._bytes_down,
            )

    def __enter__(self) -> TcpProxy:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals --------------------------------------------------------------------

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            while not self._stopping.is_set():
                if not selector.select(timeout=_ACCEPT_POLL_SECONDS):
                    continue
                try:
                    client, _ = self._listener.accept()
                except OSError:
                    continue
                self._open_pair(client)

    def _open_pair(self, client: socket.socket) -> None:
        with self._lock:
            self._accepted += 1
        try:
            server = socket.create_connection(self._target, timeout=_UPSTREAM_TIMEOUT)
        except OSError:
            with self._lock:
                self._upstream_failures += 1
            # A refused upstream looks to the client like a server that hung up at once.
            _abort(client)
            client.close()
            return
        server.settimeout(None)
        client.settimeout(None)
        for sock in (client, server):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pair = _Pair(client, server)
        pair.threads = [
            threading.Thread(target=self._pump, args=(pair, client, server, True), daemon=True),
            threading.Thread(target=self._pump, args=(pair, server, client, False), daemon=True),
        ]
        with self._lock:
            if self._stopping.is_set():
                pair.closed = True
            else:
                self._pairs.add(pair)
        if pair.closed:
            for sock in (client, server):
                _abort(sock)
                sock.close()
            return
        for thread in pair.threads:
            thread.start()

    def _pump(self, pair: _Pair, source: socket.socket, dest: socket.socket, up: bool) -> None:
        try:
            while True:
                try:
                    data = source.recv(_CHUNK)
                except OSError:
                    break
                if not data:
                    break
                self._resumed.wait()
                if self._stopping.is_set() or pair.closed:
                    break
                if self._random_cut():
                    self._close_pair(pair, cut=True, at_random=True)
                    break
                try:
                    dest.sendall(data)
                except OSError:
                    break
                with self._lock:
                    if up:
                        self._bytes_up += len(data)
                    else:
                        self._bytes_down += len(data)
        finally:
            # Either side ending ends the whole connection; SSH has no use for half-close.
            self._close_pair(pair)
            self._release(pair)

    def _random_cut(self) -> bool:
        with self._lock:
            return self._cut_probability > 0 and self._rng.random() < self._cut_probability

    def _close_pair(self, pair: _Pair, *, cut: bool = False, at_random: bool = False) -> bool:
        """Abort both sockets of ``pair`` (waking its threads); True if it was open.
        A ``cut`` is counted before either end can notice it."""
        with self._lock:
            if pair.closed:
                return False
            pair.closed = True
            self._cuts += cut
            self._random_cuts += at_random
        _abort(pair.client)
        _abort(pair.server)
        return True

    def _release(self, pair: _Pair) -> None:
        """Close the sockets once both threads of ``pair`` are done with them."""
        with self._lock:
            pair.running -= 1
            if pair.running > 0:
                return
            self._pairs.discard(pair)
        for sock in (pair.client, pair.server):
            with contextlib.suppress(OSError):
                sock.close()
