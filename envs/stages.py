"""Super Mario Bros stages: names and level lengths. Standard library only.

Run by: config validation (any process that loads a config), actor processes and evaluation
(stage lists, level lengths for ``progress``).
Owns: the stage grammar (``env.stages``, ``eval.stages``, ``launcher.py eval --stages``), stage
env ids and the per-stage goal x positions. Sampling a stage per episode is
:mod:`envs.curriculum`.

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
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

#: Every Super Mario Bros stage in game order, ``"W-S"``.
ALL_STAGES: Final[tuple[str, ...]] = tuple(f"{w}-{s}" for w in range(1, 9) for s in range(1, 5))

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
