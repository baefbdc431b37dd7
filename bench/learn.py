"""Learning benchmark: train from scratch for M minutes through the real launcher.

Run: ``uv run python -m bench.learn --config C --minutes M [--run-dir DIR]
[--baseline-episodes N] [--baselines EVAL_JSON] [-- LAUNCHER FLAGS...]``. Flags after ``--``
go to the launcher as they are (e.g. ``-- --run.num_actors 2 --learner.learning_rate 3e-4``).

It starts ``launcher.py --config C --run-dir DIR`` in a subprocess with a frame budget it
cannot reach (:data:`UNREACHABLE_BUDGET`) and fresh loopback ports, follows the run directory
(``episodes.jsonl`` and the ``learner_status`` records of ``heartbeats.jsonl``) and stops the
launcher with SIGTERM when M minutes of wall clock (start-up included) have passed. Schedules
defined over the frame budget (``replay.beta``'s anneal, ``learner.entropy_cost_final``, the
cosine learning rate) therefore stay at their starting values. It prints one JSON line
(``"type": "progress"``) at every whole minute and at the deadline:

- ``minute``: minutes since the launcher started.
- ``env_frames``, ``updates``: the learner's totals from its latest status.
- ``env_fps``: env frames (NES frames) consumed per second since the previous line (so the
  first one includes start-up).
- ``episodes``: episodes finished so far.
- ``mean_max_x``, ``p90_max_x``: mean and 90th percentile of each episode's largest
  ``x_pos`` over the last 100 episodes (0 for non-Mario envs, which have no ``x_pos``).
- ``flag_rate``: fraction of the last 100 episodes that reached the flag (0 for non-Mario).
- ``first_flag_frames``: env frames at the first flag, else null.
- ``mean_return``: mean episode return over the last 100 episodes. This is the figure to read
  for non-Mario envs (CartPole): it is what ``launcher.py tune`` optimises there.

After the launcher has stopped (so it does not compete with training for the CPU), the random
and right baselines are evaluated on the training stages (N = 100 episodes, the size of the
agent's window, spread over the stages, at least 2 per stage) with the eval command
(``launcher.py eval --policy random,right --stages S --episodes N --config RUN_DIR/config.toml
--out RUN_DIR/baselines``, same action set and preprocessing as the run) unless ``--baselines``
names an ``eval.json`` to reuse or N is 0. The last line (``"type": "summary"``) holds the final
figures, ``baselines`` (policy -> ``mean_x_pos``, ``max_x_pos``, ``clear_rate``,
``mean_return``, ``episodes``, averaged over the stages; null for non-Mario envs or when
skipped), ``vs_random`` / ``vs_right`` (``mean_max_x`` over the baseline's ``mean_x_pos``) and
``beats_target`` (``mean_max_x`` >= :data:`TARGET_VS_RANDOM` x random). With several stages the
run's ``mean_max_x`` mixes stages as training sampled them (the curriculum favours the hard
ones) while the baselines weigh every stage alike, so the ratio is only indicative there.

A learning curve, ``RUN_DIR/learning_curve.png``, plots each episode's largest ``x_pos`` (or its
return for non-Mario envs) against env frames with its 100-episode mean and p90, the baselines
as horizontal lines, and the 100-episode flag rate.

Run by: a person (or the test suite) on one machine. Owns its launcher subprocess, which runs in
its own session so that the launcher, its learner and actors can be stopped together (SIGTERM,
then SIGKILL to that process group) whatever happens; and the eval subprocess. The helpers
:class:`TrainingRun` and :class:`RunProgress` are reused by ``launcher.py tune``.
"""

from __future__ import annotations

import argparse
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

from bench.final_eval import EVAL_EPISODES, EvalError, FinalEval, evaluate_final
from configs import schema
from protocol.transport import free_tcp_port

