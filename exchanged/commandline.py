"""The small frame the operator commands share: argument errors and failures become one
line on stderr with the documented exit code (never a traceback), and the daemon's
journal is opened beside the running daemon.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from exchanged.errors import EXIT_FAILURE, EXIT_USAGE, ExchangedError, OperatorInputError

if TYPE_CHECKING:
    from exchanged.adapters.journal import Journal

__all__ = [
    "BSN_HELP",
    "DEFAULT_CONFIG",
    "CommandParser",
    "open_journal",
    "read_bsn",
    "run_command",
]

BSN_HELP = (
    "the person's BSN; '-' reads it from standard input and leaving it out asks for it, "
    "so it does not end up in shell history, sudo's log or the process list"
)

DEFAULT_CONFIG = Path("/etc/exchanged/exchanged.toml")


class _UsageError(Exception):
    pass


class CommandParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse would print the whole usage block; the rule is one line on stderr.
        raise _UsageError(message)


def run_command(
    prog: str,
    parser: argparse.ArgumentParser,
    run: Callable[[argparse.Namespace], int],
    argv: list[str],
) -> int:
    """Parse, run, and turn every failure into one line on stderr and an exit code."""
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return run(args)
    except ExchangedError as exc:
        print(f"{prog}: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - an operator gets one line, never a traceback
        print(f"{prog}: unexpected internal error ({type(exc).__name__})", file=sys.stderr)
        return EXIT_FAILURE


def open_journal(state_dir: Path) -> Journal:
    """The daemon's journal, opened beside a running daemon (WAL allows it)."""
    from exchanged.adapters.journal import Journal

    path = state_dir / "journal.sqlite"
    if not path.exists():
        raise OperatorInputError(
            f"no journal at {path}: has the daemon with this configuration ever run?"
        )
    owner = path.stat().st_uid
    if owner != os.geteuid():
        # Files this command writes (spool, journal pages) would belong to the wrong
        # user, and the daemon could not read them: it would wedge that partner's queue.
        import pwd

        try:
            name = pwd.getpwuid(owner).pw_name
        except KeyError:
            name = str(owner)
        raise OperatorInputError(
            f"run this as the service user that owns {path}: sudo -u {name} exchanged ..."
        )
    return Journal(path)


def read_bsn(value: str | None) -> str:
    """The BSN an operator gave: from ``--bsn``, from standard input (``--bsn -``) or
    typed at a prompt that does not echo. Validated; never printed back."""
    from exchanged.core.bsn import normalise_bsn

    if value == "-":
        value = sys.stdin.readline()
    elif value is None:
        if not sys.stdin.isatty():
            raise OperatorInputError("give --bsn BSN, or --bsn - to read it from standard input")
        value = getpass.getpass("BSN: ")
    bsn = normalise_bsn(value)
    if bsn is None:
        raise OperatorInputError("that is not a valid BSN (9 digits, elfproef)")
    return bsn
