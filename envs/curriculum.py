"""Stage sampling for training: uniform or by curriculum, and the wrapper that switches stages.

Run by: actor processes (each Mario env samples its next stage at every episode boundary).
Owns: the uniform / curriculum stage sampler and :class:`StageSwitcher`, the env wrapper that
moves one emulator to another stage between episodes (gym-super-mario-bros 9.x removed its
``RandomStages`` envs, so this replaces them). The stage names are :mod:`envs.stages`.

Curriculum (``env.stage_sampling = "curriculum"``): each env keeps, per stage, the outcomes of
its own last ``env.curriculum_window`` episodes on that stage (no data leaves the env, so each
actor env learns its own weighting) and samples stage s with probability::

    c_s = cleared episodes / episodes in the window   (0 for a stage not played yet)
    w_s = m + (1 - m) * (1 - c_s)                       m = env.curriculum_min_weight
    p_s = w_s / sum_t w_t

so a never-cleared stage weighs 1, an always-cleared one weighs ``m`` (kept above zero so cleared
stages are still revisited and not forgotten), linearly in between. ``uniform`` gives
``p_s = 1 / len(stages)``.

Stage switch cost (measured on the 2-core development machine, one process): the first visit
of a stage by an env cold-boots its emulator into that stage (start-screen skip, 0.15-0.19 s,
once per env and stage); every later switch restores that stage's cached start snapshot, ~23 us
on top of the ordinary ~0.14 ms reset (an agent step costs ~3.8 ms).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any, Final, SupportsFloat

import gymnasium
import numpy as np

#: Stage sampling modes of :class:`StageSampler` (``env.stage_sampling``).
SAMPLING_MODES: Final[tuple[str, ...]] = ("uniform", "curriculum")


def curriculum_weights(clear_rates: Sequence[float], min_weight: float) -> np.ndarray:
    """Unnormalised curriculum weights ``m + (1 - m) (1 - c_s)`` (module docstring).

    Args:
        clear_rates: recent clear rate c_s in [0, 1] per stage.
        min_weight: m in (0, 1], the weight of an always-cleared stage.

    Returns:
        float64 [len(clear_rates)] weights in [m, 1].

    Raises:
        ValueError: a rate outside [0, 1] or ``min_weight`` outside (0, 1].
    """
    rates = np.asarray(clear_rates, dtype=np.float64)
    if rates.size and (rates.min() < 0 or rates.max() > 1):
        raise ValueError(f"clear rates must be in [0, 1], got {rates}")
    if not 0 < min_weight <= 1:
        raise ValueError(f"min_weight must be in (0, 1], got {min_weight}")
    return min_weight + (1.0 - min_weight) * (1.0 - rates)


class StageSampler:
    """Chooses the next stage, uniformly or by curriculum weights from recent clear rates.

    Args:
        stages: the stages to sample from (non-empty, ``"W-S"`` names).
        mode: ``"uniform"`` or ``"curriculum"``.
        window: episodes per stage kept for the clear rate (the most recent ones).
        min_weight: ``m`` of :func:`curriculum_weights`.

    Raises:
        ValueError: empty ``stages``, an unknown ``mode``, ``window < 1`` or a bad
            ``min_weight``.
    """

    def __init__(
        self,
        stages: Sequence[str],
        mode: str = "uniform",
        window: int = 20,
        min_weight: float = 0.1,
    ) -> None:
        if not stages:
            raise ValueError("StageSampler needs at least one stage")
        if mode not in SAMPLING_MODES:
            raise ValueError(f"stage sampling mode must be one of {SAMPLING_MODES}, got {mode!r}")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        curriculum_weights([], min_weight)  # validates min_weight
        self.stages: tuple[str, ...] = tuple(stages)
        self.mode = mode
        self.min_weight = min_weight
        self._outcomes: dict[str, deque[bool]] = {s: deque(maxlen=window) for s in self.stages}

    def record(self, stage: str, cleared: bool) -> None:
        """Add one finished episode's outcome; stages outside the list are ignored."""
        if stage in self._outcomes:
            self._outcomes[stage].append(bool(cleared))

    def counts(self) -> dict[str, int]:
        """Episodes per stage currently in the window (at most ``window`` each)."""
        return {s: len(o) for s, o in self._outcomes.items()}

    def clear_rates(self) -> dict[str, float]:
        """Recent clear rate per stage in [0, 1] (0.0 for a stage with no episode yet)."""
        return {s: (sum(o) / len(o) if o else 0.0) for s, o in self._outcomes.items()}

    def probabilities(self) -> np.ndarray:
        """float64 [len(stages)] sampling probabilities, summing to 1, in ``stages`` order."""
        if self.mode == "uniform":
            return np.full(len(self.stages), 1.0 / len(self.stages))
        weights = curriculum_weights(list(self.clear_rates().values()), self.min_weight)
        return weights / weights.sum()

    def sample(self, rng: np.random.Generator) -> str:
        """Draw the next stage."""
        if len(self.stages) == 1:
            return self.stages[0]
        return self.stages[int(rng.choice(len(self.stages), p=self.probabilities()))]