ROOT = Path(__file__).resolve().parents[1]
UNREACHABLE_BUDGET = "1_000_000_000_000"  # env frames: the run never ends by itself here
WINDOW = 100  # episodes behind the windowed figures, as in the launcher's progress line
BASELINE_EPISODES = WINDOW  # per baseline, spread over the stages: a sample as large as the agent's
TARGET_VS_RANDOM = 1.25  # the bar: mean_max_x >= 1.25 x the random baseline's
CURVE_FILE = "learning_curve.png"
STOP_TIMEOUT_S = 180.0  # the learner writes a final checkpoint after SIGTERM
PROGRESS_KEYS = (
    "minute",
    "env_frames",
    "env_fps",
    "updates",
    "episodes",
    "mean_max_x",
    "p90_max_x",
    "flag_rate",
    "first_flag_frames",
    "mean_return",
)


class BenchError(RuntimeError):
    """The launcher or the eval failed; the message says which and shows its output's tail."""


def network_overrides() -> list[str]:
    """``--network.*`` flags on two fresh loopback ports, so runs never share a learner."""
    return [
        "--network.trajectory_endpoint", f"tcp://127.0.0.1:{free_tcp_port()}",
        "--network.broadcast_endpoint", f"tcp://127.0.0.1:{free_tcp_port()}",
    ]  # fmt: skip


