"""Heartbeats end to end: the fleet view under SIGSTOP/SIGCONT, the monitor, stall dumps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT
from tests.integration.fleet import Watch, start_launcher, stop


def actors_joined(run_dir: Path, n: int) -> bool:
    logs = [run_dir / "logs" / f"actor-{i}.log" for i in range(n)]
    return all(p.is_file() and "joined learner" in p.read_text() for p in logs)


def test_fleet_marks_a_stopped_actor_stale_then_dead_then_alive(tmp_path: Path, endpoints) -> None:
    run_dir = tmp_path / "fleet"
    proc = start_launcher(
        run_dir, endpoints, "--run.num_actors", "3", "--actor.num_envs", "1",
        "--telemetry.stale_after_s", "2", "--telemetry.dead_after_s", "5",
    )  # fmt: skip
    stream = Watch(endpoints[3])
    try:
        deadline = time.monotonic() + 120
        while not actors_joined(run_dir, 3):
            assert time.monotonic() < deadline and proc.poll() is None, "actors never joined"
            stream.pump(0.5)
        want = {"learner:0", "actor:0", "actor:1", "actor:2"}
        stream.until(
            lambda: (
                want <= set(stream.beats) and any(k.startswith("launcher:") for k in stream.beats)
            ),
            timeout=5,
        )
        victim = stream.beats["actor:1"]
        assert victim.state == "alive" and victim.gpu is None  # no NVIDIA driver here

        os.kill(victim.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            stream.until(lambda: stream.beats["actor:1"].state == "stale", timeout=10)
            assert time.monotonic() - stopped < 2 + 1 + 2.5  # stale_after + interval + slack
            stream.until(lambda: stream.beats["actor:1"].state == "dead", timeout=15)
            assert time.monotonic() - stopped < 5 + 1 + 2.5
            assert stream.beats["actor:0"].state == "alive"
        finally:
            os.kill(victim.pid, signal.SIGCONT)
        stream.until(lambda: stream.beats["actor:1"].state == "alive", timeout=10)
    finally:
        stream.close()
        if proc.poll() is None:
            stop(proc)
    lines = (run_dir / "heartbeats.jsonl").read_text().splitlines()
    states = [json.loads(x)["state"] for x in lines if '"actor:1"' in x or '"id": "1"' in x]
    assert {"alive", "stale", "dead"} <= set(states)


def test_monitor_json_before_and_during_a_run(tmp_path: Path, endpoints) -> None:
    broadcast = endpoints[3]

    def monitor(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, str(ROOT / "launcher.py"), "monitor", "--json", *args],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    early = monitor(broadcast, "--duration", "60")  # started before the learner exists
    time.sleep(1)
    run_dir = tmp_path / "run"
    proc = start_launcher(run_dir, endpoints)
    try:
        deadline = time.monotonic() + 90
        while not actors_joined(run_dir, 1):
            assert time.monotonic() < deadline, "actor never joined"
            time.sleep(0.5)
        late = monitor("--duration", "10")  # no endpoint: finds the run launcher.py started
        out, err = late.communicate(timeout=60)
        assert late.returncode == 0, err
        assert str(run_dir) in err and broadcast in err
        records = [json.loads(line) for line in out.splitlines()]
        beats = [r for r in records if r["type"] == "heartbeat"]
        for record in beats:
            assert {"role", "id", "host", "state", "gpu"} <= set(record)
        roles = {r["role"] for r in beats}
        assert {"learner", "actor", "launcher"} <= roles, roles
        assert any(r["type"] == "learner_status" for r in records)
    finally:
        stop(proc)
        early.send_signal(signal.SIGINT)
        early_out, _ = early.communicate(timeout=30)
    assert any(json.loads(line)["type"] == "heartbeat" for line in early_out.splitlines())


def test_monitor_says_when_nothing_answers(endpoints) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "launcher.py"), "monitor", endpoints[3], "--json",
         "--timeout", "6"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "nothing answers" in done.stderr and "giving up" in done.stderr
    assert done.stdout == ""


def test_hung_actor_writes_a_stack_file_naming_the_hanging_function(
    tmp_path: Path, endpoints
) -> None:
    run_dir = tmp_path / "stall"
    proc = start_launcher(
        run_dir, endpoints, "--env.id", "tests.fixtures.hanging_env:HangingCartPole-v0",
        "--model.torso", "mlp", "--actor.num_envs", "1", "--telemetry.stall_after_s", "3",
    )  # fmt: skip
    stream = Watch(endpoints[3])
    try:
        stream.until(lambda: "actor:0" in stream.beats and stream.beats["actor:0"].stalled,
                        timeout=90)  # fmt: skip
        (dump,) = (run_dir / "stalls").glob("actor-0-*.txt")
        assert stream.beats["actor:0"].stall_file == str(dump)
        text = dump.read_text()
        assert "hang_forever_in_step" in text and "no progress for" in text
    finally:
        stream.close()
        stop(proc)
