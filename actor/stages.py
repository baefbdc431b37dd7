"""Super Mario Bros stages: names, level lengths, and stage sampling for training.

Run by: actor processes (each Mario env samples its next stage at every episode boundary),
evaluation (stage lists, level lengths for ``progress``) and config validation.
Owns: the stage grammar (``env.stages``, ``eval.stages``, ``launcher.py eval --stages``), the
per-stage goal x positions, the uniform / curriculum stage sampler and :class:`StageSwitcher`,
the env wrapper that moves one emulator to another stage between episodes (gym-super-mario-bros
9.x removed its ``RandomStages`` envs, so this replaces them).

Stage grammar (comma-separated, or one item per list entry in TOML)::

    1-1            one stage, world 1-8, stage 1-4
    1-1..2-4       every stage from 1-1 to 2-4 in game order (inclusive)
    world:1,2      every stage of worlds 1 and 2 (bare numbers after world: add worlds)
    all            all 32 stages

Level lengths (:data:`STAGE_GOAL_X`): the x position in pixels, in the same coordinates as
``info["x_pos"]`` (page * 256 + x), of each stage's goal object, read from the level data of
the ROM shipped in gym-super-mario-bros by :func:`derive_goal_x` (the table is that function's
output, and a test checks they agree). The goal is the flagpole (stages 1-3) or Bowser's bridge
axe (castles, x-4). The ROM tables used are those named in the SMB disassembly (doppelganger's
SMBDIS.ASM): ``WorldAddrOffsets``/``AreaAddrOffsets`` (area of each stage),
``AreaDataHOffsets``/``AreaDataAddrLow/High`` (area data), ``EnemyAddrHOffsets``/
``EnemyDataAddrLow/High`` (enemy data with the pipe-exit area pointers). Each area object is
two bytes: column in the first byte's high nybble, row in its low nybble, a page-advance flag
in bit 7 of the second; row 13 holds page skips (bit 6 clear) and special objects
(``0x41`` flagpole, ``0x42`` axe). 1-2, 2-2, 4-2 and 7-2 have no goal in their main area: their
exit pipe leads to area ``$25`` (the end of 1-1) from page 11, whose flagpole is at x 3168;
there ``x_pos`` restarts in that area, and the main areas' warp zones lie at similar x, so
``progress`` is only indicative on those four stages. For comparison, Mario grabs the 1-1 pole
at ``x_pos`` about 3160.

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

import re
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, SupportsFloat

import gymnasium
import numpy as np

#: Every Super Mario Bros stage in game order, ``"W-S"``.
ALL_STAGES: Final[tuple[str, ...]] = tuple(f"{w}-{s}" for w in range(1, 9) for s in range(1, 5))

#: Stage sampling modes of :class:`StageSampler` (``env.stage_sampling``).
SAMPLING_MODES: Final[tuple[str, ...]] = ("uniform", "curriculum")

#: x position (pixels, ``info["x_pos"]`` coordinates) of each stage's flagpole or axe; see the
#: module docstring for how :func:`derive_goal_x` reads it from the ROM.
STAGE_GOAL_X: Final[Mapping[str, int]] = {
    "1-1": 3168, "1-2": 3168, "1-3": 2432, "1-4": 2256,
    "2-1": 3200, "2-2": 3168, "2-3": 3600, "2-4": 2256,
    "3-1": 3200, "3-2": 3344, "3-3": 2416, "3-4": 2256,
    "4-1": 3600, "4-2": 3168, "4-3": 2352, "4-4": 2768,
    "5-1": 3184, "5-2": 3200, "5-3": 2432, "5-4": 2256,
    "6-1": 2976, "6-2": 3456, "6-3": 2672, "6-4": 2256,
    "7-1": 2864, "7-2": 3168, "7-3": 3600, "7-4": 3280,
    "8-1": 6016, "8-2": 3456, "8-3": 3424, "8-4": 4816,
}  # fmt: skip

_STAGE = re.compile(r"^([1-8])-([1-4])$")
_WORLD = re.compile(r"^world:([1-8])$")
_NUMBER = re.compile(r"^[1-8]$")
_STAGE_ENV_ID = re.compile(r"^SuperMarioBros-([1-8])-([1-4])-v(\d+)$")

_GRAMMAR = "W-S (world 1-8, stage 1-4), a range W-S..W-S, world:W[,W...] or all"


def parse_stages(spec: str | Sequence[str], option: str = "stages") -> tuple[str, ...]:
    """Expand a stage spec into stage names, in the order given, without duplicates.

    Args:
        spec: a comma-separated string (``"1-1,1-2"``, ``"world:1,2"``, ``"1-1..1-4"``,
            ``"all"``) or a sequence of such strings (a TOML list).
        option: the option name used in error messages (e.g. ``env.stages``, ``--stages``).

    Returns:
        A tuple of ``"W-S"`` names (may be empty for an empty spec).

    Raises:
        ValueError: naming ``option`` and the bad item, for anything outside the grammar.
    """
    items = [spec] if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"{option}: expected stage names as strings, got {item!r}")
        in_world_list = False
        for raw in item.split(","):
            token = raw.strip().lower()
            if not token:
                continue
            if token == "all":
                found, in_world_list = list(ALL_STAGES), False
            elif m := _WORLD.match(token):
                found, in_world_list = _world(int(m.group(1))), True
            elif in_world_list and _NUMBER.match(token):
                found = _world(int(token))
            elif ".." in token:
                found, in_world_list = _range(token, option), False
            elif _STAGE.match(token):
                found, in_world_list = [token], False
            else:
                raise ValueError(f"{option}: unknown stage {raw.strip()!r}; expected {_GRAMMAR}")
            out.extend(s for s in found if s not in out)
    return tuple(out)


def _world(world: int) -> list[str]:
    return [f"{world}-{s}" for s in range(1, 5)]


def _range(token: str, option: str) -> list[str]:
    first, _, last = token.partition("..")
    first, last = first.strip(), last.strip()
    if not (_STAGE.match(first) and _STAGE.match(last)):
        raise ValueError(f"{option}: bad stage range {token!r}; expected W-S..W-S, e.g. 1-1..2-4")
    i, j = ALL_STAGES.index(first), ALL_STAGES.index(last)
    if i > j:
        raise ValueError(f"{option}: stage range {token!r} runs backwards")
    return list(ALL_STAGES[i : j + 1])


def stage_env_id(stage: str, version: int = 0) -> str:
    """``"1-2"`` -> ``"SuperMarioBros-1-2-v0"``.

    Raises:
        ValueError: ``stage`` is not a ``"W-S"`` stage name.
    """
    if not _STAGE.match(stage):
        raise ValueError(f"not a stage name: {stage!r}; expected W-S, e.g. 1-1")
    return f"SuperMarioBros-{stage}-v{version}"


def stage_of_env_id(env_id: str) -> str | None:
    """``"SuperMarioBros-1-2-v0"`` -> ``"1-2"``; None for any other id (full game, other envs)."""
    m = _STAGE_ENV_ID.match(env_id)
    return f"{m.group(1)}-{m.group(2)}" if m else None


def progress(stage: str, max_x_pos: int, flag_get: bool) -> float:
    """Fraction of the level reached: 1.0 on a clear, else ``max_x_pos / goal x`` capped at 1.

    Args:
        stage: ``"W-S"``; any other name (a non-Mario env id) gives 0.0.
        max_x_pos: the episode's largest ``x_pos`` in pixels.
        flag_get: whether the flag (or axe) was reached.
    """
    if flag_get:
        return 1.0
    goal = STAGE_GOAL_X.get(stage)
    if goal is None:
        return 0.0
    return min(1.0, max(0, max_x_pos) / goal)


# ----------------------------------------------------------------------------- ROM level data

# PRG addresses of the tables in the SMB1 ROM (SMBDIS.ASM names); found by content below.
_WORLD_ADDR_OFFSETS = bytes([0x00, 0x05, 0x0A, 0x0E, 0x13, 0x17, 0x1B, 0x20])
_ENEMY_ADDR_H_OFFSETS = bytes([0x1F, 0x06, 0x1C, 0x00])
_AREA_DATA_H_OFFSETS = bytes([0x00, 0x03, 0x19, 0x1C])
_FLAGPOLE, _AXE = 0x41, 0x42


def derive_goal_x(rom_path: str | Path | None = None) -> dict[str, int]:
    """Read each stage's goal x position (flagpole or axe) from the SMB1 ROM's level data.

    Args:
        rom_path: an iNES SMB1 ROM; default: the one shipped in gym-super-mario-bros.

    Returns:
        ``{"W-S": x in pixels}`` for all 32 stages (what :data:`STAGE_GOAL_X` holds).

    Raises:
        ValueError: the ROM's tables are not where SMB1 keeps them, or a stage has no goal.
    """
    if rom_path is None:
        from gym_super_mario_bros._roms import smb1_rom_path

        rom_path = smb1_rom_path()
    data = Path(rom_path).read_bytes()
    prg = data[16 : 16 + 0x8000]  # iNES header, then 32 KiB PRG ROM mapped at $8000

    def find(table: bytes) -> int:
        at = prg.find(table)
        if at < 0 or prg.count(table) != 1:
            raise ValueError(f"{rom_path}: SMB1 level table {table.hex()} not found once")
        return at

    world_offsets = find(_WORLD_ADDR_OFFSETS)
    area_offsets = world_offsets + len(_WORLD_ADDR_OFFSETS)
    enemy_h = find(_ENEMY_ADDR_H_OFFSETS)
    area_h = find(_AREA_DATA_H_OFFSETS)
    n_enemy = (area_h - enemy_h - 4) // 2  # low and high pointer bytes follow the offsets
    n_area = n_enemy  # one area-data pointer per enemy-data pointer (34 areas)

    def pointer(h_offsets: int, n: int, area: int) -> int:
        index = prg[h_offsets + ((area >> 5) & 3)] + (area & 0x1F)
        low, high = prg[h_offsets + 4 + index], prg[h_offsets + 4 + n + index]
        return (high << 8 | low) - 0x8000

    def goals(area: int) -> list[int]:
        at, page, found = pointer(area_h, n_area, area) + 2, 0, []  # skip the 2-byte header
        while prg[at] != 0xFD:
            first, second = prg[at], prg[at + 1]
            at += 2
            if second & 0x80:
                page += 1
            row, column = first & 0x0F, first >> 4
            if row == 0x0D and not second & 0x40:
                if not second & 0x80:
                    page = second & 0x1F  # page skip
                continue
            if row == 0x0D and (second & 0x7F) in (_FLAGPOLE, _AXE):
                found.append(page * 256 + column * 16)
        return found

    def exits(area: int, world: int) -> list[int]:
        """Areas that this area's pipe pointers lead to in ``world`` (1-based)."""
        at, found = pointer(enemy_h, n_enemy, area), []
        while prg[at] != 0xFF:
            first = prg[at]
            if (first & 0x0F) == 0x0E:  # area pointer: area, then world (3 MSB) and page
                if prg[at + 2] >> 5 == world - 1:
                    found.append(prg[at + 1] & 0x7F)
                at += 3
            else:
                at += 2
        return found

    table: dict[str, int] = {}
    for stage in ALL_STAGES:
        world, number = (int(p) for p in stage.split("-"))
        # Worlds 1, 2, 4 and 7 have an extra autowalk area before stage 2 (as decode_target).
        index = number - 1 + (1 if world in (1, 2, 4, 7) and number >= 2 else 0)
        area = prg[area_offsets + prg[world_offsets + world - 1] + index]
        found = goals(area)
        if not found:
            found = [x for dest in exits(area, world) for x in goals(dest)]
        if not found:
            raise ValueError(f"{rom_path}: no flagpole or axe found for stage {stage}")
        table[stage] = found[-1]
    return table


# ----------------------------------------------------------------------------- sampling


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
    seeded :func:`actor.env.make_env`), else from fresh entropy.

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
        the stage's start: :class:`actor.restarts.FrontierRestarts` restored a snapshot)."""
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
