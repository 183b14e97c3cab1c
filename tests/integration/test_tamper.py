"""The tamper suite (``make tamper``) as tests: one shared two-party workspace, one
test per attack case, plus the runner's contract (per-case lines, exact last line,
exit code)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchanged.testing.tamper import CASES, Outcome, SuiteResult, run_suite, summary_line

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def suite() -> Iterator[SuiteResult]:
    root = Path(tempfile.mkdtemp(prefix="xt-"))
    root.chmod(0o700)
    lines: list[str] = []
    try:
        result = run_suite(root, report=lines.append)
        print("\n".join(lines))  # shown with -s or on failure
        yield result
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _outcome(suite: SuiteResult, case: str) -> Outcome:
    return next(o for o in suite.outcomes if o.case == case)


@pytest.mark.parametrize(
    "case",
    [name for name, _ in CASES],
)
def test_attack_is_detected_and_nothing_delivered(suite: SuiteResult, case: str) -> None:
    outcome = _outcome(suite, case)
    assert not outcome.delivered, outcome.line()
    assert outcome.detected, outcome.line()
    if outcome.incident_id is not None:
        assert "log" in outcome.notified and "mail" in outcome.notified


def test_there_are_enough_cases_and_they_are_fast(suite: SuiteResult) -> None:
    assert len(suite.outcomes) == len(CASES) >= 10
    assert suite.delivered == 0
    assert suite.seconds < 60, f"the suite took {suite.seconds:.1f} s"


def test_nothing_left_behind(suite: SuiteResult) -> None:
    assert suite.problems == ()
    assert suite.ok


def test_summary_line_is_exact() -> None:
    ok = Outcome("a", "x", "rbl", "expired", found=("expired",), incident_id="inc-1")
    bad = Outcome("b", "x", "rbl", "expired", delivered=True, problems=("p",))
    assert (
        summary_line(SuiteResult((ok, ok), (), 1.0)) == "tamper: 2 cases, 2 detected, 0 delivered"
    )
    result = SuiteResult((ok, bad), (), 1.0)
    assert summary_line(result) == "tamper: 2 cases, 1 detected, 1 delivered"
    assert not result.ok
    assert not SuiteResult((ok,), ("left over",), 1.0).ok


def test_runner_prints_the_contract_line_and_exits_zero() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "exchanged.tamper_main", "bit-flip", "outbox-symlink"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = done.stdout.splitlines()
    assert lines[-1] == "tamper: 2 cases, 2 detected, 0 delivered", done.stdout + done.stderr
    assert any(line.startswith("tamper: bit-flip") and " ok " in line for line in lines)
    assert done.returncode == 0


def test_runner_refuses_unknown_cases() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "exchanged.tamper_main", "no-such-case"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "unknown case" in done.stderr
