"""Running gpg for one message operation: the process, the files it writes, and a seal
whose plaintext is streamed in.

Messages bypass python-gnupg, whose two helper threads and line-by-line parsing cost
~1.5 ms of Python per call (measured); python-gnupg stays for key management
(``exchanged.adapters.gpg``), where parsing gpg's listings is what it is for.

gpg writes its output into a file reserved for it (0600, next to the final name);
only its status lines come back, through a pipe. A seal reads its plaintext from a
pipe as the caller produces it, so an export's plaintext never exists on disk and gpg
works while the caller is still minimising. gpg's status output for one seal is a few
hundred bytes, far below a pipe's capacity, so gpg never blocks on it while the
caller writes.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Final

from exchanged.adapters.files import fsync_dir
from exchanged.adapters.gpg_status import Event, status_events
from exchanged.errors import LocalSystemError

__all__ = ["PendingSeal", "PlaintextSink", "SealError", "fsync_file", "reserve", "start", "wait"]

# Every message operation: no terminal, overwrite the output file we reserved for it,
# status lines on stderr, never a pinentry (a key that unexpectedly needs a passphrase
# fails at once), no network key look-ups, and no gpg trust model: the caller compares
# the signer with the key it pinned.
# --no-random-seed-file: each gpg run would otherwise save libgcrypt's pool to
# random_seed on exit under an fcntl lock, and a run that finds it locked by another
# (the next seal starting while the last one ends) sleeps 250 ms before it tries
# again: seen in a burst as gpg runs stalled in pselect6 right after opening
# random_seed. The file only makes random generation faster (gpg(1)); on Linux
# libgcrypt seeds itself from getrandom() either way.
_MESSAGE_OPTIONS: Final = (
    "--batch", "--no-tty", "--yes", "--status-fd", "2", "--pinentry-mode", "loopback",
    "--no-auto-key-retrieve", "--trust-model", "always", "--no-random-seed-file",
)  # fmt: skip

# What the caller's writes are gathered into before each one reaches the pipe.
_SINK_BUFFER: Final = 1 << 16


class SealError(LocalSystemError):
    """A message could not be signed and encrypted: a key is missing or unusable."""


def start(
    home: Path, passphrase: str | None, args: Sequence[str], *, data_on_stdin: bool = False
) -> subprocess.Popen[bytes]:
    """Start gpg on ``home``; with ``data_on_stdin`` the caller writes the input to
    ``process.stdin``. The passphrase, if any, comes through a pipe of its own, so
    stdin is only ever the message."""
    command = ["gpg", "--homedir", str(home), *_MESSAGE_OPTIONS]
    keep: tuple[int, ...] = ()
    if passphrase is not None:
        read, write = os.pipe()
        # One line, far smaller than the pipe: written before gpg starts, never waited on.
        os.write(write, f"{passphrase}\n".encode())
        os.close(write)
        keep = (read,)
        command += ["--passphrase-fd", str(read)]
    try:
        return subprocess.Popen(
            [*command, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            stdin=subprocess.PIPE if data_on_stdin else subprocess.DEVNULL, pass_fds=keep,
            bufsize=0,
        )  # fmt: skip
    except OSError as exc:
        raise LocalSystemError(f"cannot run gpg: {exc.strerror}") from None
    finally:
        for fd in keep:
            os.close(fd)


def wait(process: subprocess.Popen[bytes]) -> tuple[int, list[Event]]:
    """Wait for gpg: (exit code, status lines)."""
    _, stderr = process.communicate()
    return process.returncode, status_events(stderr.decode("utf-8", "replace"))


def reserve(out: Path) -> Path:
    """Create an empty 0600 temp file next to ``out`` for gpg to write into.

    gpg creates its output with the process umask (often 0644) but keeps the mode of a
    file that already exists, so pre-creating it is how the plaintext stays 0600 from
    its first byte. Same folder, so the final rename is atomic.
    """
    if not out.parent.is_dir():
        raise LocalSystemError(f"output folder {out.parent} does not exist")
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise LocalSystemError(
            f"cannot create a file in {out.parent}: {exc.strerror}; check space and rights"
        ) from None
    os.close(fd)
    return tmp


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class PlaintextSink:
    """Where a streamed seal's plaintext goes: text (as UTF-8) or bytes, gathered and
    written to gpg's stdin in large pieces.

    A write after gpg has gone (it refused a key and exited) is dropped: the caller
    learns why from ``PendingSeal.finish``, in gpg's own words, rather than from a
    bare "broken pipe" half-way through an export.
    """

    __slots__ = ("_parts", "_pipe", "_size", "broken")

    def __init__(self, pipe: IO[bytes]) -> None:
        self._pipe: IO[bytes] | None = pipe
        self._parts: list[bytes] = []
        self._size = 0
        self.broken = False

    def write(self, text: str) -> None:
        self.write_bytes(text.encode())

    def write_bytes(self, data: bytes) -> None:
        self._parts.append(data)
        self._size += len(data)
        if self._size >= _SINK_BUFFER:
            self._flush()

    def close(self) -> None:
        """End of input: gpg finishes once it has read everything."""
        if self._pipe is None:
            return
        self._flush()
        with contextlib.suppress(BrokenPipeError):
            self._pipe.close()
        self._pipe = None

    def _flush(self) -> None:
        view = memoryview(b"".join(self._parts))
        self._parts.clear()
        self._size = 0
        if self._pipe is None:
            raise ValueError("write to a closed plaintext sink")
        try:
            while view and not self.broken:
                view = view[self._pipe.write(view) or 0 :]
        except BrokenPipeError:
            self.broken = True


class PendingSeal:
    """A seal that gpg is working on; ``finish`` exactly once, or ``abandon``.

    ``sink`` is where the plaintext goes when the seal was begun without an input
    file; ``finish`` closes it (end of input) before it waits.
    """

    def __init__(
        self, process: subprocess.Popen[bytes], tmp: Path, out: Path,
        describe_failure: Callable[[list[Event], int], str],
    ) -> None:  # fmt: skip
        self._process, self._tmp, self._out = process, tmp, out
        self._describe = describe_failure
        self._sink: PlaintextSink | None = None
        if process.stdin is not None:
            self._sink = PlaintextSink(process.stdin)
            process.stdin = None  # ours now; ``communicate`` must not flush or close it

    @property
    def sink(self) -> PlaintextSink:
        """Where the plaintext goes (a seal begun without an input file)."""
        if self._sink is None:
            raise ValueError("this seal reads its input file; it has no sink")
        return self._sink

    def finish(self) -> None:
        """Wait for gpg; ``out`` is then complete and fsynced, or SealError is raised."""
        problem: str | None = "gpg did not run"
        try:
            self._close_sink()
            code, events = wait(self._process)
            keys = {key for key, _ in events}
            if code == 0 and "END_ENCRYPTION" in keys and "SIG_CREATED" in keys:
                fsync_file(self._tmp)
                self._tmp.replace(self._out)
                fsync_dir(self._out.parent)
                problem = None
            else:
                problem = self._describe(events, code)
        finally:
            if problem is not None:
                self._tmp.unlink(missing_ok=True)
        if problem is not None:
            raise SealError(problem)

    def abandon(self) -> None:
        """Stop gpg and remove what it wrote (the caller failed before ``finish``)."""
        self._process.kill()
        with contextlib.suppress(OSError):
            self._close_sink()
        wait(self._process)
        self._tmp.unlink(missing_ok=True)

    def _close_sink(self) -> None:
        if self._sink is not None:
            self._sink.close()
