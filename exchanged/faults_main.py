"""``python -m exchanged.faults_main``: the fault-injection suite (``make faults``).

Runs two real daemons against real sshd servers through fault-injecting proxies, kills
and restarts them at random, and counts lost and duplicated messages. The last line is
``faults: K kills, N messages, L lost, D duplicated``; the exit status is 0 only when
nothing was lost or duplicated, nothing crashed, the clock checks held, and the run made
at least the kills and messages asked for. See :mod:`exchanged.testing.faults`.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from exchanged.errors import EXIT_FAILURE, EXIT_OK
from exchanged.testing.faults import FaultPlan, run_faults

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    full = FaultPlan()
    parser = argparse.ArgumentParser(
        prog="python -m exchanged.faults_main",
        description="Fault-injection suite: kill -9, sshd outages and connection cuts "
        "between two real daemons; counts lost and duplicated messages.",
    )
    parser.add_argument("--messages", type=int, default=full.messages,
                        help="exports dropped per direction (default %(default)s)")  # fmt: skip
    parser.add_argument("--kills", type=int, default=full.kills,
                        help="kill -9 per daemon (default %(default)s)")  # fmt: skip
    parser.add_argument("--sshd-restarts", type=int, default=full.sshd_restarts,
                        help="sshd stop/start per party (default %(default)s)")  # fmt: skip
    parser.add_argument("--proxy-cuts", type=int, default=full.proxy_cuts,
                        help="cut-all-connections per proxy (default %(default)s)")  # fmt: skip
    parser.add_argument("--flaky-windows", type=int, default=full.flaky_windows,
                        help="windows of random cuts per proxy (default %(default)s)")  # fmt: skip
    parser.add_argument("--pauses", type=int, default=full.pauses,
                        help="proxy pauses per proxy (default %(default)s)")  # fmt: skip
    parser.add_argument("--interval", type=float, default=full.drop_interval,
                        help="seconds between drops of a party (default %(default)s)")  # fmt: skip
    parser.add_argument("--settle-timeout", type=float, default=full.settle_timeout,
                        help="wait for the last receipts (default %(default)s s)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=None, help="repeat a run's choices")
    parser.add_argument("--root", type=Path, default=None,
                        help="build the workspace here (default: a new temp folder)")  # fmt: skip
    parser.add_argument("--keep", action="store_true",
                        help="keep the workspace even when the run passes")  # fmt: skip
    return parser


def _stop(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.messages < 1 or args.kills < 0 or args.interval <= 0:
        print("faults: --messages must be >= 1, --kills >= 0, --interval > 0", file=sys.stderr)
        return EXIT_FAILURE
    plan = FaultPlan(
        messages=args.messages,
        kills=args.kills,
        sshd_restarts=args.sshd_restarts,
        proxy_cuts=args.proxy_cuts,
        flaky_windows=args.flaky_windows,
        pauses=args.pauses,
        drop_interval=args.interval,
        settle_timeout=args.settle_timeout,
        seed=args.seed,
        root=args.root,
        keep=args.keep,
    )
    previous = signal.signal(signal.SIGTERM, _stop)  # unwind: stop daemons and servers
    try:
        result = run_faults(plan, sys.stdout)
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(result.line, flush=True)
    return EXIT_OK if result.passed(plan) else EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
