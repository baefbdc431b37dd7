"""The eval actor process against a fake learner: a PUB socket publishing weights."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import imageio.v3 as iio
import pytest
import zmq
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from configs import schema
from envs.spec import num_actions, observation_spec
from models import build_model
from models.weights import flatten_state
from protocol import transport
from protocol.messages import LearnerStatus, Weights
from tests.conftest import ROOT, free_port


def write_run(run_dir: Path, endpoint: str, timeout_s: float) -> schema.Config:
    config = schema.load(
        ROOT / "configs" / "smoke.toml",
        {
            "network.broadcast_endpoint": endpoint,
            "actor.learner_timeout_s": timeout_s,
            "eval.interval_updates": 5,
            "eval.stages": ["1-1"],
            "eval.episodes": 1,
            "eval.video": True,
            "eval.max_episode_steps": 40,
        },
    )
    run_dir.mkdir(parents=True)
    schema.save(config, run_dir / "config.toml")
    return config


class FakeLearner:
    """Binds the broadcast PUB socket and publishes weights of one fixed model."""

    def __init__(self, config: schema.Config) -> None:
        obs_shape, _ = observation_spec(config.env)
        model = build_model(config.model, obs_shape, num_actions(config.env))
        self.layout, self.flat = flatten_state(model)
        self.ctx = zmq.Context.instance()
        self.pub = transport.bind_pub(self.ctx, config.network.broadcast_endpoint)

    def publish(self, version: int, seconds: float) -> None:
        """Publish ``version`` every 0.1 s for ``seconds`` (covers the slow-joiner gap)."""
        msg = Weights(
            policy_version=version, learner_run_id="fake", layout=self.layout, flat=self.flat
        )
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            transport.send(self.pub, msg, prefix=[transport.TOPIC_WEIGHTS])
            time.sleep(0.1)

    def publish_until(self, version: int, done: Callable[[], bool], limit: float) -> None:
        """Keep publishing ``version`` until ``done()`` (at most ``limit`` seconds)."""
        end = time.monotonic() + limit
        while not done():
            assert time.monotonic() < end, f"no evaluation of version {version} in {limit} s"
            self.publish(version, 0.3)

    def close(self) -> None:
        self.pub.close(0)


@pytest.fixture
def fake_run(tmp_path: Path) -> Iterator[tuple[Path, FakeLearner]]:
    run_dir = tmp_path / "run"
    config = write_run(run_dir, f"tcp://127.0.0.1:{free_port()}", timeout_s=3.0)
    learner = FakeLearner(config)
    yield run_dir, learner
    learner.close()


def start_eval_actor(run_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "evaluation.actor", "--run-dir", str(run_dir)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def evaluated_versions(run_dir: Path) -> list[int]:
    path = run_dir / "eval" / "eval.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line)["policy_version"] for line in path.read_text().splitlines()]


def test_eval_actor_logs_scalars_and_video_then_exits_when_the_learner_is_gone(
    fake_run: tuple[Path, FakeLearner],
) -> None:
    run_dir, learner = fake_run
    proc = start_eval_actor(run_dir)
    try:
        learner.publish_until(10, lambda: evaluated_versions(run_dir) == [10], limit=60)
        learner.publish(12, 1.0)  # fewer than eval.interval_updates (5) past 10: not evaluated
        learner.publish_until(15, lambda: len(evaluated_versions(run_dir)) == 2, limit=60)
        assert evaluated_versions(run_dir) == [10, 15]
        # Silence: the eval actor gives up after actor.learner_timeout_s (3 s), with status 3
        # (its "learner gone" exit), not by crashing or by being killed at the timeout below.
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 3, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    acc = EventAccumulator(str(run_dir / "eval"))
    acc.Reload()
    scalars = acc.Tags()["scalars"]
    for tag in ("eval/clear_rate", "eval/best_x_pos", "eval/1-1/max_x_pos", "eval/1-1/progress"):
        assert tag in scalars, scalars
    assert [e.step for e in acc.Scalars("eval/1-1/clear_rate")] == [10, 15]
    assert all(40 <= e.value <= 3300 for e in acc.Scalars("eval/best_x_pos"))
    assert "eval/1-1/video" in acc.Tags()["images"]
    image = acc.Images("eval/1-1/video")[-1]
    assert image.step == 15
    gif = iio.imread(io.BytesIO(image.encoded_image_string), extension=".gif", index=None)
    # 40 agent steps capped: one kept frame per agent step plus the reset frame, half size.
    assert gif.shape[0] >= 10 and gif.shape[1:3] == (120, 128), gif.shape


def test_eval_actor_exits_cleanly_on_sigterm_and_on_the_learners_done(
    fake_run: tuple[Path, FakeLearner],
) -> None:
    run_dir, learner = fake_run
    proc = start_eval_actor(run_dir)
    try:
        learner.publish_until(10, lambda: evaluated_versions(run_dir) == [10], limit=60)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
        assert proc.returncode == 0, out
        assert "eval actor stopped after 1 evaluation" in out

        proc = start_eval_actor(run_dir)
        status = LearnerStatus(
            learner_run_id="fake", policy_version=20, updates=20, env_frames=0,
            total_env_frames=1, env_fps=0.0, episodes=0, mean_return=0.0, mean_x_pos=0.0,
            max_x_pos=0, flags=0, accepted=0, rejected=0, dropped_stale=0, duplicates=0,
            done=True,
        )  # fmt: skip
        end = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < end:
            transport.send(learner.pub, status, prefix=[transport.TOPIC_STATUS])
            time.sleep(0.1)
        out, _ = proc.communicate(timeout=5)
        assert proc.returncode == 0, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
