"""Tests for learner.replay: prioritized sampling, IS weights, storage round trips."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from learner.replay import PrioritizedReplay
from protocol.messages import ProtocolError, Trajectory, TrajectorySpec

MARIO_LIKE = TrajectorySpec(20, (4, 6, 6), np.dtype(np.uint8), 7)
"""Mario's layout (T=20, 4 stacked frames, 7 actions) with tiny 6x6 frames for speed."""
VECTOR = TrajectorySpec(5, (4,), np.dtype(np.float32), 2)
"""CartPole's layout: 4 float32 features, 2 actions."""


def _header_and_scalars(
    spec: TrajectorySpec, rng: np.random.Generator, seq: int
) -> dict[str, np.ndarray]:
    arrays = spec.empty()
    t = spec.unroll_length
    arrays["action"][:] = rng.integers(0, spec.num_actions, t)
    arrays["reward"][:] = rng.normal(size=t).astype(np.float32) * 100
    arrays["behaviour_logits"][:] = rng.normal(size=(t, spec.num_actions)) * 10
    arrays["policy_version"][:] = seq + rng.integers(0, 3, t)
    return arrays


def stacked_unroll(
    spec: TrajectorySpec,
    seq: int,
    *,
    seed: int | None = None,
    reset_at_start: bool = False,
    terminate_at: tuple[int, ...] = (),
    truncate_at: tuple[int, ...] = (),
    static_at: tuple[int, ...] = (),
) -> Trajectory:
    """An unroll whose observations behave like a real frame stack.

    Each step pushes one new random frame (oldest first); after a terminated or truncated step
    the next observation is a reset stack (the reset frame in every slot), and a truncated step
    records the stack it would have shown in ``truncated_obs``. At ``static_at`` steps the new
    frame repeats the newest one (a frozen screen).
    """
    rng = np.random.default_rng(seq if seed is None else seed)
    stack, h, w = spec.obs_shape

    def frame() -> np.ndarray:
        return rng.integers(0, 256, (h, w), dtype=np.uint8)

    frames = [frame()] * stack if reset_at_start else [frame() for _ in range(stack)]
    arrays = _header_and_scalars(spec, rng, seq)
    obs, final = [np.stack(frames)], []
    for t in range(spec.unroll_length):
        following = [*frames[1:], frames[-1] if t in static_at else frame()]
        if t in terminate_at or t in truncate_at:
            if t in truncate_at:
                final.append(np.stack(following))
                arrays["truncated"][t] = True
            else:
                arrays["terminated"][t] = True
            following = [frame()] * stack
        frames = following
        obs.append(np.stack(frames))
    arrays["obs"] = np.stack(obs)
    if final:
        arrays["truncated_obs"] = np.stack(final)
    return Trajectory(actor_id=3, run_id=f"run-{seq % 2}", seq=seq, env_index=seq % 5, **arrays)


def vector_unroll(spec: TrajectorySpec, seq: int) -> Trajectory:
    """A CartPole-like unroll with random float32 observations and one truncation."""
    rng = np.random.default_rng(seq)
    arrays = _header_and_scalars(spec, rng, seq)
    arrays["obs"][:] = rng.normal(size=arrays["obs"].shape)
    arrays["obs"][1, 0] = -0.0  # must come back as -0.0, not 0.0
    arrays["truncated"][2] = True
    arrays["truncated_obs"] = rng.normal(size=(1, *spec.obs_shape)).astype(np.float32)
    return Trajectory(actor_id=1, run_id="cp", seq=seq, env_index=0, **arrays)


def assert_same_unroll(got: Trajectory, want: Trajectory) -> None:
    """Every array equal in shape, dtype and bits; header fields equal; no episodes."""
    for name in MARIO_LIKE.fields:
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype == b.dtype, name
        assert a.shape == b.shape, name
        assert a.tobytes() == b.tobytes(), name
    for name in ("actor_id", "run_id", "seq", "env_index"):
        assert getattr(got, name) == getattr(want, name), name
    assert got.episodes == []


