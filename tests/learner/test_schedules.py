"""Schedules: learning-rate warm-up/cosine values at key points, entropy ramp, budget in updates."""

from __future__ import annotations

import itertools
import math

import pytest

from learner import schedules


def test_total_updates_rounds_the_budget_up() -> None:
    assert schedules.total_updates(80, 8) == 10
    assert schedules.total_updates(81, 8) == 11
    assert schedules.total_updates(1, 8) == 1
    with pytest.raises(ValueError, match="frames_per_update"):
        schedules.total_updates(80, 0)


def test_constant_schedule_with_and_without_warmup() -> None:
    assert [schedules.lr_factor(n, 10) for n in (0, 5, 10, 50)] == [1.0, 1.0, 1.0, 1.0]
    # the first update already moves (1/W), update W-1 reaches the full rate
    assert [schedules.lr_factor(n, 10, warmup_updates=4) for n in range(6)] == [
        0.25, 0.5, 0.75, 1.0, 1.0, 1.0,
    ]  # fmt: skip


def test_cosine_schedule_key_points() -> None:
    def f(n: float) -> float:
        return schedules.lr_factor(n, 12, "cosine", warmup_updates=2, min_lr_ratio=0.1)

    assert f(0) == pytest.approx(0.5)  # warm-up
    assert f(1) == pytest.approx(1.0)
    assert f(2) == pytest.approx(1.0)  # decay starts after the warm-up
    assert f(7) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way through the decay
    assert f(2 + 10 / 3) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 3)))
    assert f(12) == pytest.approx(0.1)  # end of the budget: the floor
    assert f(1000) == pytest.approx(0.1)  # past the budget: stays at the floor
    # decreasing after the warm-up
    values = [f(n) for n in range(2, 13)]
    assert all(a > b for a, b in itertools.pairwise(values))
    # without warm-up it starts at 1 and ends at min_lr_ratio = 0
    assert schedules.lr_factor(0, 10, "cosine") == 1.0
    assert schedules.lr_factor(10, 10, "cosine") == pytest.approx(0.0)


def test_warmup_longer_than_the_budget_ends_at_the_floor() -> None:
    assert schedules.lr_factor(4, 3, "cosine", warmup_updates=5, min_lr_ratio=0.2) == 1.0
    assert schedules.lr_factor(5, 3, "cosine", warmup_updates=5, min_lr_ratio=0.2) == 0.2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"schedule": "linear"}, "schedule"),
        ({"warmup_updates": -1}, "warmup_updates"),
        ({"min_lr_ratio": 1.5}, "min_lr_ratio"),
    ],
)
def test_lr_factor_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        schedules.lr_factor(0, 10, **kwargs)


def test_entropy_cost_is_linear_and_constant_by_default() -> None:
    assert [schedules.entropy_cost(n, 4, 0.1, 0.0) for n in range(6)] == pytest.approx(
        [0.1, 0.075, 0.05, 0.025, 0.0, 0.0]
    )
    assert [schedules.entropy_cost(n, 4, 0.01, -1.0) for n in (0, 2, 9)] == [0.01] * 3
    assert schedules.linear(1.0, 3.0, 0.5) == 2.0
    with pytest.raises(ValueError, match="progress"):
        schedules.linear(0.0, 1.0, math.nan)
