"""Training hints: each rule fires on the figures that trigger it and stays quiet otherwise."""

from __future__ import annotations

import dataclasses

import pytest

from launch.progress import progress_line
from learner.hints import (
    IDLE_GPU_BEATS,
    PROGRESS_WINDOW_FRAMES,
    REPLAY_GRACE_FRAMES,
    HintInputs,
    Hints,
)
from protocol.messages import LearnerStatus

HEALTHY = HintInputs(
    env_frames=50_000, total_env_frames=1_500_000, env_fps=800.0, device_auto_cpu=False,
    mario=True, episodes=150, mean_x_pos=900.0, replay_size=500, replay_min_size=100,
    gpu_utilization=None, skipped_updates=0,
)  # fmt: skip


def test_a_healthy_run_gets_no_hint() -> None:
    hints = Hints()
    for i in range(50):
        step = dataclasses.replace(HEALTHY, env_frames=50_000 * (i + 1),
                                   mean_x_pos=900.0 * 1.06 ** (i // 5))  # fmt: skip
        assert hints.update(step) == {}


def test_cpu_learner_says_how_long_the_budget_takes(caplog: pytest.LogCaptureFixture) -> None:
    hints = Hints()
    with caplog.at_level("WARNING", logger="learner"):
        out = hints.update(dataclasses.replace(HEALTHY, device_auto_cpu=True))
        hints.update(dataclasses.replace(HEALTHY, device_auto_cpu=True))
    assert "~0.5 h at 800 frames/s" in out["cpu_learner"]  # 1.45M frames / 800 per s
    assert "--learner.device cpu" in out["cpu_learner"]
    assert sum("hint: the learner trains on the CPU" in r.getMessage() for r in caplog.records) == 1


def test_no_progress_fires_after_a_window_without_a_better_mean_x() -> None:
    hints = Hints()
    hints.update(HEALTHY)  # best 900 at 50k frames
    late = dataclasses.replace(HEALTHY, env_frames=50_000 + PROGRESS_WINDOW_FRAMES - 1)
    assert "no_progress" not in hints.update(late)
    stuck = dataclasses.replace(late, env_frames=late.env_frames + 1, mean_x_pos=930.0)
    assert "no x_pos progress for 1,000,000 env frames" in hints.update(stuck)["no_progress"]
    better = dataclasses.replace(stuck, mean_x_pos=960.0)  # > 5% better: the clock restarts
    assert "no_progress" not in hints.update(better)
    cartpole = dataclasses.replace(stuck, mario=False)
    assert "no_progress" not in Hints().update(cartpole)


def test_replay_gpu_and_nonfinite_rules() -> None:
    starving = dataclasses.replace(HEALTHY, env_frames=REPLAY_GRACE_FRAMES, replay_size=40)
    assert "40 of replay.min_size 100" in Hints().update(starving)["replay_not_filling"]
    early = dataclasses.replace(starving, env_frames=REPLAY_GRACE_FRAMES - 1)
    assert "replay_not_filling" not in Hints().update(early)
    hints = Hints()
    idle = dataclasses.replace(HEALTHY, gpu_utilization=3.0)
    fired = [("idle_gpu" in hints.update(idle)) for _ in range(IDLE_GPU_BEATS)]
    assert fired == [False] * (IDLE_GPU_BEATS - 1) + [True]
    assert "idle_gpu" not in hints.update(dataclasses.replace(idle, gpu_utilization=80.0))
    skipped = Hints().update(dataclasses.replace(HEALTHY, skipped_updates=2))
    assert skipped["nonfinite"].startswith("2 update(s) skipped")


def test_the_progress_line_names_the_hints() -> None:
    status = LearnerStatus("r", 1, 1, 1000, 2000, 100.0, 1, 1.0, 1.0, 1, 0, 0, 0, 0, 0,
                           hints=["cpu_learner"])  # fmt: skip
    assert progress_line(status).endswith("| hints: cpu_learner (see the learner log)")
    assert "hints" not in progress_line(dataclasses.replace(status, hints=[]))
