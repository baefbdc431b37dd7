"""Codec round trips and the named rejections of malformed messages."""

from __future__ import annotations

import pickle

import msgpack
import numpy as np
import pytest

from protocol.codec import Limits, decode, encode
from protocol.messages import (
    PROTOCOL_VERSION,
    Credit,
    EpisodeStats,
    Hello,
    LearnerStatus,
    ProtocolError,
    Trajectory,
    TrajectorySpec,
    Weights,
    Welcome,
)

SPEC = TrajectorySpec(5, (4, 84, 84), np.dtype(np.uint8), 7)


def make_trajectory(spec: TrajectorySpec = SPEC, seed: int = 0) -> Trajectory:
    rng = np.random.default_rng(seed)
    arrays = spec.empty(num_truncated=1)
    arrays["obs"][:] = rng.integers(0, 256, arrays["obs"].shape, dtype=np.uint8)
    arrays["action"][:] = rng.integers(0, spec.num_actions, spec.unroll_length)
    arrays["reward"][:] = rng.normal(size=spec.unroll_length)
    arrays["terminated"][1] = True
    arrays["truncated"][3] = True
    arrays["behaviour_logits"][:] = rng.normal(size=arrays["behaviour_logits"].shape)
    arrays["policy_version"][:] = 7
    arrays["truncated_obs"][:] = 9
    return Trajectory(
        actor_id=3,
        run_id="abc123",
        seq=11,
        env_index=2,
        episodes=[EpisodeStats(12.5, 40, 812, False, "1-1", {"progress": 30.0, "death": -25.0})],
        **arrays,
    )


MESSAGES = [
    make_trajectory(),
    Hello(actor_id=1, run_id="r1", host="box", pid=42, num_envs=8),
    Welcome(
        learner_run_id="L",
        config_toml="[run]\nseed = 1\n",
        broadcast_endpoint="tcp://*:5556",
        policy_version=3,
        credits=16,
    ),
    Credit(unrolls=8),
    Weights(
        policy_version=5,
        learner_run_id="L",
        layout=[["w", [2, 3]], ["b", [3]]],
        flat=np.arange(9, dtype=np.float32),
    ),
    LearnerStatus(
        learner_run_id="L",
        policy_version=1,
        updates=1,
        env_frames=320,
        total_env_frames=1000,
        env_fps=12.5,
        episodes=2,
        mean_return=1.5,
        mean_x_pos=300.0,
        max_x_pos=400,
        flags=0,
        accepted=4,
        rejected=1,
        dropped_stale=0,
        duplicates=0,
        done=True,
    ),
]


def assert_same(a: object, b: object) -> None:
    assert type(a) is type(b)
    for name, value in vars(a).items():
        other = getattr(b, name)
        if isinstance(value, np.ndarray):
            assert other.dtype == value.dtype and other.shape == value.shape, name
            np.testing.assert_array_equal(other, value, err_msg=name)
        else:
            assert other == value, name


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(message: object) -> None:
    decoded = decode(encode(message))
    assert_same(message, decoded)


def test_trajectory_round_trip_passes_spec_validation() -> None:
    original = make_trajectory()
    decoded = decode(encode(original))
    SPEC.validate(decoded)  # no exception
    assert np.shares_memory(decoded.obs, original.obs)  # neither encode nor decode copied


def test_decode_accepts_zmq_frames() -> None:
    zmq = pytest.importorskip("zmq")
    frames = [zmq.Frame(bytes(f)) for f in encode(make_trajectory())]
    assert_same(make_trajectory(), decode(frames))


def _header(frames: list) -> dict:
    return msgpack.unpackb(bytes(frames[0]), raw=False)


def _with_header(frames: list, header: dict) -> list:
    return [msgpack.packb(header, use_bin_type=True), *frames[1:]]


def _reject(frames: list, field: str, reason: str, limits: Limits | None = None) -> None:
    with pytest.raises(ProtocolError) as info:
        decode(frames, limits) if limits else decode(frames)
    assert (info.value.field, info.value.reason) == (field, reason), str(info.value)


