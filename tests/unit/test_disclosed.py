"""The keyed hashes a message being written discloses: memory first, a file past a limit."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from exchanged.disclosed import DisclosedHashes
from exchanged.errors import LocalSystemError


def _pairs(n: int) -> list[tuple[str, int]]:
    return [(f"{i:064x}", i + 2) for i in range(n)]


def _filled(spill: Path, *, limit: int, count: int) -> DisclosedHashes:
    hashes = DisclosedHashes(spill, memory_limit=limit)
    for digest, row in _pairs(count):
        hashes.add(digest, row)
    hashes.close()
    return hashes


def test_a_usual_message_makes_no_file(tmp_path: Path) -> None:
    hashes = _filled(tmp_path / "m.hashes", limit=100, count=100)
    assert list(hashes) == _pairs(100)
    assert list(tmp_path.iterdir()) == []


def test_past_the_limit_the_hashes_go_on_in_a_private_file_in_order(tmp_path: Path) -> None:
    spill = tmp_path / "m.hashes"
    hashes = _filled(spill, limit=10, count=25)
    assert stat.S_IMODE(spill.stat().st_mode) == 0o600
    assert list(hashes) == _pairs(25)
    assert list(hashes) == _pairs(25)  # read again for the register, after the check
    hashes.discard()
    assert not spill.exists()


def test_a_spilled_list_whose_file_is_gone_is_a_local_failure(tmp_path: Path) -> None:
    spill = tmp_path / "m.hashes"
    hashes = _filled(spill, limit=1, count=3)
    spill.unlink()
    # Never "no disclosures" for a message that carried records.
    with pytest.raises(LocalSystemError, match="disclosure list"):
        list(hashes)
