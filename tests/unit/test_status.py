"""The status state machine: every pair of states is either a legal move or an error."""

import itertools

import pytest

from circle_ws_web.status import TRANSITIONS, ConnectionStatus as S, StatusMachine

LEGAL = {
    (S.DISCONNECTED, S.CONNECTING), (S.DISCONNECTED, S.RECONNECTING), (S.DISCONNECTED, S.CLOSED),
    (S.CONNECTING, S.AUTHENTICATING), (S.CONNECTING, S.CONNECTED), (S.CONNECTING, S.DISCONNECTED),
    (S.CONNECTING, S.RECONNECTING), (S.CONNECTING, S.CLOSED),
    (S.AUTHENTICATING, S.CONNECTED), (S.AUTHENTICATING, S.DISCONNECTED),
    (S.AUTHENTICATING, S.RECONNECTING), (S.AUTHENTICATING, S.CLOSED),
    (S.CONNECTED, S.RECONNECTING), (S.CONNECTED, S.DISCONNECTED), (S.CONNECTED, S.CLOSED),
    (S.RECONNECTING, S.CONNECTING), (S.RECONNECTING, S.DISCONNECTED), (S.RECONNECTING, S.CLOSED),
}


def machine_at(state):
    m = StatusMachine()
    m._status = state
    return m


def test_table_matches_the_documented_moves():
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == LEGAL


@pytest.mark.parametrize("old, new", [(a, b) for a, b in itertools.product(S, S) if a is not b])
def test_every_transition(old, new):
    m = machine_at(old)
    seen = []
    m.subscribe(seen.append)
    if (old, new) in LEGAL:
        assert m.move(new) is True
        assert m.status is new and seen == [new]
    else:
        with pytest.raises(RuntimeError, match=f"{old.value} -> {new.value}"):
            m.move(new)
        assert m.status is old and seen == []


def test_same_state_is_a_no_op_without_notification():
    m = StatusMachine()
    seen = []
    m.subscribe(seen.append)
    assert m.move(S.DISCONNECTED) is False and seen == []


def test_unsubscribe_and_failing_listener_does_not_break_others():
    errors = []
    m = StatusMachine(on_error=errors.append)
    seen = []

    def bad(_):
        raise ValueError("user bug")

    m.subscribe(bad)
    undo = m.subscribe(seen.append)
    m.move(S.CONNECTING)
    undo()
    undo()  # idempotent
    m.move(S.CONNECTED)
    assert seen == [S.CONNECTING]
    assert len(errors) == 2 and all(isinstance(e, ValueError) for e in errors)


def test_status_values_are_the_spec_words():
    assert [s.value for s in S] == ["disconnected", "connecting", "authenticating", "connected", "reconnecting", "closed"]
    assert str(S.CONNECTED) == "connected" and S("closed") is S.CLOSED
