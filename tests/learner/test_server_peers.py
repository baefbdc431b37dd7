"""A learner server fed hostile hellos and unrolls in-process: bounded, tied to their hello.

The server's sockets are bound (on ipc endpoints in the test's directory) but nothing connects:
each message goes straight to ``LearnerServer._handle`` as the ROUTER would hand it over, so
every case is checked against the counters and the credit ledger without timing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from learner.server import VERSION_FILE, LearnerServer
from protocol.codec import encode
from protocol.messages import Hello, Trajectory
from tests.learner.builders import server_config

ID = b"conn-1"
T = 4


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LearnerServer]:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    srv = LearnerServer(server_config(tmp_path), run_dir)
    try:
        yield srv
    finally:
        srv.close()


def hello(policy_version: int = -1, num_envs: int = 2, actor_id: int = 7) -> list[bytes]:
    return [
        bytes(f)
        for f in encode(
            Hello(
                actor_id=actor_id,
                run_id="inc-1",
                host="h",
                pid=1,
                num_envs=num_envs,
                policy_version=policy_version,
            )
        )
    ]


def unroll(server: LearnerServer, seq: int, **changes: object) -> list[bytes]:
    arrays = server.spec.empty()
    arrays["policy_version"][:] = server.policy_version
    fields: dict[str, object] = {"actor_id": 7, "run_id": "inc-1", "seq": seq, "env_index": 0}
    arrays.update({k: v for k, v in changes.items() if k in arrays})  # type: ignore[misc]
    fields.update({k: v for k, v in changes.items() if k not in arrays})
    return [bytes(f) for f in encode(Trajectory(**fields, **arrays))]  # type: ignore[arg-type]


def rejected(server: LearnerServer) -> dict[str, int]:
    return dict(server.accounting.rejected)


def test_a_hello_above_the_learners_version_is_refused(server: LearnerServer) -> None:
    server._handle(ID, hello(policy_version=2**63 - 1))
    assert rejected(server) == {"policy_version:ahead": 1}
    assert ID not in server.credits.peers  # no credits, no welcome
    assert server.policy_version == 0  # not renumbered towards 2^63
    server._handle(ID, hello(policy_version=server.policy_version))  # its own version: fine
    assert server.credits.peers[ID].credits == 2 * 2  # credits_per_env x the hello's 2 envs


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"actor_id": 424242}, "actor_id:mismatch"),
        ({"run_id": "someone-else"}, "run_id:mismatch"),
        ({"env_index": 2}, "env_index:out_of_range"),  # the hello declared 2 envs
        ({"policy_version": np.full(T, 10**9, np.int64)}, "policy_version:ahead"),
        ({"reward": np.full(T, 3e38, np.float32)}, "reward:too_large"),
        ({"behaviour_logits": np.full((T, 2), 1e30, np.float32)}, "behaviour_logits:too_large"),
    ],
)
def test_a_bad_unroll_is_rejected_and_its_credit_returns(
    server: LearnerServer, changes: dict[str, object], key: str
) -> None:
    server._handle(ID, hello())
    server._handle(ID, unroll(server, 0, **changes))
    assert rejected(server) == {key: 1}
    assert server.accounting.accepted == 0 and not server.pending
    server.credits.flush()
    peer = server.credits.peers[ID]
    assert (peer.credits, peer.in_flight) == (4, 0)  # nothing kept, nothing leaked
    server._handle(ID, unroll(server, 1))  # the same connection, honest: accepted
    assert server.accounting.accepted == 1 and len(server.pending) == 1
    assert server.accounting.accepted_by_actor == {7: 1}  # never counted to a claimed id


def test_the_unroll_counters_add_up_whatever_a_hostile_peer_sends(server: LearnerServer) -> None:
    server._handle(ID, hello(num_envs=9999))  # a rejected hello: no seq, not an unroll
    server._handle(ID, [b"\x80garbage"])  # undecodable: no seq either
    server._handle(ID, hello())
    server._handle(ID, unroll(server, 0))  # accepted
    server._handle(ID, unroll(server, 1, reward=np.full(T, 3e38, np.float32)))  # a bad unroll
    server._handle(ID, unroll(server, 1))  # its seq again: a duplicate
    server._handle(ID, unroll(server, 2, actor_id=424242))  # not its hello's id: no seq taken
    acc = server.accounting
    assert (acc.accepted, acc.rejected_unrolls, acc.duplicates, acc.lost) == (1, 1, 1, 0)
    assert acc.rejected_total == 4  # the hello, the garbage, the bad unroll, the foreign id
    assert acc.sent == acc.accepted + acc.rejected_unrolls + acc.dropped_stale + acc.lost


def test_the_version_file_is_written_before_a_version_is_published(
    server: LearnerServer,
) -> None:
    server.publish_weights()
    assert int((server.run_dir / VERSION_FILE).read_text()) == server.policy_version == 0
    server.learner.updates = 5  # as if five updates had run
    server.publish_weights()
    assert int((server.run_dir / VERSION_FILE).read_text()) == 5


def test_a_fleet_too_small_for_one_update_is_reported(
    server: LearnerServer, caplog: pytest.LogCaptureFixture
) -> None:
    server._handle(ID, hello(num_envs=1))  # 2 credits; an update needs 64 fresh unrolls
    with caplog.at_level("WARNING", logger="learner"):
        counters = server._credit_cap_check()
        server._credit_cap_check()  # still short: said once, not every beat
    assert counters == {"credit_cap": 2, "credits_per_update": 64}
    assert sum("one update needs 64" in r.getMessage() for r in caplog.records) == 1
    server._handle(b"conn-2", hello(num_envs=40, actor_id=8))  # 2 + 80 >= 64: enough
    with caplog.at_level("WARNING", logger="learner"):
        caplog.clear()
        assert server._credit_cap_check()["credit_cap"] == 82
    assert not caplog.records


@pytest.mark.parametrize(("interval", "published"), [(0.0, 5), (3600.0, 0)])
def test_weights_go_out_at_most_once_per_publish_interval(
    tmp_path: Path, interval: float, published: int
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    srv = LearnerServer(server_config(tmp_path, learner__publish_interval_s=interval), run_dir)
    try:
        srv.publish_weights()  # version 0, as at the start of a run
        srv.learner.updates = 5  # five updates later
        srv._publish_if_due()
        assert srv._published_version == published
        srv._publish_if_due()  # nothing newer: nothing sent again
        assert srv._published_version == published
    finally:
        srv.close()


def test_a_hello_from_another_runs_actor_is_ignored(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    srv = LearnerServer(server_config(tmp_path), run_dir, run_token="ab12")
    try:
        assert srv.run_id.startswith("ab12.")
        for i, run_id in enumerate(("zz99.a", "ab12.b", "c")):  # other run, this run, no token
            frames = encode(Hello(actor_id=i, run_id=run_id, host="h", pid=1, num_envs=1))
            srv._handle(f"conn-{i}".encode(), [bytes(f) for f in frames])
        assert dict(srv.accounting.rejected) == {"run_id:other_run": 1}
        assert sorted(srv.credits.peers) == [b"conn-1", b"conn-2"]
    finally:
        srv.close()
