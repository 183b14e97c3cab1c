"""What gpg's ``[GNUPG:]`` status lines say about one opened message.

The verdict is drawn from the status lines alone, never from gpg's exit code: gpg exits
2 for a message that decrypted fine but whose signer is unknown, and 1 for a bad
signature, so the exit code cannot tell the failures apart. Everything here is a
function of the lines, so one run that opened one message and one run that opened many
(``--multifile``, split at ``FILE_START``/``FILE_DONE``) are judged by the same code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from exchanged.core.model import Fingerprint

__all__ = [
    "BAD_SIGNATURE",
    "DECRYPTION_FAILED",
    "UNKNOWN_SIGNER",
    "UNSIGNED",
    "Event",
    "Failure",
    "Opened",
    "error_code",
    "split_files",
    "status_events",
    "verdict",
]

Failure = Literal["decryption-failed", "unsigned", "bad-signature", "unknown-signer"]
Event = tuple[str, str]

DECRYPTION_FAILED: Final = "decryption-failed"
UNSIGNED: Final = "unsigned"
BAD_SIGNATURE: Final = "bad-signature"
UNKNOWN_SIGNER: Final = "unknown-signer"

# Any of these anywhere in a message's lines: no signature we may accept, whoever made
# it (the same set python-gnupg lets clear its ``valid`` flag, without its
# order-dependence: a later GOODSIG cannot wash out an earlier problem here).
_SIGNATURE_PROBLEMS: Final = frozenset(
    {"BADSIG", "ERRSIG", "EXPSIG", "EXPKEYSIG", "REVKEYSIG", "NO_PUBKEY", "NO_SECKEY",
     "UNEXPECTED", "FAILURE", "NODATA"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Opened:
    """Outcome of opening one message.

    ``failure`` is None only for a message that was encrypted to us, decrypted intact
    and carries exactly one good signature; ``signer`` is then the signer's *primary*
    key fingerprint, which the caller must compare with the pinned partner key.
    """

    failure: Failure | None
    signer: str | None


def status_events(text: str) -> list[Event]:
    """The ``[GNUPG:]`` status lines of one gpg run, in order.

    python-gnupg folds these into attributes where later lines overwrite earlier ones
    (a second signature replaces the first); the raw sequence lets us insist on
    exactly one signature.
    """
    events: list[Event] = []
    for line in text.splitlines():
        if line.startswith("[GNUPG:] "):
            key, _, value = line[9:].partition(" ")
            events.append((key, value.strip()))
    return events


def verdict(events: Sequence[Event], *, finished: bool) -> Opened:
    """The verdict on one message from its status lines. ``finished`` is the caller's
    word that gpg completed the run it came from (python-gnupg's ``ok``, or a batch
    that exited 0): without it nothing is accepted."""
    keys = [key for key, _ in events]
    if "BEGIN_DECRYPTION" not in keys or "NO_SECKEY" in keys or "DECRYPTION_FAILED" in keys:
        # Not encrypted at all, not to us, or damaged: nothing we can stand behind.
        return Opened(failure=DECRYPTION_FAILED, signer=None)
    if "BADSIG" in keys:
        # gpg stops before DECRYPTION_OKAY after a bad signature, so this must be
        # looked at first or it would be mistaken for damaged data.
        return Opened(failure=BAD_SIGNATURE, signer=None)
    if "DECRYPTION_OKAY" not in keys or not finished:
        return Opened(failure=DECRYPTION_FAILED, signer=None)
    signatures = keys.count("NEWSIG")
    if signatures == 0:
        return Opened(failure=UNSIGNED, signer=None)
    if signatures > 1:
        # Our protocol makes exactly one signature; more means someone re-wrapped it.
        return Opened(failure=BAD_SIGNATURE, signer=None)
    if "ERRSIG" in keys or "NO_PUBKEY" in keys:
        return Opened(failure=UNKNOWN_SIGNER, signer=None)
    if "GOODSIG" not in keys or keys.count("VALIDSIG") != 1 or _SIGNATURE_PROBLEMS & set(keys):
        # EXPKEYSIG, REVKEYSIG, EXPSIG and anything unforeseen: not a signature we
        # may accept, whoever made it.
        return Opened(failure=BAD_SIGNATURE, signer=None)
    fields = next(value for key, value in events if key == "VALIDSIG").split()
    # Field 10 is the primary key's fingerprint (the signature may come from a subkey).
    signer = fields[9].upper() if len(fields) >= 10 else ""
    try:
        return Opened(failure=None, signer=Fingerprint(signer).value)
    except ValueError:
        return Opened(failure=BAD_SIGNATURE, signer=None)


def split_files(events: Sequence[Event], names: Sequence[str]) -> list[list[Event]] | None:
    """The lines of a ``--multifile`` run, one list per input file, in the order given.

    None unless the run reported exactly the files in ``names``, in that order, each
    opened by ``FILE_START`` and closed by ``FILE_DONE``, with nothing in between the
    files: a stream that does not match file for file is never guessed at.
    """
    per_file: list[list[Event]] = []
    current: list[Event] | None = None
    for key, value in events:
        if key == "FILE_START":
            expected = names[len(per_file)] if len(per_file) < len(names) else None
            operation, _, name = value.partition(" ")
            if current is not None or operation != "3" or name != expected:
                return None
            current = []
        elif key == "FILE_DONE":
            if current is None:
                return None
            per_file.append(current)
            current = None
        elif current is None:
            return None
        else:
            current.append((key, value))
    if current is not None or len(per_file) != len(names):
        return None
    return per_file


def error_code(value: str) -> int:
    """The libgpg-error code of an ERROR/FAILURE value ("<location> <code>"), without
    the high bits that name the error source; -1 when there is none."""
    last = value.rsplit(" ", 1)[-1]
    return int(last) & 0xFFFF if last.isdigit() else -1
