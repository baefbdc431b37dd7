"""Credit-based flow control: how many unrolls each actor connection may still send.

Run by: the learner process. Owns the per-connection credit ledger. An actor is granted
``credits_per_env * num_envs`` credits in its welcome; each unroll it sends spends one; the
learner returns the credit when the unroll is consumed (trained on, dropped or rejected).
That bounds unrolls in flight per actor, whatever the transport buffers hold, and so both the
learner's memory and the policy lag. (Sample Factory and SEED RL bound their queues likewise.)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from protocol.messages import ProtocolError


@dataclass
class Peer:
    """An actor connection known from its hello.

    Invariant: ``credits + in_flight + pending grants <= cap``, repeat hellos included.
    """

    actor_id: int
    run_id: str
    credits: int  # unrolls it may still send before it must wait for a Credit
    cap: int = 0  # the grant of its latest hello
    in_flight: int = 0  # unrolls spent and not yet consumed (trained on, dropped, rejected)
    num_envs: int = 0  # envs its hello declared (0 there means the run's actor.num_envs)


class CreditLedger:
    """Credits per ROUTER identity, with grants batched until :meth:`flush`.

    Exact per connection: a repeat hello does not add credits on top of the unrolls still in
    flight (it grants ``cap - in_flight``), and an unroll the learner cannot read, or a
    duplicate, still settles the credit its sender spent on it (:meth:`settle_unread`).
    """

    def __init__(self) -> None:
        self.peers: dict[bytes, Peer] = {}
        self._grants: Counter[bytes] = Counter()

    def register(
        self, identity: bytes, actor_id: int, run_id: str, credits: int, num_envs: int
    ) -> int:
        """A (re-)hello granting ``credits`` in all: the connection may hold that many unrolls
        in flight. Returns the credits it may send now (``credits`` less those still in flight
        from before this hello, which return their credit when consumed); that is the number
        its welcome must carry. ``num_envs`` (>= 1) bounds the ``env_index`` of its unrolls."""
        old = self.peers.get(identity)
        in_flight = old.in_flight if old is not None else 0
        available = max(0, credits - in_flight)
        self.peers[identity] = Peer(actor_id, run_id, available, credits, in_flight, num_envs)
        self._grants.pop(identity, None)  # counted in `available` already
        return available

    def check_sender(self, identity: bytes, actor_id: int, run_id: str, env_index: int) -> Peer:
        """An unroll from ``identity`` claims ``actor_id``, ``run_id`` and ``env_index``: they
        must be those of the connection's hello, so no peer can send in another's name.

        Raises:
            ProtocolError: ``credits: unknown_peer`` (no hello on this connection),
                ``actor_id: mismatch`` or ``run_id: mismatch`` (not the hello's), or
                ``env_index: out_of_range`` (not in [0, the hello's num_envs)).
        """
        peer = self.peers.get(identity)
        if peer is None:
            raise ProtocolError(
                "credits", "unknown_peer", "unroll from a connection without a hello"
            )
        if actor_id != peer.actor_id:
            raise ProtocolError(
                "actor_id",
                "mismatch",
                f"{actor_id}, but this connection's hello said {peer.actor_id}",
            )
        if run_id != peer.run_id:
            raise ProtocolError(
                "run_id",
                "mismatch",
                f"{run_id!r}, but this connection's hello said {peer.run_id!r}",
            )
        if not 0 <= env_index < peer.num_envs:
            raise ProtocolError(
                "env_index", "out_of_range", f"{env_index} not in [0, {peer.num_envs})"
            )
        return peer

    def spend(self, identity: bytes) -> Peer:
        """An unroll arrived from ``identity``: spend one of its credits.

        Raises:
            ProtocolError: ``credits: unknown_peer`` (no hello from it, e.g. after a learner
                restart) or ``credits: no_credit`` (it sent more than it was granted).
        """
        peer = self.peers.get(identity)
        if peer is None:
            raise ProtocolError(
                "credits", "unknown_peer", "unroll from a connection without a hello"
            )
        if peer.credits <= 0:
            raise ProtocolError("credits", "no_credit", "unroll sent without a credit")
        peer.credits -= 1
        peer.in_flight += 1
        return peer

    def give_back(self, identity: bytes, n: int = 1) -> None:
        """Return ``n`` credits at the next :meth:`flush` (the unrolls were consumed)."""
        peer = self.peers.get(identity)
        if peer is None:
            return
        n = min(n, peer.in_flight)  # never more than it has in flight: the cap holds
        peer.in_flight -= n
        if n > 0:
            self._grants[identity] += n

    def settle_unread(self, identity: bytes) -> None:
        """An unroll from ``identity`` that was not read (undecodable or a duplicate) still
        used one of its sender's credits: spend and return it, so the sender gets it back. A
        connection without a hello or without credits gets nothing."""
        peer = self.peers.get(identity)
        if peer is not None and peer.credits > 0:
            self.spend(identity)
            self.give_back(identity)

    def forget_actor(self, actor_id: int) -> None:
        """Drop the connections of an actor declared dead; it must say hello again."""
        for identity in [i for i, p in self.peers.items() if p.actor_id == actor_id]:
            del self.peers[identity]
            self._grants.pop(identity, None)

    def flush(self) -> list[tuple[bytes, int]]:
        """The batched grants to send now, already credited to each peer."""
        out = []
        for identity, n in self._grants.items():
            peer = self.peers.get(identity)
            if n > 0 and peer is not None:
                peer.credits += n
                out.append((identity, n))
        self._grants.clear()
        return out

    @property
    def total_cap(self) -> int:
        """Unrolls all known connections may have in flight at once (the sum of their caps)."""
        return sum(p.cap for p in self.peers.values())

    @property
    def outstanding(self) -> int:
        """Credits currently held by known actors (unrolls they may still send)."""
        return sum(p.credits for p in self.peers.values())
