"""Scaling out: a learner and actors on three "hosts" (Linux network namespaces made by the test),
and the scaling benchmark.

Topology (all inside namespaces this test creates and deletes; nothing leaves them)::

    A1 (10.77.1.2) ---veth--- (10.77.1.1) L (10.77.2.1) ---veth--- (10.77.2.2) A2
                                    learner                   route 10.77.1.0/24 via 10.77.2.1

The learner in L binds ``tcp://*:5555`` / ``tcp://*:5556`` through the MARIO_* variables, as in
its container. Both actor hosts dial the learner's one address, 10.77.1.1: A1 on its own link
with ``launcher.py --actors-only`` (the two-machine recipe), A2 through a route with two plain
``python -m actor`` processes (the compose / Kubernetes way). ``launcher.py monitor --json`` in
A1 reads the heartbeat stream throughout; ``deploy.healthcheck`` is asked from both sides.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

LEARNER_ADDR = "10.77.1.1"
BUDGET = 20_480  # env frames: 64 updates of the smoke config
FINAL_LINE = re.compile(
    r"learner stopped: (\d+) updates, (\d+) env frames.*accepted by actor (\{.*\})"
)
ACTOR_EXIT = re.compile(r"actor (\d+) stopped after (\d+) unrolls, (\d+) env frames, at policy "
                        r"version (\d+)")  # fmt: skip


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


@dataclass
class Hosts:
    """Three namespaces and the processes started in them (killed at teardown)."""

    learner: str
    a1: str
    a2: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, ns: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> Any:
        out = open(log, "wb")  # noqa: SIM115 - closed with the process at teardown
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )  # fmt: skip
        self.procs.append(proc)
        return proc


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    if sys.platform != "linux":
        pytest.skip("network namespaces are Linux-only")
    if os.geteuid() != 0:
        pytest.skip("creating network namespaces needs root (ip netns add)")
    if shutil.which("ip") is None:
        pytest.skip("the `ip` tool (iproute2) is not installed")
    tag = f"mario{os.getpid()}"
    h = Hosts(f"{tag}-l", f"{tag}-a1", f"{tag}-a2")
    made: list[str] = []
    try:
        for ns in (h.learner, h.a1, h.a2):
            done = _ip("netns", "add", ns)
            if done.returncode != 0:
                pytest.skip(f"cannot create a network namespace here: {done.stderr.strip()}")
            made.append(ns)
        for argv in (
            # veth pairs made inside the namespaces, so no name ever exists in the host's
            ["-n", h.learner, "link", "add", "to-a1", "type", "veth", "peer", "name", "eth0",
             "netns", h.a1],
            ["-n", h.learner, "link", "add", "to-a2", "type", "veth", "peer", "name", "eth0",
             "netns", h.a2],
            ["-n", h.learner, "addr", "add", f"{LEARNER_ADDR}/24", "dev", "to-a1"],
            ["-n", h.learner, "addr", "add", "10.77.2.1/24", "dev", "to-a2"],
            ["-n", h.a1, "addr", "add", "10.77.1.2/24", "dev", "eth0"],
            ["-n", h.a2, "addr", "add", "10.77.2.2/24", "dev", "eth0"],
            *[["-n", ns, "link", "set", dev, "up"] for ns, dev in (
                (h.learner, "lo"), (h.learner, "to-a1"), (h.learner, "to-a2"),
                (h.a1, "lo"), (h.a1, "eth0"), (h.a2, "lo"), (h.a2, "eth0"))],
            ["-n", h.a2, "route", "add", "10.77.1.0/24", "via", "10.77.2.1"],
        ):  # fmt: skip
            done = _ip(*argv)
            assert done.returncode == 0, f"ip {' '.join(argv)}: {done.stderr}"
        yield h
    finally:
        for proc in h.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
        for ns in made:  # deleting a namespace removes its veth ends too
            _ip("netns", "del", ns)


class Monitor:
    """``launcher.py monitor --json`` output, collected by a thread as it arrives."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.messages: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.proc = proc
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                with self.lock:
                    self.messages.append(json.loads(line))

    def latest(self) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any]]]:
        """(latest learner status, latest heartbeat per ``role:id``)."""
        status, beats = None, {}
        with self.lock:
            for msg in self.messages:
                if msg["type"] == "learner_status":
                    status = msg
                elif msg["type"] == "heartbeat":
                    beats[f"{msg['role']}:{msg['id']}"] = msg
        return status, beats

    def wait(self, what: str, predicate: Any, timeout: float, procs: list[Any]) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(*self.latest()):
            for proc in procs:
                assert proc.poll() is None, f"a process exited early while waiting for {what}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {self.latest()}"
            time.sleep(0.5)


