"""A short run of the fault-injection suite, for CI on every commit.

The full suite (``make faults``: 200 exports each way, 20 kills per daemon) takes a few
minutes; this one makes the same kinds of trouble on a smaller scale: two real daemons,
``kill -9`` of each at random moments, an sshd outage per party, connections cut through
the proxies, and the receiver's clock and replay checks.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from exchanged.faults_main import main

pytestmark = pytest.mark.integration

LAST_LINE = re.compile(r"^faults: (\d+) kills, (\d+) messages, (\d+) lost, (\d+) duplicated$")


@pytest.mark.timeout(180)
def test_short_fault_run_loses_and_duplicates_nothing(
    short_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "--messages", "30", "--kills", "4", "--sshd-restarts", "1", "--proxy-cuts", "3",
            "--flaky-windows", "2", "--pauses", "1", "--interval", "0.4",
            "--settle-timeout", "60", "--root", str(short_tmp / "faults"),
        ]
    )  # fmt: skip
    output = capsys.readouterr().out
    last = output.rstrip("\n").splitlines()[-1]
    match = LAST_LINE.match(last)
    assert match is not None, output
    kills, messages, lost, duplicated = (int(g) for g in match.groups())
    assert (lost, duplicated) == (0, 0), output
    assert kills >= 8 and messages == 60, output
    # Both clock checks and the replay were exercised, in both directions.
    assert output.count("failed/expired, sender refused, delivered 0x") == 4, output
    assert output.count("processed, sender receipted, delivered 1x") == 2, output
    assert code == 0, output
