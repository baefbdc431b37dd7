"""Frontier restarts: the archive, exact restores, and restored episodes counted apart."""

from __future__ import annotations

import dataclasses

import gymnasium
import numpy as np
import pytest

from configs.schema import EnvConfig
from envs.factory import make_env
from envs.restarts import FrontierArchive, FrontierRestarts, Snapshot
from evaluation.evaluate import stage_env_config
from learner.accounting import EpisodeWindow
from protocol.messages import EpisodeStats

RIGHT_B = 0b10000010  # nes-py button bits: right + B (run)


def test_archive_keeps_the_newest_per_cell_and_samples_only_its_stage() -> None:
    archive = FrontierArchive(spacing=64, per_cell=2)
    assert archive.sample("1-1", np.random.default_rng(0)) is None
    for x in (10, 20, 30, 70):
        archive.add(Snapshot(state=x, stage="1-1", x_pos=x))
    archive.add(Snapshot(state="other", stage="1-2", x_pos=500))
    assert archive.cells("1-1") == [0, 1] and archive.cells("1-2") == [7]
    assert len(archive) == 4  # cell 0 kept its 2 newest (20, 30)
    assert archive.frontier_x("1-1") == 70
    rng = np.random.default_rng(0)
    drawn = {archive.sample("1-1", rng).state for _ in range(200)}  # type: ignore[union-attr]
    assert drawn == {20, 30, 70}
    with pytest.raises(ValueError):
        FrontierArchive(spacing=0, per_cell=1)


def _raw_env(**kwargs: object) -> FrontierRestarts:
    import gym_super_mario_bros  # noqa: F401  (registers the ids)

    env = gymnasium.make("SuperMarioBros-1-1-v0")
    options = {"fraction": 0.5, "spacing": 64, "per_cell": 1, "delay_frames": 0, **kwargs}
    return FrontierRestarts(env, **options)  # type: ignore[arg-type]


def test_restoring_a_snapshot_and_replaying_the_actions_reproduces_frames_and_rewards() -> None:
    env = _raw_env(fraction=0.0, spacing=32)
    try:
        _, info = env.reset(seed=0)
        assert info["restored"] is False and info["start_x_pos"] == info["x_pos"]
        run: list[tuple[np.ndarray, float, int]] = []
        for _ in range(90):  # runs right: x grows, short of the first Goomba (~105 frames)
            obs, reward, terminated, _, info = env.step(RIGHT_B)
            assert not terminated
            run.append((obs.copy(), float(reward), int(info["x_pos"])))
        assert len(env._pending) == 0 and len(env.archive) >= 2  # delay 0: kept at once
        env.fraction = 0.95  # now restore: retry the 5% of resets that start at the start
        for _ in range(50):
            obs, info = env.reset()
            if info["restored"]:
                break
        assert info["restored"] is True and info["start_x_pos"] > run[0][2]
        # the snapshot was dumped right after the first step that reached its cell
        cell = env.archive.cell_of(info["start_x_pos"])
        j = next(i for i, (_, _, x) in enumerate(run) if env.archive.cell_of(x) >= cell)
        assert run[j][2] == info["start_x_pos"]
        np.testing.assert_array_equal(obs, run[j][0])
        assert len(run) - j > 1  # at least one step to replay
        for k in range(j + 1, len(run)):
            obs, reward, _, _, info = env.step(RIGHT_B)
            np.testing.assert_array_equal(obs, run[k][0])
            assert float(reward) == run[k][1] and info["x_pos"] == run[k][2]
    finally:
        env.close()


def test_a_death_keeps_no_snapshot_from_the_delay_before_it() -> None:
    env = _raw_env(fraction=0.0, delay_frames=10_000)  # nothing is old enough before the end
    try:
        env.reset(seed=0)
        terminated = False
        for _ in range(3000):  # holding right+B runs into the first Goomba
            _, _, terminated, _, info = env.step(RIGHT_B)
            if terminated:
                break
        assert terminated and not info["flag_get"]
        assert len(env.archive) == 0
        env.reset()
        assert len(env.archive) == 0  # the doomed pending snapshots were dropped, not kept
    finally:
        env.close()


def test_restored_episodes_are_marked_and_stay_out_of_the_stage_curriculum() -> None:
    cfg = EnvConfig(
        stages=("1-1", "1-2"), stage_sampling="curriculum", restart_fraction=0.95,
        restart_delay_frames=0, max_episode_steps=40,
    )  # fmt: skip
    env = make_env(cfg, seed=1)
    try:
        env.reset()
        episodes = []
        while len(episodes) < 12:
            _, _, terminated, truncated, info = env.step(3)  # right+B
            if terminated or truncated:
                episodes.append(info["episode"])
                env.reset()
        restored = [e for e in episodes if e["restored"]]
        assert restored and len(restored) < len(episodes)  # the first visit of a stage can't be
        switcher = env.get_wrapper_attr("sampler")
        # only the true-start episodes entered the curriculum's windows (and the one in
        # progress is not recorded yet)
        true_start = len(episodes) - len(restored)
        assert sum(switcher.counts().values()) == true_start
    finally:
        env.close()


def test_evaluation_never_restarts_from_snapshots() -> None:
    cfg = EnvConfig(restart_fraction=0.5)
    assert stage_env_config(cfg, "1-1").restart_fraction == 0.0
    assert stage_env_config(dataclasses.replace(cfg, id="CartPole-v1"), "CartPole-v1").restart_fraction == 0.0  # fmt: skip  # noqa: E501


def test_the_episode_window_counts_restored_episodes_apart(tmp_path) -> None:
    window = EpisodeWindow(tmp_path / "episodes.jsonl")
    window.add(EpisodeStats(1.0, 10, 300, False, "1-1"), 100, 0)
    window.add(EpisodeStats(9.0, 10, 3168, True, "1-1", restored=True), 200, 0)
    window.close()
    assert window.episodes == 1 and window.flags == 0 and window.max_x_pos == 300
    assert window.restored == 1 and len(window.recent) == 1 and len(window.recent_restored) == 1
    assert window.mean("flag_get") == 0.0
    lines = (tmp_path / "episodes.jsonl").read_text().splitlines()
    assert ['"restored": false' in lines[0], '"restored": true' in lines[1]] == [True, True]
