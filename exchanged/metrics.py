"""Prometheus metrics in the text exposition format, for node_exporter's textfile collector.

exchanged listens on no socket (least privilege, issue 6), so instead of serving
``/metrics`` it writes a ``.prom`` file that node_exporter's textfile collector reads.
The file is replaced atomically (temp file in the same folder, fsync, ``os.replace``,
fsync the folder), so the collector never reads half a file; the temp name starts with
a dot and does not end in ``.prom``, so the collector ignores it.

Mode 0644: node_exporter runs as its own user and must read the file. That is safe
because the file holds only counts, durations, partner ids and key fingerprints (all
non-personal and public). Put it in the collector's folder (e.g.
``/var/lib/prometheus/node-exporter``), never inside the 0700 state folder.

Values are recomputed from the journal each time (no in-process counters), so a
restart loses nothing and the file is right even if the daemon never ran since boot.
The latency histogram therefore covers every receipted message still in the journal.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from exchanged.config import Config
from exchanged.errors import ExchangedError, LocalSystemError
from exchanged.status_cmd import KeyState, Snapshot, key_states, read_snapshot

__all__ = ["LATENCY_BUCKETS", "render_metrics", "write_metrics"]

# Seconds from sealing to receipt: a partner online answers within seconds; the default
# receipt deadline is 15 minutes and the loss deadline a day.
LATENCY_BUCKETS: Final = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 86400.0)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in labels.items()) + "}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(int(value)) if float(value).is_integer() else repr(float(value))


def _histogram(name: str, partner: str, samples: Sequence[float]) -> Iterable[str]:
    for bound in LATENCY_BUCKETS:
        count = sum(1 for s in samples if s <= bound)
        yield f"{name}_bucket{_labels(partner=partner, le=_number(bound))} {count}"
    yield f"{name}_bucket{_labels(partner=partner, le='+Inf')} {len(samples)}"
    yield f"{name}_sum{_labels(partner=partner)} {_number(sum(samples))}"
    yield f"{name}_count{_labels(partner=partner)} {len(samples)}"


def render_metrics(snap: Snapshot, keys: Sequence[KeyState], now: datetime) -> str:
    """The whole metrics file; pure, so it is unit-tested without files or gpg."""
    lines = [
        "# HELP exchanged_messages Messages in the journal by partner, direction and state.",
        "# TYPE exchanged_messages gauge",
    ]
    for (partner, direction, state), n in sorted(snap.by_state.items()):
        labels = _labels(partner=partner, direction=direction, state=state)
        lines.append(f"exchanged_messages{labels} {n}")
    lines += [
        "# HELP exchanged_receipt_latency_seconds Time from sending an export to its receipt.",
        "# TYPE exchanged_receipt_latency_seconds histogram",
    ]
    for partner in sorted(snap.latencies):
        lines += _histogram("exchanged_receipt_latency_seconds", partner, snap.latencies[partner])
    lines += [
        "# HELP exchanged_open_incidents Incidents in the register that are not closed.",
        "# TYPE exchanged_open_incidents gauge",
        f"exchanged_open_incidents {len(snap.incidents or [])}",
        "# HELP exchanged_key_expiry_seconds Seconds until a configured key expires "
        "(negative: expired, +Inf: no expiry).",
        "# TYPE exchanged_key_expiry_seconds gauge",
    ]
    for key in keys:
        if not key.present:
            continue  # a missing key has no expiry; doctor and status report it
        left = math.inf if key.expires is None else (key.expires - now).total_seconds()
        labels = _labels(key=key.owner, role=key.role, fingerprint=key.fingerprint)
        lines.append(f"exchanged_key_expiry_seconds{labels} {_number(left)}")
    lines += [
        "# HELP exchanged_metrics_written_timestamp_seconds When this file was written.",
        "# TYPE exchanged_metrics_written_timestamp_seconds gauge",
        f"exchanged_metrics_written_timestamp_seconds {_number(round(now.timestamp(), 3))}",
    ]
    return "\n".join(lines) + "\n"


def write_metrics(
    config: Config,
    journal_db_path: Path,
    path: Path,
    now: datetime,
    *,
    keys: Sequence[KeyState] | None = None,
) -> None:
    """Collect and write the metrics file at ``path`` atomically (mode 0644).

    ``keys`` defaults to asking gpg; a gpg failure leaves the key metrics out rather
    than losing the rest. Raises LocalSystemError when the file cannot be written.
    """
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    snap = read_snapshot(config, journal_db_path, now.timestamp())
    if keys is None:
        try:
            keys = key_states(config, now)
        except ExchangedError:
            keys = []
    _write_atomic(path, render_metrics(snap, keys, now).encode("utf-8"))


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            os.fchmod(fd, 0o644)  # the service's UMask=0077 would otherwise make it 0600
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(path)
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise LocalSystemError(
            f"cannot write the metrics file {path}: {exc.strerror}; check the folder and rights"
        ) from None
