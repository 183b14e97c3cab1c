"""The real daemon starts, exchanges and stops under the unit's restrictions that can be
applied without systemd as PID 1 (see exchanged/testing/sandbox.py for which)."""

from __future__ import annotations

import json
import time

import pytest

from exchanged.core.model import CATEGORIES
from exchanged.demo import drop_export
from exchanged.testing.sandbox import mount_namespaces_available
from exchanged.testing.synthetic import seeded_rng, synthetic_rows
from exchanged.testing.workspace import Workspace

needs_mount_namespace = pytest.mark.skipif(
    not mount_namespaces_available(), reason="needs root and private mount namespaces (unshare)"
)

pytestmark = [
    pytest.mark.integration,
    needs_mount_namespace,
]


def test_the_daemon_exchanges_under_the_units_restrictions(workspace: Workspace) -> None:
    rbl, pw = workspace["rbl"], workspace["passendwijs"]
    for party in (rbl, pw):
        workspace.start_daemon(party, sandboxed=True)
    time.sleep(0.5)
    for party in (rbl, pw):
        assert party.process is not None
        if party.process.poll() == 77:
            pytest.skip("kernel has no PR_SET_MDWE (MemoryDenyWriteExecute needs Linux 6.3)")
    rng = seeded_rng(41)
    for sender, receiver in ((rbl, pw), (pw, rbl)):
        for category in CATEGORIES:
            header, rows = synthetic_rows(rng, category, 5)
            drop_export(sender.outbox(receiver.id, category), f"{category}.csv", header, rows)

    assert workspace.wait_for({"rbl": 3, "passendwijs": 3}, timeout=60)
    for party in (rbl, pw):
        started = time.monotonic()
        assert workspace.stop_daemon(party) == 0
        assert time.monotonic() - started < 10  # within TimeoutStopSec
    for party in (rbl, pw):
        delivered = list(party.inbox.glob("*.csv"))
        assert len(delivered) == 3
        # UMask=0077 plus explicit modes: nothing the daemon wrote is readable by others.
        for path in [*delivered, party.state_dir / "journal.sqlite"]:
            assert path.stat().st_mode & 0o077 == 0, path
        events = [json.loads(line) for line in party.log_path.read_text().splitlines()]
        assert not [e for e in events if e.get("level") in ("error", "critical")]
