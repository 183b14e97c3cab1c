"""Metrics: text exposition format from a real journal database, written atomically."""

from __future__ import annotations

import re
import stat
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from exchanged.adapters.incident_register import IncidentRegister, ensure_schema
from exchanged.adapters.journal import Journal
from exchanged.config import Config, load_config
from exchanged.core.incident import Kind, Observation
from exchanged.errors import LocalSystemError
from exchanged.metrics import render_metrics, write_metrics
from exchanged.status_cmd import KeyState, read_snapshot

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
T = NOW.timestamp()
FPR_OWN = "A" * 40
FPR_PARTNER = "B" * 40
# A syntactically valid ed25519 public key line; no server is contacted here.
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"


def _config(tmp: Path) -> Config:
    """A real configuration file, loaded the way the daemon loads it."""
    (tmp / "gnupg").mkdir(mode=0o700, exist_ok=True)
    key = tmp / "id_ed25519"
    key.touch(mode=0o600, exist_ok=True)
    path = tmp / "exchanged.toml"
    path.write_text(
        f"""\
party = "rbl"
state_dir = "{tmp}"
inbox = "{tmp / "inbox"}"
[gpg]
home = "{tmp / "gnupg"}"
fingerprint = "{FPR_OWN}"
[[partner]]
id = "passendwijs"
name = "Passend Wijs"
fingerprint = "{FPR_PARTNER}"
remote_dir = "incoming"
receive = "poll"
poll_dir = "outgoing"
[partner.sftp]
host = "127.0.0.1"
user = "u"
key_file = "{key}"
host_key = "{HOST_KEY}"
""",
        encoding="utf-8",
    )
    return load_config(path)


def _journal(tmp: Path) -> Path:
    path = tmp / "journal.sqlite"
    journal = Journal(path)
    for n, (state, latency) in enumerate(
        [("receipted", 3.0), ("receipted", 120.0), ("uploaded", None), ("sealed", None)]
    ):
        mid = str(uuid.UUID(int=n + 1))
        journal.add_outgoing(mid, "passendwijs", kind="export", state=state, now=T - 1000)
        if latency is not None:
            journal.update_outgoing(mid, now=T, receipted_at=T - 1000 + latency)
        if state == "uploaded":
            journal.update_outgoing(mid, now=T, uploaded_at=T - 10)
    # Receipts we sent are not messages an operator counts.
    journal.add_outgoing(str(uuid.uuid4()), "passendwijs", kind="receipt", state="uploaded",
                         now=T)  # fmt: skip
    journal.add_incoming(str(uuid.uuid4()), "passendwijs", state="delivered",
                         received_sha256="0" * 64, now=T)  # fmt: skip
    ensure_schema(journal.connection)
    IncidentRegister(journal.connection).observe(
        Observation(Kind.SIGNATURE_INVALID, "passendwijs", str(uuid.uuid4()), NOW, "bad-sig"),
        NOW,
    )
    journal.close()
    return path


def _keys() -> list[KeyState]:
    soon = NOW + timedelta(days=10)
    return [
        KeyState("own", "rbl", FPR_OWN, True, True, False, False, None, None),
        KeyState("partner", "passendwijs", FPR_PARTNER, True, True, False, False, soon, 10),
    ]


def _value(text: str, series: str) -> str:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return line.split(" ")[-1]
    raise AssertionError(f"{series} not in metrics:\n{text}")


def test_metrics_from_a_real_journal(tmp_path: Path) -> None:
    config = _config(tmp_path)
    snap = read_snapshot(config, _journal(tmp_path), T)
    text = render_metrics(snap, _keys(), NOW)

    base = 'exchanged_messages{partner="passendwijs",direction='
    assert _value(text, base + '"out",state="receipted"}') == "2"
    assert _value(text, base + '"out",state="uploaded"}') == "1"
    assert _value(text, base + '"out",state="sealed"}') == "1"
    assert _value(text, base + '"in",state="delivered"}') == "1"
    hist = "exchanged_receipt_latency_seconds"
    assert _value(text, hist + '_bucket{partner="passendwijs",le="5"}') == "1"
    assert _value(text, hist + '_bucket{partner="passendwijs",le="300"}') == "2"
    assert _value(text, hist + '_bucket{partner="passendwijs",le="+Inf"}') == "2"
    assert _value(text, hist + '_count{partner="passendwijs"}') == "2"
    assert _value(text, hist + '_sum{partner="passendwijs"}') == "123"
    assert _value(text, "exchanged_open_incidents") == "1"
    own = f'exchanged_key_expiry_seconds{{key="rbl",role="own",fingerprint="{FPR_OWN}"}}'
    assert _value(text, own) == "+Inf"
    partner = (
        'exchanged_key_expiry_seconds{key="passendwijs",role="partner",'
        f'fingerprint="{FPR_PARTNER}"}}'
    )
    assert _value(text, partner) == str(10 * 86400)
    # Every sample line is "name{labels} value"; every family has HELP and TYPE.
    for line in text.splitlines():
        assert line.startswith("#") or re.fullmatch(r"[a-z_]+(\{[^}]*\})? \S+", line), line
    assert text.count("# TYPE") == text.count("# HELP") == 5


def test_missing_journal_and_register_read_as_empty(tmp_path: Path) -> None:
    config = _config(tmp_path)
    snap = read_snapshot(config, tmp_path / "absent.sqlite", T)
    text = render_metrics(snap, [], NOW)
    assert _value(text, "exchanged_open_incidents") == "0"
    assert "exchanged_messages{" not in text

    journal = Journal(tmp_path / "journal.sqlite")  # no incident tables in this one
    journal.close()
    snap = read_snapshot(config, tmp_path / "journal.sqlite", T)
    assert snap.incidents is None
    assert _value(render_metrics(snap, [], NOW), "exchanged_open_incidents") == "0"


def test_write_metrics_is_atomic_and_world_readable(tmp_path: Path) -> None:
    config = _config(tmp_path)
    journal = _journal(tmp_path)
    out_dir = tmp_path / "textfile"
    out_dir.mkdir()
    target = out_dir / "exchanged.prom"
    target.write_text("old\n")
    write_metrics(config, journal, target, NOW, keys=_keys())
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert "exchanged_open_incidents 1" in target.read_text()
    assert [p.name for p in out_dir.iterdir()] == ["exchanged.prom"]  # no temp left


def test_unwritable_metrics_folder_is_one_clear_error(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with pytest.raises(LocalSystemError, match="cannot write the metrics file"):
        write_metrics(config, tmp_path / "absent.sqlite", tmp_path / "no" / "x.prom", NOW,
                      keys=[])  # fmt: skip
