"""Where every unroll went, and the statistics of finished episodes.

Run by: the learner process. Owns the unroll outcome counters (each received trajectory is
counted exactly once: accepted, rejected by reason, dropped stale, or duplicate) and the
episode window behind the progress line, TensorBoard's ``episode/*`` and ``episodes.jsonl``.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from protocol.messages import EpisodeStats

EPISODE_WINDOW = 100
EPISODE_LOG = "episodes.jsonl"
"""One JSON object per finished episode: env_frames, actor, return, length, x_pos, flag, stage,
restored (started from a frontier snapshot) and greedy (its env acted greedily); restored and
greedy episodes are kept out of every windowed figure."""


@dataclass
class Accounting:
    """What became of every unroll received; exported to status, heartbeats and TensorBoard.

    ``rejected`` counts every rejected message by ``field:reason``: unrolls, and also hellos,
    undecodable frames and unexpected types, which carry no sequence number.
    ``rejected_unrolls`` counts only the rejected unrolls whose sequence number was recorded,
    so for every peer, hostile ones included,
    ``sent == accepted + rejected_unrolls + dropped_stale + lost`` (``duplicates`` repeat a
    number already counted in ``sent``).
    """

    accepted: int = 0
    accepted_by_actor: Counter[int] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    rejected_unrolls: int = 0
    dropped_stale: int = 0
    duplicates: int = 0
    # per actor incarnation (actor_id, run_id): [distinct seqs received, first seq, highest]
    incarnations: dict[tuple[int, str], list[int]] = field(default_factory=dict)

    def record_seq(self, actor_id: int, run_id: str, seq: int) -> bool:
        """Note an unroll's sequence number; False if that number was already received."""
        entry = self.incarnations.get((actor_id, run_id))
        if entry is None:
            # counted from the first unroll this learner sees: an actor that rejoins a
            # restarted learner is mid-stream, and what it sent before went to the old one
            self.incarnations[(actor_id, run_id)] = [1, seq, seq]
            return True
        if seq <= entry[2]:
            return False  # seqs of one incarnation arrive in order over one connection
        entry[0] += 1
        entry[2] = seq
        return True

    @property
    def sent(self) -> int:
        """Unrolls numbered by the actors from the first to the last one that arrived here."""
        return sum(top - first + 1 for _, first, top in self.incarnations.values())

    @property
    def lost(self) -> int:
        """Sequence numbers never received: gaps that no outcome accounts for (should be 0)."""
        return sum(top - first + 1 - seen for seen, first, top in self.incarnations.values())

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    @property
    def received(self) -> int:
        return self.accepted + self.rejected_total + self.dropped_stale + self.duplicates

    def as_counters(self) -> dict[str, float]:
        """Flat counters for heartbeats (``rejected:<field>:<reason>`` per reason)."""
        out: dict[str, float] = {
            "accepted": self.accepted,
            "rejected": self.rejected_total,
            "rejected_unrolls": self.rejected_unrolls,
            "dropped_stale": self.dropped_stale,
            "duplicates": self.duplicates,
            "sent": self.sent,
            "lost": self.lost,
        }
        out.update({f"rejected:{reason}": n for reason, n in self.rejected.items()})
        return out


@dataclass
class EpisodeWindow:
    """Finished episodes: totals since the run began, means over the last 100, and a log.

    ``recent``, ``episodes``, ``flags`` and ``max_x_pos`` count only episodes that started at
    the stage's start and sampled their actions (the reported figures); episodes restored from
    a frontier snapshot (``EpisodeStats.restored``) go to ``recent_restored`` and ``restored``
    instead, and true-start episodes of greedy envs (``EpisodeStats.greedy``, a live estimate
    of the greedy policy's figures) to ``recent_greedy`` and ``greedy``. All go to the log,
    with their ``restored`` and ``greedy`` flags.

    Args:
        log_path: ``episodes.jsonl`` to append one line per episode to, or None.
    """

    log_path: Path | None = None
    recent: deque[EpisodeStats] = field(default_factory=lambda: deque(maxlen=EPISODE_WINDOW))
    recent_restored: deque[EpisodeStats] = field(
        default_factory=lambda: deque(maxlen=EPISODE_WINDOW)
    )
    recent_greedy: deque[EpisodeStats] = field(default_factory=lambda: deque(maxlen=EPISODE_WINDOW))
    episodes: int = 0
    flags: int = 0
    max_x_pos: int = 0
    restored: int = 0
    greedy: int = 0
    _log: IO[str] | None = field(default=None, repr=False)

    def add(self, stats: EpisodeStats, env_frames: int, actor_id: int) -> None:
        if stats.restored:
            self.recent_restored.append(stats)
            self.restored += 1
        elif stats.greedy:
            self.recent_greedy.append(stats)
            self.greedy += 1
        else:
            self.recent.append(stats)
            self.episodes += 1
            self.flags += int(stats.flag_get)
            self.max_x_pos = max(self.max_x_pos, stats.max_x_pos)
        if self.log_path is not None:
            if self._log is None:
                self._log = open(self.log_path, "a", buffering=1)  # noqa: SIM115
            record = {
                "env_frames": env_frames,
                "actor_id": actor_id,
                "return": stats.episode_return,
                "length": stats.length,
                "max_x_pos": stats.max_x_pos,
                "flag_get": stats.flag_get,
                "stage": stats.stage,
                "components": stats.components,
                "restored": stats.restored,
                "greedy": stats.greedy,
            }
            self._log.write(json.dumps(record) + "\n")

    def mean(self, attr: str, window: deque[EpisodeStats] | None = None) -> float:
        """Mean of ``attr`` over ``window`` (default ``recent``; or ``recent_restored``,
        ``recent_greedy``); 0.0 for an empty window."""
        window = self.recent if window is None else window
        if not window:
            return 0.0
        return float(np.mean([getattr(s, attr) for s in window]))

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
