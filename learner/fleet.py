"""The fleet view: every process's latest heartbeat and its liveness state. Pure, no I/O.

Run by: the learner process (fed by :mod:`learner.server`). Owns the alive / stale / dead
decision in the ZeroMQ guide's Paranoid Pirate style: any data from a peer (a heartbeat, an
unroll, a hello) counts as liveness; a peer silent for ``stale_after_s`` is ``stale``, for
``dead_after_s`` ``dead``; any later data makes it ``alive`` again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from protocol.messages import Heartbeat

ALIVE, STALE, DEAD = "alive", "stale", "dead"


@dataclass
class PeerRecord:
    """What the learner knows of one peer (``role:id``)."""

    heartbeat: Heartbeat
    last_seen: float
    state: str = ALIVE


@dataclass(frozen=True)
class FleetTotals:
    """Fleet-wide figures for the progress line, TensorBoard and the status broadcast.

    ``env_fps`` sums the env frames/s of alive actors; ``mean_policy_lag`` averages the lag
    alive actors report (None if none reports one); ``gpu_utilization`` is the mean utilisation
    (percent) of the learner's GPUs (None without NVML).
    """

    actors_alive: int
    actors_stale: int
    actors_dead: int
    env_fps: float
    mean_policy_lag: float | None
    gpu_utilization: float | None


class FleetView:
    """Latest heartbeat and state per peer key.

    Args:
        stale_after_s: silence after which a peer is ``stale``.
        dead_after_s: silence after which it is ``dead`` (must exceed ``stale_after_s``).

    Raises:
        ValueError: ``dead_after_s <= stale_after_s``.
    """

    def __init__(self, stale_after_s: float, dead_after_s: float) -> None:
        if dead_after_s <= stale_after_s:
            raise ValueError("dead_after_s: must be greater than stale_after_s")
        self.stale_after_s = stale_after_s
        self.dead_after_s = dead_after_s
        self.peers: dict[str, PeerRecord] = {}

    def observe(self, heartbeat: Heartbeat, now: float) -> Heartbeat:
        """Record a heartbeat; returns it with the learner-assigned state (always ``alive``)."""
        stamped = dataclasses.replace(heartbeat, state=ALIVE)
        self.peers[heartbeat.key] = PeerRecord(stamped, now, ALIVE)
        return stamped

    def touch(self, key: str, now: float) -> Heartbeat | None:
        """Any data from ``key`` counts as liveness. Returns the peer's heartbeat re-stamped
        ``alive`` if this revived a stale or dead peer (to republish), else None."""
        record = self.peers.get(key)
        if record is None:
            return None
        record.last_seen = now
        if record.state == ALIVE:
            return None
        record.state = ALIVE
        record.heartbeat = dataclasses.replace(record.heartbeat, state=ALIVE)
        return record.heartbeat

    def sweep(self, now: float) -> list[Heartbeat]:
        """Apply the timeouts; returns the heartbeats of peers whose state changed."""
        changed = []
        for record in self.peers.values():
            silent = now - record.last_seen
            state = (
                DEAD
                if silent > self.dead_after_s
                else STALE
                if silent > self.stale_after_s
                else ALIVE
            )
            if state != record.state:
                record.state = state
                record.heartbeat = dataclasses.replace(record.heartbeat, state=state)
                changed.append(record.heartbeat)
        return changed

    def state(self, key: str) -> str | None:
        record = self.peers.get(key)
        return None if record is None else record.state

    def totals(self) -> FleetTotals:
        actors = [r for r in self.peers.values() if r.heartbeat.role == "actor"]
        alive = [r.heartbeat for r in actors if r.state == ALIVE]
        lags = [h.policy_lag for h in alive if h.policy_lag is not None]
        gpu_utils = [
            g.utilization
            for r in self.peers.values()
            if r.heartbeat.role == "learner" and r.heartbeat.gpu
            for g in r.heartbeat.gpu
            if g.utilization is not None
        ]
        return FleetTotals(
            actors_alive=len(alive),
            actors_stale=sum(r.state == STALE for r in actors),
            actors_dead=sum(r.state == DEAD for r in actors),
            env_fps=sum(h.env_fps for h in alive),
            mean_policy_lag=sum(lags) / len(lags) if lags else None,
            gpu_utilization=sum(gpu_utils) / len(gpu_utils) if gpu_utils else None,
        )
