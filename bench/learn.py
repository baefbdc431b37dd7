"""Learning benchmark: train from scratch through the real launcher, to a frame budget.

Run: ``uv run python -m bench.learn --config C (--frames N | --minutes M | both) [--run-dir DIR]
[--baseline-episodes N] [--baselines EVAL_JSON] [--eval-episodes E] [-- LAUNCHER FLAGS...]``.
Flags after ``--`` go to the launcher as they are (e.g. ``-- --run.seed 1``).

Budget. ``--frames N`` (env frames, e.g. ``1_500_000``) becomes the run's
``run.total_env_frames``: the learner stops by itself once it has consumed N fresh env frames,
and schedules defined over the budget (``replay.beta``'s anneal, ``learner.entropy_cost_final``,
the cosine learning rate) run their course, so figures compare across machines of different
speeds. ``--minutes M`` alone gives the launcher a budget it cannot reach
(:data:`UNREACHABLE_BUDGET`) and stops it with SIGTERM after M minutes of wall clock (start-up
included), so those schedules stay at their starting values; with both, whichever comes first
ends the run. The launcher runs with fresh loopback ports, and the bench follows the run
directory (``episodes.jsonl`` and the ``learner_status`` records of ``heartbeats.jsonl``). It
prints one JSON line (``"type": "progress"``) at every whole minute and at the end:

- ``minute``: minutes since the launcher started.
- ``env_frames``, ``updates``: the learner's totals from its latest status.
- ``env_fps``: env frames (NES frames) consumed per second since the previous line (so the
  first one includes start-up).
- ``episodes``: episodes finished so far that started at the stage's start.
- ``mean_max_x``, ``p90_max_x``: mean and 90th percentile of each episode's largest
  ``x_pos`` over the last 100 episodes (0 for non-Mario envs, which have no ``x_pos``).
- ``flag_rate``: fraction of the last 100 episodes that reached the flag (0 for non-Mario).
- ``first_flag_frames``: env frames at the first flag, else null.
- ``mean_return``: mean episode return over the last 100 episodes. This is the figure to read
  for non-Mario envs (CartPole): it is what ``launcher.py tune`` optimises there.

Only sampled episodes that started at the stage's start count in these figures: episodes
restored from a frontier snapshot (``env.restart_fraction``, ``"restored": true`` in
``episodes.jsonl``) are only counted (``restored_episodes`` in the summary), and greedy envs'
episodes (``actor.greedy_envs``) have their own figures (``greedy_*``).

After the launcher has stopped (so nothing competes with training for the CPU):

- the final checkpoint is evaluated from each stage's true start with ``launcher.py eval``
  (:mod:`bench.final_eval`), ``--eval-episodes`` (20) greedy and as many sampled episodes per
  stage (Mario only; 0 skips it). The summary gets ``eval_clear_rate_greedy``,
  ``eval_clear_rate_sampled``, ``eval_progress_greedy`` and ``eval_progress_sampled``, each
  ``{stage: value, "mean": mean over the stages}``, and ``eval_episodes``. The emulator is
  deterministic, so greedy episodes from the same start repeat one another: a greedy clear
  rate is 0 or 1 per stage;
- the random and right baselines are evaluated on the training stages (N = 100 episodes, the
  size of the agent's window, spread over the stages, at least 2 per stage) with the eval
  command (``launcher.py eval --policy random,right --stages S --episodes N --config
  RUN_DIR/config.toml --out RUN_DIR/baselines``, same action set and preprocessing as the run)
  unless ``--baselines`` names an ``eval.json`` to reuse or N is 0.

The last line (``"type": "summary"``) holds the final figures (``flag_rate`` is that of the last
100 true-start training episodes), ``seed``, ``frames`` (the budget, or null),
``restored_episodes``, ``greedy_episodes`` and ``greedy_flag_rate`` (greedy envs' true-start
episodes, ``actor.greedy_envs``, and their last-100 flag rate; null without any), the eval
figures above, ``baselines`` (policy -> ``mean_x_pos``,
``max_x_pos``, ``clear_rate``, ``mean_return``, ``episodes``, averaged over the stages; null
for non-Mario envs or when skipped), ``vs_random`` / ``vs_right`` (``mean_max_x`` over the
baseline's ``mean_x_pos``) and ``beats_target`` (``mean_max_x`` >= :data:`TARGET_VS_RANDOM` x
random). With several stages the run's ``mean_max_x`` mixes stages as training sampled them
(the curriculum favours the hard ones) while the baselines weigh every stage alike, so the
ratio is only indicative there.

A learning curve, ``RUN_DIR/learning_curve.png``, plots each true-start episode's largest
``x_pos`` (or its return for non-Mario envs) against env frames with its 100-episode mean and
p90, the baselines as horizontal lines, the 100-episode flag rate, and the final eval's clear
rates and progress per stage.

Run by: a person (or the test suite) on one machine. Owns its launcher subprocess, which runs in
its own session so that the launcher, its learner and actors can be stopped together (SIGTERM,
then SIGKILL to that process group) whatever happens; and the eval subprocesses. The helpers
:class:`TrainingRun` and :class:`RunProgress` are reused by ``launcher.py tune``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.final_eval import EVAL_EPISODES, EvalError, FinalEval, evaluate_final, launch_eval
from bench.learning_curve import plot_curve
from configs import schema
from launch.harness import WINDOW, RunError, RunProgress, TrainingRun

ROOT = Path(__file__).resolve().parents[1]
BASELINE_EPISODES = WINDOW  # per baseline, spread over the stages: a sample as large as the agent's
TARGET_VS_RANDOM = 1.25  # the bar: mean_max_x >= 1.25 x the random baseline's
CURVE_FILE = "learning_curve.png"
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


def training_stages(config: schema.Config) -> tuple[str, ...]:
    """The stages a run trains on (``env.stages``, else ``env.id``'s), empty for non-Mario."""
    if not config.env.is_mario:
        return ()
    if config.env.stages:
        return config.env.resolved_stages
    from envs.stages import stage_of_env_id

    return (stage_of_env_id(config.env.id) or "1-1",)


def run_baselines(
    config_path: Path, stages: tuple[str, ...], episodes: int, seed: int, out: Path
) -> Path:
    """Evaluate the random and right policies with ``launcher.py eval``; returns eval.json.

    Raises:
        EvalError: the eval command failed (its output's tail is in the message).
    """
    workers = max(1, min(len(stages) * 2, os.cpu_count() or 1))
    return launch_eval("baseline", [
        "--policy", "random,right", "--stages", ",".join(stages), "--episodes", str(episodes),
        "--workers", str(workers), "--seed", str(seed), "--config", str(config_path),
    ], out)  # fmt: skip


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


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


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
        RunError: the launcher exited early, or with a failure status.
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
    except RunError as exc:
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
        except (EvalError, OSError, KeyError, ValueError) as exc:
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
    greedy = progress.figures()  # greedy envs' episodes: not in the progress lines' keys
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
        "greedy_episodes": greedy["greedy_episodes"],
        "greedy_flag_rate": greedy["greedy_flag_rate"],
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
