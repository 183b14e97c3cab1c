"""``exchanged preview FILE [--category ID] [-c CONFIG] [--json]``: a dry run of the policy.

No network, no side effects: the export is read, checked and summarised; nothing is
moved, written or sent. Usable without a configuration (the shipped policy applies).
Exit 0 when the export would be accepted, 3 when it would be rejected, 2 when the
input or the command line is unusable (one line on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import json
import tomllib
from datetime import UTC, datetime
from pathlib import Path

from exchanged.commandline import CommandParser, run_command
from exchanged.core.policy import Policy, Verdict
from exchanged.errors import EXIT_OK, EXIT_REJECTED, ConfigError

__all__ = ["check_export", "preview_main", "verdict_json"]

_PROG = "exchanged preview"


def _parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog=_PROG,
        description="Dry-run the minimisation policy on an export (CSV or XLSX). "
        "Nothing is sent, moved or written.",
    )
    parser.add_argument("file", type=Path, metavar="FILE", help="the export to check")
    parser.add_argument(
        "--category", metavar="ID", help="absoluut-verzuim, langdurig-verzuim or vrijstelling-5a"
    )
    parser.add_argument(
        "-c", "--config", type=Path, metavar="CONFIG",
        help="configuration file; only its 'policy' key is used (default: shipped policy)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return parser


def _policy_path(config: Path | None) -> Path | None:
    """The policy file a configuration names, without validating the rest of it."""
    if config is None:
        return None
    try:
        data = tomllib.loads(config.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise ConfigError(config, "(file)", f"cannot be read: {exc.strerror}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(config, "(file)", f"is not valid TOML: {exc}") from None
    value = data.get("policy")
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(config, "policy", "must be the path of a policy file")
    path = Path(value)
    return path if path.is_absolute() else (config.parent / path).resolve()


def verdict_json(verdict: Verdict) -> dict[str, object]:
    """The preview's JSON object for a verdict (keys fixed by the issue)."""
    out: dict[str, object] = {
        "verdict": "accept" if verdict.accepted else "reject",
        "category": verdict.category,
        "records": verdict.records,
        "kept_fields": list(verdict.kept_fields),
        "dropped_columns": list(verdict.dropped_columns),
        "errors": [{"row": e.row, "column": e.column, "code": e.code} for e in verdict.errors],
        "routes": dict(verdict.routes),
    }
    if verdict.skipped:
        # Only under out_of_region = "skip-and-report": the rows left out, not errors.
        out["skipped"] = [
            {"row": s.row, "column": s.column, "code": s.code} for s in verdict.skipped
        ]
    return out


def check_export(
    path: Path, policy: Policy, category: str | None, *, routed: bool = True
) -> Verdict:
    """Run one export through the policy as the daemon would (today in UTC, routing only
    for a routed outbox); nothing is sent. Whether a subject's processing has ended is
    known only to the daemon's register, so that check comes when it is taken."""
    from exchanged.adapters.readers import open_table
    from exchanged.core.policy import RecordChecker

    with open_table(path) as table:
        checker = RecordChecker(
            policy, table.header, category=category, today=datetime.now(UTC).date(),
            routing=(policy.routing or None) if routed else None,
        )  # fmt: skip
        for number, row in enumerate(table.rows, start=1):
            checker.check(number, row)
        return checker.finish()


def _run(args: argparse.Namespace) -> int:
    from exchanged.policyfile import load_policy
    from exchanged.rejection_report import error_lines

    verdict = check_export(args.file, load_policy(_policy_path(args.config)), args.category)
    if args.json:
        print(json.dumps(verdict_json(verdict), ensure_ascii=False))
    else:
        status = "ACCEPT (would be sent)" if verdict.accepted else "REJECT (nothing would be sent)"
        lines = [
            f"Verdict:         {status}",
            f"Category:        {verdict.category or '-'}",
            f"Records to send: {verdict.records}",
            f"Kept fields:     {', '.join(verdict.kept_fields) or '-'}",
            f"Dropped columns: {', '.join(verdict.dropped_columns) or '-'}"
            + ("  (never read, never sent)" if verdict.dropped_columns else ""),
        ]
        if verdict.routes:
            routes = ", ".join(f"{p}: {n}" for p, n in verdict.routes.items())
            lines.append(f"Routes:          {routes}")
        if verdict.skipped:
            rows = ", ".join(str(s.row) for s in verdict.skipped)
            lines.append(f"Skipped rows (out of region): {rows}")
        if verdict.errors:
            total = max(verdict.error_count, len(verdict.errors))
            lines += ["", f"Errors: {total}", *error_lines(verdict.errors)]
        print("\n".join(lines))
    return EXIT_OK if verdict.accepted else EXIT_REJECTED


def preview_main(argv: list[str]) -> int:
    """Run the preview command; returns the exit code."""
    return run_command(_PROG, _parser(), _run, argv)
