"""When the disclosure register's recent rows move into its subject index.

The register (``adapters.disclosures``) appends each message's rows to a table without
a subject index and moves them into the indexed table later, a bounded number at a
time (``DisclosureRegister.settle``). This decides when, for the service loop:

- after a pass whose wait ran out with nothing to wake the loop and no file being
  written (quiet); while rows wait, the loop waits at most ``QUIET_SECONDS``;
- on every pass while more than ``WAITING_LIMIT`` wait (a backlog that never pauses);
- on a clean stop, for at most ``STOP_SECONDS``, so a stopped daemon's journal reads
  the same to any tool, and to an older version reinstalled over it, which knows no
  recent table. What is left moves after the next start.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any, Final

from exchanged.adapters.disclosures import DisclosureRegister

__all__ = ["QUIET_SECONDS", "STOP_SECONDS", "WAITING_LIMIT", "RegisterUpkeep"]

QUIET_SECONDS: Final = 1.0
WAITING_LIMIT: Final = 50_000
# The unit's TimeoutStopSec is 15 s, and the links and the observer may take 8 of them.
STOP_SECONDS: Final = 4.0


class RegisterUpkeep:
    """``register`` None: a service without the hashing key, which keeps no register."""

    def __init__(self, register: DisclosureRegister | None, log: Any) -> None:
        self._register = register
        self._log = log
        self._waiting = 0

    def wait(self, wait: float) -> float:
        """The loop's next wait: at most ``QUIET_SECONDS`` while rows wait to move."""
        self._waiting = self._count()
        return min(wait, QUIET_SECONDS) if self._waiting else wait

    def after_pass(self, *, quiet: bool) -> None:
        """Move a step of the waiting rows if the pass was quiet or too many wait."""
        if self._register is None or not self._waiting:
            return
        if quiet or self._waiting > WAITING_LIMIT:
            moved = self._register.settle()
            self._log.debug("register_settled", rows=moved)

    def before_stop(self) -> None:
        if self._register is None:
            return
        deadline = time.monotonic() + STOP_SECONDS
        while self._register.settle() and time.monotonic() < deadline:
            pass
        left = self._register.waiting()
        if left:
            self._log.warning("register_rows_waiting", rows=left,
                              hint="moved into the subject index on the next start")  # fmt: skip

    def _count(self) -> int:
        if self._register is None:
            return 0
        try:
            return self._register.waiting()
        except sqlite3.Error:
            return 0  # asked again on the next pass; a journal that fails shows elsewhere
