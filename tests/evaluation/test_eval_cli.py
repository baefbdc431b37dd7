"""``launcher.py eval`` end to end (in-process): agent checkpoint, baselines, reports, videos."""

from __future__ import annotations

import json
import math
from pathlib import Path

import imageio.v2 as imageio
import pytest

import launcher
from configs import schema
from envs.spec import num_actions, observation_spec
from evaluation.evaluate import METRICS
from learner.checkpoint import checkpoint_path, save_checkpoint
from models import build_model
from tests.conftest import ROOT

SMOKE = ROOT / "configs" / "smoke.toml"
MAX_STEPS = 130  # the right baseline dies at step 122 on 1-1; the others are cut here


def right_baseline_nes_frames(max_steps: int) -> int:
    """NES frames shown in one right-baseline episode on 1-1, counted on a bare emulator."""
    import gymnasium
    from gym_super_mario_bros.actions import SIMPLE_MOVEMENT
    from nes_py.wrappers import JoypadSpace

    env = JoypadSpace(gymnasium.make("SuperMarioBros-1-1-v0"), SIMPLE_MOVEMENT)
    env.reset()
    frames = 1  # the reset screen
    for t in range(max_steps):
        action = SIMPLE_MOVEMENT.index(["right", "A", "B"] if t % 10 < 8 else ["right", "B"])
        for _ in range(4):  # frame skip 4
            frames += 1
            if env.step(action)[2]:
                env.close()
                return frames
    env.close()
    return frames


def make_checkpoint(run_dir: Path) -> Path:
    """A checkpoint as a smoke run's learner writes one, of an untrained model."""
    config = schema.load(SMOKE)
    obs_shape, _ = observation_spec(config.env)
    model = build_model(config.model, obs_shape, num_actions(config.env))
    state = {
        "model": model.state_dict(),
        "counters": {"env_frames": 0, "updates": 0},
        "config": schema.to_dict(config),
    }
    path = checkpoint_path(run_dir, 0)
    save_checkpoint(state, path, keep=3)
    return path


def check_metrics(stats: dict, episodes: int, max_steps: int | None = None) -> None:
    assert set(METRICS) <= set(stats), stats
    assert stats["episodes"] == episodes
    assert 0.0 <= stats["clear_rate"] <= 1.0
    assert 40 <= stats["mean_x_pos"] <= stats["max_x_pos"] <= 3300  # Mario starts at x 40
    assert 0.0 < stats["progress"] <= 1.0
    assert math.isfinite(stats["mean_return"])
    assert 1 <= stats["mean_length"] <= (max_steps or 10_000)
    assert stats["seconds"] > 0


def test_eval_checkpoint_and_baselines_with_videos(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    make_checkpoint(run_dir)
    videos = tmp_path / "videos"
    rc = launcher.main(
        ["eval", "--checkpoint", str(run_dir), "--stages", "1-1", "--episodes", "2",
         "--policy", "agent,random,right", "--video", str(videos), "--agent-view",
         "--max-episode-steps", str(MAX_STEPS), "--seed", "3"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "evaluation" in out and "right" in out  # the rich table

    report = json.loads((run_dir / "eval.json").read_text())  # --out defaults to the run dir
    assert set(report) == {"agent", "random", "right"}
    for policy in report:
        assert set(report[policy]) == {"1-1"}
        check_metrics(report[policy]["1-1"], episodes=2, max_steps=MAX_STEPS)
    csv_rows = (run_dir / "eval.csv").read_text().splitlines()
    assert csv_rows[0].split(",") == ["policy", "stage", "episodes", *METRICS]
    assert len(csv_rows) == 4

    episodes = [
        json.loads(line) for line in (run_dir / "eval_episodes.jsonl").read_text().splitlines()
    ]
    assert len(episodes) == 6
    for ep in episodes:
        video = Path(ep["video_path"])
        assert video.parent == videos and video.stat().st_size > 0
        assert video.name == f"{ep['policy']}-1-1-ep{ep['episode']:02d}.mp4"
        reader = imageio.get_reader(video)
        frames = [frame for frame in reader]
        assert reader.get_meta_data()["fps"] == 60
        # Every NES frame: the reset frame, 4 per agent step, 1-4 in an episode's last step.
        length = ep["length"]
        assert 1 + 4 * (length - 1) + 1 <= len(frames) <= 1 + 4 * length
        assert len(frames) == ep["video_frames"]
        # The NES screen (240x256) plus the agent-view panel (2x2 grid of 84x84, padded).
        assert frames[0].shape == (240, 256 + 176, 3)
        assert frames[-1][:, :256].std() > 0  # a real screen, not a blank frame
    # The right baseline is deterministic: both episodes are the one replayed on a bare
    # emulator below, which dies part-way through an agent step (a partial last step).
    right = [ep for ep in episodes if ep["policy"] == "right"]
    expected = right_baseline_nes_frames(MAX_STEPS)
    assert expected % 4 != 1
    assert [ep["video_frames"] for ep in right] == [expected, expected]


def test_right_baseline_clears_1000_pixels_and_random_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "baselines"
    rc = launcher.main(
        ["eval", "--policy", "right,random", "--config", str(SMOKE), "--stages", "1-1",
         "--episodes", "2", "--seed", "0", "--out", str(out_dir)]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert rc == 0, printed
    report = json.loads((out_dir / "eval.json").read_text())
    right, random = report["right"]["1-1"], report["random"]["1-1"]
    check_metrics(right, episodes=2)
    check_metrics(random, episodes=2)
    assert right["max_x_pos"] >= 1000  # measured: 1125, where it dies
    assert right["clear_rate"] == 0.0
    print(f"1-1 right: {right}\n1-1 random: {random}")  # shown with pytest -s


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--checkpoint", "nowhere/ckpt-000000001.pt"], "--checkpoint"),
        (["--policy", "agent,robot"], "--policy"),
        (["--policy", "random", "--stages", "1-1,9-9"], "--stages"),
        (["--policy", "random", "--episodes", "0"], "--episodes"),
    ],
)
def test_bad_input_names_the_option_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], option: str
) -> None:
    rc = launcher.main(["eval", "--run-dir", str(tmp_path), "--out", str(tmp_path), *args])
    out = capsys.readouterr().out
    assert rc == 2
    assert "error:" in out and option in out, out


def test_latest_without_any_checkpoint_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = launcher.main(["eval", "--checkpoint", "latest", "--run-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 2 and "--checkpoint latest" in out and "no checkpoint" in out, out
