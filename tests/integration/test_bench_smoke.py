"""make bench-smoke: the benchmark harness runs end to end at tiny sizes, so it cannot
rot between full runs. Its figures mean nothing; its shape does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BENCH = Path(__file__).parents[2] / "bench" / "run.py"
KEYS = {
    "burst_messages", "exchanged_msgs_per_s", "script_batch_msgs_per_s",
    "script_naive_msgs_per_s", "ratio_vs_batch", "ratio_vs_naive", "latency_p50_ms",
    "latency_p99_ms", "large_input_mb", "large_peak_rss_mb", "small_peak_rss_mb",
    "minimise_records_per_s", "csv_parse_records_per_s", "minimise_ratio",
}  # fmt: skip


def test_bench_smoke_ends_with_the_json_line() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--smoke"], capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures.keys() >= KEYS
    assert figures["exchanged_msgs_per_s"] > 0 and figures["minimise_records_per_s"] > 0
