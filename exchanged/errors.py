"""One root exception; subclasses say whose fault it is and map to CLI exit codes.

Messages are written for operators: they say what is wrong and what to do, and they
never contain personal data (no BSN, name, address, date of birth or file contents).
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ExchangedError",
    "LocalSystemError",
    "OperatorInputError",
    "PartnerError",
    "PolicyRejection",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_REJECTED = 3


class ExchangedError(Exception):
    """Root of every error exchanged raises on purpose."""

    exit_code: int = EXIT_FAILURE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class OperatorInputError(ExchangedError):
    """The operator gave us something unusable: a file, an argument, a value."""

    exit_code = EXIT_USAGE


class ConfigError(OperatorInputError):
    """The configuration file is wrong; the message names the file and the key."""

    def __init__(self, path: object, key: str, problem: str) -> None:
        super().__init__(f"{path}: {key}: {problem}")
        self.path = path
        self.key = key
        self.problem = problem


class PolicyRejection(ExchangedError):
    """An export breaks the covenant's rules; nothing of it is sent."""

    exit_code = EXIT_REJECTED


class PartnerError(ExchangedError):
    """Something on the partner's side or on the link to it is wrong."""


class LocalSystemError(ExchangedError):
    """This machine failed us: disk full, gpg missing, a folder not writable."""
