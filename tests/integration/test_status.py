"""`exchanged status` (and the metrics file) reflect a real exchange between two daemons."""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from exchanged.config import load_config
from exchanged.demo import drop_export
from exchanged.metrics import write_metrics
from exchanged.status_cmd import status_main
from exchanged.testing.synthetic import synthetic_rows
from exchanged.testing.workspace import Party, Workspace

pytestmark = pytest.mark.integration

CATEGORY = "absoluut-verzuim"


def _status(party: Party, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert status_main(["--json", "-c", str(party.config_path)]) == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


def _drop(party: Party, partner: Party, name: str, seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 -- synthetic data
    header, rows = synthetic_rows(rng, CATEGORY, 5)
    drop_export(party.outbox(partner.id, CATEGORY), name, header, rows)


def _wait_state(ws: Workspace, party: Party, state: str, n: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ws.outgoing_states(party).get(state, 0) >= n:
            return True
        time.sleep(0.1)
    return False


def test_status_reflects_receipts_and_awaited_receipts(
    workspace: Workspace, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rbl, pw = workspace["rbl"], workspace["passendwijs"]
    before = _status(rbl, capsys)
    assert before["journal"] is False
    assert before["partners"]["passendwijs"]["receipted"] == 0

    for party in (rbl, pw):
        workspace.start_daemon(party)
    _drop(rbl, pw, "eerste.csv", 1)
    assert workspace.wait_for({"rbl": 1}, timeout=60), workspace.outgoing_states(rbl)

    # While both daemons run: status reads the live journal without disturbing it.
    live = _status(rbl, capsys)
    entry = live["partners"]["passendwijs"]
    assert entry["receipted"] == 1 and entry["awaiting_receipt"] == 0
    assert entry["last_success"] is not None
    assert live["incidents"] == [] and live["warnings"] == []
    assert _status(pw, capsys)["partners"]["rbl"]["incoming"] == {"answered": 1}

    # The partner's daemon goes away (its sshd stays up): the upload lands, no receipt.
    assert workspace.stop_daemon(pw) == 0
    _drop(rbl, pw, "tweede.csv", 2)
    assert _wait_state(workspace, rbl, "uploaded", 1, timeout=30), workspace.outgoing_states(rbl)
    waiting = _status(rbl, capsys)["partners"]["passendwijs"]
    assert waiting["awaiting_receipt"] == 1 and waiting["receipted"] == 1
    assert waiting["queued"] == 0 and waiting["in_flight"] == 0

    config = load_config(rbl.config_path)
    prom = tmp_path / "exchanged.prom"
    write_metrics(config, rbl.state_dir / "journal.sqlite", prom, _now())
    text = prom.read_text()
    assert 'exchanged_messages{partner="passendwijs",direction="out",state="receipted"} 1' in text
    assert 'exchanged_messages{partner="passendwijs",direction="out",state="uploaded"} 1' in text
    assert 'exchanged_receipt_latency_seconds_count{partner="passendwijs"} 1' in text
    assert (
        f'exchanged_key_expiry_seconds{{key="rbl",role="own",fingerprint="{rbl.fingerprint}"}}'
        in text
    )

    assert workspace.stop_daemon(rbl) == 0
    stopped = _status(rbl, capsys)["partners"]["passendwijs"]
    assert stopped["awaiting_receipt"] == 1

    text_out = status_main(["-c", str(rbl.config_path)])
    assert text_out == 0
    human = capsys.readouterr().out
    assert "partner passendwijs: queued 0, in flight 0, awaiting receipt 1" in human


def _now() -> datetime:
    return datetime.now(UTC)
