"""A training run watched from outside: start ``launcher.py``, follow its run directory, stop it.

Run by: the tools that train through the real launcher in a subprocess and read its figures:
``bench.learn``, ``launcher.py tune`` (:mod:`tuning.tune`) and tests. Owns one launcher
subprocess per :class:`TrainingRun` (in its own session, so the launcher, its learner and actors
can be stopped together whatever happens), tailing ``RUN_DIR/episodes.jsonl`` and the
``learner_status`` records of ``RUN_DIR/heartbeats.jsonl`` into :class:`RunProgress`, and the
report marks of a wall-clock watch (:func:`marks`, :func:`watch`).

Figures count only episodes that started at the stage's start and sampled their actions:
episodes restored from a frontier snapshot (``env.restart_fraction``; ``"restored": true`` in
``episodes.jsonl``) are counted apart in :attr:`RunProgress.restored_episodes`, and those of
greedy envs (``actor.greedy_envs``; ``"greedy": true``) are kept in
:attr:`RunProgress.greedy_episodes`, whose flag rate estimates the greedy policy's.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from protocol.transport import free_tcp_port

ROOT = Path(__file__).resolve().parents[1]
UNREACHABLE_BUDGET = "1_000_000_000_000"  # env frames: the run never ends by itself here
WINDOW = 100  # episodes behind the windowed figures, as in the launcher's progress line
STOP_TIMEOUT_S = 180.0  # the learner writes a final checkpoint after SIGTERM


class RunError(RuntimeError):
    """The launcher failed or exited early; the message shows its output's tail."""


def network_overrides() -> list[str]:
    """``--network.*`` flags on two fresh loopback ports, so runs never share a learner."""
    return [
        "--network.trajectory_endpoint", f"tcp://127.0.0.1:{free_tcp_port()}",
        "--network.broadcast_endpoint", f"tcp://127.0.0.1:{free_tcp_port()}",
    ]  # fmt: skip


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a text file (for error messages), or ``(no output)``."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


