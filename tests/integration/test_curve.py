"""CURVE: an allow-listed actor trains; a random key or no key delivers and learns nothing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq
import zmq.auth

from protocol import transport
from protocol.messages import Hello, LearnerStatus
from protocol.security import ENV_CERT, ENV_SERVER, create_keys
from tests.conftest import ROOT


def use_keys(monkeypatch: pytest.MonkeyPatch, cert: Path | None, server: Path | None) -> None:
    for var, value in ((ENV_CERT, cert), (ENV_SERVER, server)):
        if value is None:
            monkeypatch.delenv(var, raising=False)
        else:
            monkeypatch.setenv(var, str(value))


def test_curve_admits_only_allow_listed_keys(tmp_path: Path, endpoints, monkeypatch) -> None:
    keys = tmp_path / "keys"
    create_keys(keys, ["local"])
    (tmp_path / "rogue").mkdir()
    _, rogue_secret = zmq.auth.create_certificates(tmp_path / "rogue", "rogue")
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "launcher.py"), "--config", "configs/cartpole.toml",
         "--run.total_env_frames", "100_000_000", "--run-dir", str(run_dir), *endpoints,
         "--security.curve", "true", "--security.keys_dir", str(keys)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    ctx = zmq.Context.instance()
    try:
        use_keys(monkeypatch, keys / "clients" / "local.key_secret", keys / "learner.key")
        allowed = transport.connect_sub(ctx, endpoints[3], (transport.TOPIC_STATUS,))
        updates = []
        deadline = time.monotonic() + 120
        while not updates or updates[-1] < 5:
            assert time.monotonic() < deadline, "the allow-listed actor never trained"
            if allowed.poll(500):
                _, msg = transport.recv(allowed, prefix_frames=1)
                if isinstance(msg, LearnerStatus):
                    updates.append(msg.updates)

        intruders = {
            "random key": (Path(rogue_secret), keys / "learner.key"),
            "no key": (None, None),
        }
        for name, (cert, server) in intruders.items():
            use_keys(monkeypatch, cert, server)
            dealer = transport.connect_dealer(ctx, endpoints[1])
            sub = transport.connect_sub(ctx, endpoints[3], (b"",))
            transport.send(dealer, Hello(actor_id=66, run_id=name, host="x", pid=1, num_envs=1))
            assert not dealer.poll(4000), f"{name}: the learner answered"
            assert not sub.poll(1000), f"{name}: received a broadcast"
            dealer.close(0)
            sub.close(0)

        before = updates[-1]
        while updates[-1] <= before + 2:  # the learner is still healthy and training
            assert allowed.poll(30_000), "the learner went quiet"
            _, msg = transport.recv(allowed, prefix_frames=1)
            if isinstance(msg, LearnerStatus):
                updates.append(msg.updates)
        allowed.close(0)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    beats = [json.loads(line) for line in (run_dir / "heartbeats.jsonl").read_text().splitlines()]
    learner = [b for b in beats if b.get("role") == "learner"][-1]
    assert learner["counters"]["rejected"] == 0  # the intruders delivered nothing at all
    log = (run_dir / "logs" / "learner.log").read_text()
    assert "actor 66" not in log
