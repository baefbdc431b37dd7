"""Video helpers and the episode loop: frame composition, GIF encoding, stopping."""

from __future__ import annotations

import io

import imageio.v3 as iio
import numpy as np
import pytest

from configs.schema import EnvConfig
from evaluation.baselines import RandomPolicy, RightPolicy, parse_policies
from evaluation.evaluate import EvaluationStopped, make_stage_env, run_episode
from evaluation.video import EpisodeRecorder, FrameRelay, GifRecorder, agent_view_panel, compose


def test_agent_view_panel_and_composition() -> None:
    obs = np.stack([np.full((84, 84), 50 * i, dtype=np.uint8) for i in range(4)])
    panel = agent_view_panel(obs, 240)
    assert panel.shape == (240, 176, 3) and panel.dtype == np.uint8  # 2x2 grid, padded to 16
    top = (240 - 168) // 2
    # oldest first, down the first column, then the second
    assert panel[top, 0, 0] == 0 and panel[top + 84, 0, 0] == 50
    assert panel[top, 84, 0] == 100 and panel[top + 84, 84, 0] == 150
    frame = np.random.default_rng(0).integers(0, 255, (240, 256, 3), dtype=np.uint8)
    both = compose(frame, obs)
    assert both.shape == (240, 432, 3)
    np.testing.assert_array_equal(both[:, :256], frame)
    assert compose(frame, None).shape == (240, 256, 3)
    with pytest.raises(ValueError, match="observation"):
        agent_view_panel(np.zeros((4, 84, 80), np.uint8), 240)


def test_gif_recorder_keeps_every_stride_th_frame() -> None:
    gif = GifRecorder(stride=4, scale=0.5, max_frames=5)
    for i in range(30):
        gif.add(np.full((240, 256, 3), i, dtype=np.uint8))
    assert len(gif.frames) == 5 and gif.frames[1][0, 0, 0] == 4
    frames = iio.imread(io.BytesIO(gif.encode()), extension=".gif", index=None)
    assert frames.shape[:3] == (5, 120, 128)
    with pytest.raises(ValueError, match="no frames"):
        GifRecorder().encode()


def test_episode_frames_reach_the_recorder_and_stop_requests_end_the_episode() -> None:
    relay = FrameRelay()
    env = make_stage_env(EnvConfig(), "1-1", max_episode_steps=10, frame_hook=relay)
    gif = GifRecorder(stride=1, scale=1.0)
    recorder = EpisodeRecorder([gif], agent_view=True)
    relay.target = recorder.on_frame
    outcome = run_episode(env, RightPolicy([["NOOP"], ["right", "B"], ["right", "A", "B"]]),
                          seed=0, recorder=recorder)  # fmt: skip
    assert outcome.length == 10 and outcome.stage == "1-1" and outcome.max_x_pos > 40
    assert recorder.frames == len(gif.frames) == 1 + 4 * 10
    assert gif.frames[0].shape == (240, 432, 3)
    relay.target = None
    calls = iter(range(100))
    with pytest.raises(EvaluationStopped):
        run_episode(env, RandomPolicy(7, 0), should_stop=lambda: next(calls) >= 3)
    env.close()


def test_policies() -> None:
    assert parse_policies("agent, right,agent") == ("agent", "right")
    with pytest.raises(ValueError, match=r"^--policy: unknown policy 'left'"):
        parse_policies("left")
    right = RightPolicy([["NOOP"], ["right"], ["right", "A"], ["right", "B"], ["right", "A", "B"]])
    assert [right.act(np.zeros(1)) for _ in range(11)] == [4] * 8 + [3] * 2 + [4]
    right.reset()
    assert right.act(np.zeros(1)) == 4
    with pytest.raises(ValueError, match="right"):
        RightPolicy([["NOOP"], ["A"]])
    policy = RandomPolicy(7, 1)
    draws = [policy.act(np.zeros(1)) for _ in range(200)]
    assert set(draws) == set(range(7))
    again = RandomPolicy(7, 1)
    assert [again.act(np.zeros(1)) for _ in range(200)] == draws  # seeded
