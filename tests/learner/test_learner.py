"""Learner: collate layout, bootstrap rules, and that train_step really learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from configs import schema
from learner.collate import collate, last_actions
from learner.learner import Learner
from learner.targets import bootstrap_inputs
from protocol.messages import Trajectory, TrajectorySpec

SPEC = TrajectorySpec(4, (3,), np.dtype(np.float32), 2)


def traj(
    seq: int, truncated_at: tuple[int, ...] = (), terminated_at: tuple[int, ...] = ()
) -> Trajectory:
    arrays = SPEC.empty(num_truncated=len(truncated_at))
    arrays["obs"][:] = np.arange(5, dtype=np.float32)[:, None] + 10 * seq
    arrays["reward"][:] = 1.0
    for t in truncated_at:
        arrays["truncated"][t] = True
    for t in terminated_at:
        arrays["terminated"][t] = True
    arrays["truncated_obs"][:] = 100 + seq
    return Trajectory(actor_id=0, run_id="r", seq=seq, env_index=0, **arrays)


def test_collate_is_time_major_and_indexes_truncations() -> None:
    batch = collate([traj(0), traj(1, truncated_at=(2,)), traj(2, truncated_at=(0, 3))])
    assert batch.obs.shape == (5, 3, 3)
    assert batch.action.shape == (4, 3) and batch.action.dtype == torch.int64
    assert batch.behaviour_logits.shape == (4, 3, 2)
    np.testing.assert_array_equal(batch.obs[:, 1, 0].numpy(), [10, 11, 12, 13, 14])
    # flat index t * B + b, row for row with truncated_obs
    assert batch.truncated_index.tolist() == [2 * 3 + 1, 0 * 3 + 2, 3 * 3 + 2]
    assert batch.truncated_obs[:, 0].tolist() == [101, 102, 102]


def test_last_actions_follow_actions_and_reset_after_episode_ends() -> None:
    first = traj(0, terminated_at=(1,))
    second = traj(1, truncated_at=(2,))
    for t, arrays in ((first, [1, 0, 1, 1]), (second, [0, 1, 1, 0])):
        t.action[:] = arrays
    first.initial_last_action.fill(2)  # "none": the unroll starts an episode
    second.initial_last_action.fill(1)
    batch = collate([first, second])
    rows, final = last_actions(batch, SPEC.no_action)
    assert rows.shape == (5, 2) and rows.dtype == torch.int64
    assert rows[:, 0].tolist() == [2, 1, 2, 1, 1]  # step 1 terminated: row 2 starts afresh
    assert rows[:, 1].tolist() == [1, 0, 1, 2, 0]  # step 2 truncated: row 3 starts afresh
    assert final.tolist() == [1]  # the truncated step's final obs follows its own action


def test_bootstrap_inputs_zero_terminations_and_bootstrap_truncations() -> None:
    batch = collate([traj(0, terminated_at=(1,)), traj(1, truncated_at=(2,))])
    final_values = torch.tensor([5.0])
    rewards, discounts = bootstrap_inputs(batch, final_values, discount=0.9, reward_scale=2.0)
    expected_discounts = torch.full((4, 2), 0.9)
    expected_discounts[1, 0] = 0.0
    expected_discounts[2, 1] = 0.0
    torch.testing.assert_close(discounts, expected_discounts)
    expected_rewards = torch.full((4, 2), 2.0)
    expected_rewards[2, 1] += 0.9 * 5.0  # r + gamma V(final obs)
    torch.testing.assert_close(rewards, expected_rewards)
    with pytest.raises(ValueError, match="final_values"):
        bootstrap_inputs(batch, None, discount=0.9)


def test_reward_clip_applies_before_the_bootstrap() -> None:
    batch = collate([traj(0, truncated_at=(0,))])
    rewards, _ = bootstrap_inputs(
        batch, torch.tensor([10.0]), 0.5, reward_scale=3.0, reward_clip=1.0
    )
    assert rewards[0, 0].item() == pytest.approx(1.0 + 0.5 * 10.0)
    assert rewards[1, 0].item() == pytest.approx(1.0)


def test_train_step_learns_to_prefer_the_rewarded_action() -> None:
    torch.manual_seed(0)
    config = schema.load(None, {
        "env.id": "CartPole-v1", "model.torso": "mlp", "model.hidden_size": 16,
        "learner.learning_rate": 0.01, "learner.entropy_cost": 0.0,
    })  # fmt: skip
    learner = Learner(config, (3,), 2, "cpu", np.float32)
    rng = np.random.default_rng(0)
    for step in range(60):
        arrays = SPEC.empty()
        arrays["obs"][:] = rng.normal(size=arrays["obs"].shape)
        arrays["action"][:] = rng.integers(0, 2, 4)
        arrays["reward"][:] = (arrays["action"] == 1).astype(np.float32)  # action 1 pays
        arrays["terminated"][:] = True  # one-step episodes: the advantage is r - V
        batch = collate([Trajectory(actor_id=0, run_id="r", seq=step, env_index=0, **arrays)])
        metrics = learner.train_step(batch)
    assert learner.policy_version == 60
    assert {"loss/total", "policy/entropy", "optim/grad_norm", "vtrace/mean_vs"} <= set(metrics)
    with torch.no_grad():
        probs = learner.model(torch.randn(256, 3)).logits.softmax(-1)
    assert probs[:, 1].mean() > 0.8


def test_state_dict_round_trip_continues_counters() -> None:
    config = schema.load(None, {"env.id": "CartPole-v1", "model.torso": "mlp"})
    a = Learner(config, (3,), 2, "cpu", np.float32)
    a.train_step(collate([traj(0)]))
    b = Learner(config, (3,), 2, "cpu", np.float32)
    b.load_state_dict(a.state_dict())
    assert b.policy_version == 1
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        torch.testing.assert_close(pa, pb)
    assert b.optimizer.state_dict()["state"].keys() == a.optimizer.state_dict()["state"].keys()
