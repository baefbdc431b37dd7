"""Malformed input against a live learner while real actors train: all counted, none harmful."""

from __future__ import annotations

import pickle
import signal
import subprocess
import sys
import time
import tomllib
from collections import Counter
from pathlib import Path

import msgpack
import numpy as np
import torch
import zmq

from configs import schema
from protocol import transport
from protocol.codec import encode
from protocol.messages import (
    PROTOCOL_VERSION,
    Hello,
    LearnerStatus,
    Trajectory,
    TrajectorySpec,
    Welcome,
)
from tests.conftest import ROOT
from tests.integration.fleet import learner_counters

MESSAGES = 10_500


class Evil:
    """A pickle payload that would create a file if it were ever unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # pragma: no cover - must never run
        return (Path.write_text, (self.marker, "pwned"))


class Fuzzer:
    """Builds one malformed message of each kind, cycling; counts what it sent by kind."""

    def __init__(self, spec: TrajectorySpec, marker: Path, seed: int = 0) -> None:
        self.spec = spec
        self.marker = marker
        self.rng = np.random.default_rng(seed)
        self.seq = 0
        self.sent: Counter[str] = Counter()

    def trajectory(
        self, decodes: bool = True, actor_id: int = 999, env_index: int = 0, **changes: np.ndarray
    ) -> Trajectory:
        """A trajectory; only ones whose seq the learner records take a sequence number (it
        tracks them per incarnation, and skipped numbers would read as lost unrolls): not
        those that fail to decode, nor those refused for ids that are not the hello's."""
        arrays = self.spec.empty()
        arrays["obs"][:] = self.rng.normal(size=arrays["obs"].shape)
        arrays["action"][:] = self.rng.integers(0, self.spec.num_actions, self.spec.unroll_length)
        arrays.update(changes)
        if decodes:
            self.seq += 1
        return Trajectory(
            actor_id=actor_id, run_id="fuzzer", seq=self.seq, env_index=env_index, **arrays
        )

    def message(self, i: int) -> tuple[str, list[bytes]]:
        kinds = [
            "random_bytes", "truncated_frame", "wrong_version", "wrong_dtype", "wrong_shape",
            "too_many_frames", "nan_reward", "bad_action", "pickle", "garbage_header_type",
            "huge_reward", "huge_logit", "future_version", "foreign_actor_id", "bad_env_index",
            "extreme_hello", "repeat_hello",
        ]  # fmt: skip
        kind = kinds[i % len(kinds)]
        t = self.spec.unroll_length
        if kind == "random_bytes":
            n = int(self.rng.integers(1, 4))
            frames = [self.rng.bytes(int(self.rng.integers(0, 500))) for _ in range(n)]
        elif kind == "truncated_frame":
            frames = [bytes(f) for f in encode(self.trajectory(decodes=False))]
            frames[1] = frames[1][: len(frames[1]) // 2]
        elif kind == "wrong_version":
            frames = [bytes(f) for f in encode(self.trajectory(decodes=False))]
            header = msgpack.unpackb(frames[0])
            header["v"] = 999
            frames[0] = msgpack.packb(header)
        elif kind == "wrong_dtype":
            frames = encode(self.trajectory(reward=np.zeros(t, dtype=np.int32)))
        elif kind == "wrong_shape":
            frames = encode(self.trajectory(obs=np.zeros((t + 2, 3), dtype=np.float32)))
        elif kind == "too_many_frames":
            frames = [b"x"] * 40
        elif kind == "nan_reward":
            reward = np.zeros(t, dtype=np.float32)
            reward[int(self.rng.integers(t))] = np.nan
            frames = encode(self.trajectory(reward=reward))
        elif kind == "bad_action":
            frames = encode(self.trajectory(action=np.full(t, 99, dtype=np.int64)))
        elif kind == "huge_reward":  # finite: it once passed and made the weights NaN
            frames = encode(self.trajectory(reward=np.full(t, 3e38, dtype=np.float32)))
        elif kind == "huge_logit":
            logits = np.full((t, self.spec.num_actions), -1e30, dtype=np.float32)
            frames = encode(self.trajectory(behaviour_logits=logits))
        elif kind == "future_version":
            frames = encode(self.trajectory(policy_version=np.full(t, 2**62, dtype=np.int64)))
        elif kind == "foreign_actor_id":  # not the id its connection's hello gave
            frames = encode(self.trajectory(decodes=False, actor_id=424242))
        elif kind == "bad_env_index":  # the hello declared 64 envs
            frames = encode(self.trajectory(decodes=False, env_index=99))
        elif kind == "extreme_hello":  # a version no int64 array could hold once incremented
            frames = encode(Hello(actor_id=999, run_id="fuzzer", host="fuzz", pid=0,
                                  num_envs=64, policy_version=2**63 - 1))  # fmt: skip
        elif kind == "repeat_hello":  # valid: it must not add credits on top of those in flight
            frames = encode(Hello(actor_id=999, run_id="fuzzer", host="fuzz", pid=0,
                                  num_envs=64))  # fmt: skip
        elif kind == "pickle":
            frames = [pickle.dumps(Evil(self.marker)), pickle.dumps({"t": "trajectory"})]
        else:
            header = {"v": PROTOCOL_VERSION, "t": ["trajectory"], "f": {}, "a": []}
            frames = [msgpack.packb(header)]
        self.sent[kind] += 1
        return kind, [bytes(f) for f in frames]


def test_fuzzing_a_live_learner_is_counted_and_harmless(tmp_path: Path, endpoints) -> None:
    run_dir = tmp_path / "fuzz"
    marker = tmp_path / "unpickled"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "launcher.py"), "--config", "configs/cartpole.toml",
         "--run.total_env_frames", "100_000_000", "--run-dir", str(run_dir), *endpoints],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    ctx = zmq.Context.instance()
    status = transport.connect_sub(ctx, endpoints[3], (transport.TOPIC_STATUS,))
    dealer = transport.connect_dealer(ctx, endpoints[1])
    latest: list[LearnerStatus] = []

    def pump(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if status.poll(50):
                _, msg = transport.recv(status, prefix_frames=1)
                if isinstance(msg, LearnerStatus):
                    latest.append(msg)

    try:
        deadline = time.monotonic() + 120
        while not latest or latest[-1].updates < 3:
            assert time.monotonic() < deadline, "the run never started training"
            pump(0.5)
        # join like an actor (so trajectory-shaped garbage reaches value validation)
        transport.send(dealer, Hello(actor_id=999, run_id="fuzzer", host="fuzz", pid=0,
                                     num_envs=64))  # fmt: skip
        assert dealer.poll(10_000), "no welcome"
        _, welcome = transport.recv(dealer)
        assert isinstance(welcome, Welcome)
        config = schema.from_dict(tomllib.loads(welcome.config_toml))
        spec = TrajectorySpec(config.actor.unroll_length, (4,), np.dtype(np.float32), 2)
        fuzzer = Fuzzer(spec, marker)
        updates_before = latest[-1].updates
        for i in range(MESSAGES):
            _, frames = fuzzer.message(i)
            dealer.send_multipart(frames)
            while dealer.poll(0):  # credits and weights coming back: read and ignore
                dealer.recv_multipart()
            if i % 500 == 0:
                pump(0.05)
        # oversized frames: above the codec's 32 MiB cap, below ZeroMQ's own
        for _ in range(3):
            dealer.send_multipart([b"\x80", bytes(33 * 1024 * 1024)])
        pump(5.0)
        assert latest[-1].updates > updates_before, "the learner stopped training"
    finally:
        dealer.close(linger=2000)
        status.close(0)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert not marker.exists(), "a pickle payload was executed"
    counters = learner_counters(run_dir)
    bad = MESSAGES + 3 - fuzzer.sent["repeat_hello"]
    assert counters["rejected"] == bad, {k: v for k, v in counters.items() if "rejected" in k}
    for reason in (
        "header:bad_header", "obs:bad_byte_count", "protocol_version:bad_version",
        "reward:bad_dtype", "obs:bad_shape", "frames:too_many_frames", "reward:not_finite",
        "action:out_of_range", "frames:too_large", "type:unknown_type", "reward:too_large",
        "behaviour_logits:too_large", "policy_version:ahead", "actor_id:mismatch",
        "env_index:out_of_range",
    ):  # fmt: skip
        assert counters.get(f"rejected:{reason}", 0) > 0, reason
    assert counters["lost"] == 0
    # every numbered unroll, the hostile peer's too, ends in exactly one bucket
    assert counters["sent"] == (
        counters["accepted"] + counters["rejected_unrolls"] + counters["dropped_stale"]
        + counters["lost"]
    ), counters  # fmt: skip
    assert counters["rejected_unrolls"] < counters["rejected"]  # hellos, garbage: no seq
    # the version stayed the learner's own, and the weights it trained and saved are finite
    assert int((run_dir / "policy_version").read_text()) < 10**9
    newest = max((run_dir / "checkpoints").glob("*.pt"), key=lambda f: f.stat().st_mtime)
    state = torch.load(newest, map_location="cpu", weights_only=True)
    model = state["model"]
    assert "model" not in state["learner"]  # stored once
    assert model and all(torch.isfinite(v).all() for v in model.values() if v.is_floating_point())
