"""Tests for learner.sum_tree: updates, totals and maxima, prefix-sum search, validation."""

from __future__ import annotations

import numpy as np
import pytest

from learner.sum_tree import SumTree


@pytest.mark.parametrize("capacity", [1, 2, 37, 64])
def test_sum_tree_matches_brute_force(capacity: int) -> None:
    rng = np.random.default_rng(capacity)
    tree = SumTree(capacity)
    brute = np.zeros(capacity)
    for step in range(300):
        if step % 3:
            i = int(rng.integers(capacity))
            p = 0.0 if rng.random() < 0.2 else float(rng.exponential())
            tree.update(i, p)
            brute[i] = p
        else:  # vectorised, with repeated indices: the last value wins
            idx = rng.integers(0, capacity, 6)
            pri = rng.exponential(size=6)
            tree.update(idx, pri)
            for i, p in zip(idx, pri):
                brute[i] = p
        assert tree.total == pytest.approx(brute.sum(), rel=1e-12, abs=1e-12)
        assert tree.max == brute.max()
        np.testing.assert_array_equal(tree.priorities, brute)
        if brute.sum() > 0:
            v = rng.uniform(0, brute.sum(), 50)
            np.testing.assert_array_equal(
                tree.find(v), np.searchsorted(np.cumsum(brute), v, side="right")
            )


def test_sum_tree_find_exact_boundaries_skip_zero_leaves() -> None:
    # integer priorities make every prefix sum exact, so boundaries can be probed exactly
    pri = np.array([2.0, 0.0, 3.0, 0.0, 0.0, 1.0, 4.0])
    tree = SumTree(len(pri))
    tree.update(np.arange(len(pri)), pri)
    v = np.array([0.0, 1.999, 2.0, 4.5, 5.0, 6.0, 9.999, 10.0, 1e9])
    got = tree.find(v)
    want = np.searchsorted(np.cumsum(pri), np.minimum(v, 9.999), side="right")
    np.testing.assert_array_equal(got, want)
    assert (pri[got] > 0).all()  # v >= total clamps to the last positive leaf
    assert got[-1] == 6
    tree.set_all(pri[::-1].copy())
    np.testing.assert_array_equal(tree.priorities, pri[::-1])
    assert tree.total == 10.0 and tree.max == 4.0


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_sum_tree_rejects_bad_priorities(bad: float) -> None:
    tree = SumTree(4)
    with pytest.raises(ValueError, match="priority"):
        tree.update(0, bad)
    with pytest.raises(ValueError, match="priority"):
        tree.update(np.array([0, 1]), np.array([1.0, bad]))
    with pytest.raises(ValueError, match="index"):
        tree.update(4, 1.0)
    with pytest.raises(ValueError, match="prefix_sums"):
        tree.find([0.5])  # total is still 0: the failed updates changed nothing
    assert tree.total == 0.0
