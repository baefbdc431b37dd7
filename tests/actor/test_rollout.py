"""Unroll collection: T steps -> K trajectories with T+1 observations and correct boundaries."""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
import pytest
import torch

from actor.rollout import GREEDY_LOGIT_GAP, StepResult, UnrollCollector, greedy_behaviour, step_envs
from learner.losses import action_log_probs
from protocol.messages import EpisodeStats, TrajectorySpec

SPEC = TrajectorySpec(3, (2,), np.dtype(np.float32), 2)


class CountingEnv(gymnasium.Env):
    """obs = [episode, step]; ends after ``length`` steps, by termination or truncation."""

    observation_space = gymnasium.spaces.Box(-1e6, 1e6, (2,), np.float32)
    action_space = gymnasium.spaces.Discrete(2)

    def __init__(self, length: int, truncate: bool) -> None:
        self.length, self.truncate, self.episode, self.t = length, truncate, -1, 0

    def _obs(self) -> np.ndarray:
        return np.array([self.episode, self.t], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: Any = None):
        self.episode += 1
        self.t = 0
        return self._obs(), {}

    def step(self, action: int):
        self.t += 1
        done = self.t >= self.length
        info = {"episode": {"return": float(self.t), "length": self.t}} if done else {}
        return self._obs(), 1.0, done and not self.truncate, done and self.truncate, info


def test_collector_emits_k_unrolls_every_t_steps_with_bootstrap_row() -> None:
    collector = UnrollCollector(SPEC, num_envs=2, actor_id=5, run_id="r")
    collector.reset(np.zeros((2, 2), np.float32))
    out = []
    for step in range(1, 7):
        obs = np.full((2, 2), step, np.float32)
        result = StepResult(obs, np.ones(2, np.float32), np.zeros(2, bool), np.zeros(2, bool))
        out.append(collector.record(np.array([0, 1]), np.zeros((2, 2), np.float32), 7, result))
    assert [len(o) for o in out] == [0, 0, 2, 0, 0, 2]
    first, second = out[2], out[5]
    assert {t.seq for t in first + second} == {-1}  # numbered when sent, not when cut
    assert [t.env_index for t in first] == [0, 1]
    np.testing.assert_array_equal(first[0].obs[:, 0], [0, 1, 2, 3])  # T+1 rows
    np.testing.assert_array_equal(second[0].obs[:, 0], [3, 4, 5, 6])  # continues from row T
    np.testing.assert_array_equal(first[1].action, [1, 1, 1])
    np.testing.assert_array_equal(first[0].policy_version, [7, 7, 7])
    for traj in first + second:
        SPEC.validate(traj)
    # fresh buffers per unroll: the first unroll is not overwritten by the second
    assert first[0].obs[0, 0] == 0


def test_step_envs_keeps_final_obs_only_for_truncation_and_reports_episodes() -> None:
    envs = [CountingEnv(2, truncate=True), CountingEnv(2, truncate=False)]
    for env in envs:
        env.reset()
    first = step_envs(envs, np.array([0, 0]))
    assert not first.truncated.any() and not first.terminated.any()
    second = step_envs(envs, np.array([0, 0]))
    assert second.truncated.tolist() == [True, False]
    assert second.terminated.tolist() == [False, True]
    np.testing.assert_array_equal(second.final_obs[0], [0, 2])  # last obs of episode 0
    assert 1 not in second.final_obs  # termination never bootstraps
    np.testing.assert_array_equal(second.next_obs, [[1, 0], [1, 0]])  # reset in the same step
    assert second.episodes[0] == EpisodeStats(2.0, 2, 0, False, "")
    assert set(second.episodes) == {0, 1}


def test_truncated_obs_travel_with_their_unroll() -> None:
    envs = [CountingEnv(2, truncate=True)]
    collector = UnrollCollector(SPEC, num_envs=1, actor_id=0, run_id="r")
    collector.reset(np.stack([e.reset()[0] for e in envs]))
    trajectories = []
    while not trajectories:
        result = step_envs(envs, np.array([0]))
        trajectories = collector.record(np.array([0]), np.zeros((1, 2), np.float32), 0, result)
    (traj,) = trajectories
    SPEC.validate(traj)
    assert traj.truncated.tolist() == [False, True, False]
    np.testing.assert_array_equal(traj.truncated_obs, [[0, 2]])
    np.testing.assert_array_equal(traj.obs[2], [1, 0])  # next episode's first observation
    assert [e.length for e in traj.episodes] == [2]


