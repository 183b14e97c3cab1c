"""Delivery state machines: (state, event) -> (next state, effects). Pure.

Outgoing message (one per export and partner):

    detected --minimised--> minimised --sealed--> sealed --uploaded--> uploaded
    detected/minimised --rejected--> rejected                      (terminal)
    uploaded --resend--> sealed          (a receipt of ours, sent again on a replay)
    sealed/uploaded/overdue --receipt-ok--> receipted              (terminal)
    sealed/uploaded/overdue --receipt-failed--> refused            (terminal)
    uploaded --deadline--> overdue --receipt-ok--> receipted

Incoming message (one per file on a partner's channel):

    received --delivered--> delivered --answered--> answered       (terminal)
    received --refused--> refused --answered--> answered           (terminal)

Invariants the service keeps with this table:
- The journal commits the *next* state before its effects run, and every effect is
  idempotent, so a crash at any point is repaired by replaying the effects of the
  state found in the journal at start-up (``effects_on_resume``). The first states
  (``detected``, ``received``) are committed without a flush of their own: a power
  failure may take them with nothing else, and then the work starts over from the
  outbox or the channel, where its file still is.
- A message leaves ``sealed`` only after its ciphertext is in the spool, and the
  spool copy stays until a valid receipt arrives: what we are responsible for can
  always be sent again byte for byte.
- Terminal states have no outgoing transitions; an event there is a bug, not data.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

__all__ = [
    "Effect",
    "IllegalTransition",
    "InState",
    "OutState",
    "Transition",
    "effects_on_resume",
    "incoming",
    "outgoing",
]


class OutState(StrEnum):
    DETECTED = "detected"
    MINIMISED = "minimised"
    REJECTED = "rejected"
    SEALED = "sealed"
    UPLOADED = "uploaded"
    OVERDUE = "overdue"
    RECEIPTED = "receipted"
    REFUSED = "refused"


class InState(StrEnum):
    RECEIVED = "received"
    DELIVERED = "delivered"
    REFUSED = "refused"
    ANSWERED = "answered"


class Effect(StrEnum):
    MINIMISE_AND_SEAL = "minimise-and-seal"
    REPORT_REJECTION = "report-rejection"
    ARCHIVE_SOURCE = "archive-source"
    UPLOAD = "upload"
    AWAIT_RECEIPT = "await-receipt"
    WARN_OVERDUE = "warn-overdue"
    RELEASE_SPOOL = "release-spool"
    RAISE_INCIDENT = "raise-incident"
    SEND_RECEIPT = "send-receipt"
    DISCARD_INCOMING = "discard-incoming"


@dataclass(frozen=True, slots=True)
class Transition:
    state: str
    effects: tuple[Effect, ...]


class IllegalTransition(RuntimeError):
    def __init__(self, machine: str, state: str, event: str) -> None:
        super().__init__(f"{machine}: no transition from {state!r} on {event!r}")


_OUT: Final[dict[tuple[OutState, str], Transition]] = {
    (OutState.DETECTED, "minimised"): Transition(OutState.MINIMISED, (Effect.MINIMISE_AND_SEAL,)),
    (OutState.DETECTED, "rejected"): Transition(OutState.REJECTED, (Effect.REPORT_REJECTION,)),
    (OutState.MINIMISED, "rejected"): Transition(OutState.REJECTED, (Effect.REPORT_REJECTION,)),
    (OutState.MINIMISED, "sealed"): Transition(
        OutState.SEALED, (Effect.ARCHIVE_SOURCE, Effect.UPLOAD)
    ),
    (OutState.SEALED, "uploaded"): Transition(OutState.UPLOADED, (Effect.AWAIT_RECEIPT,)),
    # A receipt is sent again, byte for byte, when its message arrives again (replay,
    # or a sender that lost the first one); receipts are not receipted, so that is all.
    (OutState.UPLOADED, "resend"): Transition(OutState.SEALED, (Effect.UPLOAD,)),
    # The receipt can overtake the journal write that follows a successful upload.
    (OutState.SEALED, "receipt-ok"): Transition(OutState.RECEIPTED, (Effect.RELEASE_SPOOL,)),
    (OutState.SEALED, "receipt-failed"): Transition(OutState.REFUSED, (Effect.RAISE_INCIDENT,)),
    (OutState.UPLOADED, "deadline"): Transition(OutState.OVERDUE, (Effect.WARN_OVERDUE,)),
    (OutState.UPLOADED, "receipt-ok"): Transition(OutState.RECEIPTED, (Effect.RELEASE_SPOOL,)),
    (OutState.OVERDUE, "receipt-ok"): Transition(OutState.RECEIPTED, (Effect.RELEASE_SPOOL,)),
    (OutState.UPLOADED, "receipt-failed"): Transition(OutState.REFUSED, (Effect.RAISE_INCIDENT,)),
    (OutState.OVERDUE, "receipt-failed"): Transition(OutState.REFUSED, (Effect.RAISE_INCIDENT,)),
    (OutState.OVERDUE, "lost"): Transition(OutState.OVERDUE, (Effect.RAISE_INCIDENT,)),
}

_IN: Final[dict[tuple[InState, str], Transition]] = {
    (InState.RECEIVED, "delivered"): Transition(InState.DELIVERED, (Effect.SEND_RECEIPT,)),
    (InState.RECEIVED, "refused"): Transition(
        InState.REFUSED, (Effect.SEND_RECEIPT, Effect.RAISE_INCIDENT)
    ),
    (InState.DELIVERED, "answered"): Transition(InState.ANSWERED, (Effect.DISCARD_INCOMING,)),
    (InState.REFUSED, "answered"): Transition(InState.ANSWERED, (Effect.DISCARD_INCOMING,)),
}

_RESUME: Final[dict[str, tuple[Effect, ...]]] = {
    OutState.DETECTED: (Effect.MINIMISE_AND_SEAL,),
    OutState.MINIMISED: (Effect.MINIMISE_AND_SEAL,),
    OutState.SEALED: (Effect.ARCHIVE_SOURCE, Effect.UPLOAD),
    OutState.UPLOADED: (Effect.AWAIT_RECEIPT,),
    OutState.OVERDUE: (Effect.AWAIT_RECEIPT,),
}


def outgoing(state: str, event: str) -> Transition:
    try:
        return _OUT[(OutState(state), event)]
    except (KeyError, ValueError):
        raise IllegalTransition("outgoing", state, event) from None


def incoming(state: str, event: str) -> Transition:
    try:
        return _IN[(InState(state), event)]
    except (KeyError, ValueError):
        raise IllegalTransition("incoming", state, event) from None


def effects_on_resume(state: str) -> tuple[Effect, ...]:
    """What to replay for an outgoing message found in ``state`` after a restart."""
    return _RESUME.get(state, ())