def chi_square_critical(df: int, z: float) -> float:
    """Upper quantile of chi-square(df) by the Wilson-Hilferty cube approximation.

    ``z`` is the standard normal quantile of the same level (3.090 for 0.999); at that level
    the approximation is within 2% of the exact quantile for df >= 3 (24.53 vs the tabulated
    24.32 for df=7), so the test is at most slightly more lenient than nominal.
    """
    c = 2.0 / (9.0 * df)
    return df * (1.0 - c + z * math.sqrt(c)) ** 3


def fill(
    replay: PrioritizedReplay, count: int, priorities: list[float] | None = None
) -> list[Trajectory]:
    pushed = []
    for i in range(count):
        traj = vector_unroll(replay.spec, i)
        replay.push(traj, None if priorities is None else priorities[i])
        pushed.append(traj)
    return pushed


# ----------------------------------------------------------------------------------- sampling


def test_sampling_frequencies_match_priorities_to_the_alpha() -> None:
    raw = [0.05, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0]
    replay = PrioritizedReplay(VECTOR, capacity=8, alpha=0.6, eps=1e-6, seed=1)
    fill(replay, 8, raw)
    # batch size 1: stratified sampling degenerates to plain draws, so the counts are exactly
    # multinomial and the chi-square statistic follows chi2(K - 1) under the null hypothesis
    draws = 20_000
    counts = np.zeros(8)
    for _ in range(draws):
        counts[replay.sample(1).indices[0]] += 1

    def statistic(p: np.ndarray) -> float:
        expected = draws * p / p.sum()
        return float(((counts - expected) ** 2 / expected).sum())

    critical = chi_square_critical(df=7, z=3.090)  # level 0.999: 1 false alarm in 1000 seeds
    stat_alpha = statistic((np.asarray(raw) + 1e-6) ** 0.6)
    assert stat_alpha < critical, (stat_alpha, critical, counts)
    # the test has power: ignoring alpha (sampling proportional to p) is rejected by far
    assert statistic(np.asarray(raw)) > 10 * critical


def test_stratified_batches_have_marginal_probability_n_p() -> None:
    raw = [1.0, 2.0, 3.0, 10.0]
    replay = PrioritizedReplay(VECTOR, capacity=4, alpha=1.0, eps=1e-9, seed=2)
    fill(replay, 4, raw)
    counts = np.zeros(4)
    for _ in range(2000):
        s = replay.sample(8)
        np.add.at(counts, s.indices, 1)
        assert (np.diff(s.indices) >= 0).all()  # stratified: walks the tree left to right
    np.testing.assert_allclose(counts / counts.sum(), np.asarray(raw) / 16.0, atol=0.01)


def test_is_weights_equal_the_paper_formula() -> None:
    raw = np.array([1.0, 2.0, 3.0, 4.0, 0.5])
    alpha, beta, eps = 0.7, 0.5, 1e-6
    replay = PrioritizedReplay(VECTOR, capacity=10, alpha=alpha, beta=0.4, eps=eps, seed=3)
    fill(replay, 5, list(raw))
    s = replay.sample(8, beta=beta)
    stored = (raw + eps) ** alpha
    p = stored[s.indices] / stored.sum()
    w = (len(replay) * p) ** -beta  # N cancels in w / max(w), but keep the formula whole
    np.testing.assert_allclose(s.probabilities, p, rtol=1e-12)
    assert s.weights.dtype == np.float32 and s.weights.shape == (8,)
    np.testing.assert_allclose(s.weights, (w / w.max()).astype(np.float32), rtol=1e-6)
    assert s.weights.max() == 1.0
    # beta = 0 gives no correction; default beta comes from the constructor
    assert (replay.sample(8, beta=0.0).weights == 1.0).all()
    s = replay.sample(8)
    w = (len(replay) * s.probabilities) ** -0.4
    np.testing.assert_allclose(s.weights, w / w.max(), rtol=1e-6)