class StageSwitcher(gymnasium.Wrapper):
    """Moves a single-stage SMB1 env to a sampled stage at every reset (episode boundary).

    Wraps the env made by ``gymnasium.make("SuperMarioBros-W-S-v0")`` directly, below
    ``JoypadSpace`` and the preprocessing, so everything above sees one ordinary env whose
    ``unwrapped`` stays the same nes-py emulator. On ``reset`` it records the finished episode's
    outcome (flag reached at any NES frame; an episode cut by a time limit counts as not
    cleared) in its :class:`StageSampler`, samples the next stage, and, if it differs, loads that
    stage's start snapshot into the emulator (module docstring: switch cost).

    The sampler's RNG is seeded by the ``seed`` of a ``reset`` call (e.g. the first reset of a
    seeded :func:`envs.factory.make_env`), else from fresh entropy.

    Args:
        env: a gym-super-mario-bros SMB1 single-stage env (``unwrapped`` a
            ``SuperMarioBrosEnv`` with a target stage).
        sampler: the stage sampler; its stages must all be SMB1 stages.

    Raises:
        TypeError: ``env.unwrapped`` is not a single-stage ``SuperMarioBrosEnv``.
    """

    def __init__(self, env: gymnasium.Env, sampler: StageSampler) -> None:
        from gym_super_mario_bros import SuperMarioBrosEnv

        super().__init__(env)
        nes = env.unwrapped
        if not isinstance(nes, SuperMarioBrosEnv) or not nes.is_single_stage_env:
            raise TypeError(f"StageSwitcher needs a single-stage SMB1 env, got {type(nes)}")
        self._nes = nes
        self.sampler = sampler
        self._rng = np.random.default_rng()
        self.stage = f"{nes._target_world}-{nes._target_stage}"
        # Start-of-stage emulator snapshots; the constructor left the current stage's in place.
        self._snapshots: dict[str, Any] = {self.stage: nes.dump_state()}
        self._steps = 0
        self._flag = False
        self._record = True

    def skip_record(self) -> None:
        """Leave the episode in progress out of the sampler's clear rates (it did not start at
        the stage's start: :class:`envs.restarts.FrontierRestarts` restored a snapshot)."""
        self._record = False

    def _switch(self, stage: str) -> None:
        from gym_super_mario_bros._roms import decode_target

        nes = self._nes
        world, number = (int(p) for p in stage.split("-"))
        target = decode_target((world, number), False)
        if stage in self._snapshots:
            nes.load_state(self._snapshots[stage])
        else:
            # Boot into the stage exactly as the env's constructor does: with RAM cleared the
            # game's reset handler cold-boots (a warm boot keeps RAM and skips the title
            # screen the stage is written during). Measured bit-identical (screen, RAM,
            # rewards, flags over 1500 random frames) to a freshly made env of that stage.
            # Snapshots stay within this emulator: one dumped by another emulator crashes
            # nes-py 9 once that emulator is closed.
            nes.ram[:] = 0
            nes._env.reset()
            nes._target_world, nes._target_stage, nes._target_area = target
            nes._skip_start_screen()
            self._snapshots[stage] = nes.dump_state()
        # nes-py resets by restoring its one backup slot, so the stage's start becomes it. The
        # target fields feed the env's single-stage checks and task metadata.
        nes._target_world, nes._target_stage, nes._target_area = target
        nes._backup()
        self.stage = stage

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Record the last episode, move to the next sampled stage, reset there."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        if self._steps > 0 and self._record:
            self.sampler.record(self.stage, self._flag)
        self._steps, self._flag, self._record = 0, False, True
        stage = self.sampler.sample(self._rng)
        if stage != self.stage:
            self._switch(stage)
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step one NES frame, noting whether the flag was reached."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._steps += 1
        self._flag = self._flag or bool(info.get("flag_get", False))
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        """Drop the cached snapshots and close the inner env."""
        self._snapshots.clear()
        super().close()
