"""Array-based sum tree over non-negative priorities, the index of prioritized replay.

Run by: the learner process, inside :class:`learner.replay.PrioritizedReplay` (one tree over
its slots' stored priorities), benchmarks and tests.
Owns: the tree arrays (a sum tree and a parallel max tree over ``capacity`` leaves), their
updates, the prefix-sum search that turns a uniform draw into a leaf, and the rule every
stored priority obeys, finite and >= 0 (:func:`check_priorities`, which the replay also
applies to the raw priorities it is given). No I/O and no torch: everything is numpy.

Proportional prioritization (Schaul et al. 2016, "Prioritized Experience Replay", Sec. 3.3 and
Appendix B.2.1) samples leaf i with probability ``p_i / sum_k p_k``: drawing ``v`` uniformly in
``[0, total)`` and walking down to the leaf whose cumulative-priority interval contains ``v``
(:meth:`SumTree.find`) does that in O(log capacity), and so does every priority update.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def check_priorities(values: np.ndarray, name: str) -> None:
    """Raise ValueError naming ``name`` unless every value is finite and >= 0."""
    if values.size and not (np.isfinite(values).all() and (values >= 0).all()):
        bad = values[~(np.isfinite(values) & (values >= 0))][:3]
        raise ValueError(f"{name}: priorities must be finite and >= 0, got {bad.tolist()}")


class SumTree:
    """Array-based binary sum tree over ``capacity`` non-negative priorities (float64).

    Layout: a 1-based heap of ``2 * L`` nodes, L the next power of two >= capacity; node ``i``
    has children ``2i`` and ``2i + 1``; leaf ``j`` is node ``L + j``. A parallel max tree makes
    :attr:`max` O(1). Parents are recomputed from their children on every update (never
    adjusted by deltas), so no rounding drift accumulates however many updates are made.

    Args:
        capacity: number of leaves (>= 1).

    Raises:
        ValueError: ``capacity`` < 1.
    """

    def __init__(self, capacity: int) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int | np.integer):
            raise ValueError(f"capacity: expected an int, got {capacity!r}")
        if capacity < 1:
            raise ValueError(f"capacity: must be >= 1, got {capacity}")
        self._capacity = int(capacity)
        self._leaf0 = 1 << max(0, (self._capacity - 1).bit_length())
        self._depth = self._leaf0.bit_length() - 1
        self._sum = np.zeros(2 * self._leaf0, dtype=np.float64)
        self._max = np.zeros(2 * self._leaf0, dtype=np.float64)

    @property
    def capacity(self) -> int:
        """Number of leaves."""
        return self._capacity

    @property
    def total(self) -> float:
        """Sum of all leaf priorities."""
        return float(self._sum[1])

    @property
    def max(self) -> float:
        """Largest leaf priority (0.0 when all are zero)."""
        return float(self._max[1])

    @property
    def priorities(self) -> np.ndarray:
        """[capacity] float64 leaf priorities (a read-only view)."""
        view = self._sum[self._leaf0 : self._leaf0 + self._capacity]
        view.flags.writeable = False
        return view

    def get(self, indices: np.ndarray | Sequence[int] | int) -> np.ndarray:
        """Leaf priorities at ``indices`` (any shape; float64, same shape).

        Raises:
            ValueError: an index is outside [0, capacity).
        """
        idx = self._check_indices(indices)
        return self._sum[idx + self._leaf0]

    def _check_indices(self, indices: np.ndarray | Sequence[int] | int) -> np.ndarray:
        idx = np.asarray(indices)
        if idx.size and not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"indices: expected integers, got dtype {idx.dtype}")
        idx = idx.astype(np.int64, copy=False)
        if idx.size and (idx.min() < 0 or idx.max() >= self._capacity):
            raise ValueError(f"indices: must lie in [0, {self._capacity})")
        return idx

    def update(
        self,
        index: np.ndarray | Sequence[int] | int,
        priority: np.ndarray | Sequence[float] | float,
    ) -> None:
        """Set leaf ``index`` to ``priority`` and refresh its ancestors, O(log capacity) each.

        Accepts one index and value, or equal-length 1-D arrays (vectorised; with repeated
        indices the last value wins, like sequential updates).

        Raises:
            ValueError: an index outside [0, capacity) (names ``index``), a priority that is
                negative or not finite (names ``priority``), or lengths that differ.
        """
        if np.ndim(index) == 0 and np.ndim(priority) == 0:
            self._update_one(index, priority)
            return
        idx = np.atleast_1d(self._check_indices(index)).ravel()
        pri = np.atleast_1d(np.asarray(priority, dtype=np.float64)).ravel()
        if idx.shape != pri.shape:
            raise ValueError(f"priority: expected {idx.size} values, got {pri.size}")
        check_priorities(pri, "priority")
        if idx.size == 0:
            return
        # keep the last occurrence of each index (sequential-update semantics)
        uniq, first_from_end = np.unique(idx[::-1], return_index=True)
        pri = pri[::-1][first_from_end]
        nodes = uniq + self._leaf0
        self._sum[nodes] = pri
        self._max[nodes] = pri
        for _ in range(self._depth):
            nodes = np.unique(nodes >> 1)
            left = nodes << 1
            self._sum[nodes] = self._sum[left] + self._sum[left + 1]
            self._max[nodes] = np.maximum(self._max[left], self._max[left + 1])

    def _update_one(self, index: Any, priority: Any) -> None:
        # pure-Python path: one push costs ~17 levels of scalar work, far cheaper than numpy
        # call overhead per level
        if isinstance(index, bool) or not isinstance(index, int | np.integer):
            raise ValueError(f"index: expected an int, got {index!r}")
        if not 0 <= index < self._capacity:
            raise ValueError(f"index: must lie in [0, {self._capacity}), got {index}")
        try:
            value = float(priority)
        except (TypeError, ValueError):
            raise ValueError(f"priority: expected a number, got {priority!r}") from None
        if not (math.isfinite(value) and value >= 0.0):
            raise ValueError(f"priority: must be finite and >= 0, got {value}")
        s, m = self._sum, self._max
        node = int(index) + self._leaf0
        s[node] = value
        m[node] = value
        node >>= 1
        while node:
            a, b = 2 * node, 2 * node + 1
            s[node] = s[a] + s[b]
            m[node] = max(m[a], m[b])
            node >>= 1

    def find(self, prefix_sums: np.ndarray | Sequence[float] | float) -> np.ndarray:
        """Leaf indices whose cumulative-priority interval contains each prefix sum (vectorised).

        For v in [0, total) the result is the smallest i with ``cumsum(priorities)[i] > v``, i.e.
        ``np.searchsorted(cumsum, v, side="right")``, so zero-priority leaves are never returned.
        Values >= total (rounding at the top end) give the last positive leaf; values < 0 are
        treated as 0.

        Args:
            prefix_sums: any shape, float.

        Returns:
            int64 array of leaf indices, the shape of ``prefix_sums``.

        Raises:
            ValueError: a prefix sum is not finite, or the total priority is 0.
        """
        v = np.array(prefix_sums, dtype=np.float64)  # a copy: it is consumed below
        shape = v.shape
        v = v.ravel()
        if not np.isfinite(v).all():
            raise ValueError("prefix_sums: must be finite")
        if not self._sum[1] > 0.0:
            raise ValueError("prefix_sums: the tree's total priority is 0, nothing to find")
        np.maximum(v, 0.0, out=v)
        node = np.ones(v.shape, dtype=np.int64)
        for _ in range(self._depth):
            left = node << 1
            left_sum = self._sum[left]
            # going right needs a positive right subtree: this only binds when rounding pushed v
            # to or past the subtree's total, and it keeps the walk on positive leaves
            right = (v >= left_sum) & (self._sum[left + 1] > 0.0)
            v -= np.where(right, left_sum, 0.0)
            node = left + right
        return (node - self._leaf0).reshape(shape)

    def set_all(self, priorities: np.ndarray) -> None:
        """Replace every leaf with ``priorities`` [capacity] and rebuild the tree in O(capacity).

        Raises:
            ValueError: wrong length, or a priority negative or not finite.
        """
        pri = np.asarray(priorities, dtype=np.float64)
        if pri.shape != (self._capacity,):
            raise ValueError(f"priorities: expected shape ({self._capacity},), got {pri.shape}")
        check_priorities(pri, "priorities")
        lo = self._leaf0
        self._sum[:] = 0.0
        self._max[:] = 0.0
        self._sum[lo : lo + self._capacity] = pri
        self._max[lo : lo + self._capacity] = pri
        while lo > 1:
            half = lo >> 1
            self._sum[half:lo] = self._sum[lo : 2 * lo : 2] + self._sum[lo + 1 : 2 * lo : 2]
            self._max[half:lo] = np.maximum(
                self._max[lo : 2 * lo : 2], self._max[lo + 1 : 2 * lo : 2]
            )
            lo = half
