"""CreditLedger: exact per-connection credits, repeat hellos and unread unrolls included."""

from __future__ import annotations

import pytest

from learner.credits import CreditLedger
from protocol.messages import ProtocolError

A = b"actor-a"


def held(ledger: CreditLedger, identity: bytes = A) -> int:
    """Credits held plus unrolls in flight: what the connection can have out at once."""
    peer = ledger.peers[identity]
    return peer.credits + peer.in_flight


def test_repeat_hellos_never_raise_the_unrolls_in_flight_above_the_grant() -> None:
    ledger = CreditLedger()
    assert ledger.register(A, 0, "r", 2, 1) == 2
    for _ in range(7):  # each time: spend what it holds, then say hello again
        while ledger.peers[A].credits:
            ledger.spend(A)
        assert ledger.register(A, 0, "r", 2, 1) == 0  # two still in flight: nothing new
        assert held(ledger) <= 2
    ledger.give_back(A, 2)  # the two in flight are consumed
    assert ledger.flush() == [(A, 2)] and held(ledger) == 2
    with pytest.raises(ProtocolError, match="no_credit"):
        for _ in range(3):
            ledger.spend(A)


def test_a_repeat_hello_grants_what_is_left_of_the_cap() -> None:
    ledger = CreditLedger()
    ledger.register(A, 0, "r", 4, 1)
    ledger.spend(A)
    assert ledger.register(A, 0, "r", 4, 1) == 3
    ledger.give_back(A)
    ledger.flush()
    assert held(ledger) == 4


def test_an_unread_unroll_settles_its_credit_and_strangers_get_none() -> None:
    ledger = CreditLedger()
    ledger.register(A, 0, "r", 3, 1)
    ledger.settle_unread(A)  # its sender counted one credit spent: it comes back
    assert ledger.flush() == [(A, 1)] and held(ledger) == 3
    ledger.settle_unread(b"stranger")  # no hello: nothing to settle
    assert ledger.flush() == []
    while ledger.peers[A].credits:
        ledger.spend(A)
    ledger.settle_unread(A)  # sent without a credit: it was owed nothing
    assert ledger.flush() == [] and held(ledger) == 3


def test_give_back_never_returns_more_than_is_in_flight() -> None:
    ledger = CreditLedger()
    ledger.register(A, 0, "r", 2, 1)
    ledger.spend(A)
    ledger.give_back(A, 5)
    assert ledger.flush() == [(A, 1)] and held(ledger) == 2


@pytest.mark.parametrize(
    ("claim", "error"),
    [
        ((424242, "r", 0), "actor_id: mismatch"),
        ((0, "other-run", 0), "run_id: mismatch"),
        ((0, "r", 8), "env_index: out_of_range"),
        ((0, "r", -1), "env_index: out_of_range"),
    ],
)
def test_an_unroll_must_carry_its_connections_hello_ids(
    claim: tuple[int, str, int], error: str
) -> None:
    ledger = CreditLedger()
    ledger.register(A, 0, "r", 16, 8)
    assert ledger.check_sender(A, 0, "r", 7).actor_id == 0  # the hello's own ids pass
    with pytest.raises(ProtocolError, match=error):
        ledger.check_sender(A, *claim)
    with pytest.raises(ProtocolError, match="unknown_peer"):
        ledger.check_sender(b"stranger", 0, "r", 0)
