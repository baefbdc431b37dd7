"""Learner.step: fresh/replayed batch composition, IS weights, priorities, every unroll stored."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pytest
import torch

from configs import schema
from learner.collate import collate
from tests.learner.builders import learner, params, time_major_batch_sizes, unrolls


def replay_learner(**overrides: Any):
    opts = dict(replay__enabled=True, replay__min_size=0, run__total_env_frames=1000)
    opts.update(overrides)
    return learner(**opts)


def roundtrip(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def spy(obj: Any, name: str, calls: list) -> None:
    """Record (args, kwargs, result) of every call to ``obj.name``."""
    original = getattr(obj, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        calls.append((args, kwargs, result))
        return result

    setattr(obj, name, wrapper)


def test_without_replay_step_is_collate_and_train_step() -> None:
    a, b = learner(), learner()
    assert a.replay is None and a.fresh_per_step == 4
    fresh = unrolls(4)
    ma = a.step(fresh, progress=0.3)
    mb = b.train_step(collate(fresh, "cpu"))
    assert ma == mb
    for x, y in zip(params(a), params(b)):
        assert (x == y).all()
    with pytest.raises(ValueError, match="fresh"):
        a.step(unrolls(3), progress=0.3)


@pytest.mark.parametrize(("ratio", "fresh"), [(0.0, 4), (0.25, 3), (0.5, 2), (0.75, 1), (0.9, 1)])
def test_fresh_per_step_follows_the_ratio(ratio: float, fresh: int) -> None:
    assert replay_learner(replay__ratio=ratio).fresh_per_step == fresh


def test_ratio_one_is_refused() -> None:
    with pytest.raises(schema.ConfigError, match=r"replay\.ratio"):
        schema.load(None, {"replay.ratio": 1.0})


@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.75])
def test_every_fresh_unroll_is_stored_and_batches_mix_at_the_ratio(ratio: float) -> None:
    lrn = replay_learner(replay__ratio=ratio)
    n = lrn.fresh_per_step
    sizes = time_major_batch_sizes(lrn)
    for i in range(5):
        metrics = lrn.step(unrolls(n, seed=i), progress=i / 10)
        assert metrics["replay/pushes"] == (i + 1) * n  # whatever the ratio
    assert len(lrn.replay) == 5 * n
    assert sizes == [n] + [4] * 4  # the first update has nothing to replay yet
    assert metrics["replay/replayed_fraction"] == (4 - n) / 4
    assert metrics["replay/samples"] == 4 * (4 - n)


def test_replayed_part_is_weighted_and_reprioritised() -> None:
    lrn = replay_learner(replay__alpha=1.0, replay__beta=0.2)
    samples, updates, pushes, priority_updates = [], [], [], []
    spy(lrn.replay, "sample", samples)
    spy(lrn, "_update", updates)
    spy(lrn.replay, "push", pushes)
    spy(lrn.replay, "update_priorities", priority_updates)
    for i in range(4):
        metrics = lrn.step(unrolls(2, seed=i), progress=0.5)
    assert metrics["replay/beta"] == pytest.approx(0.2 + 0.8 * 0.5)
    assert samples[-1][0] == (2, metrics["replay/beta"])  # B - B_fresh at the annealed beta
    sample = samples[-1][2]
    weights = updates[-1][0][1]
    np.testing.assert_array_equal(weights[:2], [1.0, 1.0])  # fresh: weight 1
    np.testing.assert_array_equal(weights[2:], sample.weights)  # replayed: IS weights
    assert metrics["replay/is_weight_mean"] == pytest.approx(float(weights.mean()))
    # the replayed unrolls get the new |target - V| priorities, the fresh ones their own
    new_priorities = updates[-1][2][1].numpy()
    indices, values, push_ids = priority_updates[-1][0]
    np.testing.assert_array_equal(indices, sample.indices)
    np.testing.assert_allclose(values, new_priorities[2:])
    np.testing.assert_array_equal(push_ids, sample.push_ids)
    pushed = [args[1] for args, _, _ in pushes[-2:]]
    np.testing.assert_allclose(pushed, new_priorities[:2])
    assert (new_priorities > 0).all() and len(set(new_priorities.tolist())) == 4
    # stored as (p + eps)^alpha with alpha = 1
    slot = pushes[-1][2]
    stored = lrn.replay._tree.get(slot)
    assert float(stored) == pytest.approx(pushed[-1] + lrn.replay.eps)


def test_replay_waits_for_min_size() -> None:
    lrn = replay_learner(replay__min_size=5)
    sizes = time_major_batch_sizes(lrn)
    fractions = [
        lrn.step(unrolls(2, seed=i), progress=0.0)["replay/replayed_fraction"] for i in range(4)
    ]
    assert sizes == [2, 2, 2, 4]  # 0, 2, 4 stored: fresh only; 6 stored: mixed
    assert fractions == [0.0, 0.0, 0.0, 0.5]


def test_replay_state_round_trip_continues_the_same_samples() -> None:
    a = replay_learner()
    for i in range(3):
        a.step(unrolls(2, seed=i), progress=0.1)
    b = replay_learner()
    # through torch.save / weights_only torch.load, as a checkpoint on disk would be
    b.load_state_dict(roundtrip(a.state_dict()))
    replay_state = roundtrip(a.replay_state_dict())
    assert all(not isinstance(v, np.ndarray) for v in replay_state.values())
    b.load_replay_state_dict(replay_state)
    ma = a.step(unrolls(2, seed=9), progress=0.2)
    mb = b.step(unrolls(2, seed=9), progress=0.2)
    assert ma == mb
    for x, y in zip(params(a), params(b)):
        assert (x == y).all()
    plain = learner()
    assert plain.replay_state_dict() is None
    with pytest.raises(ValueError, match="replay"):
        plain.load_replay_state_dict(a.replay_state_dict())


def test_learner_throughput_bench_measures_with_replay(capsys: pytest.CaptureFixture[str]) -> None:
    from bench import learner_throughput

    learner_throughput.main(["--seconds", "0.3", "--batch-size", "2", "--replay-ratio", "0.5"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["frames_per_s"] > 0 and result["updates_per_s"] > 0
    assert result["device"] == "cpu"
    assert result["batch"] == [21, 2, 4, 84, 84]
    assert result["replay"]["fresh_per_update"] == 1
    assert result["replay"]["replayed_per_update"] == 1
    # fresh frames only: 1 unroll x 20 steps x 4 frames per update
    assert result["frames_per_s"] == pytest.approx(80 * result["updates_per_s"], rel=0.01)


@pytest.mark.parametrize("replay", [False, True])
def test_a_huge_finite_reward_skips_the_update_and_keeps_the_weights_finite(replay: bool) -> None:
    lrn = replay_learner(replay__ratio=0.5) if replay else learner()
    n = lrn.fresh_per_step
    lrn.step(unrolls(n, seed=1), progress=0.1)
    before = [p.detach().clone() for p in params(lrn)]
    poisoned = unrolls(n, seed=2)
    poisoned[0].reward[1] = 3e38  # finite, so it passes the codec's check, but overflows
    metrics = lrn.step(poisoned, progress=0.2)
    assert metrics["optim/skipped_nonfinite"] == 1.0
    for old, new in zip(before, params(lrn)):
        assert torch.equal(old, new)
    if replay:
        assert metrics["replay/dropped_nonfinite"] == n and len(lrn.replay) == n  # not pushed
    metrics = lrn.step(unrolls(n, seed=3), progress=0.3)  # the next sound batch trains
    assert metrics["optim/skipped_nonfinite"] == 0.0
    assert all(torch.isfinite(p).all() for p in params(lrn))
    assert any(not torch.equal(old, new) for old, new in zip(before, params(lrn)))
