"""What the daemon logs when a unit of work fails must not carry personal data: an
OSError's text holds the path, and so the operator's file name."""

from __future__ import annotations

import errno
from typing import Any

from exchanged.errors import LocalSystemError
from exchanged.service import Service


class _Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def error(self, event: str, **fields: Any) -> None:
        self.events.append((event, fields))

    critical = error


class _Host:
    """Just what Service._guard touches."""

    def __init__(self) -> None:
        self._log = _Log()
        self._unexpected_now = False


NAME = "Jansen_Daan_12-03-2011.csv"


def _raise(exc: BaseException) -> None:
    raise exc


def test_an_os_error_is_logged_without_its_path() -> None:
    host = _Host()
    error = FileNotFoundError(errno.ENOENT, "No such file or directory", f"/srv/outbox/{NAME}")
    assert Service._guard(host, lambda: _raise(error)) is False  # type: ignore[arg-type]
    ((event, fields),) = host._log.events
    assert event == "local_failure"
    assert fields["error"] == "No such file or directory" and fields["errno"] == errno.ENOENT
    assert NAME not in repr(fields)


def test_an_unexpected_error_is_logged_by_type_and_place_only() -> None:
    host = _Host()
    assert Service._guard(host, lambda: _raise(ValueError(f"bad value {NAME}"))) is False  # type: ignore[arg-type]
    ((event, fields),) = host._log.events
    assert event == "unexpected_error" and fields["error_type"] == "ValueError"
    assert NAME not in repr(fields)
    assert host._unexpected_now


def test_our_own_errors_keep_their_operator_message() -> None:
    host = _Host()
    message = "the journal cannot be written: disk I/O error"
    assert Service._guard(host, lambda: _raise(LocalSystemError(message))) is False  # type: ignore[arg-type]
    assert host._log.events[0][1]["error"] == message
