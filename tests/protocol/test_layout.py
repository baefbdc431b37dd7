"""The unroll layout is declared once (protocol.messages.Trajectory); the rest derives from it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from actor.rollout import StepResult, UnrollCollector
from configs.schema import from_dict
from learner import batching
from learner.collate import Batch, collate
from models import build_model
from protocol.messages import (
    UNROLL_FIELDS,
    Role,
    Trajectory,
    TrajectorySpec,
    fields_with,
    following_action,
)

SPEC = TrajectorySpec(3, (2,), np.dtype(np.float32), 4)


def test_every_array_field_of_the_trajectory_is_declared_with_a_role() -> None:
    arrays = [f.name for f in dataclasses.fields(Trajectory) if f.type in ("np.ndarray",)]
    assert list(UNROLL_FIELDS) == arrays
    assert set(SPEC.fields) == set(UNROLL_FIELDS)
    roles = {decl.role for decl in UNROLL_FIELDS.values()}
    assert roles == set(Role)


def test_spec_shapes_follow_roles() -> None:
    spec = TrajectorySpec(5, (4, 6, 6), np.dtype(np.uint8), 7, state_shape=(2, 3))
    f = spec.fields
    assert f["obs"].shape == (6, 4, 6, 6) and f["obs"].dtype == np.uint8
    assert f["behaviour_logits"].shape == (5, 7) and f["behaviour_logits"].dtype == np.float32
    assert f["truncated_obs"].shape == (None, 4, 6, 6)
    assert f["initial_core_state"].shape == (2, 3)
    assert f["initial_last_action"].shape == ()
    for name in fields_with(Role.STEP):
        assert f[name].shape[0] == 5, name


def test_batch_and_slicing_derive_their_fields_from_the_declarations() -> None:
    assert Batch._fields == (*UNROLL_FIELDS, "truncated_index")
    cut = {*batching.TIME_MAJOR_FIELDS, *batching.BATCH_MAJOR_FIELDS}
    assert cut | set(fields_with(Role.TRUNCATED_ROWS)) == set(UNROLL_FIELDS)
    assert not set(batching.TIME_MAJOR_FIELDS) & set(batching.BATCH_MAJOR_FIELDS)


def test_rollout_emits_every_declared_field_with_the_spec_shapes() -> None:
    collector = UnrollCollector(SPEC, num_envs=2, actor_id=0, run_id="r")
    collector.reset(np.zeros((2, 2), np.float32))
    out: list[Trajectory] = []
    for t in range(SPEC.unroll_length):
        result = StepResult(
            np.full((2, 2), t + 1, np.float32),
            np.ones(2, np.float32),
            np.array([t == 1, False]),
            np.array([False, t == 0]),
            final_obs={1: np.full(2, 9, np.float32)} if t == 0 else {},
        )
        out = collector.record(np.array([1, 2]), np.zeros((2, 4), np.float32), 0, result)
    assert len(out) == 2
    for traj in out:
        SPEC.validate(traj)  # every field present, with the declared shape and dtype
    batch = collate(out)
    assert batch.obs.shape == (4, 2, 2) and batch.initial_last_action.shape == (2,)
    assert batch.truncated_obs.shape == (1, 2) and batch.truncated_index.tolist() == [1]


def test_following_action_is_one_rule_for_numpy_and_torch() -> None:
    action = np.array([[0, 3, 1], [2, 2, 0]], dtype=np.int64)
    ended = np.array([[False, True, False], [True, False, True]])
    expected = [[0, 4, 1], [4, 2, 4]]
    out = following_action(action, ended, 4)
    assert out.dtype == np.int64 and out.tolist() == expected
    torch_out = following_action(torch.from_numpy(action), torch.from_numpy(ended), 4)
    assert torch_out.dtype == torch.int64 and torch_out.tolist() == expected


@pytest.mark.parametrize("core", ["none", "lstm"])
def test_for_run_reads_config_and_model(core: str) -> None:
    config = from_dict(
        {"model": {"torso": "mlp", "core": core, "core_size": 8}, "actor": {"unroll_length": 7}}
    )
    model = build_model(config.model, (4,), 3)
    spec = TrajectorySpec.for_run(config, model, np.float32)
    assert spec.unroll_length == 7 and spec.obs_shape == (4,) and spec.num_actions == 3
    assert spec.state_shape == tuple(model.state_shape)
    assert spec.limits.reward == config.learner.max_abs_reward
    assert spec.obs_dtype == np.float32
