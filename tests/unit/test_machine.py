"""The delivery state machines, as tables: every transition the daemon relies on, and
the ones that must not exist."""

from __future__ import annotations

import pytest

from exchanged.core import machine
from exchanged.core.machine import Effect, IllegalTransition, InState, OutState


def test_the_happy_path_of_an_export() -> None:
    state = OutState.DETECTED.value
    for event, expected in (
        ("minimised", OutState.MINIMISED),
        ("sealed", OutState.SEALED),
        ("uploaded", OutState.UPLOADED),
        ("receipt-ok", OutState.RECEIPTED),
    ):
        step = machine.outgoing(state, event)
        assert step.state == expected
        state = step.state
    assert machine.outgoing("minimised", "sealed").effects == (Effect.ARCHIVE_SOURCE, Effect.UPLOAD)


def test_deadlines_and_refusals() -> None:
    assert machine.outgoing("uploaded", "deadline").state == OutState.OVERDUE
    assert machine.outgoing("overdue", "receipt-ok").state == OutState.RECEIPTED
    assert machine.outgoing("overdue", "lost").effects == (Effect.RAISE_INCIDENT,)
    assert machine.outgoing("uploaded", "receipt-failed").state == OutState.REFUSED
    # The receipt can overtake the journal write after a successful upload.
    assert machine.outgoing("sealed", "receipt-ok").state == OutState.RECEIPTED


@pytest.mark.parametrize("terminal", ["receipted", "refused", "rejected"])
@pytest.mark.parametrize("event", ["minimised", "sealed", "uploaded", "receipt-ok", "deadline"])
def test_terminal_states_have_no_way_out(terminal: str, event: str) -> None:
    with pytest.raises(IllegalTransition):
        machine.outgoing(terminal, event)


def test_nothing_is_uploaded_before_it_is_sealed() -> None:
    for state in ("detected", "minimised"):
        with pytest.raises(IllegalTransition):
            machine.outgoing(state, "uploaded")


def test_incoming_messages_are_answered_once_delivered_or_refused() -> None:
    assert machine.incoming("received", "delivered").effects == (Effect.SEND_RECEIPT,)
    assert machine.incoming("received", "refused").effects == (
        Effect.SEND_RECEIPT, Effect.RAISE_INCIDENT,
    )  # fmt: skip
    assert machine.incoming("delivered", "answered").state == InState.ANSWERED
    with pytest.raises(IllegalTransition):
        machine.incoming("answered", "delivered")  # never delivered twice


def test_what_a_restart_replays() -> None:
    assert machine.effects_on_resume("sealed") == (Effect.ARCHIVE_SOURCE, Effect.UPLOAD)
    assert machine.effects_on_resume("receipted") == ()
    assert machine.outgoing("uploaded", "resend").state == OutState.SEALED