def test_priority_updates_take_effect() -> None:
    replay = PrioritizedReplay(VECTOR, capacity=10, alpha=1.0, eps=1e-6, seed=4)
    fill(replay, 10)
    assert np.ptp(replay._tree.priorities[:10]) == 0.0  # all got the same (max) priority
    applied = replay.update_priorities(np.arange(10), np.where(np.arange(10) == 3, 1000.0, 1.0))
    assert applied == 10
    hits = np.concatenate([replay.sample(10).indices for _ in range(300)])
    assert (hits == 3).mean() > 0.95  # 1000 / 1009 expected; uniform would give 0.1
    replay.update_priorities(np.arange(10), np.r_[np.zeros(5), np.ones(5)])
    hits = np.concatenate([replay.sample(10).indices for _ in range(500)])
    assert (hits < 5).sum() == 0  # probability (1e-6 / 5) each: never in 5000 draws
    assert set(hits.tolist()) == {5, 6, 7, 8, 9}
    np.testing.assert_allclose(replay._tree.priorities[:5], 1e-6)  # (0 + eps)^1


def test_new_unrolls_get_the_max_stored_priority() -> None:
    replay = PrioritizedReplay(VECTOR, capacity=4, alpha=0.5, eps=1e-6)
    fill(replay, 2)
    np.testing.assert_array_equal(replay._tree.priorities[:2], [1.0, 1.0])  # empty -> 1.0
    replay.update_priorities([0, 1], [9.0, 0.25])
    slot = replay.push(vector_unroll(VECTOR, 2))
    assert replay._tree.priorities[slot] == pytest.approx((9.0 + 1e-6) ** 0.5)
    slot = replay.push(vector_unroll(VECTOR, 3), priority=4.0)
    assert replay._tree.priorities[slot] == pytest.approx((4.0 + 1e-6) ** 0.5)


def test_update_priorities_skips_evicted_unrolls_and_validates() -> None:
    replay = PrioritizedReplay(VECTOR, capacity=3, alpha=1.0, eps=1e-6, seed=5)
    fill(replay, 3)
    s = replay.sample(3)
    replay.push(vector_unroll(VECTOR, 99))  # overwrites slot 0 (the oldest)
    applied = replay.update_priorities(s.indices, np.full(3, 7.0), push_ids=s.push_ids)
    assert applied == int((s.indices != 0).sum())
    assert replay._tree.priorities[0] == 1.0  # the new unroll kept its max priority
    assert replay.metrics()["replay/stale_updates"] == 3 - applied
    with pytest.raises(ValueError, match="priorities"):
        replay.update_priorities([0, 1], [1.0])
    with pytest.raises(ValueError, match="priorities"):
        replay.update_priorities([0, 1], [1.0, float("nan")])
    with pytest.raises(ValueError, match="priorities"):
        replay.update_priorities([0], [-0.5])
    with pytest.raises(ValueError, match="indices"):
        replay.update_priorities([3], [1.0])
    with pytest.raises(ValueError, match="push_ids"):
        replay.update_priorities([0, 1], [1.0, 1.0], push_ids=[0])


def test_sample_and_constructor_reject_bad_arguments() -> None:
    replay = PrioritizedReplay(VECTOR, capacity=2)
    with pytest.raises(ValueError, match="empty"):
        replay.sample(1)
    fill(replay, 1)
    with pytest.raises(ValueError, match="batch_size"):
        replay.sample(0)
    with pytest.raises(ValueError, match="beta"):
        replay.sample(1, beta=1.5)
    with pytest.raises(ValueError, match="priority"):
        replay.push(vector_unroll(VECTOR, 1), priority=float("inf"))
    assert len(replay) == 1  # the rejected push stored nothing
    bad = dataclasses.replace(vector_unroll(VECTOR, 1), reward=np.zeros(5, np.float64))
    with pytest.raises(ProtocolError, match="reward"):
        replay.push(bad)
    for kwargs, name in [
        ({"capacity": 0}, "capacity"),
        ({"capacity": 2, "alpha": -1.0}, "alpha"),
        ({"capacity": 2, "beta": 2.0}, "beta"),
        ({"capacity": 2, "eps": 0.0}, "eps"),
    ]:
        with pytest.raises(ValueError, match=name):
            PrioritizedReplay(VECTOR, **kwargs)