class TrainingRun:
    """One ``launcher.py`` training from scratch into ``run_dir``, until :meth:`stop`.

    The launcher runs in its own session (process group), so :meth:`stop` can end it together
    with its learner and actors if it does not stop by itself after SIGTERM. Its stdout and
    stderr go to ``run_dir/launcher.out``.

    Args:
        config: the TOML preset.
        run_dir: the run directory (created).
        overrides: more launcher flags (``--section.field VALUE`` ...), after the budget and the
            free ports, so they win over both.
        total_env_frames: the run's frame budget (``run.total_env_frames``), after which the
            launcher stops by itself; None = :data:`UNREACHABLE_BUDGET` (stopped by the caller).
    """

    def __init__(
        self,
        config: Path,
        run_dir: Path,
        overrides: list[str] | None = None,
        total_env_frames: int | None = None,
    ) -> None:
        self.run_dir = run_dir
        budget = UNREACHABLE_BUDGET if total_env_frames is None else str(total_env_frames)
        self.argv = [
            sys.executable, str(ROOT / "launcher.py"), "--config", str(config),
            "--run-dir", str(run_dir), "--run.total_env_frames", budget,
            *network_overrides(), *(overrides or []),
        ]  # fmt: skip
        self.out_path = run_dir / "launcher.out"
        self.proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None
        self.started = 0.0

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._out = open(self.out_path, "wb")  # noqa: SIM115 - held for the child's life
        self.proc = subprocess.Popen(
            self.argv, cwd=ROOT, stdout=self._out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
        )  # fmt: skip
        self.started = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def finished(self) -> int | None:
        """The launcher's exit status if it has exited, else None."""
        assert self.proc is not None
        return self.proc.poll()

    def check(self) -> None:
        """Raise :class:`RunError` if the launcher has exited (it should run until stopped)."""
        assert self.proc is not None
        rc = self.proc.poll()
        if rc is not None:
            raise RunError(
                f"the launcher exited early with status {rc}; {self.out_path}:\n"
                + tail(self.out_path)
            )

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM the launcher (it stops actors, then the learner, which checkpoints); after
        ``timeout`` seconds SIGKILL its whole process group. Returns its exit status."""
        proc = self.proc
        if proc is None:
            return None
        try:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        finally:
            # anything of this run still alive (a child the launcher could not reap) goes too
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            if self._out is not None:
                self._out.close()
                self._out = None
        return proc.returncode


class _JsonlTail:
    """Reads the complete lines appended to a JSONL file since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def read(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next call
        self.offset += end
        out = []
        for line in data[:end].splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a torn line after a crash; nothing else to do with it
        return out


@dataclass
class RunProgress:
    """Progress of a run, read from ``RUN_DIR/episodes.jsonl`` and ``heartbeats.jsonl``.

    Call :meth:`update` to read what the learner appended since, then :meth:`figures`.
    ``episodes`` holds only sampled episodes that started at the stage's start (the reported
    figures); those restored from a frontier snapshot (``"restored": true``,
    ``env.restart_fraction``) are only counted, in ``restored_episodes``, and those of greedy
    envs (``"greedy": true``, ``actor.greedy_envs``) go to ``greedy_episodes``.
    """

    run_dir: Path
    episodes: list[dict[str, Any]] = field(default_factory=list)
    status: dict[str, Any] | None = None
    first_flag_frames: int | None = None
    restored_episodes: int = 0
    greedy_episodes: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._episodes = _JsonlTail(self.run_dir / "episodes.jsonl")
        self._stream = _JsonlTail(self.run_dir / "heartbeats.jsonl")

    def update(self) -> None:
        for record in self._episodes.read():
            if record.get("restored"):
                self.restored_episodes += 1
                continue
            if record.get("greedy"):
                self.greedy_episodes.append(record)
                continue
            self.episodes.append(record)
            if self.first_flag_frames is None and record.get("flag_get"):
                self.first_flag_frames = int(record["env_frames"])
        for record in self._stream.read():
            if record.get("type") == "learner_status":
                self.status = record

    @property
    def env_frames(self) -> int:
        return int(self.status["env_frames"]) if self.status else 0

    @property
    def updates(self) -> int:
        return int(self.status["updates"]) if self.status else 0

    def figures(self) -> dict[str, Any]:
        """Totals and last-100-episode figures (see the module docstring for each key)."""
        recent = self.episodes[-WINDOW:]
        xs = np.array([e.get("max_x_pos", 0) for e in recent], dtype=np.float64)
        returns = np.array([e.get("return", 0.0) for e in recent], dtype=np.float64)
        flags = np.array([bool(e.get("flag_get")) for e in recent], dtype=np.float64)
        return {
            "env_frames": self.env_frames,
            "updates": self.updates,
            "episodes": len(self.episodes),
            "mean_max_x": round(float(xs.mean()), 1) if len(xs) else 0.0,
            "p90_max_x": round(float(np.percentile(xs, 90)), 1) if len(xs) else 0.0,
            "flag_rate": round(float(flags.mean()), 3) if len(flags) else 0.0,
            "first_flag_frames": self.first_flag_frames,
            "mean_return": round(float(returns.mean()), 2) if len(returns) else 0.0,
            "restored_episodes": self.restored_episodes,
            "greedy_episodes": len(self.greedy_episodes),
            "greedy_flag_rate": (
                round(float(np.mean([bool(e.get("flag_get")) for e in greedy])), 3)
                if (greedy := self.greedy_episodes[-WINDOW:])
                else None
            ),
        }


def marks(deadline_s: float, every_s: float) -> list[float]:
    """Seconds at which to report: every ``every_s`` and at the deadline."""
    out = [every_s * k for k in range(1, math.floor(deadline_s / every_s + 1e-9) + 1)]
    if not out or out[-1] < deadline_s:
        out.append(deadline_s)
    return out


def watch(
    run: TrainingRun, progress: RunProgress, at: list[float], poll_s: float = 1.0
) -> Iterator[tuple[float, dict[str, Any]]]:
    """Yield ``(mark, figures)`` when the started ``run`` has run each mark's seconds.

    Raises:
        RunError: the launcher exited before the last mark.
    """
    for mark in at:
        while run.elapsed < mark:
            run.check()
            time.sleep(min(poll_s, max(0.0, mark - run.elapsed)))
        progress.update()
        yield mark, progress.figures()
