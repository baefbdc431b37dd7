"""Tests for envs/stall.py: stall termination counts agent steps without new ground."""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces

from configs.schema import EnvConfig
from envs.factory import make_env
from envs.stall import StallTermination

NOOP, RIGHT = 0, 1  # SIMPLE_MOVEMENT


class ScriptedX(gymnasium.Env):
    """Reports a scripted ``x_pos`` per step; never ends by itself."""

    observation_space = spaces.Box(0, 1, (1,), np.float32)
    action_space = spaces.Discrete(1)

    def __init__(self, xs: list[int], start: int = 0) -> None:
        self.xs, self.start, self.t = xs, start, 0

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[Any, dict]:
        self.t = 0
        return np.zeros(1, np.float32), {"x_pos": self.start}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        x, self.t = self.xs[self.t], self.t + 1
        return np.zeros(1, np.float32), 1.0, False, False, {"x_pos": x}


def _run(env: gymnasium.Env, steps: int) -> list[tuple[bool, bool]]:
    env.reset()
    ends = []
    for _ in range(steps):
        _, reward, terminated, _, info = env.step(0)
        assert reward == 1.0  # the reward is never changed
        ends.append((terminated, info["stalled"]))
        if terminated:
            break
    return ends


def test_only_new_best_ground_resets_the_count() -> None:
    # up 10, 20; back to 15 and 20 (no new best) for 3 steps: the third ends it
    env = StallTermination(ScriptedX([10, 20, 15, 20, 20, 99]), steps=3)
    assert _run(env, 6) == [(False, False)] * 4 + [(True, True)]


def test_a_restored_start_counts_as_reached() -> None:
    # a first step back at the start's x_pos gains nothing (without a restore it would)
    env = StallTermination(ScriptedX([400, 401], start=400), steps=1)
    assert _run(env, 2) == [(True, True)]


def test_zero_steps_is_an_error_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"env\.stall_steps"):
        StallTermination(ScriptedX([]), steps=0)


def test_standing_still_on_the_real_rom_terminates_after_the_limit_and_walking_does_not() -> None:
    cfg = dataclasses.replace(EnvConfig(), stall_steps=25)
    env = make_env(cfg, seed=0)
    try:
        env.reset()
        for t in range(1, 26):
            _, _, terminated, truncated, info = env.step(NOOP)
            assert terminated == (t == 25) and not truncated
        assert info["episode"]["max_x_pos"] == 40 and not info["episode"]["flag_get"]
        env.reset()
        for _ in range(30):  # walking right gains ground every step until the first Goomba
            _, _, terminated, _, info = env.step(RIGHT)
            assert not terminated
    finally:
        env.close()