def test_beta_anneals_linearly_to_one() -> None:
    replay = PrioritizedReplay(VECTOR, capacity=2, beta=0.4)
    assert replay.beta_at(0.0) == 0.4
    assert replay.beta_at(0.5) == pytest.approx(0.7)
    assert replay.beta_at(1.0) == 1.0
    assert replay.beta_at(3.0) == 1.0 and replay.beta_at(-1.0) == 0.4
    with pytest.raises(ValueError, match="progress"):
        replay.beta_at(float("nan"))


# ------------------------------------------------------------------------------------ storage


def test_wraparound_evicts_the_oldest_unrolls() -> None:
    replay = PrioritizedReplay(VECTOR, capacity=5, seed=6)
    slots = [replay.push(vector_unroll(VECTOR, seq)) for seq in range(12)]
    assert slots == [i % 5 for i in range(12)]
    stored = {t.seq for t in replay.get(np.arange(5))}
    assert stored == {7, 8, 9, 10, 11}
    sampled = {t.seq for _ in range(50) for t in replay.sample(5).trajectories}
    assert sampled == {7, 8, 9, 10, 11}


def test_every_push_is_stored_and_counted() -> None:
    replay = PrioritizedReplay(MARIO_LIKE, capacity=4)
    for seq in range(11):
        replay.push(stacked_unroll(MARIO_LIKE, seq))
        assert len(replay) == min(seq + 1, 4)
    m = replay.metrics()
    assert m["replay/pushes"] == 11
    assert m["replay/size"] == 4 and m["replay/fill_rate"] == 1.0
    replay.sample(6)
    replay.sample(6)
    m = replay.metrics()
    assert m["replay/samples"] == 12
    assert 0 < m["replay/unique_fraction"] <= 4 / 6
    assert m["replay/priority_max"] == 1.0 and m["replay/priority_mean"] == 1.0


def test_round_trip_stacked_frames_with_resets_and_truncation() -> None:
    spec = MARIO_LIKE
    pushed = [
        stacked_unroll(spec, 0),
        stacked_unroll(spec, 1, reset_at_start=True),
        stacked_unroll(spec, 2, terminate_at=(5,)),
        stacked_unroll(spec, 3, truncate_at=(8,), terminate_at=(15,)),
        stacked_unroll(spec, 4, truncate_at=(0, 19), static_at=(3, 4, 10)),
        stacked_unroll(spec, 5, terminate_at=(0, 1, 2, 19), reset_at_start=True),
    ]
    assert pushed[4].truncated_obs.shape == (2, 4, 6, 6)
    replay = PrioritizedReplay(spec, capacity=8)
    for traj in pushed:
        replay.push(traj)
    for got, want in zip(replay.get(np.arange(len(pushed))), pushed):
        assert_same_unroll(got, want)
    m = replay.metrics()
    assert m["replay/dedup_overflows"] == 0
    # one new frame per step: T + stack at most (a reset first observation needs 1, not 4)
    frames = replay._num_frames[: len(pushed)]
    assert (frames <= spec.unroll_length + 4).all()
    assert frames[1] == spec.unroll_length + 1
    # sampled ones are just as exact, and collate into a batch
    sample = replay.sample(16)
    for slot, got in zip(sample.indices, sample.trajectories):
        assert_same_unroll(got, pushed[slot])
    from learner.collate import collate

    batch = collate(sample.trajectories)
    assert tuple(batch.obs.shape) == (21, 16, 4, 6, 6)
    assert tuple(batch.action.shape) == (20, 16)