def _healthcheck(hosts: Hosts, ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "deploy.healthcheck", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.slow
def test_actors_on_two_hosts_train_one_learner_and_losing_one_host_does_not_stop_it(
    hosts: Hosts, tmp_path: Path
) -> None:
    py = sys.executable
    learner_env = {
        "MARIO_NETWORK__TRAJECTORY_ENDPOINT": "tcp://*:5555",
        "MARIO_NETWORK__BROADCAST_ENDPOINT": "tcp://*:5556",
        # the lost host shows up in the fleet view sooner than the default 5 s; "dead" (which
        # releases an actor's credits) keeps its default, as a busy start-up here can starve
        # an actor's heartbeats for several seconds
        "MARIO_TELEMETRY__STALE_AFTER_S": "3",
    }
    # fmt: off
    run_learner = [py, "-m", "learner", "--config", "configs/smoke.toml",
                   "--run-dir", str(tmp_path / "run"), "--run.total_env_frames", str(BUDGET)]
    learner = hosts.start(hosts.learner, run_learner, tmp_path / "learner.log", learner_env)
    endpoint = f"tcp://{LEARNER_ADDR}:5555"
    run_a1 = [py, "launcher.py", "--actors-only", "--learner", endpoint, "-n", "1",
              "--actor-id-base", "100", "--run-dir", str(tmp_path / "a1")]
    a1 = hosts.start(hosts.a1, run_a1, tmp_path / "a1.log")
    a2 = [hosts.start(hosts.a2, [py, "-m", "actor", "--learner", endpoint, "--actor-id", str(i),
                                 "--stall-dir", str(tmp_path / "stalls")],
                      tmp_path / f"actor-{i}.log")
          for i in (200, 201)]
    monitor_proc = subprocess.Popen(
        ["ip", "netns", "exec", hosts.a1, py, "launcher.py", "monitor",
         f"tcp://{LEARNER_ADDR}:5556", "--json"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    hosts.procs.append(monitor_proc)  # type: ignore[arg-type]
    monitor = Monitor(monitor_proc)
    # fmt: on
    everyone = [learner, a1, *a2]

    # Weights reach both hosts: every actor reports a policy version > 0 and unrolls sent.
    actors = ("actor:100", "actor:200", "actor:201")

    def all_trained(status: Any, beats: dict[str, Any]) -> bool:
        return all(
            k in beats
            and beats[k]["policy_version"] > 0
            and beats[k]["counters"]["unrolls_sent"] >= 2
            for k in actors
        )

    monitor.wait("every actor on a version > 0", all_trained, 150, everyone)

    # The learner is healthy from either host; an actor runs on this (shared) host name.
    for ns in (hosts.a1, hosts.a2):
        check = _healthcheck(hosts, ns, "--endpoint", f"tcp://{LEARNER_ADDR}:5556")
        assert check.returncode == 0 and check.stdout.startswith("healthy: learner"), check
    check = _healthcheck(hosts, hosts.a2, "--actor", "--endpoint", f"tcp://{LEARNER_ADDR}:5556")
    assert check.returncode == 0 and "alive" in check.stdout, check

    # Lose host A2: one actor is killed outright, the other stopped (it logs its exit line).
    status, _ = monitor.latest()
    assert status is not None and not status["done"]
    # training must still be under way at the kill (its continuing is asserted below)
    assert status["env_frames"] < BUDGET, "the budget was spent before the kill"
    a2[0].send_signal(signal.SIGTERM)
    a2[1].kill()
    assert a2[0].wait(timeout=30) == 0
    at_kill, _ = monitor.latest()
    assert at_kill is not None

    # Training goes on with A1 alone: the fleet view marks the lost actor, the budget is reached.
    monitor.wait(
        "actor 201 marked stale or dead",
        lambda s, b: b.get("actor:201", {}).get("state") in ("stale", "dead"),
        60,
        [learner, a1],
    )
    assert learner.wait(timeout=120) == 0
    assert a1.wait(timeout=60) == 0  # the actors-only launcher stops when the learner is done
    monitor.wait("the final status", lambda s, b: bool(s and s["done"]), 10, [])
    final, _ = monitor.latest()
    assert final["updates"] > at_kill["updates"] and final["env_frames"] >= BUDGET

    learner_log = (tmp_path / "learner.log").read_text()
    match = FINAL_LINE.search(learner_log)
    assert match, learner_log[-3000:]
    by_actor = {int(k): int(v) for k, v in re.findall(r"(\d+): (\d+)", match.group(3))}
    assert set(by_actor) == {100, 200, 201} and all(v > 0 for v in by_actor.values()), by_actor
    assert int(match.group(2)) >= BUDGET

    for log in (tmp_path / "a1" / "logs" / "actor-100.log", tmp_path / "actor-200.log"):
        text = log.read_text()
        assert "joined learner" in text, text[-2000:]
        exit_line = ACTOR_EXIT.search(text)
        assert exit_line, text[-2000:]
        assert int(exit_line.group(2)) > 0 and int(exit_line.group(4)) > 0, exit_line.group(0)


def test_scaling_bench_prints_one_line_per_actor_count() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.scaling", "--actors", "1", "--seconds", "3", "--warmup", "1",
         "--config", "configs/smoke.toml"],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, done.stdout
    result = json.loads(lines[0])
    assert result["actors"] == 1 and result["baseline_actors"] == 1
    assert result["env_fps"] > 0 and result["updates_per_s"] > 0
    assert result["per_actor_fps"] == result["env_fps"] and result["scaling_ratio"] == 1.0
    assert result["seconds"] >= 3 and result["device"] == "cpu"
