"""Hyperparameter schedules over the frame budget: learning-rate warm-up/cosine decay, linear ramps.

Run by: the learner process (:class:`learner.learner.Learner` evaluates them once per update),
benchmarks and tests. Pure functions of an update index; no state, no torch, no I/O, so a
resumed run that restores its update counter continues on exactly the same curve.

The budget is counted in learner updates: ``total_updates = ceil(run.total_env_frames /
env frames consumed per update)`` (:func:`total_updates`), where an update consumes only its
fresh unrolls' frames (replayed unrolls were already counted when they arrived).
"""

from __future__ import annotations

import math

__all__ = ["entropy_cost", "linear", "lr_factor", "total_updates"]

LR_SCHEDULES = ("constant", "cosine")


def total_updates(total_env_frames: int, frames_per_update: int) -> int:
    """Learner updates that spend the frame budget: ``ceil(total / per update)``, at least 1.

    Raises:
        ValueError: ``frames_per_update`` < 1 or ``total_env_frames`` < 0.
    """
    if frames_per_update < 1:
        raise ValueError(f"frames_per_update: must be >= 1, got {frames_per_update}")
    if total_env_frames < 0:
        raise ValueError(f"total_env_frames: must be >= 0, got {total_env_frames}")
    return max(1, -(-total_env_frames // frames_per_update))


def linear(start: float, end: float, progress: float) -> float:
    """``start + (end - start) * p`` with ``p = progress`` clipped to [0, 1].

    Raises:
        ValueError: ``progress`` is not finite.
    """
    if not math.isfinite(progress):
        raise ValueError(f"progress: must be finite, got {progress}")
    p = min(1.0, max(0.0, progress))
    return start + (end - start) * p


def lr_factor(
    update: int,
    total: int,
    schedule: str = "constant",
    warmup_updates: int = 0,
    min_lr_ratio: float = 0.0,
) -> float:
    """Multiplier of the base learning rate for the update with 0-based index ``update``.

    - Linear warm-up (Goyal et al. 2017, "Accurate, Large Minibatch SGD", Sec. 2.2): for
      ``update < warmup_updates`` the factor is ``(update + 1) / warmup_updates``, so the first
      update already moves (factor 1/W, not 0) and update ``W - 1`` reaches 1.
    - ``constant``: 1 after the warm-up.
    - ``cosine`` (Loshchilov & Hutter 2017, "SGDR", Eq. 5 without restarts): after the warm-up,
      ``r + (1 - r) * (1 + cos(pi * p)) / 2`` with ``r = min_lr_ratio`` and
      ``p = (update - W) / (total - W)`` clipped to [0, 1], so it is 1 right after the warm-up
      and ``r`` from update ``total`` on (updates past the budget keep the floor).

    Args:
        update: 0-based update index (the learner's update counter before the step), >= 0.
        total: updates in the frame budget (:func:`total_updates`), >= 1.
        schedule: ``"constant"`` or ``"cosine"``.
        warmup_updates: W >= 0; 0 disables the warm-up.
        min_lr_ratio: r in [0, 1], the cosine floor.

    Raises:
        ValueError: an unknown ``schedule`` or an argument out of range (named).
    """
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"schedule: expected one of {', '.join(LR_SCHEDULES)}, got {schedule!r}")
    if update < 0:
        raise ValueError(f"update: must be >= 0, got {update}")
    if total < 1:
        raise ValueError(f"total: must be >= 1, got {total}")
    if warmup_updates < 0:
        raise ValueError(f"warmup_updates: must be >= 0, got {warmup_updates}")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio: must lie in [0, 1], got {min_lr_ratio}")
    if update < warmup_updates:
        return (update + 1) / warmup_updates
    if schedule == "constant":
        return 1.0
    # a warm-up as long as the budget leaves nothing to decay over: go straight to the floor
    span = total - warmup_updates
    p = 1.0 if span <= 0 else min(1.0, (update - warmup_updates) / span)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * p))


def entropy_cost(update: int, total: int, start: float, final: float) -> float:
    """Entropy-bonus weight for update ``update``: linear from ``start`` to ``final``.

    ``final < 0`` means "same as ``start``" (the config's constant default). The weight reaches
    ``final`` at update ``total`` and stays there.

    Raises:
        ValueError: ``total`` < 1.
    """
    if total < 1:
        raise ValueError(f"total: must be >= 1, got {total}")
    if final < 0:
        return start
    return linear(start, final, update / total)
