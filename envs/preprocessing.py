"""Super Mario Bros frame preprocessing: frame skip, max-pool, grayscale, resize, frame stack.

Run by: actor processes and evaluation, inside the Mario envs that :func:`envs.factory.make_env`
builds (:class:`NESFrameTap` only when a frame hook is given, e.g. for evaluation videos);
benchmarks and tests.
Owns: the wrappers that turn the NES screen into the agent's observation, in two
interchangeable forms (:class:`FusedMarioPreprocessing`, :func:`gymnasium_mario_preprocessing`),
the grayscale formula they share (:func:`nes_luma`), and the tap that shows every
full-resolution NES frame to a hook (:class:`NESFrameTap`). Which of them an env gets, and
where in the wrapper stack, is decided by :mod:`envs.factory`.

Preprocessing: skip ``frame_skip`` NES frames (rewards summed), max-pool the last two,
grayscale, resize to a ``resolution`` square (cv2.INTER_AREA), stack ``frame_stack`` frames
-> obs (frame_stack, resolution, resolution) uint8, oldest frame first.

The preprocessing stage exists in two interchangeable forms that give bit-identical
observations, rewards, flags and infos (``tests/envs/test_env.py`` checks this):

* ``"gymnasium"``: a chain of Gymnasium wrappers: ``TransformObservation`` (grayscale),
  :class:`MaxAndSkipLastTwo` (a ``MaxAndSkipObservation`` subclass), ``ResizeObservation``,
  ``FrameStackObservation(padding_type="reset")``.
* ``"fused"``: :class:`FusedMarioPreprocessing`, one wrapper that grabs only the two NES frames it
  pools through nes-py's native grayscale copy into preallocated buffers, max-pools in place,
  resizes straight into a ring buffer and copies the stack out once.

Grayscale is luma ``(77 R + 150 G + 29 B) >> 8``, the formula of nes-py's native copy, and it is
applied *before* max-pooling (max of two gray frames, not gray of the channel-wise RGB max), since
the fused form only ever sees gray frames. Gymnasium's ``GrayscaleObservation`` uses other
coefficients (0.2125, 0.7154, 0.0721, float64), so the chain grays with the native formula in
numpy instead. With ``frame_skip == 1`` nothing is pooled.

On a step whose episode ends before its last NES frame (death or flag mid-skip) the observation
is that final NES frame alone: Gymnasium's ``MaxAndSkipObservation`` would pool buffer slots left
over from the previous step there. Such a terminal observation is never bootstrapped from.

Measured (``bench/env_preprocessing.py``: one pinned core of a shared 2-core machine, uniform
random SIMPLE_MOVEMENT actions on 1-1, frame_skip 4, 84x84, stack 4, 20 CPU-s per variant in
interleaved rounds, env frames per CPU second; range over 3 runs):

* bare ``JoypadSpace`` env.step, no preprocessing: 1018-1083 NES frames/s (reference)
* gymnasium chain: 743-783 env frames/s
* fused:           928-1023 env frames/s, +25% to +31% over the chain, so ``"fused"`` is the
  default; it costs ~5% over bare NES stepping.

The chain's cost is its per-NES-frame numpy grayscale (~280 us per frame, vs ~23 us for one
native copy, which the fused form makes only for the two pooled frames). Building the env's 42-key
``info`` measured ~14 us per NES frame (~1.5% of an ~850 us frame), so the fused wrapper still
calls the public ``env.step`` every frame rather than bypassing it through nes-py internals.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, SupportsFloat

import cv2
import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.wrappers import (
    FrameStackObservation,
    MaxAndSkipObservation,
    ResizeObservation,
    TransformObservation,
)

#: NES screen size (height, width) in pixels.
NES_SCREEN: Final[tuple[int, int]] = (240, 256)

FrameHook = Callable[[np.ndarray], None]
"""Receives one NES frame: a (240, 256, 3) uint8 RGB view of the emulator screen, valid only
during the call (copy it to keep it)."""


def nes_luma(rgb: np.ndarray) -> np.ndarray:
    """Grayscale an RGB frame with nes-py's native luma formula ``(77 R + 150 G + 29 B) >> 8``.

    Args:
        rgb: (H, W, 3) uint8 RGB image (any strides, e.g. the NES screen view).

    Returns:
        (H, W) uint8, bit-identical to ``NESEnv.observation(mode="grayscale")`` of that screen.
    """
    # uint16 is enough: the weighted sum is at most 256 * 255 = 65280.
    wide = rgb.astype(np.uint16)
    luma = wide[..., 0] * 77
    luma += wide[..., 1] * 150
    luma += wide[..., 2] * 29
    luma >>= 8
    return luma.astype(np.uint8)


class MaxAndSkipLastTwo(MaxAndSkipObservation):
    """Gymnasium's ``MaxAndSkipObservation`` with a correct observation on early episode ends.

    Repeats the action ``skip`` times (stopping at ``terminated or truncated``), sums the rewards
    as floats and returns the element-wise max of the last two observations, with the info,
    ``terminated`` and ``truncated`` of the last inner step. If the episode ends before the
    ``skip``-th inner step, the observation is that last inner observation alone (the parent
    class would pool slots left over from the previous step).

    Raises:
        ValueError: if ``skip < 2`` (from the parent class).
    """

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step ``skip`` inner steps; see the class docstring."""
        total_reward = 0.0
        terminated = truncated = False
        info: dict[str, Any] = {}
        obs: Any = None
        for i in range(self._skip):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total_reward += float(reward)
            if terminated or truncated:
                if i < self._skip - 1:
                    return np.array(obs), total_reward, terminated, truncated, info
                break
            if i == self._skip - 2:
                self._obs_buffer[0] = obs
        self._obs_buffer[1] = obs
        return np.max(self._obs_buffer, axis=0), total_reward, terminated, truncated, info


