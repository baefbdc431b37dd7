"""Evaluate a finished training run's final checkpoint from each stage's true start.

Run by: ``bench.learn`` after its launcher has stopped (so evaluation never competes with
training for the CPU). Owns: running ``launcher.py eval`` on the run's newest checkpoint twice,
greedy (argmax action) and sampled (the policy's own distribution), and reducing the two
``eval.json`` files to the clear rates and progress per stage that ``bench.learn``'s summary
line and learning-curve PNG show.

Evaluation episodes always start at the stage's start: ``launcher.py eval`` builds its envs with
:func:`evaluation.evaluate.stage_env_config`, which turns frontier restarts off.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from launch.harness import tail

ROOT = Path(__file__).resolve().parents[1]
MODES = ("greedy", "sampled")
EVAL_EPISODES = 20  # per stage and mode, the figure


class EvalError(RuntimeError):
    """``launcher.py eval`` failed; the message holds its output's tail."""


@dataclass(frozen=True)
class FinalEval:
    """The final checkpoint's figures per mode (``greedy``, ``sampled``) and stage.

    Attributes:
        clear_rate: mode -> stage -> fraction of episodes that reached the flag, plus
            ``"mean"`` over the stages.
        progress: mode -> stage -> mean fraction of the level reached (1.0 on a clear), plus
            ``"mean"``.
        mean_x_pos: mode -> stage -> mean of each episode's largest ``x_pos`` (pixels).
        episodes: episodes per stage and mode.
    """

    clear_rate: dict[str, dict[str, float]]
    progress: dict[str, dict[str, float]]
    mean_x_pos: dict[str, dict[str, float]]
    episodes: int


def launch_eval(what: str, args: list[str], out: Path) -> Path:
    """Run ``launcher.py eval ARGS --out OUT`` (logging to ``OUT/eval.out``); returns the
    ``eval.json`` it wrote. ``what`` names the eval in the error message.

    Raises:
        EvalError: the eval command failed (its output's tail is in the message).
    """
    out.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, str(ROOT / "launcher.py"), "eval", *args, "--out", str(out)]
    log_path = out / "eval.out"
    with log_path.open("wb") as log:
        done = subprocess.run(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise EvalError(f"the {what} eval failed ({done.returncode}):\n{tail(log_path)}")
    return out / "eval.json"


def run_eval(
    run_dir: Path, stages: tuple[str, ...], episodes: int, seed: int, greedy: bool, out: Path
) -> Path:
    """``launcher.py eval --checkpoint RUN_DIR`` (its newest checkpoint) on ``stages``; returns
    the ``eval.json`` it wrote under ``out``.

    Raises:
        EvalError: the eval command failed.
    """
    workers = max(1, min(len(stages), os.cpu_count() or 1))
    return launch_eval("final", [
        "--checkpoint", str(run_dir), "--stages", ",".join(stages), "--episodes", str(episodes),
        "--workers", str(workers), "--seed", str(seed), "--greedy" if greedy else "--sample",
    ], out)  # fmt: skip


def _per_stage(report: dict[str, dict[str, float]], key: str) -> dict[str, float]:
    values = {stage: round(float(m[key]), 3) for stage, m in report.items()}
    values["mean"] = round(float(np.mean(list(values.values()))), 3) if values else 0.0
    return values


def summarize(eval_jsons: dict[str, Path]) -> FinalEval:
    """Reduce ``{mode: eval.json}`` (policy ``agent``) to a :class:`FinalEval`.

    Raises:
        KeyError: an ``eval.json`` without the ``agent`` policy.
        OSError, ValueError: an unreadable or malformed file.
    """
    clear, progress, mean_x = {}, {}, {}
    episodes = 0
    for mode, path in eval_jsons.items():
        report = json.loads(path.read_text())["agent"]
        clear[mode] = _per_stage(report, "clear_rate")
        progress[mode] = _per_stage(report, "progress")
        mean_x[mode] = _per_stage(report, "mean_x_pos")
        episodes = max([episodes, *(int(m["episodes"]) for m in report.values())])
    return FinalEval(clear, progress, mean_x, episodes)


def evaluate_final(run_dir: Path, stages: tuple[str, ...], episodes: int, seed: int) -> FinalEval:
    """Evaluate the run's newest checkpoint greedy and sampled, ``episodes`` per stage each,
    into ``RUN_DIR/final_eval/{greedy,sampled}/``.

    Raises:
        EvalError: an eval command failed.
    """
    paths = {
        mode: run_eval(
            run_dir, stages, episodes, seed, mode == "greedy", run_dir / "final_eval" / mode
        )
        for mode in MODES
    }
    return summarize(paths)
