"""An actor joining a learner that has been training for a while starts from its current weights.

A real learner and a first actor run as subprocesses until the learner has published versions
> 0. A second actor then joins in this process (``actor.worker.Actor``) while the first one keeps
training, and a third once the learner is idle, so "the learner's latest published version at
that moment" is exact. The test watches the learner's ``weights`` and ``status`` topics itself,
and captures each late joiner's first unroll by wrapping ``Actor._send``: it must carry the
version the actor joined at, never 0 (random weights).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import zmq

from actor.worker import Actor, ActorOptions
from models.weights import flatten_state
from protocol import transport
from protocol.messages import LearnerStatus, ProtocolError, Trajectory, Weights
from tests.conftest import ROOT, free_port


class Watcher:
    """The learner's broadcasts as this test sees them: every weights version and status."""

    def __init__(self, endpoint: str) -> None:
        self.weights: dict[int, Weights] = {}
        self.statuses: list[LearnerStatus] = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(endpoint,), daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self, endpoint: str) -> None:
        # The socket lives and dies in this thread (ZeroMQ sockets are not thread-safe). Reading
        # without pause matters: a PUB drops what a full subscriber queue cannot take.
        ctx = zmq.Context()
        sub = transport.connect_sub(
            ctx, endpoint, (transport.TOPIC_WEIGHTS, transport.TOPIC_STATUS)
        )
        self._ready.set()
        while not self._stop.is_set():
            if not sub.poll(100):
                continue
            try:
                _, msg = transport.recv(sub, prefix_frames=1)
            except ProtocolError:
                continue
            with self.lock:
                if isinstance(msg, Weights):
                    self.weights[msg.policy_version] = msg
                elif isinstance(msg, LearnerStatus):
                    self.statuses.append(msg)
        sub.close(0)
        ctx.term()

    def latest_version(self) -> int:
        with self.lock:
            return max(self.weights, default=-1)

    def status(self) -> LearnerStatus | None:
        with self.lock:
            return self.statuses[-1] if self.statuses else None

    def wait(self, what: str, predicate: Any, timeout: float, procs: list[Any]) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            for proc in procs:
                assert proc.poll() is None, f"a process exited while waiting for {what}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.2)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def first_unroll(actor: Actor) -> Trajectory:
    """Run ``actor``'s collection loop until it has sent one unroll; return that unroll."""
    sent: list[Trajectory] = []
    send = actor._send

    def capture(traj: Trajectory) -> None:
        send(traj)
        sent.append(traj)
        actor.stopping = True  # run() returns after this step

    actor._send = capture  # type: ignore[method-assign]
    actor.run()
    assert sent, "the actor stopped before sending an unroll"
    return sent[0]


@pytest.fixture
def learner_and_first_actor(tmp_path: Path) -> Iterator[tuple[str, str, Any, Any]]:
    unrolls = f"tcp://127.0.0.1:{free_port()}"
    broadcast = f"tcp://127.0.0.1:{free_port()}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with (
        open(tmp_path / "learner.log", "wb") as learner_log,
        open(tmp_path / "actor-1.log", "wb") as actor_log,
    ):
        learner = subprocess.Popen(
            [sys.executable, "-m", "learner", "--config", "configs/smoke.toml",
             "--run-dir", str(tmp_path / "run"), "--run.total_env_frames", "100_000_000",
             "--network.trajectory_endpoint", unrolls, "--network.broadcast_endpoint", broadcast],
            cwd=ROOT, stdout=learner_log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        actor = subprocess.Popen(
            [sys.executable, "-m", "actor", "--learner", unrolls, "--actor-id", "1",
             "--stall-dir", str(tmp_path / "stalls")],
            cwd=ROOT, stdout=actor_log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        threads = torch.get_num_threads()  # an in-process Actor sets torch to one thread
        try:
            yield unrolls, broadcast, learner, actor
        finally:
            torch.set_num_threads(threads)
            for proc in (actor, learner):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in (actor, learner):
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def test_late_joiners_start_from_the_current_weights(learner_and_first_actor, tmp_path) -> None:
    unrolls, broadcast, learner, first = learner_and_first_actor
    watcher = Watcher(broadcast)
    late: list[Actor] = []
    try:
        watcher.wait("learner version > 1", lambda: watcher.latest_version() > 1, 150,
                     [learner, first])  # fmt: skip

        # 1. Join while the learner keeps training: the welcome's weights are the newest ones
        #    published between the hello and the end of the join.
        before = watcher.latest_version()
        moving = Actor(ActorOptions(unrolls, 2, num_envs=1, stall_dir=tmp_path / "stalls"))
        late.append(moving)
        moving.join()
        after = watcher.latest_version()
        joined_at = moving.policy_version
        assert 0 < before <= joined_at <= after
        unroll = first_unroll(moving)
        # the first step acts on the join's weights, or on newer ones loaded just before it
        assert unroll.policy_version[0] >= joined_at > 0
        assert (np.diff(unroll.policy_version) >= 0).all()  # versions never go backwards
        late.remove(moving)
        moving.close()

        # 2. Join an idle learner (its only trainer stopped): the version is exact.
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=60) == 0

        def settled() -> bool:  # three statuses (about 2 s) without a new version
            with watcher.lock:
                recent = watcher.statuses[-3:]
            return len(recent) == 3 and len({s.policy_version for s in recent}) == 1

        watcher.wait("the learner to go idle", settled, 60, [learner])
        current = watcher.status()
        assert current is not None and current.policy_version == watcher.latest_version() > 0
        accepted = current.accepted

        idle = Actor(ActorOptions(unrolls, 3, num_envs=1, stall_dir=tmp_path / "stalls"))
        late.append(idle)
        idle.join()
        assert idle.policy_version == current.policy_version
        # ... and its network holds exactly the weights the learner published as that version
        _, flat = flatten_state(idle.model)
        np.testing.assert_array_equal(flat, watcher.weights[current.policy_version].flat)
        unroll = first_unroll(idle)
        assert (unroll.policy_version == current.policy_version).all()
        # the learner took it as is: accepted, not dropped as stale
        watcher.wait(
            "the learner to accept the unroll",
            lambda: (s := watcher.status()) is not None and s.accepted == accepted + 1,
            30,
            [learner],
        )
        assert watcher.status().dropped_stale == current.dropped_stale
    finally:
        for actor in late:
            actor.close()
        watcher.close()
