"""Batch composition for the learner: fresh/replayed split and micro-batches along B.

Run by: the learner process (:class:`learner.learner.Learner`), benchmarks and tests. Pure
functions; no I/O, no state.
Owns: how many fresh unrolls one update consumes when prioritized replay is mixed in
(:func:`fresh_per_step`), and how a collated batch is cut into micro-batches for gradient
accumulation (:func:`micro_bounds`, :func:`slice_batch`). Every unroll is independent along B
(V-trace and GAE recurse over T only), so slicing along B and summing the size-weighted losses
gives exactly the full-batch loss.
"""

from __future__ import annotations

import torch

from learner.collate import Batch
from protocol.messages import Role, fields_with

__all__ = [
    "BATCH_MAJOR_FIELDS",
    "TIME_MAJOR_FIELDS",
    "fresh_per_step",
    "micro_bounds",
    "slice_batch",
]


def fresh_per_step(batch_size: int, replay_ratio: float) -> int:
    """Fresh unrolls in a batch of ``batch_size`` when ``replay_ratio`` of it comes from replay.

    ``B_fresh = max(1, floor(B * (1 - ratio) + 0.5))`` (round half up, so B = 8 and ratio 0.5
    give 4 + 4); the rest, ``B - B_fresh``, is sampled from the replay. At least one unroll is
    always fresh, so every update consumes new data and the frame budget advances.

    Raises:
        ValueError: ``batch_size`` < 1 or ``replay_ratio`` outside [0, 1).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
    if not 0.0 <= replay_ratio < 1.0:
        raise ValueError(f"replay_ratio: must lie in [0, 1), got {replay_ratio}")
    return max(1, min(batch_size, int(batch_size * (1.0 - replay_ratio) + 0.5)))


def micro_bounds(batch_size: int, parts: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` column ranges splitting B columns into ``min(parts, B)`` near-equal parts.

    Sizes differ by at most one, larger parts first (as :func:`torch.tensor_split`).

    Raises:
        ValueError: ``batch_size`` or ``parts`` < 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
    if parts < 1:
        raise ValueError(f"parts: must be >= 1, got {parts}")
    parts = min(parts, batch_size)
    size, extra = divmod(batch_size, parts)
    bounds, lo = [], 0
    for i in range(parts):
        hi = lo + size + (1 if i < extra else 0)
        bounds.append((lo, hi))
        lo = hi
    return bounds


# How each Batch field is cut along B, from the unroll fields' roles (their one declaration is
# protocol.messages.Trajectory); the truncation table is re-indexed instead.
TIME_MAJOR_FIELDS = fields_with(Role.STEP, Role.STEP_AND_BOOTSTRAP)
"""Fields laid out ``[T or T+1, B, ...]``: sliced along dim 1."""
BATCH_MAJOR_FIELDS = fields_with(Role.UNROLL)
"""Per-unroll fields laid out ``[B, ...]`` (e.g. an initial recurrent state): sliced along dim 0."""


def slice_batch(batch: Batch, lo: int, hi: int) -> Batch:
    """Columns ``lo:hi`` of a time-major batch, with its truncation table re-indexed.

    ``truncated_index`` holds flat indices ``t * B + b``; the rows whose ``b`` falls in
    ``[lo, hi)`` are kept (same order) and renumbered ``t * (hi - lo) + (b - lo)``.

    Raises:
        ValueError: ``0 <= lo < hi <= B`` does not hold.
    """
    b = batch.batch_size
    if not 0 <= lo < hi <= b:
        raise ValueError(f"lo, hi: expected 0 <= lo < hi <= {b}, got {lo}, {hi}")
    if lo == 0 and hi == b:
        return batch
    index = batch.truncated_index
    t, col = index // b, index % b
    keep = (col >= lo) & (col < hi)
    cols = slice(lo, hi)
    changes = {name: getattr(batch, name)[:, cols] for name in TIME_MAJOR_FIELDS}
    changes.update({name: getattr(batch, name)[cols] for name in BATCH_MAJOR_FIELDS})
    changes["truncated_obs"] = batch.truncated_obs[keep]
    changes["truncated_index"] = (t[keep] * (hi - lo) + (col[keep] - lo)).to(torch.int64)
    return batch._replace(**changes)
