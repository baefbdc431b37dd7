"""Actor._drain: of several queued weights messages only the newest is loaded, once, and
another run's learner is ignored."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import zmq

from actor import worker
from protocol.messages import Credit, Weights


def test_drain_loads_only_the_newest_queued_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    sub, dealer = object(), object()
    queued: dict[Any, list[Any]] = {
        sub: [Weights(v, "T.L", [], np.zeros(0, np.float32)) for v in (5, 7, 6)]
        # another run's learner on the same endpoint (run token U): never loaded or followed
        + [Weights(99, "U.M", [], np.zeros(0, np.float32))],
        dealer: [Credit(unrolls=3), Weights(4, "T.L", [], np.zeros(0, np.float32))],
    }

    def fake_recv(sock: Any, prefix_frames: int = 0, flags: int = 0) -> tuple[list, Any]:
        if not queued[sock]:
            raise zmq.Again()
        return [], queued[sock].pop(0)

    monkeypatch.setattr(worker.transport, "recv", fake_recv)
    actor = worker.Actor.__new__(worker.Actor)  # only the state _drain touches
    actor.sub, actor.dealer = sub, dealer
    actor.options = worker.ActorOptions("tcp://127.0.0.1:1", 0, run_token="T")
    actor.learner_run_id, actor.credits, actor.policy_version = "T.L", 0, 3
    actor._hello_backoff, actor.last_heard, actor._awaiting_welcome = 1.0, 0.0, False
    loaded: list[int] = []
    monkeypatch.setattr(actor, "_load", lambda w: loaded.append(w.policy_version), raising=False)
    actor._drain()
    assert loaded == [7] and actor.credits == 3
    assert actor.learner_run_id == "T.L"  # not taken for a restart of its learner
    actor._drain()  # nothing queued: nothing loaded again
    assert loaded == [7]
