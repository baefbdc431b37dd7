"""Frontier restarts: start some Mario episodes from emulator snapshots along the agent's own path.

Run by: actor processes (inside each Mario env, below the frame skip, so it sees every NES
frame). Owns: the per-env archive of emulator snapshots, when a snapshot is taken and kept,
which episodes start from one, and marking those episodes ``restored`` so that they are counted
apart and never enter the reported training figures (flag rate, x position, the curriculum's
clear rates).

Why: on 1-1 the agent's episodes end at a few hard places (the first Goomba at x ~300, the pits
past x ~1,400). Every true-start episode must survive everything before a hard place to practise
it once, so the far parts of a level get few samples and learning them is slow and seed-dependent.
Starting a fraction of episodes from states the agent itself reached gives the far parts samples
at once. This is the restore of Go-Explore (Ecoffet et al. 2021, "First return, then explore",
Nature 590: an archive of cells, return to a cell by restoring the emulator, explore from it) and
the idea of Backplay (Resnick et al. 2018: start episodes from states along a trajectory, so the
hard late parts are practised without the early ones). Unlike Backplay no demonstration is used:
the archive holds only the agent's own states, so the method needs nothing but the emulator's
``dump_state`` / ``load_state`` (nes-py 9 ``NESEnv``).

Archive (per env, per stage; no data leaves the env, as with the stage curriculum): the level is
cut into cells of ``spacing`` pixels of ``x_pos``. The first time an episode reaches a new cell
(alive, not dying, flag not reached) the emulator state is dumped into a pending list; it enters
the archive only once Mario has survived ``delay_frames`` more NES frames, or the episode ended
without a death (flag or time limit), so states that are already doomed (mid-fall into a pit, an
unavoidable Goomba) never become restart points. Each cell keeps its ``per_cell`` newest
snapshots (first in, first out), so the archive follows the current policy's states and the
frontier (the furthest cell) grows as restored episodes get further.

Restarts: at each reset, with probability ``fraction`` and when the current stage's archive is
not empty, a cell is drawn uniformly from the archive (so every part of the level reached so far
gets practice, the frontier included), then one of its snapshots uniformly, and the episode
starts from it. The reset ``info`` carries ``restored`` (bool) and ``start_x_pos`` (int, pixels).

Cost (measured on the 2-core development machine, nes-py 9): ``dump_state`` ~21 us and
``load_state`` ~35 us, against ~0.9 ms per NES frame of emulation; a snapshot is taken at most
once per ``spacing`` pixels of new ground.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, SupportsFloat

import gymnasium
import numpy as np


@dataclass(frozen=True)
class Snapshot:
    """One restart point: an opaque nes-py emulator state and where it was taken.

    Attributes:
        state: ``NESEnv.dump_state()`` of the env that took it (valid in that emulator only).
        stage: ``"W-S"``.
        x_pos: Mario's ``info["x_pos"]`` in pixels when it was taken.
    """

    state: Any
    stage: str
    x_pos: int


class FrontierArchive:
    """Snapshots per (stage, cell of ``spacing`` pixels), the newest ``per_cell`` of each.

    Args:
        spacing: cell width in pixels of ``x_pos`` (>= 1).
        per_cell: snapshots kept per cell (>= 1), first in first out.

    Raises:
        ValueError: ``spacing`` or ``per_cell`` < 1.
    """

    def __init__(self, spacing: int, per_cell: int) -> None:
        if spacing < 1 or per_cell < 1:
            raise ValueError(f"spacing and per_cell must be >= 1, got {spacing}, {per_cell}")
        self.spacing = spacing
        self.per_cell = per_cell
        self._cells: dict[str, dict[int, deque[Snapshot]]] = {}

    def cell_of(self, x_pos: int) -> int:
        """The cell index of an ``x_pos`` (pixels)."""
        return max(0, int(x_pos)) // self.spacing

    def add(self, snapshot: Snapshot) -> None:
        """Keep ``snapshot`` in its cell, dropping that cell's oldest beyond ``per_cell``."""
        cells = self._cells.setdefault(snapshot.stage, {})
        cell = cells.setdefault(self.cell_of(snapshot.x_pos), deque(maxlen=self.per_cell))
        cell.append(snapshot)

    def cells(self, stage: str) -> list[int]:
        """The archived cell indices of ``stage``, ascending."""
        return sorted(self._cells.get(stage, {}))

    def frontier_x(self, stage: str) -> int:
        """The largest archived ``x_pos`` of ``stage`` in pixels (0 when none)."""
        cells = self._cells.get(stage, {})
        return max((s.x_pos for cell in cells.values() for s in cell), default=0)

    def __len__(self) -> int:
        return sum(len(c) for cells in self._cells.values() for c in cells.values())

    def sample(self, stage: str, rng: np.random.Generator) -> Snapshot | None:
        """A cell of ``stage`` uniformly, then one of its snapshots uniformly; None if empty."""
        cells = self.cells(stage)
        if not cells:
            return None
        cell = self._cells[stage][cells[int(rng.integers(len(cells)))]]
        return cell[int(rng.integers(len(cell)))]

    def clear(self) -> None:
        """Drop every snapshot."""
        self._cells.clear()


