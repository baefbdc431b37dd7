"""The fleet view: every process's latest heartbeat and its liveness state. Pure, no I/O.

Run by: the learner process (fed by :mod:`learner.server`). Owns the alive / stale / dead
decision in the ZeroMQ guide's Paranoid Pirate style: any data from a peer (a heartbeat, an
unroll, a hello) counts as liveness; a peer silent for ``stale_after_s`` is ``stale``, for
``dead_after_s`` ``dead``; any later data makes it ``alive`` again. Heartbeats come from a
thread, so a process whose main loop hangs keeps sending them: its reported
``progress_age_s`` (plus the time since that heartbeat) counts like silence, and such a hung
process goes stale and dead too.
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
    beat_at: float = 0.0  # when ``heartbeat`` arrived


@dataclass(frozen=True)
class FleetTotals:
    """Fleet-wide figures for the progress line, TensorBoard and the status broadcast.

    ``env_fps`` sums the env frames/s of alive actors; ``mean_policy_lag`` averages the lag
    alive actors report (None if none reports one); ``gpu_utilization`` is the mean utilisation
    (percent) of the learner's GPUs and ``gpu_memory_used_mb`` their memory in use, summed (MiB);
    both None without NVML.
    """

    actors_alive: int
    actors_stale: int
    actors_dead: int
    env_fps: float
    mean_policy_lag: float | None
    gpu_utilization: float | None
    gpu_memory_used_mb: float | None = None


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
        """Record a heartbeat; returns it with the learner-assigned state (``alive`` unless it
        reports a main loop stuck for longer than the stale or dead timeout)."""
        state = self._state(now, now, heartbeat.progress_age_s)
        stamped = dataclasses.replace(heartbeat, state=state)
        self.peers[heartbeat.key] = PeerRecord(stamped, now, state, beat_at=now)
        return stamped

    def _state(self, now: float, last_seen: float, progress_age_s: float) -> str:
        quiet = max(now - last_seen, progress_age_s)
        if quiet > self.dead_after_s:
            return DEAD
        return STALE if quiet > self.stale_after_s else ALIVE

    def touch(self, key: str, now: float) -> Heartbeat | None:
        """Data other than a heartbeat from ``key`` (an unroll, a hello) counts as liveness and
        progress. Returns the peer's heartbeat re-stamped ``alive`` if this revived a stale or
        dead peer (to republish), else None."""
        record = self.peers.get(key)
        if record is None:
            return None
        # unrolls and hellos come from the peer's main loop: proof of progress as well
        record.last_seen = record.beat_at = now
        was = record.state
        record.state = ALIVE
        record.heartbeat = dataclasses.replace(record.heartbeat, state=ALIVE, progress_age_s=0.0)
        return None if was == ALIVE else record.heartbeat

    def sweep(self, now: float) -> list[Heartbeat]:
        """Apply the timeouts; returns the heartbeats of peers whose state changed."""
        changed = []
        for record in self.peers.values():
            stuck = record.heartbeat.progress_age_s + (now - record.beat_at)
            state = self._state(now, record.last_seen, stuck)
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
        gpus = [
            g
            for r in self.peers.values()
            if r.heartbeat.role == "learner" and r.heartbeat.gpu
            for g in r.heartbeat.gpu
        ]
        gpu_utils = [g.utilization for g in gpus if g.utilization is not None]
        memory = [g.memory_used_mb for g in gpus if g.memory_used_mb is not None]
        return FleetTotals(
            actors_alive=len(alive),
            actors_stale=sum(r.state == STALE for r in actors),
            actors_dead=sum(r.state == DEAD for r in actors),
            env_fps=sum(h.env_fps for h in alive),
            mean_policy_lag=sum(lags) / len(lags) if lags else None,
            gpu_utilization=sum(gpu_utils) / len(gpu_utils) if gpu_utils else None,
            gpu_memory_used_mb=sum(memory) if memory else None,
        )
