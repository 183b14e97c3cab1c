"""structlog set-up: one JSON object per line on stdout, which journald captures.

Log events carry ids, counts, partners, categories and digests only. The redaction
processor below is a safety net for mistakes, not the way personal data is kept out:
code never passes record values, operator file names or file contents to a logger.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
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


def _mask_bsns(text: str) -> str:
    return _DIGIT_RUN.sub(lambda m: "[redacted]" if is_valid_bsn(m.group()) else m.group(), text)


def redact(_logger: object, _name: str, event: MutableMapping[str, Any]) -> Any:
    """Drop personal-data keys and mask anything that looks like a valid BSN."""
    for key in list(event):
        if key.lower() in _PERSONAL_KEYS:
            event[key] = "[redacted]"
            continue
        value = event[key]
        if isinstance(value, str):
            event[key] = _mask_bsns(value)
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

    def emit(self, record: logging.LogRecord) -> None:
        try:
            structlog.get_logger().log(
                record.levelno, "library_log", logger=record.name, detail=record.getMessage()
            )
        except Exception:  # noqa: BLE001 -- logging must never take the daemon down
            self.handleError(record)


def configure_logging(*, level: str = "info", stream: TextIO | None = None) -> None:
    """JSON lines on ``stream`` (stdout by default); safe to call more than once."""
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
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact,
            structlog.processors.JSONRenderer(sort_keys=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )


def get_logger(**context: Any) -> Any:
    return structlog.get_logger(**context)