class FrontierRestarts(gymnasium.Wrapper):
    """Starts a fraction of episodes from archived snapshots (see the module docstring).

    Wraps the NES-level Mario env (one NES frame per step, ``unwrapped`` a nes-py
    ``SuperMarioBrosEnv``), above :class:`envs.curriculum.StageSwitcher` when there is one, so a
    restart happens on the stage the switcher chose. Observations are the NES screen, unchanged.

    Args:
        env: the NES-level env; its step info must carry ``x_pos``, ``flag_get``, ``is_dying``,
            ``is_dead``, ``world`` and ``stage`` (gym-super-mario-bros 9.x).
        fraction: probability in [0, 1) that a reset starts from a snapshot.
        spacing: archive cell width in pixels.
        per_cell: snapshots kept per cell.
        delay_frames: NES frames Mario must survive after a snapshot before it is kept.
        on_restore: called with no argument after each restore (the stage switcher's
            :meth:`~envs.curriculum.StageSwitcher.skip_record`, so restored episodes stay out of
            the curriculum's clear rates), or None.

    Raises:
        ValueError: ``fraction`` outside [0, 1), ``delay_frames`` < 0, or as
            :class:`FrontierArchive`.
    """

    def __init__(
        self,
        env: gymnasium.Env,
        *,
        fraction: float,
        spacing: int,
        per_cell: int,
        delay_frames: int,
        on_restore: Any = None,
    ) -> None:
        super().__init__(env)
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"env.restart_fraction: must be in [0, 1), got {fraction}")
        if delay_frames < 0:
            raise ValueError(f"env.restart_delay_frames: must be >= 0, got {delay_frames}")
        self.fraction = fraction
        self.delay_frames = delay_frames
        self.archive = FrontierArchive(spacing, per_cell)
        self._on_restore = on_restore
        self._nes = env.unwrapped
        self._rng = np.random.default_rng()
        self._pending: deque[tuple[int, Snapshot]] = deque()  # (frame taken, snapshot)
        self._frame = 0
        self._next_cell = 0
        self._stage = ""
        self._died = False
        self.restored = False

    def _commit(self, upto_frame: int | None = None) -> None:
        """Move pending snapshots taken at or before ``upto_frame`` (all if None) to the
        archive."""
        while self._pending and (upto_frame is None or self._pending[0][0] <= upto_frame):
            self.archive.add(self._pending.popleft()[1])

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset; with probability ``fraction`` continue from an archived snapshot instead."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        if not self._died:
            self._commit()  # the episode ended alive (flag or time limit): nothing was doomed
        self._pending.clear()
        obs, info = self.env.reset(seed=seed, options=options)
        self._stage = f"{info['world']}-{info['stage']}"
        self._frame, self._died, self.restored = 0, False, False
        snapshot = None
        if self.fraction > 0 and self._rng.random() < self.fraction:
            snapshot = self.archive.sample(self._stage, self._rng)
        if snapshot is not None:
            nes = self._nes
            nes.load_state(snapshot.state)
            # What NESEnv.reset does after restoring its backup slot: gym-super-mario-bros
            # re-reads its reward trackers (time, best x, score, coins, power-up) from RAM, so
            # the first step's reward is that of the step, not of the jump to the snapshot.
            nes._will_reset()
            nes._did_reset()
            obs, info = nes.screen, nes._get_info()
            self.restored = True
            if self._on_restore is not None:
                self._on_restore()
        info = {**info, "restored": self.restored, "start_x_pos": int(info["x_pos"])}
        self._next_cell = self.archive.cell_of(int(info["x_pos"])) + 1
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step one NES frame; take a snapshot on reaching a new cell, keep the old enough."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._frame += 1
        dying = bool(info.get("is_dying") or info.get("is_dead"))
        if terminated and not info.get("flag_get"):
            self._died = True
            self._pending.clear()  # what led here was doomed
            return obs, reward, terminated, truncated, info
        self._commit(self._frame - self.delay_frames)
        x_pos = int(info["x_pos"])
        cell = self.archive.cell_of(x_pos)
        if cell >= self._next_cell and not dying and not info.get("flag_get") and not terminated:
            self._next_cell = cell + 1
            snap = Snapshot(self._nes.dump_state(), self._stage, x_pos)
            self._pending.append((self._frame, snap))
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        """Drop the snapshots (they belong to this emulator) and close the inner env."""
        self.archive.clear()
        self._pending.clear()
        super().close()
