"""``exchanged send FILE --to PARTNER [--category ID] [-c CONFIG]``: a one-off send.

The file goes through exactly the pipeline an outbox file does: it is checked against
the policy here first (so the operator hears at once if it would be refused; exit 3
with the errors by row and column, nothing queued), then copied into the partner's
outbox under a temporary name and renamed into place, where the running daemon takes
it. The original is left where it was.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from exchanged.adapters.files import free_name
from exchanged.commandline import DEFAULT_CONFIG, CommandParser, run_command
from exchanged.config import CATEGORY_FROM_COLUMN, CATEGORY_FROM_SUBFOLDER, Outbox, load_config
from exchanged.core.model import CATEGORIES
from exchanged.errors import EXIT_OK, EXIT_REJECTED, OperatorInputError
from exchanged.outbox import is_ignored_name

__all__ = ["send_main"]

_PROG = "exchanged send"


def _parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog=_PROG, description="Send one export to a partner now.")
    parser.add_argument("file", type=Path, metavar="FILE", help="the export (CSV or XLSX)")
    parser.add_argument("--to", required=True, metavar="PARTNER", help="the partner's id")
    parser.add_argument("--category", choices=CATEGORIES, metavar="ID",
                        help="absoluut-verzuim, langdurig-verzuim or vrijstelling-5a")  # fmt: skip
    parser.add_argument(
        "-c", "--config", type=Path, default=DEFAULT_CONFIG, metavar="CONFIG",
        help="configuration file (default: %(default)s)",
    )  # fmt: skip
    return parser


def _destination(outbox: Outbox, category: str | None) -> tuple[Path, str | None]:
    """The folder to drop into, and the category the daemon will apply there."""
    if outbox.category == CATEGORY_FROM_SUBFOLDER:
        if category is None:
            raise OperatorInputError(f"--category is needed: outbox {outbox.path} sorts by folder")
        return outbox.path / category, category
    if outbox.category == CATEGORY_FROM_COLUMN:
        return outbox.path, category
    if category not in (None, outbox.category):
        raise OperatorInputError(
            f"outbox {outbox.path} sends only {outbox.category}; --category {category} differs"
        )
    return outbox.path, outbox.category


def _place(source: Path, folder: Path) -> Path:
    """Copy ``source`` into ``folder`` the way the daemon wants files to arrive: under a
    dot-name it ignores, complete and fsynced, then renamed into place under a name
    that is not taken. The temporary file is created with mode
    0660 and no chmod afterwards: in an outbox with a default ACL a chmod would narrow
    the ACL mask and lock the daemon out of the file."""
    temporary = folder / f".{source.name}.{os.getpid()}.part"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o660)
    try:
        with os.fdopen(fd, "wb") as out, source.open("rb") as data:
            shutil.copyfileobj(data, out)
            out.flush()
            os.fsync(out.fileno())
        # Not os.link: for a moment the file would have two names, and the daemon
        # refuses hard links in an outbox (rightly). A rename to a free name instead.
        target = free_name(folder, source.name)
        temporary.rename(target)
        return target
    finally:
        temporary.unlink(missing_ok=True)


def _run(args: argparse.Namespace) -> int:
    from exchanged.policyfile import load_policy
    from exchanged.preview import check_export
    from exchanged.rejection_report import error_lines

    config = load_config(args.config)
    if not args.file.is_file():
        raise OperatorInputError("the file given does not exist or is not a regular file")
    outbox = next((o for o in config.outboxes if o.partner == args.to), None)
    if outbox is None:
        known = ", ".join(sorted({o.partner for o in config.outboxes if o.partner})) or "none"
        raise OperatorInputError(f"no outbox sends to {args.to!r} (outboxes send to: {known})")
    folder, category = _destination(outbox, args.category)
    verdict = check_export(
        args.file, load_policy(config.policy_file), category, routed=outbox.route is not None
    )
    if not verdict.accepted:
        print(f"{_PROG}: refused by the policy; nothing was queued", flush=True)
        print("\n".join(error_lines(verdict.errors)))
        return EXIT_REJECTED
    if is_ignored_name(args.file.name):
        raise OperatorInputError(
            "the daemon ignores files named like this (dot-files, *.part, *.tmp, ~$*); "
            "rename the file first"
        )
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = _place(args.file, folder)
    print(
        f"queued for {args.to} as {target.name}: {verdict.records} record(s), "
        f"{verdict.category}; the daemon "
        "sends it and waits for the receipt (see exchanged status)"
    )
    return EXIT_OK


def send_main(argv: list[str]) -> int:
    return run_command(_PROG, _parser(), _run, argv)