def test_wrong_protocol_version_is_rejected() -> None:
    frames = encode(make_trajectory())
    header = _header(frames)
    header["v"] = PROTOCOL_VERSION + 1
    _reject(_with_header(frames, header), "protocol_version", "bad_version")


def test_truncated_frame_is_rejected() -> None:
    frames = encode(make_trajectory())
    obs = bytes(frames[1])
    frames[1] = obs[: len(obs) // 2]
    _reject(frames, "obs", "bad_byte_count")


def test_missing_frame_is_rejected() -> None:
    frames = encode(make_trajectory())
    _reject(frames[:-1], "frames", "frame_count")


def test_wrong_dtype_is_rejected_by_the_spec() -> None:
    traj = make_trajectory()
    bad = Trajectory(**{**vars(traj), "reward": traj.reward.astype(np.float16)})
    decoded = decode(encode(bad))
    with pytest.raises(ProtocolError) as info:
        SPEC.validate(decoded)
    assert (info.value.field, info.value.reason) == ("reward", "bad_dtype")


def test_disallowed_dtype_is_rejected_by_the_codec() -> None:
    frames = encode(make_trajectory())
    header = _header(frames)
    header["a"][2][1] = "object"
    _reject(_with_header(frames, header), "reward", "bad_dtype")


def test_wrong_shape_is_rejected_by_the_spec() -> None:
    traj = make_trajectory()
    bad = Trajectory(**{**vars(traj), "obs": np.zeros((6, 4, 84, 83), np.uint8)})
    with pytest.raises(ProtocolError) as info:
        SPEC.validate(decode(encode(bad)))
    assert (info.value.field, info.value.reason) == ("obs", "bad_shape")


def test_wrong_byte_count_is_rejected() -> None:
    frames = encode(make_trajectory())
    header = _header(frames)
    header["a"][1][2] = [SPEC.unroll_length + 1]  # action claims one more element
    _reject(_with_header(frames, header), "action", "bad_byte_count")


def test_unknown_type_and_garbage_header_are_rejected() -> None:
    frames = encode(make_trajectory())
    header = _header(frames)
    header["t"] = "bogus"
    _reject(_with_header(frames, header), "type", "unknown_type")
    _reject([b"\xc1\xff garbage", *frames[1:]], "header", "bad_header")


def test_pickle_payload_is_rejected_and_never_unpickled(tmp_path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):  # pragma: no cover - must never run
            return (marker.write_text, ("x",))

    _reject([pickle.dumps(Evil())], "header", "bad_header")
    assert not marker.exists()


def test_msgpack_ext_types_are_refused() -> None:
    frames = encode(make_trajectory())
    header = _header(frames)
    header["f"]["run_id"] = msgpack.ExtType(42, b"x")
    _reject(_with_header(frames, header), "header", "ext_type")


def test_missing_and_unknown_header_fields_are_named() -> None:
    frames = encode(make_trajectory())
    header = _header(frames)
    del header["f"]["seq"]
    _reject(_with_header(frames, header), "seq", "missing_field")
    header = _header(frames)
    header["f"]["sneaky"] = 1
    _reject(_with_header(frames, header), "sneaky", "unknown_field")
    header = _header(frames)
    header["f"]["seq"] = "eleven"
    _reject(_with_header(frames, header), "seq", "bad_type")


def test_bad_episode_stats_are_named() -> None:
    frames = encode(make_trajectory())
    header = _header(frames)
    header["f"]["episodes"] = [[float("nan"), 1, 0, False, "1-1", {}]]
    _reject(_with_header(frames, header), "episodes[0]", "bad_episode")
    header["f"]["episodes"] = [[1.0, 1, 0, False, "1-1", {"progress": "lots"}]]
    _reject(_with_header(frames, header), "episodes[0]", "bad_episode")


def test_size_limits_apply_before_decoding() -> None:
    frames = encode(make_trajectory())
    _reject(frames, "frames", "too_many_frames", Limits(max_frames=3))
    _reject(frames, "frames", "too_large", Limits(max_frame_bytes=1000))
    _reject(frames, "frames", "too_large", Limits(max_total_bytes=1000))
    _reject(frames, "header", "too_large", Limits(max_header_bytes=10))
    _reject([], "frames", "no_frames")


@pytest.mark.parametrize(
    ("mutate", "field", "reason"),
    [
        (lambda a: a["action"].__setitem__(0, 7), "action", "out_of_range"),
        (lambda a: a["action"].__setitem__(0, -1), "action", "out_of_range"),
        (lambda a: a["reward"].__setitem__(0, np.nan), "reward", "not_finite"),
        (
            lambda a: a["behaviour_logits"].__setitem__((0, 0), np.inf),
            "behaviour_logits",
            "not_finite",
        ),
        # finite but huge: 3e38 once made every later weight NaN (issue 14); the default
        # limits are 1e6 for rewards and 1e4 for logits
        (lambda a: a["reward"].__setitem__(0, 3e38), "reward", "too_large"),
        (lambda a: a["reward"].__setitem__(0, -2e6), "reward", "too_large"),
        (
            lambda a: a["behaviour_logits"].__setitem__((0, 0), -1e5),
            "behaviour_logits",
            "too_large",
        ),
        (lambda a: a["truncated"].__setitem__(4, True), "truncated_obs", "bad_shape"),
        (
            lambda a: a["terminated"].__setitem__(3, True),
            "truncated",
            "both_terminated_and_truncated",
        ),
        (lambda a: a["policy_version"].__setitem__(0, -5), "policy_version", "out_of_range"),
        # A (= no_action) is the largest valid previous action; -1 and A + 1 are not
        (
            lambda a: a["initial_last_action"].fill(SPEC.num_actions + 1),
            "initial_last_action",
            "out_of_range",
        ),
        (lambda a: a["initial_last_action"].fill(-1), "initial_last_action", "out_of_range"),
    ],
)
def test_spec_rejects_bad_values(mutate, field: str, reason: str) -> None:
    traj = make_trajectory()
    arrays = {k: np.array(v) if isinstance(v, np.ndarray) else v for k, v in vars(traj).items()}
    mutate(arrays)
    with pytest.raises(ProtocolError) as info:
        SPEC.validate(decode(encode(Trajectory(**arrays))))
    assert (info.value.field, info.value.reason) == (field, reason)


def test_spec_empty_matches_fields() -> None:
    arrays = SPEC.empty(num_truncated=2)
    assert arrays["obs"].shape == (6, 4, 84, 84) and arrays["obs"].dtype == np.uint8
    assert arrays["behaviour_logits"].shape == (5, 7)
    assert arrays["truncated_obs"].shape == (2, 4, 84, 84)


def test_value_limits_are_the_specs_own() -> None:
    """A reward the default limits accept is refused under a tighter one, and float
    observations (truncated ones included) are bounded too."""
    from dataclasses import replace

    from protocol.messages import ValueLimits

    traj = make_trajectory()
    big = Trajectory(**{**vars(traj), "reward": np.full_like(traj.reward, 500.0)})
    SPEC.validate(big)
    with pytest.raises(ProtocolError, match="reward: too_large"):
        replace(SPEC, limits=ValueLimits(reward=100.0)).validate(big)
    vec = TrajectorySpec(2, (4,), np.dtype(np.float32), 2)
    arrays = vec.empty(num_truncated=1)
    arrays["truncated"][1] = True
    arrays["truncated_obs"][0, 0] = 1e7
    fields = {**vars(traj), **arrays, "initial_last_action": np.int64(0)}
    with pytest.raises(ProtocolError, match="truncated_obs: too_large"):
        vec.validate(Trajectory(**fields))
    arrays["truncated_obs"][0, 0] = np.nan
    with pytest.raises(ProtocolError, match="truncated_obs: not_finite"):
        vec.validate(Trajectory(**fields))