def test_previous_actions_carry_across_unrolls_and_reset_at_episode_ends() -> None:
    """The actor's view of each env's previous action (``current_last_action``), the
    ``initial_last_action`` each unroll carries, and the learner's derivation from the unroll
    (:func:`learner.collate.last_actions`) agree step for step."""
    import torch

    from learner.collate import collate, last_actions

    spec = TrajectorySpec(3, (2,), np.dtype(np.float32), 3)
    envs = [CountingEnv(length=4, truncate=False), CountingEnv(length=2, truncate=True)]
    collector = UnrollCollector(spec, num_envs=2, actor_id=0, run_id="r")
    collector.reset(np.stack([env.reset()[0] for env in envs]))
    rng = np.random.default_rng(0)
    seen, unrolls = [], []
    for _ in range(9):
        seen.append(collector.current_last_action)
        actions = rng.integers(0, 3, 2)
        result = step_envs(envs, actions)
        unrolls += collector.record(actions, np.zeros((2, 3), np.float32), 0, result)
    assert seen[0].tolist() == [3, 3]  # no previous action: every episode starts here
    # env 1 ends an episode every 2 steps, so its previous action is "none" at steps 2, 4, ...
    assert [int(s[1]) for s in seen[2::2]] == [3, 3, 3, 3]
    assert [int(s[0]) for s in seen[1:4]] != [3, 3, 3]
    for traj in unrolls:
        spec.validate(traj)
    for k, start in enumerate(range(0, 9, 3)):
        batch = collate([unrolls[2 * k], unrolls[2 * k + 1]])
        rows, _ = last_actions(batch, spec.no_action)
        expected = np.stack(seen[start : start + 3])  # [T, B] what the actor fed its model
        np.testing.assert_array_equal(rows[:3].numpy(), expected)
        if start + 3 < 9:
            np.testing.assert_array_equal(rows[3].numpy(), seen[start + 3])  # bootstrap row
        assert batch.initial_last_action.dtype == torch.int64


class BrokenEnv(CountingEnv):
    """A CountingEnv whose ``step`` raises on its ``fail_at``-th call, as a crashed emulator."""

    def __init__(self, fail_at: int) -> None:
        super().__init__(length=100, truncate=False)
        self.fail_at, self.calls, self.closed = fail_at, 0, False

    def step(self, action: int):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("emulator crashed")
        return super().step(action)

    def close(self) -> None:
        self.closed = True


def test_an_env_that_raises_is_rebuilt_and_only_its_unroll_is_dropped() -> None:
    broken = BrokenEnv(fail_at=2)
    envs: list = [CountingEnv(100, truncate=False), broken]
    built: list[int] = []

    def rebuild(i: int) -> CountingEnv:
        built.append(i)
        return CountingEnv(100, truncate=False)

    obs = np.stack([env.reset()[0] for env in envs])
    collector = UnrollCollector(SPEC, num_envs=2, actor_id=0, run_id="r")
    collector.reset(obs)
    emitted = []
    for _ in range(6):  # two unrolls of T = 3
        result = step_envs(envs, np.zeros(2, np.int64), rebuild=rebuild)
        emitted.append(collector.record(np.zeros(2, np.int64), np.zeros((2, 2), np.float32),
                                        0, result))  # fmt: skip
    assert built == [1] and broken.closed and envs[1] is not broken
    first, second = emitted[2], emitted[5]
    assert [t.env_index for t in first] == [0]  # env 1's broken unroll is dropped...
    assert [t.env_index for t in second] == [0, 1]  # ...and its next one is whole
    assert collector.discarded == 1
    replacement = second[1]
    # the new env's first episode began at the failed step 2 (a boundary: no previous
    # action), so this unroll picks it up one step in, after step 3's action
    np.testing.assert_array_equal(replacement.obs[0], [0, 1])
    assert int(replacement.initial_last_action) == 0
    for traj in first + second:
        SPEC.validate(traj)


def test_without_rebuild_an_env_error_propagates() -> None:
    envs: list = [BrokenEnv(fail_at=1)]
    envs[0].reset()
    try:
        step_envs(envs, np.zeros(1, np.int64))
    except RuntimeError as exc:
        assert "emulator crashed" in str(exc)
    else:
        raise AssertionError("the env's error was swallowed")


def test_greedy_envs_take_the_argmax_and_record_a_point_mass_behaviour_policy() -> None:
    logits = np.array([[0.1, 2.0, -1.0], [3.0, 0.0, 0.5], [0.0, 0.2, 0.1]], dtype=np.float32)
    sampled = np.array([0, 2, 0])
    action, behaviour = greedy_behaviour(sampled, logits, 2)
    assert action.tolist() == [1, 0, 0]  # envs 0 and 1 greedy, env 2 keeps its sample
    assert behaviour[0].tolist() == [-GREEDY_LOGIT_GAP, 0.0, -GREEDY_LOGIT_GAP]
    assert behaviour[1].tolist() == [0.0, -GREEDY_LOGIT_GAP, -GREEDY_LOGIT_GAP]
    assert np.array_equal(behaviour[2], logits[2]) and sampled.tolist() == [0, 2, 0]  # copies
    # V-trace's log mu(a) of a greedy step is exactly 0, so log_rho = log pi(a)
    log_mu = action_log_probs(torch.from_numpy(behaviour)[None], torch.from_numpy(action)[None])
    assert log_mu[0, :2].tolist() == [0.0, 0.0]
    assert greedy_behaviour(sampled, logits, 0)[0].tolist() == sampled.tolist()
    with pytest.raises(ValueError, match="num_greedy"):
        greedy_behaviour(sampled, logits, 4)


def test_step_envs_marks_the_episodes_of_greedy_envs() -> None:
    envs = [CountingEnv(1, truncate=False) for _ in range(3)]
    for env in envs:
        env.reset()
    result = step_envs(envs, np.zeros(3, dtype=np.int64), greedy_envs=1)
    assert [result.episodes[i].greedy for i in range(3)] == [True, False, False]
