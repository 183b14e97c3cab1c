"""Delivering to the operators: received records and notices as files in the inbox.

Exports arrive as CSV in UTF-8 with a BOM and ';' as separator, which Dutch Excel
opens correctly with a double click; notices (withdrawals) as JSON. File names hold
the partner, the kind or category, the time and the message id: never personal data,
never a name chosen by the partner. Files are written atomically, mode 0600 (0640
when the configuration shares them with the operators' group).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from exchanged.adapters.files import atomic_writer, ensure_private_dir, write_atomic
from exchanged.core import envelope
from exchanged.core.model import MESSAGE_ID_PATTERN, PARTY_ID_PATTERN

__all__ = ["INBOX_NAME", "Inbox"]

# What _name writes, for those who read the inbox back (purge, reconcile): partner,
# kind or category, UTC time, message id.
INBOX_NAME: Final = re.compile(
    rf"^(?P<partner>{PARTY_ID_PATTERN})_(?P<what>[a-z0-9-]+)_(?P<stamp>\d{{8}}T\d{{6}}Z)_"
    rf"(?P<mid>{MESSAGE_ID_PATTERN})\.(?P<ext>csv|json)$"
)


class Inbox:
    def __init__(self, folder: Path, *, file_mode: int) -> None:
        self._folder = folder
        self._mode = file_mode

    def deliver_records(self, partner: str, message: envelope.Message) -> Path:
        fields = _field_order(message.records)
        target = self._name(partner, message, ".csv")
        with atomic_writer(target, self._mode) as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
            writer = csv.writer(text, delimiter=";")
            writer.writerow(fields)
            for record in message.records:
                writer.writerow([record.get(f, "") for f in fields])
            text.flush()
            text.detach()
        return target

    def deliver_notice(self, partner: str, message: envelope.Message) -> Path:
        body = {"kind": message.header.kind, **dict(message.body)}
        target = self._name(partner, message, ".json")
        write_atomic(target, [json.dumps(body, ensure_ascii=False, indent=2).encode()], self._mode)
        return target

    def _name(self, partner: str, message: envelope.Message, suffix: str) -> Path:
        # Readable files in a folder the group can enter, when they are shared.
        ensure_private_dir(self._folder, 0o750 if self._mode & 0o040 else 0o700)
        header = message.header
        stamp = header.created_at.strftime("%Y%m%dT%H%M%SZ")
        what = message.category or header.kind
        if header.kind == "correction":
            # Operators must not mistake a correction for a whole new list.
            what = f"correction-{what}"
        return self._folder / f"{partner}_{what}_{stamp}_{header.message_id.value}{suffix}"


def _field_order(records: Sequence[Mapping[str, str]]) -> list[str]:
    """Columns in the order the sender's records first use them."""
    seen: dict[str, None] = {}
    for record in records:
        for name in record:
            seen.setdefault(name, None)
    return list(seen)
