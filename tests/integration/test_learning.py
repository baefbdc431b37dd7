"""Learning end to end through the launcher: what the algorithm promises, on small tasks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.fleet import train_until_return


def returns(run_dir: Path, greedy: bool = False) -> list[float]:
    """Episode returns in order: of the sampling envs, or of the greedy ones."""
    lines = (run_dir / "episodes.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    return [r["return"] for r in records if r.get("greedy", False) == greedy]


def train_and_score(launch, run_dir: Path, *args: str) -> float:
    """Run the launcher to the end; the mean return of its last 100 episodes."""
    done = launch("--run-dir", str(run_dir), *args, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    last = returns(run_dir)[-100:]
    return sum(last) / len(last)


@pytest.mark.slow
@pytest.mark.parametrize(("core", "solved"), [("lstm", True), ("gru", True), ("none", False)])
def test_memory_task_needs_and_gets_a_recurrent_core(
    tmp_path: Path, launch, endpoints: list[str], core: str, solved: bool
) -> None:
    """Recall at step 5 a cue shown at step 0: recurrent cores learn it, feed-forward cannot."""
    mean = train_and_score(launch, tmp_path / core, "--config", "configs/memory.toml",
                           "--model.core", core, *endpoints)  # fmt: skip
    if solved:
        assert mean >= 0.9, f"{core}: mean return {mean:.2f} over the last 100 episodes"
    else:
        assert mean <= 0.3, f"{core}: mean return {mean:.2f}; a memoryless policy can't recall"


@pytest.mark.slow
@pytest.mark.parametrize("last_action", [True, False])
def test_alternating_needs_and_gets_the_last_action_input(
    tmp_path: Path, launch, endpoints: list[str], last_action: bool
) -> None:
    """Reward for changing action on a blank screen (tests/fixtures/alternate_env.py): with
    the previous action as input the policy learns to alternate (return -> 10), without it no
    policy beats a coin flip (5.5). Checks that actor and learner agree on previous actions,
    including across unroll boundaries (T = 12 > the 10-step episodes) and in replay.

    4 of the 16 envs act greedily (``actor.greedy_envs``) and are counted apart: with the last
    action the greedy policy alternates too; without it the argmax on a blank screen repeats
    one action, the trap (return 1) that sampled play escapes by chance."""
    run_dir = tmp_path / f"last-action-{last_action}"
    mean = train_and_score(launch, run_dir, "--config", "configs/memory.toml",
                           "--env.id", "tests.fixtures.alternate_env:Alternate-v0",
                           "--model.core", "none", "--model.last_action", str(last_action).lower(),
                           "--replay.enabled", "true", "--replay.ratio", "0.5",
                           "--replay.min_size", "16", "--actor.greedy_envs", "4",
                           *endpoints)  # fmt: skip
    greedy = returns(run_dir, greedy=True)[-100:]
    assert len(greedy) == 100, f"{len(greedy)} greedy episodes"
    greedy_mean = sum(greedy) / len(greedy)
    if last_action:
        assert mean >= 9.0, f"mean return {mean:.2f} over the last 100 episodes (max 10)"
        assert greedy_mean >= 9.0, f"greedy envs: mean return {greedy_mean:.2f} (max 10)"
    else:
        assert mean <= 6.5, f"mean return {mean:.2f}; without the last action 5.5 is the best"
        assert greedy_mean <= 1.5, f"greedy envs: mean return {greedy_mean:.2f}; the trap gives 1"


@pytest.mark.slow
def test_cartpole_learns_with_prioritized_replay(tmp_path: Path, endpoints) -> None:
    """Half of every batch replayed (V-trace corrects it as off-policy data): a mean return of
    at least 400 over the last 20 episodes within the preset's 1.5M-frame budget, as without
    replay."""
    args = ["--config", "configs/cartpole.toml", "--replay.enabled", "true",
            "--replay.ratio", "0.5", *endpoints]  # fmt: skip
    frames, best = train_until_return(tmp_path / "cartpole-replay", args, target=400)
    assert best >= 400, f"best mean return over 20 episodes: {best:.1f} (at {frames} frames)"


def test_replay_buffer_is_saved_and_restored_on_resume(tmp_path: Path, launch, endpoints) -> None:
    run_dir = tmp_path / "replay-save"
    common = [
        "--config",
        "configs/cartpole.toml",
        "--run-dir",
        str(run_dir),
        *endpoints,
        "--replay.enabled",
        "true",
        "--replay.save",
        "true",
        "--replay.min_size",
        "8",
    ]
    first = launch(*common, "--run.total_env_frames", "20000")  # fmt: skip
    assert first.returncode == 0, first.stdout + first.stderr
    assert (run_dir / "replay.pt").stat().st_size > 0
    resumed = launch("--resume", "latest", *common, "--run.total_env_frames", "30000")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "restored the replay buffer" in (run_dir / "logs" / "learner.log").read_text()