def _tail(path: Path, lines: int = 30) -> str:
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
        """Raise :class:`BenchError` if the launcher has exited (it should run until stopped)."""
        assert self.proc is not None
        rc = self.proc.poll()
        if rc is not None:
            raise BenchError(
                f"the launcher exited early with status {rc}; {self.out_path}:\n"
                + _tail(self.out_path)
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
    ``episodes`` holds only episodes that started at the stage's start (the reported figures);
    those restored from a frontier snapshot (``"restored": true``, ``env.restart_fraction``) are
    only counted, in ``restored_episodes``.
    """

    run_dir: Path
    episodes: list[dict[str, Any]] = field(default_factory=list)
    status: dict[str, Any] | None = None
    first_flag_frames: int | None = None
    restored_episodes: int = 0

    def __post_init__(self) -> None:
        self._episodes = _JsonlTail(self.run_dir / "episodes.jsonl")
        self._stream = _JsonlTail(self.run_dir / "heartbeats.jsonl")

    def update(self) -> None:
        for record in self._episodes.read():
            if record.get("restored"):
                self.restored_episodes += 1
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
        }


def training_stages(config: schema.Config) -> tuple[str, ...]:
    """The stages a run trains on (``env.stages``, else ``env.id``'s), empty for non-Mario."""
    if not config.env.is_mario:
        return ()
    if config.env.stages:
        return config.env.resolved_stages
    from actor.stages import stage_of_env_id

    return (stage_of_env_id(config.env.id) or "1-1",)


def run_baselines(
    config_path: Path, stages: tuple[str, ...], episodes: int, seed: int, out: Path
) -> Path:
    """Evaluate the random and right policies with ``launcher.py eval``; returns eval.json.

    Raises:
        BenchError: the eval command failed (its output's tail is in the message).
    """
    out.mkdir(parents=True, exist_ok=True)
    workers = max(1, min(len(stages) * 2, os.cpu_count() or 1))
    argv = [
        sys.executable, str(ROOT / "launcher.py"), "eval", "--policy", "random,right",
        "--stages", ",".join(stages), "--episodes", str(episodes), "--workers", str(workers),
        "--seed", str(seed), "--config", str(config_path), "--out", str(out),
    ]  # fmt: skip
    log_path = out / "eval.out"
    with log_path.open("wb") as log:
        done = subprocess.run(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise BenchError(f"the baseline eval failed ({done.returncode}):\n{_tail(log_path)}")
    return out / "eval.json"


def summarize_baselines(eval_json: Path) -> dict[str, dict[str, float]]:
    """policy -> metrics averaged over the stages of an ``eval.json`` (episodes summed)."""
    data = json.loads(eval_json.read_text())
    out: dict[str, dict[str, float]] = {}
    for policy, stages in data.items():
        rows = list(stages.values())
        out[policy] = {
            key: round(float(np.mean([r[key] for r in rows])), 3)
            for key in ("mean_x_pos", "max_x_pos", "clear_rate", "mean_return")
        }
        out[policy]["episodes"] = int(sum(r["episodes"] for r in rows))
    return out


def plot_curve(
    episodes: list[dict[str, Any]],
    baselines: dict[str, dict[str, float]] | None,
    mario: bool,
    path: Path,
    title: str,
    final_eval: FinalEval | None = None,
) -> None:
    """Write the learning curve PNG (see the module docstring)."""
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot's import
    import matplotlib.pyplot as plt

    frames = np.array([e["env_frames"] for e in episodes], dtype=np.float64) / 1e6
    key = "max_x_pos" if mario else "return"
    values = np.array([e.get(key, 0) for e in episodes], dtype=np.float64)
    flags = np.array([bool(e.get("flag_get")) for e in episodes], dtype=np.float64)
    mean, p90 = np.zeros_like(values), np.zeros_like(values)
    for i in range(len(values)):
        window = values[max(0, i + 1 - WINDOW) : i + 1]
        mean[i], p90[i] = window.mean(), np.percentile(window, 90)
    flag_rate = np.convolve(flags, np.ones(WINDOW), "full")[: len(flags)] / np.minimum(
        np.arange(1, len(flags) + 1), WINDOW
    )
    rows = 2 if mario else 1
    fig, axes = plt.subplots(rows, 1, figsize=(9, 3.2 * rows + 1), sharex=True, squeeze=False)
    ax = axes[0][0]
    label = "max x_pos per episode" if mario else "return per episode"
    ax.scatter(frames, values, s=3, alpha=0.25, color="tab:gray", label=label)
    ax.plot(frames, mean, color="tab:blue", label=f"mean of last {WINDOW}")
    ax.plot(frames, p90, color="tab:cyan", label=f"p90 of last {WINDOW}")
    for (policy, figures), color in zip((baselines or {}).items(), ("tab:red", "tab:orange")):
        ax.axhline(figures["mean_x_pos"], color=color, linestyle="--",
                   label=f"{policy} baseline (mean {figures['mean_x_pos']:.0f})")  # fmt: skip
    ax.set_ylabel("x_pos" if mario else "return")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    if mario:
        ax2 = axes[1][0]
        ax2.plot(frames, flag_rate, color="tab:green")
        ax2.set_ylabel(f"flag rate (last {WINDOW})")
        ax2.set_ylim(-0.02, 1.02)
        ax2.grid(alpha=0.3)
        if final_eval is not None:
            text = f"final eval, {final_eval.episodes} episodes/stage\n" + "\n".join(
                f"{stage}: clear greedy {final_eval.clear_rate['greedy'][stage]:.2f}, "
                f"sampled {final_eval.clear_rate['sampled'][stage]:.2f}; progress "
                f"{final_eval.progress['greedy'][stage]:.2f} / "
                f"{final_eval.progress['sampled'][stage]:.2f}"
                for stage in final_eval.clear_rate["greedy"]
            )
            ax2.text(0.01, 0.97, text, transform=ax2.transAxes, va="top", fontsize=7,
                     family="monospace", bbox={"facecolor": "white", "alpha": 0.8})  # fmt: skip
    axes[-1][0].set_xlabel("env frames (millions)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


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
        BenchError: the launcher exited before the last mark.
    """
    for mark in at:
        while run.elapsed < mark:
            run.check()
            time.sleep(min(poll_s, max(0.0, mark - run.elapsed)))
        progress.update()
        yield mark, progress.figures()


def train_and_watch(
    config_path: Path,
    run_dir: Path,
    minutes: float | None,
    overrides: list[str],
    frames: int | None = None,
) -> tuple[RunProgress, list[dict[str, Any]], float]:
    """Train until the frame budget ``frames`` is spent (the launcher then stops by itself) or
    ``minutes`` of wall clock have passed (SIGTERM), whichever comes first; at least one must be
    given. Prints a progress line at every whole minute and at the end; returns the progress,
    the printed lines and the seconds trained.

    Raises:
        BenchError: the launcher exited early, or with a failure status.
        ValueError: neither ``minutes`` nor ``frames`` given.
    """
    if minutes is None and frames is None:
        raise ValueError("train_and_watch needs minutes or frames")
    deadline = math.inf if minutes is None else minutes * 60.0
    run = TrainingRun(config_path, run_dir, overrides, frames)
    progress = RunProgress(run_dir)
    lines: list[dict[str, Any]] = []
    last_frames, last_t = 0, 0.0
    run.start()
    try:
        minute = 1
        while True:
            mark = min(60.0 * minute, deadline)
            ended = False
            while run.elapsed < mark:
                status = run.finished()
                if status is not None:
                    if frames is None or status != 0:
                        run.check()  # raises: it should have run until stopped, or it failed
                    ended = True  # the frame budget was spent
                    break
                time.sleep(min(1.0, max(0.0, mark - run.elapsed)))
            progress.update()
            figures = progress.figures()
            now = run.elapsed
            fps = (figures["env_frames"] - last_frames) / max(now - last_t, 1e-9)
            last_frames, last_t = figures["env_frames"], now
            at = now if ended else mark
            figures["minute"] = int(at // 60) if at % 60 == 0 else round(at / 60.0, 2)
            figures["env_fps"] = round(fps, 1)
            line = {"type": "progress", **{k: figures[k] for k in PROGRESS_KEYS}}
            lines.append(line)
            _emit(line)
            if ended or mark >= deadline:
                break
            minute += 1
    finally:
        seconds = run.elapsed
        run.stop()
    if frames is not None:
        progress.update()  # the last episodes the learner logged before its budget ran out
    # with a deadline, not updated after the stop: the figures stay those at the deadline (the
    # learner still logs the episodes of unrolls it had queued while it stops)
    return progress, lines, seconds


def main(argv: list[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in args_in:
        cut = args_in.index("--")
        args_in, extra = args_in[:cut], args_in[cut + 1 :]
    parser = argparse.ArgumentParser(
        prog="python -m bench.learn",
        description="Train from scratch for M minutes through launcher.py; print JSON lines.",
    )
    parser.add_argument("--config", type=Path, required=True, help="TOML preset")
    parser.add_argument(
        "--frames",
        type=float,
        default=None,
        help="frame budget in env frames (e.g. 1_500_000): becomes run.total_env_frames, so "
        "schedules over the budget run their course; the run stops when it is spent",
    )
    parser.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="wall-clock minutes (with --frames: a cap; the run stops at whichever comes first)",
    )
    parser.add_argument(
        "--eval-episodes",
        type=int,
        default=EVAL_EPISODES,
        help="Mario: final-checkpoint eval episodes per stage, greedy and sampled each; 0 = skip "
        f"[default: {EVAL_EPISODES}]",
    )
    parser.add_argument(
        "--run-dir", type=Path, default=None, help="[default: runs/learn-<timestamp>]"
    )
    parser.add_argument(
        "--baseline-episodes",
        type=int,
        default=None,
        help="episodes per stage for each baseline; 0 = skip [default: 100 spread over the "
        "stages, at least 2 per stage]",
    )
    parser.add_argument(
        "--baselines",
        type=Path,
        default=None,
        metavar="EVAL_JSON",
        help="reuse this eval.json (random,right on the same stages) instead of evaluating",
    )
    args = parser.parse_args(args_in)
    if args.minutes is None and args.frames is None:
        parser.error("give --frames N (a frame budget) or --minutes M, or both")
    if args.minutes is not None and args.minutes <= 0:
        parser.error("--minutes: must be > 0")
    frames = None if args.frames is None else int(args.frames)
    if frames is not None and frames < 1:
        parser.error("--frames: must be >= 1")
    if args.eval_episodes < 0:
        parser.error("--eval-episodes: must be >= 0")
    if args.baseline_episodes is not None and args.baseline_episodes < 0:
        parser.error("--baseline-episodes: must be >= 0")
    try:
        base = schema.load(args.config)
    except schema.ConfigError as exc:
        parser.error(str(exc))
    run_dir = (args.run_dir or ROOT / "runs" / time.strftime("learn-%Y%m%d-%H%M%S")).resolve()
    # SIGTERM unwinds like Ctrl+C, so the launcher is stopped, not orphaned
    signal.signal(signal.SIGTERM, _interrupt)

    try:
        progress, lines, seconds = train_and_watch(
            args.config, run_dir, args.minutes, extra, frames
        )
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: the launcher was stopped", file=sys.stderr)
        return 130
    final = lines[-1]
    # the resolved config the run used (preset + overrides), for the baselines and the summary
    config = schema.load(run_dir / "config.toml") if (run_dir / "config.toml").is_file() else base
    stages = training_stages(config)
    baselines: dict[str, dict[str, float]] | None = None
    episodes = args.baseline_episodes
    if episodes is None:
        # as many as the agent's window: random play's max x varies a lot (on 1-1, 20 episodes
        # gave a mean of 673 and 200 gave 692), and a small sample moves the ratio with it
        episodes = max(2, math.ceil(BASELINE_EPISODES / max(1, len(stages))))
    if stages and (args.baselines is not None or episodes > 0):
        try:
            eval_json = args.baselines or run_baselines(
                run_dir / "config.toml", stages, episodes, config.run.seed, run_dir / "baselines"
            )
            baselines = summarize_baselines(eval_json)
        except (BenchError, OSError, KeyError, ValueError) as exc:
            print(f"error: baselines: {exc}", file=sys.stderr)
            return 1

    def ratio(policy: str) -> float | None:
        if baselines is None or policy not in baselines or not baselines[policy]["mean_x_pos"]:
            return None
        return round(final["mean_max_x"] / baselines[policy]["mean_x_pos"], 3)

    final_eval: FinalEval | None = None
    if stages and args.eval_episodes > 0:
        try:
            final_eval = evaluate_final(run_dir, stages, args.eval_episodes, config.run.seed)
        except (EvalError, OSError, KeyError, ValueError) as exc:
            print(f"error: final eval: {exc}", file=sys.stderr)
            return 1

    shown = progress.episodes  # true-start episodes logged up to the end
    curve = run_dir / CURVE_FILE
    budget = f"{frames / 1e6:g}M frames" if frames is not None else f"{args.minutes:g} min"
    plot_curve(
        shown, baselines, config.env.is_mario, curve,
        f"{args.config.name}: {config.env.id}"
        + (f" ({len(stages)} stages)" if len(stages) > 1 else "") + f", {budget}"
        + (f", seed {config.run.seed}"),
        final_eval,
    )  # fmt: skip
    vs_random = ratio("random")
    summary = {
        "type": "summary",
        "config": str(args.config),
        "env_id": config.env.id,
        "stages": list(stages),
        "seed": config.run.seed,
        "frames": frames,
        "minutes": args.minutes,
        "seconds": round(seconds, 1),
        "env_frames": final["env_frames"],
        "updates": final["updates"],
        "episodes": final["episodes"],
        "env_fps": round(final["env_frames"] / max(seconds, 1e-9), 1),
        "mean_max_x": final["mean_max_x"],
        "p90_max_x": final["p90_max_x"],
        "best_max_x": max((e.get("max_x_pos", 0) for e in shown), default=0),
        "flag_rate": final["flag_rate"],
        "flags": sum(bool(e.get("flag_get")) for e in shown),
        "first_flag_frames": final["first_flag_frames"],
        "mean_return": final["mean_return"],
        "restored_episodes": progress.restored_episodes,
        "eval_episodes": final_eval.episodes if final_eval else None,
        "eval_clear_rate_greedy": final_eval.clear_rate["greedy"] if final_eval else None,
        "eval_clear_rate_sampled": final_eval.clear_rate["sampled"] if final_eval else None,
        "eval_progress_greedy": final_eval.progress["greedy"] if final_eval else None,
        "eval_progress_sampled": final_eval.progress["sampled"] if final_eval else None,
        "baselines": baselines,
        "vs_random": vs_random,
        "vs_right": ratio("right"),
        "target_vs_random": TARGET_VS_RANDOM if baselines is not None else None,
        "beats_target": None if vs_random is None else vs_random >= TARGET_VS_RANDOM,
        "curve": str(curve),
        "run_dir": str(run_dir),
    }
    _emit(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
