"""``python -m exchanged.tamper_main``: the tamper suite (``make tamper``).

Builds a throw-away two-party workspace (real sshd, real gpg, a loopback SMTP server),
runs every attack case against the two daemons, prints one line per case and, as the
last line, ``tamper: N cases, N detected, 0 delivered``. Exits 0 only when every case
was detected as the right kind, nothing was delivered and every notification arrived.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from exchanged.errors import EXIT_FAILURE, EXIT_OK
from exchanged.testing.tamper import CASES, run_suite, summary_line

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="exchanged-tamper", description=__doc__)
    names = [name for name, _ in CASES]
    parser.add_argument(
        "cases",
        nargs="*",
        metavar="CASE",
        help=f"run only these (default: all): {', '.join(names)}",
    )
    parser.add_argument("--keep", action="store_true", help="keep the workspace and say where")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.cases) - set(names))
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(names)}")
    root = Path(tempfile.mkdtemp(prefix="xtamper-"))
    root.chmod(0o700)

    def say(line: str) -> None:
        print(line, flush=True)

    try:
        result = run_suite(root, only=args.cases, report=say)
    finally:
        if args.keep:
            say(f"tamper: workspace kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    say(f"tamper: finished in {result.seconds:.1f} s")
    say(summary_line(result))
    return EXIT_OK if result.ok else EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
