"""Training hints: rules that notice a run going nowhere, or a learner on the wrong device.

Run by: the learner process (:class:`learner.server.LearnerServer` evaluates them once per
heartbeat). Owns: the rules, their thresholds and their one-line texts. A fired hint is logged
once when it starts, travels in every ``learner_status`` (``hints``, shown on the launcher's
progress line) and as a ``hint:<name>`` counter in the learner's heartbeat.

The rules follow the design's decision log (Sample Factory and PufferLib print similar advice):

- ``cpu_learner``: ``learner.device = auto`` found no CUDA device, so a long run would train on
  the CPU unnoticed; the text gives the frame budget's time at the measured rate. An explicit
  ``learner.device = cpu`` silences it.
- ``no_progress`` (Mario): the 100-episode mean of the largest ``x_pos`` has not beaten its best
  by 5% for :data:`PROGRESS_WINDOW_FRAMES` env frames.
- ``replay_not_filling``: the replay still holds fewer than ``replay.min_size`` unrolls after
  :data:`REPLAY_GRACE_FRAMES` env frames, so every update is still fresh-only.
- ``idle_gpu``: a CUDA learner's GPUs stayed under :data:`IDLE_GPU_PERCENT` % utilisation for
  :data:`IDLE_GPU_BEATS` heartbeats in a row while training (the CPU side starves it).
- ``nonfinite``: updates were skipped for a non-finite gradient since the last heartbeat.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

log = logging.getLogger("learner")

PROGRESS_WINDOW_FRAMES = 1_000_000
"""Env frames without a 5% better mean max x before ``no_progress`` fires."""
REPLAY_GRACE_FRAMES = 200_000
"""Env frames after which a replay below ``replay.min_size`` is worth a hint."""
IDLE_GPU_PERCENT = 10.0
IDLE_GPU_BEATS = 30


@dataclass(frozen=True)
class HintInputs:
    """What the rules read, once per heartbeat.

    Attributes:
        env_frames: fresh env frames trained on so far; total_env_frames: the budget.
        env_fps: env frames/s at the moment (0 before it is known).
        device_auto_cpu: ``learner.device = auto`` resolved to the CPU.
        mario: the env reports ``x_pos`` (Mario).
        episodes: true-start episodes finished; mean_x_pos: their 100-episode mean max x.
        replay_size, replay_min_size: unrolls held and needed (None without replay).
        gpu_utilization: mean utilisation of the learner's GPUs in percent (None without NVML
            or without CUDA).
        skipped_updates: updates skipped for a non-finite gradient since the last call.
    """

    env_frames: int
    total_env_frames: int
    env_fps: float
    device_auto_cpu: bool
    mario: bool
    episodes: int
    mean_x_pos: float
    replay_size: int | None
    replay_min_size: int | None
    gpu_utilization: float | None
    skipped_updates: int


@dataclass
class Hints:
    """The rules' state across heartbeats; :meth:`update` returns the hints firing now."""

    _best_x: float = 0.0
    _best_x_frames: int = 0
    _idle_beats: int = 0
    _active: set[str] = field(default_factory=set)

    def update(self, s: HintInputs) -> dict[str, str]:
        """Evaluate every rule; returns name -> one-line text of each hint that fires now.
        Logs a warning for each hint that was not firing at the previous call."""
        out: dict[str, str] = {}
        if s.device_auto_cpu:
            eta = ""
            if s.env_fps > 0:
                hours = max(0, s.total_env_frames - s.env_frames) / s.env_fps / 3600
                eta = f"; the {s.total_env_frames:,}-frame budget takes ~{hours:,.1f} h at "
                eta += f"{s.env_fps:,.0f} frames/s"
            out["cpu_learner"] = (
                f"the learner trains on the CPU (learner.device = auto found no CUDA){eta}; "
                "set --learner.device cpu to silence this"
            )
        if s.mario and s.episodes >= 100:
            if s.mean_x_pos > 1.05 * self._best_x or self._best_x == 0:
                self._best_x, self._best_x_frames = max(s.mean_x_pos, self._best_x), s.env_frames
            elif s.env_frames - self._best_x_frames >= PROGRESS_WINDOW_FRAMES:
                out["no_progress"] = (
                    f"no x_pos progress for {s.env_frames - self._best_x_frames:,} env frames "
                    f"(best 100-episode mean {self._best_x:,.0f}); see README, Learning results"
                )
        if (
            s.replay_size is not None
            and s.replay_min_size is not None
            and s.replay_size < s.replay_min_size
            and s.env_frames >= REPLAY_GRACE_FRAMES
        ):
            out["replay_not_filling"] = (
                f"the replay holds {s.replay_size} of replay.min_size {s.replay_min_size} "
                f"unrolls after {s.env_frames:,} env frames: updates are still fresh-only"
            )
        if s.gpu_utilization is not None and s.env_fps > 0:
            busy = s.gpu_utilization >= IDLE_GPU_PERCENT
            self._idle_beats = 0 if busy else self._idle_beats + 1
            if self._idle_beats >= IDLE_GPU_BEATS:
                out["idle_gpu"] = (
                    f"the GPU has been under {IDLE_GPU_PERCENT:.0f}% busy for "
                    f"{self._idle_beats} heartbeats: add actors or raise learner.batch_size"
                )
        if s.skipped_updates > 0:
            out["nonfinite"] = (
                f"{s.skipped_updates} update(s) skipped for a non-finite gradient since the last "
                "heartbeat (the learner log names the actors)"
            )
        for name in sorted(out.keys() - self._active):
            log.warning("hint: %s", out[name])
        self._active = set(out)
        return out
