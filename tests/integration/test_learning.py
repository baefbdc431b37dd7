"""Learning end to end through the launcher: what the algorithm promises, on small tasks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def returns(run_dir: Path) -> list[float]:
    lines = (run_dir / "episodes.jsonl").read_text().splitlines()
    return [json.loads(line)["return"] for line in lines]


@pytest.mark.slow
@pytest.mark.parametrize(("core", "solved"), [("lstm", True), ("gru", True), ("none", False)])
def test_memory_task_needs_and_gets_a_recurrent_core(
    tmp_path: Path, launch, endpoints: list[str], core: str, solved: bool
) -> None:
    """Recall at step 5 a cue shown at step 0: recurrent cores learn it, feed-forward cannot."""
    run_dir = tmp_path / core
    done = launch("--config", "configs/memory.toml", "--run-dir", str(run_dir),
                  "--model.core", core, *endpoints, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    last = returns(run_dir)[-100:]
    mean = sum(last) / len(last)
    if solved:
        assert mean >= 0.9, f"{core}: mean return {mean:.2f} over the last 100 episodes"
    else:
        assert mean <= 0.3, f"{core}: mean return {mean:.2f}; a memoryless policy can't recall"


@pytest.mark.slow
def test_cartpole_learns_with_prioritized_replay(tmp_path: Path, launch, endpoints) -> None:
    """Half of every batch replayed (V-trace corrects it as off-policy data): return >= 400."""
    run_dir = tmp_path / "cartpole-replay"
    done = launch("--config", "configs/cartpole.toml", "--run-dir", str(run_dir),
                  "--replay.enabled", "true", "--replay.ratio", "0.5", *endpoints,
                  timeout=330)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    last20 = returns(run_dir)[-20:]
    assert sum(last20) / 20 >= 400, f"mean return over the last 20 episodes: {sum(last20) / 20}"