def test_round_trip_vector_observations() -> None:
    replay = PrioritizedReplay(VECTOR, capacity=3)
    pushed = fill(replay, 5)
    for got, want in zip(replay.get(np.array([0, 1, 2])), [pushed[3], pushed[4], pushed[2]]):
        assert_same_unroll(got, want)
    assert np.signbit(replay.get(np.array([2]))[0].obs[1, 0])


def test_dedup_overflow_stores_whole_stacks() -> None:
    spec = MARIO_LIKE
    rng = np.random.default_rng(7)
    odd = stacked_unroll(spec, 0)
    # every slot of every stack a fresh frame: (T+1) * 4 unique frames, far over the budget
    odd = dataclasses.replace(odd, obs=rng.integers(0, 256, odd.obs.shape, dtype=np.uint8), seq=100)
    replay = PrioritizedReplay(spec, capacity=2)
    normal = stacked_unroll(spec, 1, terminate_at=(4,))
    replay.push(odd)
    replay.push(normal)
    assert replay.metrics()["replay/dedup_overflows"] == 1
    assert replay.metrics()["replay/overflow_slots"] == 1
    got = replay.get(np.array([0, 1]))
    assert_same_unroll(got[0], odd)
    assert_same_unroll(got[1], normal)
    # overwriting the slot drops the whole-stack copy; the count of overflows stays
    replay.push(stacked_unroll(spec, 2))
    assert replay.metrics()["replay/overflow_slots"] == 0
    assert replay.metrics()["replay/dedup_overflows"] == 1
    assert_same_unroll(replay.get(np.array([0]))[0], stacked_unroll(spec, 2))


def test_returned_arrays_do_not_alias_storage_or_input() -> None:
    spec = MARIO_LIKE
    traj = stacked_unroll(spec, 0, truncate_at=(3,))
    replay = PrioritizedReplay(spec, capacity=2)
    replay.push(traj)
    traj.obs[:] = 0  # the caller reuses its buffer
    traj.truncated_obs[:] = 0
    traj.reward[:] = 0
    got = replay.get(np.array([0]))[0]
    assert_same_unroll(got, stacked_unroll(spec, 0, truncate_at=(3,)))
    got.obs[:] = 1
    got.truncated_obs[:] = 1
    got.reward[:] = 1
    assert_same_unroll(replay.get(np.array([0]))[0], stacked_unroll(spec, 0, truncate_at=(3,)))


@pytest.mark.parametrize("spec", [MARIO_LIKE, VECTOR])
def test_state_dict_round_trip(spec: TrajectorySpec) -> None:
    def make(seq: int) -> Trajectory:
        if spec is VECTOR:
            return vector_unroll(spec, seq)
        if seq == 2:  # one overflow slot
            t = stacked_unroll(spec, seq)
            rng = np.random.default_rng(seq)
            return dataclasses.replace(t, obs=rng.integers(0, 256, t.obs.shape, np.uint8))
        return stacked_unroll(spec, seq, truncate_at=(seq % 20,))

    a = PrioritizedReplay(spec, capacity=4, alpha=0.5, seed=8)
    for seq in range(6):
        a.push(make(seq))
    a.update_priorities(np.arange(4), np.array([0.1, 2.0, 3.0, 0.5]))
    a.sample(3)
    state = a.state_dict()
    for key, value in state.items():  # numpy arrays and plain values only
        assert isinstance(value, np.ndarray | int | float | str | list | dict), key
    b = PrioritizedReplay(spec, capacity=4, alpha=0.9, seed=123)
    b.load_state_dict(state)
    assert b.metrics() == a.metrics()
    sa, sb = a.sample(5), b.sample(5)
    np.testing.assert_array_equal(sa.indices, sb.indices)
    np.testing.assert_array_equal(sa.weights, sb.weights)
    for ta, tb in zip(sa.trajectories, sb.trajectories):
        assert_same_unroll(tb, ta)
    assert b.push(make(6)) == a.push(make(6))
    with pytest.raises(ValueError, match="capacity"):
        PrioritizedReplay(spec, capacity=5).load_state_dict(state)
