"""``exchanged demo``: the main job, end to end, on this one machine.

Two parties (RBL Midden-Gelre and Passend Wijs) each get fresh OpenPGP and SSH keys and
their own real OpenSSH sshd on a free loopback port; both daemons run as separate
processes; synthetic exports of all three categories are dropped into both outboxes;
the demo waits until every message has a verified receipt, stops everything it started
and prints ``demo: N sent, N receipted, 0 incidents`` as its last line.
"""

from __future__ import annotations

import csv
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from exchanged.core.model import CATEGORIES
from exchanged.errors import EXIT_FAILURE, EXIT_OK
from exchanged.testing.synthetic import synthetic_rows
from exchanged.testing.workspace import Workspace, build_workspace

__all__ = ["drop_export", "run_demo"]

_RECORDS_PER_EXPORT = 25


def drop_export(folder: Path, name: str, header: list[str], rows: list[list[str]]) -> Path:
    """Write an export the way a careful operator's tool does: under a dot-name, then
    renamed into place, so the daemon never sees it half-written."""
    temp = folder / f".{name}.part"
    with temp.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=";")
        writer.writerow(header)
        writer.writerows(rows)
    target = folder / name
    temp.rename(target)
    return target


def count_incidents(workspace: Workspace) -> int:
    count = 0
    for line in workspace.log_lines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict) and event.get("event") == "security_incident":
            count += 1
    return count


def run_demo(*, keep: bool = False, timeout: float = 50.0) -> int:
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="exchanged-demo-"))
    root.chmod(0o700)
    workspace: Workspace | None = None
    ok = False
    try:
        print(f"demo: setting up two parties in {root}", flush=True)
        workspace = build_workspace(root)
        for party in workspace.parties.values():
            workspace.start_daemon(party)
        rng = random.Random(20261128)  # noqa: S311 -- synthetic data, reproducible on purpose
        sent: dict[str, int] = {}
        for party in workspace.parties.values():
            partner = next(p for p in workspace.parties.values() if p.id != party.id)
            for category in CATEGORIES:
                header, rows = synthetic_rows(rng, category, _RECORDS_PER_EXPORT)
                folder = party.outbox(partner.id, category)
                drop_export(folder, f"export-{category}.csv", header, rows)
                sent[party.id] = sent.get(party.id, 0) + 1
                print(f"demo: {party.id} drops a {category} export for {partner.id}", flush=True)
        ok = workspace.wait_for(sent, timeout=timeout)
        for party in workspace.parties.values():
            workspace.stop_daemon(party)
        total_sent = sum(sent.values())
        receipted = sum(
            workspace.outgoing_states(p).get("receipted", 0) for p in workspace.parties.values()
        )
        incidents = count_incidents(workspace)
        for party in workspace.parties.values():
            delivered = sorted(p.name for p in party.inbox.glob("*.csv"))
            print(f"demo: {party.id} inbox holds {len(delivered)} file(s)", flush=True)
        elapsed = time.monotonic() - started
        print(f"demo: finished in {elapsed:.1f} s", flush=True)
        if keep:
            print(f"demo: workspace kept in {root} (configs, logs, inboxes)", flush=True)
        ok = ok and receipted == total_sent and incidents == 0
        if not ok:
            print("demo: not every message was receipted cleanly; see the daemon logs "
                  "(run with --keep)", file=sys.stderr, flush=True)  # fmt: skip
        print(f"demo: {total_sent} sent, {receipted} receipted, {incidents} incidents", flush=True)
    finally:
        if workspace is not None:
            workspace.close()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    return EXIT_OK if ok else EXIT_FAILURE
