"""What an env's observations and actions look like, without stepping it.

Run by: every role that sizes a model or a trajectory layout (actor, learner, evaluation,
benchmarks).
Owns: :func:`observation_spec` and :func:`num_actions`. Mario's come from the config alone (no
emulator is built); any other Gymnasium id is built once per config and cached, since
Gymnasium's registry does not record spaces.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np

from envs.factory import make_env, mario_action_set

if TYPE_CHECKING:  # duck-typed at run time: envs import no config
    from configs.schema import EnvConfig


@functools.cache
def _built_spec(cfg: EnvConfig) -> tuple[tuple[int, ...], np.dtype, int]:
    env = make_env(cfg)
    try:
        shape = tuple(int(d) for d in env.observation_space.shape)
        return shape, np.dtype(env.observation_space.dtype), int(env.action_space.n)
    finally:
        env.close()


def num_actions(cfg: EnvConfig) -> int:
    """Number of discrete actions of ``make_env(cfg)``.

    Mario: the size of the action set (right_only 5, simple 7, complex 12), without building an
    emulator. Other ids: built once per env config and cached.

    Raises:
        ValueError: as :func:`make_env`.
    """
    if cfg.is_mario:
        return len(mario_action_set(cfg))
    return _built_spec(cfg)[2]


def observation_spec(cfg: EnvConfig) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of one observation of ``make_env(cfg)``.

    Mario: ``((frame_stack, resolution, resolution), uint8)`` without building an emulator.
    Other ids: ``((n,), float32)`` from the env, built once per env config and cached.

    Raises:
        ValueError: as :func:`make_env`.
    """
    if cfg.is_mario:
        return (cfg.frame_stack, cfg.resolution, cfg.resolution), np.dtype(np.uint8)
    shape, dtype, _ = _built_spec(cfg)
    return shape, dtype