class FusedMarioPreprocessing(gymnasium.Wrapper):
    """Frame skip + max-pool + grayscale + resize + frame stack for a nes-py env, in one wrapper.

    Equivalent (bit-identical observations, rewards, flags, infos) to the chain
    ``TransformObservation(nes_luma)`` -> :class:`MaxAndSkipLastTwo` -> ``ResizeObservation`` ->
    ``FrameStackObservation(padding_type="reset")``, but it grayscales only the two NES frames it
    pools, with nes-py's native copy into preallocated buffers, pools in place and resizes
    directly into a doubled ring buffer, so each step allocates only the returned stack.

    Observation: (frame_stack, resolution, resolution) uint8 in [0, 255], oldest frame first; at
    reset every slot holds the reset frame. Reward: the float sum of the inner rewards. Info,
    ``terminated`` and ``truncated``: those of the last NES frame stepped.

    Args:
        env: an env whose ``unwrapped`` is a nes-py ``NESEnv`` (e.g. ``JoypadSpace(SMB env)``).
        frame_skip: NES frames per agent step (>= 1).
        resolution: side of the square output frame in pixels (>= 1).
        frame_stack: frames per observation (>= 1).

    Raises:
        TypeError: if ``env.unwrapped`` is not a nes-py ``NESEnv``.
        ValueError: if a size argument is < 1.
    """

    def __init__(
        self, env: gymnasium.Env, *, frame_skip: int, resolution: int, frame_stack: int
    ) -> None:
        from nes_py.nes_env import OBSERVATION_MODE_GRAYSCALE, NESEnv

        super().__init__(env)
        if not isinstance(env.unwrapped, NESEnv):
            raise TypeError(f"expected a nes-py NESEnv underneath, got {type(env.unwrapped)}")
        for name, value in (
            ("frame_skip", frame_skip),
            ("resolution", resolution),
            ("frame_stack", frame_stack),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self._nes = env.unwrapped
        self._gray_mode = OBSERVATION_MODE_GRAYSCALE
        self._skip = frame_skip
        self._size = (resolution, resolution)
        self._stack = frame_stack
        # _gray[0]: NES frame skip-2 of the step, _gray[1]: the last one; _pooled: their max.
        self._gray = np.empty((2, *NES_SCREEN), dtype=np.uint8)
        self._pooled = np.empty(NES_SCREEN, dtype=np.uint8)
        # Each frame is written at slots h and h + stack, so _ring[h + 1 : h + 1 + stack] is
        # always the whole stack, oldest first, as one contiguous block (no shifting).
        self._ring = np.empty((2 * frame_stack, resolution, resolution), dtype=np.uint8)
        self._head = 0
        self.observation_space = spaces.Box(
            low=0, high=255, shape=(frame_stack, resolution, resolution), dtype=np.uint8
        )

    def _grab(self, slot: int) -> np.ndarray:
        # Native luma copy of the emulator's current screen; no RGB array is materialised.
        return self._nes.observation(mode=self._gray_mode, output=self._gray[slot])

    def _push(self, frame: np.ndarray) -> np.ndarray:
        h = self._head
        cv2.resize(frame, self._size, dst=self._ring[h], interpolation=cv2.INTER_AREA)
        self._ring[h + self._stack] = self._ring[h]
        self._head = (h + 1) % self._stack
        # Copy: the ring is overwritten by later steps, callers may keep the observation.
        return self._ring[h + 1 : h + 1 + self._stack].copy()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the inner env; the returned stack holds the reset frame in every slot."""
        _, info = self.env.reset(seed=seed, options=options)
        frame = self._ring[0]
        cv2.resize(self._grab(1), self._size, dst=frame, interpolation=cv2.INTER_AREA)
        self._ring[1:] = frame
        self._head = 0
        return self._ring[1 : 1 + self._stack].copy(), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Step ``frame_skip`` NES frames (fewer if the episode ends); see the class docstring."""
        total_reward = 0.0
        terminated = truncated = False
        info: dict[str, Any] = {}
        last = self._skip - 1
        for i in range(self._skip):
            _, reward, terminated, truncated, info = self.env.step(action)
            total_reward += float(reward)
            if terminated or truncated:
                last = i
                break
            if i == self._skip - 2:
                self._grab(0)
        if last == self._skip - 1 and self._skip > 1:
            frame = np.maximum(self._gray[0], self._grab(1), out=self._pooled)
        else:
            # frame_skip 1, or the episode ended early: the final frame alone.
            frame = self._grab(1)
        return self._push(frame), total_reward, terminated, truncated, info


def gymnasium_mario_preprocessing(
    env: gymnasium.Env, *, frame_skip: int, resolution: int, frame_stack: int
) -> gymnasium.Env:
    """Wrap a nes-py env in the Gymnasium-wrapper preprocessing chain.

    Equivalent to :class:`FusedMarioPreprocessing` (same observations, space, rewards, flags and
    infos); kept as the readable reference and for comparison.

    Args:
        env: an env with (240, 256, 3) uint8 RGB observations (e.g. ``JoypadSpace(SMB env)``).
        frame_skip, resolution, frame_stack: as for :class:`FusedMarioPreprocessing`.

    Returns:
        The wrapped env; observation (frame_stack, resolution, resolution) uint8.
    """
    env = TransformObservation(
        env,
        nes_luma,
        spaces.Box(low=0, high=255, shape=NES_SCREEN, dtype=np.uint8),
    )
    if frame_skip > 1:
        env = MaxAndSkipLastTwo(env, skip=frame_skip)
    env = ResizeObservation(env, (resolution, resolution))
    return FrameStackObservation(env, frame_stack, padding_type="reset")


class NESFrameTap(gymnasium.Wrapper):
    """Pass every NES frame the env shows to ``hook``, at full resolution, before preprocessing.

    Sits directly above the nes-py env (below ``JoypadSpace`` and the frame skip), so it sees
    the reset screen and the screen after every emulated step: 60 frames per second of game
    time, ``frame_skip`` per agent step (fewer on the step that ends an episode). Frames the
    env itself fast-forwards through (death animations, the black screen between areas) are
    never shown to anyone, so they are not here either.

    Args:
        env: an env whose ``unwrapped`` is a nes-py ``NESEnv``.
        hook: receives a (240, 256, 3) uint8 RGB view of the screen; copy to keep it.
    """

    def __init__(self, env: gymnasium.Env, hook: FrameHook) -> None:
        super().__init__(env)
        self._hook = hook

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset the inner env and show its first frame."""
        obs, info = self.env.reset(seed=seed, options=options)
        self._hook(self.env.unwrapped.screen)
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step one NES frame and show it."""
        out = self.env.step(action)
        self._hook(self.env.unwrapped.screen)
        return out
