"""The JSON log line: its format, the redaction net, and one flush per line."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog

from exchanged import logs
from exchanged.core.bsn import is_valid_bsn
from exchanged.logs import configure_logging, get_logger, redact

BSN = "111222333"
assert is_valid_bsn(BSN)


class _CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


@pytest.fixture
def stream() -> Iterator[_CountingStream]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    out = _CountingStream()
    configure_logging(stream=out)
    yield out
    structlog.reset_defaults()
    root.handlers[:], root.level = handlers, level


def _lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_line_format_is_unchanged(stream: _CountingStream) -> None:
    log = get_logger(party="rbl").bind(partner="passendwijs")
    log.info("message_delivered", message_id="m-1", kind="export", record_count=50,
             size=3100, disposition="processed")  # fmt: skip
    log.debug("not_at_info")
    (line,) = _lines(stream)
    event = json.loads(line)
    assert list(event) == [
        "party", "partner", "message_id", "kind", "record_count", "size", "disposition",
        "event", "level", "timestamp",
    ]  # fmt: skip
    assert event["level"] == "info" and event["record_count"] == 50
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z", event["timestamp"])
    # Byte for byte what structlog's own JSONRenderer writes for the same event.
    assert line == structlog.processors.JSONRenderer()(None, "info", dict(event))
    assert stream.flushes == 1  # operators read the log live


def test_every_line_is_flushed(stream: _CountingStream) -> None:
    log = get_logger()
    for n in range(3):
        log.warning("retry", attempt=n)
    assert len(_lines(stream)) == 3
    assert stream.flushes == 3


def test_library_records_go_through_the_same_pipeline(stream: _CountingStream) -> None:
    logging.getLogger("paramiko.transport").warning("lost %s", f"bsn {BSN}")
    (line,) = _lines(stream)
    event = json.loads(line)
    assert event["event"] == "library_log" and event["logger"] == "paramiko.transport"
    assert event["detail"] == "lost bsn [redacted]"


@pytest.mark.parametrize("micros", [0, 1, 999_999])
def test_timestamp_matches_isoformat(micros: int) -> None:
    # The same stamper across seconds, so the remembered prefix is checked as well.
    now = [0]
    stamper = logs._UtcTimestamp(lambda: now[0])
    for second in (1_795_000_000, 1_795_000_000, 1_795_000_001, 1_795_086_400):
        now[0] = second * 10**9 + micros * 1000 + 999
        stamped = stamper(None, "info", {})["timestamp"]
        expected = datetime.fromtimestamp(second, tz=UTC).replace(microsecond=micros).isoformat()
        assert stamped == expected.replace("+00:00", "Z")


def _redacted(**event: Any) -> dict[str, Any]:
    return dict(redact(None, "info", event))


def test_redact_masks_bsns_every_time() -> None:
    for _ in range(2):  # the second time after the clean-string memo has seen the rest
        assert _redacted(detail=f"x{BSN}y", other="abc", n=int(BSN), m=123456789) == {
            "detail": "x[redacted]y",
            "other": "abc",
            "n": "[redacted]",
            "m": 123456789,
        }
    untouched = {
        "a": f"1{BSN}",  # ten digits: not a BSN
        "b": "123456789",  # fails the elfproef
        "c": f"{BSN[:4]}.{BSN[4:]}",  # separators: the log net looks at digit runs only
    }
    assert _redacted(**untouched) == untouched
    assert _redacted(Naam="x", filename="y.csv", bsn=1) == {
        "Naam": "[redacted]",
        "filename": "[redacted]",
        "bsn": "[redacted]",
    }
