"""The ``exchanged`` command.

Exit codes: 0 success, 1 failure (see the message), 2 unusable input or usage
(including configuration errors), 3 an export rejected by the policy.
Errors are one line on stderr, written for operators; never a traceback for an
expected failure and never personal data.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from exchanged import __version__
from exchanged.errors import EXIT_OK, EXIT_USAGE, ExchangedError

__all__ = ["main"]

_NOTIFY_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def _cmd_check_config(args: argparse.Namespace) -> int:
    from exchanged.config import load_config

    config = load_config(args.config)
    print(
        f"{args.config}: ok (party {config.party}, {len(config.partners)} partner(s), "
        f"{len(config.outboxes)} outbox(es))"
    )
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    import signal

    # Until the service installs its graceful handlers, a stop request ends start-up
    # cleanly (exit 0) instead of killing the process mid-way with SIGTERM's default.
    def _stop_during_start_up(_signum: int, _frame: object) -> None:
        raise SystemExit(EXIT_OK)

    signal.signal(signal.SIGTERM, _stop_during_start_up)
    # Kept before the notifier takes them out of the environment (so gpg does not
    # inherit them): a reload re-executes this process and must still reach systemd.
    notify_env = {k: os.environ[k] for k in _NOTIFY_VARIABLES if k in os.environ}
    from exchanged.adapters.disclosures import load_hash_key
    from exchanged.adapters.notify import CommandHook, IncidentNotifier, MailNotifier, SmtpSettings
    from exchanged.config import load_config
    from exchanged.credentials import (
        GPG_KEY_CREDENTIAL,
        SMTP_CREDENTIAL,
        SSH_KEY_CREDENTIAL,
        read_credential,
    )
    from exchanged.logs import configure_logging
    from exchanged.policyfile import load_policy
    from exchanged.service import Service

    config = load_config(args.config)
    configure_logging(level=args.log_level)
    notifiers: list[IncidentNotifier] = []
    if config.mail is not None:
        mail = config.mail
        notifiers.append(
            MailNotifier(
                SmtpSettings(
                    host=mail.host, port=mail.port, security=mail.security,
                    from_addr=mail.from_addr, to_addrs=mail.to_addrs, username=mail.username,
                    password=read_credential(SMTP_CREDENTIAL, required=mail.username is not None),
                )
            )
        )  # fmt: skip
    if config.incident_hook:
        notifiers.append(CommandHook(config.incident_hook))
    service = Service(
        config,
        policy=load_policy(config.policy_file),
        gpg_passphrase=read_credential(GPG_KEY_CREDENTIAL, required=False),
        ssh_key_passphrase=read_credential(SSH_KEY_CREDENTIAL, required=False),
        notifiers=tuple(notifiers),
        # The disclosure register is not optional (covenant; AVG art. 5(2)): without
        # the hashing key the daemon does not start.
        bsn_hash_key=load_hash_key(),
    )
    service.install_signal_handlers()
    # A reload that re-executed us blocked SIGHUP across the exec (its default action
    # would end the process); now that the handler is in place, let it through.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
    service.run()
    if service.reload_requested and not service.stop_signalled:
        # systemctl reload: the new configuration was checked; start over with it in
        # this same process, as sshd does, so systemd keeps following the main PID.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
        os.execve(sys.executable, sys.orig_argv, {**os.environ, **notify_env})  # noqa: S606 -- our own argv
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from exchanged.demo import run_demo

    return run_demo(keep=args.keep, timeout=args.timeout)


def _cmd_subject(argv: list[str]) -> int:
    from exchanged.subject_cmd import subject_main

    return subject_main(argv)


def _cmd_reconcile(argv: list[str]) -> int:
    from exchanged.reconcile_cmd import reconcile_main

    return reconcile_main(argv)


def _cmd_purge(argv: list[str]) -> int:
    from exchanged.purge import purge_main

    return purge_main(argv)


def _cmd_correct(argv: list[str]) -> int:
    from exchanged.art19_cmd import correct_main

    return correct_main(argv)


def _cmd_withdraw(argv: list[str]) -> int:
    from exchanged.art19_cmd import withdraw_main

    return withdraw_main(argv)


def _cmd_reopen(argv: list[str]) -> int:
    from exchanged.art19_cmd import reopen_main

    return reopen_main(argv)


def _cmd_preview(argv: list[str]) -> int:
    from exchanged.preview import preview_main

    return preview_main(argv)


def _cmd_keys(argv: list[str]) -> int:
    from exchanged.keys_cmd import keys_main

    return keys_main(argv)


def _cmd_status(argv: list[str]) -> int:
    from exchanged.status_cmd import status_main

    return status_main(argv)


def _cmd_doctor(argv: list[str]) -> int:
    from exchanged.doctor import doctor_main

    return doctor_main(argv)


def _cmd_send(argv: list[str]) -> int:
    from exchanged.send_cmd import send_main

    return send_main(argv)


def _cmd_incidents(argv: list[str]) -> int:
    from exchanged.incidents_cmd import incidents_main

    return incidents_main(argv)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exchanged",
        description="Secure exchange of minimised thuiszitter lists (OpenPGP over SFTP).",
    )
    parser.add_argument("--version", action="version", version=f"exchanged {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def config_arg(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "-c", "--config", type=Path, default=Path("/etc/exchanged/exchanged.toml"),
            help="configuration file (default: %(default)s)",
        )  # fmt: skip

    run = commands.add_parser("run", help="run the daemon in the foreground (systemd)")
    config_arg(run)
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    run.set_defaults(handler=_cmd_run)

    check = commands.add_parser("check-config", help="validate a configuration file")
    config_arg(check)
    check.set_defaults(handler=_cmd_check_config)

    demo = commands.add_parser("demo", help="a two-party exchange on this machine")
    demo.add_argument("--keep", action="store_true", help="keep the workspace and say where")
    demo.add_argument("--timeout", type=float, default=50.0, help="seconds to wait for receipts")
    demo.set_defaults(handler=_cmd_demo)

    for name, text in (
        ("preview", "dry-run the policy on an export, nothing sent (see preview --help)"),
        ("send", "send one export to a partner now, through the outbox pipeline"),
        ("status", "queues, receipts, incidents and key expiry per partner [--json]"),
        ("doctor", "check configuration, permissions, keys, SFTP links, disk and clock"),
        ("keys", "init, export, import, list, rotate OpenPGP keys (see keys --help)"),
        ("incidents", "the incident register: list, show, assess, report, close, export"),
        ("subject", "what was sent to / received from whom about one person"),
        ("correct", "send corrected records to every partner that received them (art. 19)"),
        ("withdraw", "end processing of one person and tell every partner (art. 19)"),
        ("reopen", "re-open processing of one person whose processing ended"),
        ("reconcile", "compare our list with a partner's latest list (report)"),
        ("purge", "remove data past its retention window (--dry-run to count)"),
    ):
        commands.add_parser(name, help=text, add_help=False)
    return parser


# Commands that parse their own arguments (so their --help is complete and exact).
_DELEGATED: dict[str, Callable[[list[str]], int]] = {
    "preview": _cmd_preview,
    "send": _cmd_send,
    "keys": _cmd_keys,
    "status": _cmd_status,
    "doctor": _cmd_doctor,
    "incidents": _cmd_incidents,
    "subject": _cmd_subject,
    "correct": _cmd_correct,
    "withdraw": _cmd_withdraw,
    "reopen": _cmd_reopen,
    "reconcile": _cmd_reconcile,
    "purge": _cmd_purge,
}


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        if args_list and args_list[0] in _DELEGATED:
            return _DELEGATED[args_list[0]](args_list[1:])
        args = _parser().parse_args(args_list)
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except ExchangedError as exc:
        print(f"exchanged: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_USAGE
