"""structlog set-up: one JSON object per line on stdout, which journald captures.

Log events carry ids, counts, partners, categories and digests only. The redaction
processor below is a safety net for mistakes, not the way personal data is kept out:
code never passes record values, operator file names or file contents to a logger.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable, MutableMapping
from typing import Any, Final, TextIO

import structlog

from exchanged.core.bsn import is_valid_bsn

__all__ = ["configure_logging", "get_logger", "redact"]

# Keys whose values are personal data by their nature; dropped whatever they hold.
_PERSONAL_KEYS: Final = frozenset(
    {
        "bsn", "voornamen", "tussenvoegsel", "achternaam", "naam", "name", "geboortedatum",
        "straat", "huisnummer", "postcode", "woonplaats", "adres", "address", "filename",
        "file_name", "record", "records", "row", "value", "values",
    }
)  # fmt: skip
_DIGIT_RUN: Final = re.compile(r"(?<!\d)\d{9}(?!\d)")
# Only nine ASCII digits in a row can be a BSN (is_valid_bsn wants ASCII); this cheaper
# scan finds every string the masking could change and lets the rest skip the sub().
_MAY_HOLD_BSN: Final = re.compile(r"[0-9]{9}").search
# Strings found free of such runs: the same partners, kinds, ids and digests recur in
# event after event, and a set lookup is cheaper than the scan. By construction nothing
# in it can be a BSN. Bounded: emptied when full.
_NO_BSN: Final[set[str]] = set()
_NO_BSN_MAX: Final = 2048


def _mask_bsns(text: str) -> str:
    return _DIGIT_RUN.sub(lambda m: "[redacted]" if is_valid_bsn(m.group()) else m.group(), text)


def redact(_logger: object, _name: str, event: MutableMapping[str, Any]) -> Any:
    """Drop personal-data keys and mask anything that looks like a valid BSN."""
    for key, value in list(event.items()):
        if key.lower() in _PERSONAL_KEYS:
            event[key] = "[redacted]"
        elif isinstance(value, str):
            if value in _NO_BSN:
                continue
            if _MAY_HOLD_BSN(value):
                event[key] = _mask_bsns(value)
            else:
                if len(_NO_BSN) >= _NO_BSN_MAX:
                    _NO_BSN.clear()
                _NO_BSN.add(value)
        elif (
            type(value) is int
            and 10_000_000 <= value <= 999_999_999
            and is_valid_bsn(f"{value:09d}")
        ):
            event[key] = "[redacted]"
    return event


# Libraries log through the stdlib; their chatter is useful only when it is a problem.
# python-gnupg at WARNING reports every refused message (which we log ourselves) and at
# DEBUG echoes gpg's stderr, so it is held at ERROR.
_LIBRARY_LEVELS: Final = {"gnupg": logging.ERROR, "paramiko": logging.WARNING,
                          "watchdog": logging.WARNING}  # fmt: skip


class _StdlibBridge(logging.Handler):
    """Sends stdlib log records (paramiko, watchdog, gnupg) through our JSON pipeline,
    so journald sees one format and the redaction net covers libraries too."""

    def __init__(self) -> None:
        super().__init__()
        self._log = structlog.get_logger()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._log.log(
                record.levelno, "library_log", logger=record.name, detail=record.getMessage()
            )
        except Exception:  # noqa: BLE001 -- logging must never take the daemon down
            self.handleError(record)


class _UtcTimestamp:
    """``timestamp`` exactly as structlog's ``TimeStamper(fmt="iso", utc=True)`` writes
    it (microseconds left out when zero, as ``isoformat`` does), for a fraction of the
    cost: that builds and formats a datetime per event, while the text before the
    microseconds changes once a second and is made only then."""

    __slots__ = ("_clock", "_prefix")

    def __init__(self, clock: Callable[[], int] = time.time_ns) -> None:
        self._clock = clock
        self._prefix: tuple[int, str] = (-1, "")

    def __call__(self, _logger: object, _name: str, event: MutableMapping[str, Any]) -> Any:
        second, micros = divmod(self._clock() // 1000, 1_000_000)
        cached, prefix = self._prefix
        if second != cached:
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._prefix = (second, prefix)
        event["timestamp"] = f"{prefix}.{micros:06d}Z" if micros else f"{prefix}Z"
        return event


def _fallback(value: Any) -> Any:
    # What structlog's JSONRenderer does with values json cannot encode.
    try:
        return value.__structlog__()
    except AttributeError:
        return repr(value)


# One encoder for every line: JSONRenderer's json.dumps(default=...) builds a new one
# per call. Same settings as json.dumps, so a line is byte for byte what it wrote.
_encode: Final = json.JSONEncoder(default=_fallback).encode


def _render(_logger: object, _name: str, event: MutableMapping[str, Any]) -> str:
    return _encode(event)


def configure_logging(*, level: str = "info", stream: TextIO | None = None) -> None:
    """JSON lines on ``stream`` (stdout by default); safe to call more than once, but a
    logger already used keeps the set-up it was first used with (it is cached, so an
    event does not rebuild its logger)."""
    out = stream if stream is not None else sys.stdout
    root = logging.getLogger()
    root.handlers[:] = [_StdlibBridge()]
    root.setLevel(logging.INFO)
    for name, library_level in _LIBRARY_LEVELS.items():
        logging.getLogger(name).setLevel(library_level)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _UtcTimestamp(),
            structlog.processors.format_exc_info,
            redact,
            _render,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        # One write and one flush per line: operators follow the journal live.
        logger_factory=structlog.WriteLoggerFactory(out),
        cache_logger_on_first_use=True,
    )


def get_logger(**context: Any) -> Any:
    return structlog.get_logger(**context)
