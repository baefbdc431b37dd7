"""Benchmarks print one JSON line with the documented keys (speed is not asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT


def run_bench(module: str, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
        timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, done.stdout
    return json.loads(lines[0])


def test_actor_throughput_prints_its_figures() -> None:
    result = run_bench("bench.actor_throughput", "--seconds", "1")
    for key in ("raw_emulator_fps", "env_loop_fps", "actor_fps"):
        assert result[key] > 0
    # the ratio is computed from unrounded figures, the printed fps are rounded to 0.1: allow
    # the 3-decimal rounding plus what +-0.05 on each fps can move the quotient
    loop = result["env_loop_fps"]
    ratio = result["actor_fps"] / loop
    slack = 0.0005 + 0.05 * (1 + ratio) / (loop - 0.05)
    assert abs(result["actor_vs_env_loop"] - ratio) <= slack
    assert result["actor_vs_raw_emulator"] > 0


def test_learner_throughput_prints_its_figures() -> None:
    result = run_bench("bench.learner_throughput", "--seconds", "1", "--batch-size", "2")
    assert result["frames_per_s"] > 0 and result["updates_per_s"] > 0
    assert result["device"] == "cpu"
    assert result["batch"] == [21, 2, 4, 84, 84]


def test_learner_throughput_over_sockets_prints_its_figures_and_time_split() -> None:
    result = run_bench(
        "bench.learner_throughput", "--seconds", "2", "--batch-size", "2", "--actors", "1",
        "--warmup", "0.5",
    )  # fmt: skip
    assert result["actors"] == 1 and result["updates"] > 0
    assert result["frames_per_s"] > 0 and result["in_process_frames_per_s"] > 0
    assert result["prefetch"] is True and result["device"] == "cpu"
    assert result["weights_per_s"] > 0 and result["weight_mb_per_s"] > 0
    assert result["policy_lag_mean"] >= 0 and result["policy_lag_max"] >= 0
    split = result["time_split"]
    assert set(split) == {"wait", "receive", "prepare", "prepare_wait", "train", "publish",
                          "other", "prepare_worker"}  # fmt: skip
    assert split["train"] > 0 and split["prepare_worker"] > 0
    assert split["prepare"] == 0  # prefetch on: nothing prepared on the main thread
