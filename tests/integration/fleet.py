"""Helpers for integration tests that run a real launcher and watch its learner's broadcasts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import zmq

from protocol import transport
from protocol.messages import Heartbeat, LearnerStatus
from tests.conftest import ROOT

LONG_SMOKE = ["--config", "configs/smoke.toml", "--run.total_env_frames", "100_000_000"]
"""The smoke config with a frame budget the test stops long before."""


def start_launcher(
    run_dir: Path, endpoints: list[str], *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """``launcher.py`` on the long smoke config (override with ``extra`` flags)."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "launcher.py"), *LONG_SMOKE, "--run-dir", str(run_dir),
         *endpoints, *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM the launcher, require a clean exit 0, return its output."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out
    return out


def learner_counters(run_dir: Path) -> dict[str, float]:
    """Counters of the last learner heartbeat in ``heartbeats.jsonl`` (after a clean stop)."""
    beats = [
        json.loads(line)
        for line in (run_dir / "heartbeats.jsonl").read_text().splitlines()
        if '"role": "learner"' in line
    ]
    return beats[-1]["counters"]


class Watch:
    """Follows a learner's broadcasts: the latest heartbeat per process and every status."""

    def __init__(self, broadcast: str) -> None:
        self.sock = transport.connect_sub(
            zmq.Context.instance(), broadcast, (transport.TOPIC_HEARTBEAT, transport.TOPIC_STATUS)
        )
        self.beats: dict[str, Heartbeat] = {}
        self.statuses: list[LearnerStatus] = []

    def pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.sock.poll(100):
                _, msg = transport.recv(self.sock, prefix_frames=1)
                if isinstance(msg, Heartbeat):
                    self.beats[msg.key] = msg
                elif isinstance(msg, LearnerStatus):
                    self.statuses.append(msg)

    def until(self, predicate: Callable[[], bool], timeout: float, what: str = "") -> float:
        """Seconds it took until ``predicate()`` held; fails after ``timeout``."""
        start = time.monotonic()
        while not predicate():
            assert time.monotonic() - start < timeout, f"timed out waiting for {what}; saw " + str(
                {k: b.state for k, b in self.beats.items()}
            )
            self.pump(0.2)
        return time.monotonic() - start

    @property
    def updates(self) -> int:
        return self.statuses[-1].updates if self.statuses else 0

    def close(self) -> None:
        self.sock.close(0)


def train_until_return(
    run_dir: Path, args: list[str], target: float, window: int = 20, hang_s: float = 900
) -> tuple[int, float]:
    """Run ``launcher.py ARGS`` (which give it a frame budget) until the mean return of the last
    ``window`` episodes reaches ``target`` (then stop it cleanly) or the launcher ends by itself
    at its budget. Returns (env frames at the best windowed mean, that best mean); the launcher
    must exit 0 either way. ``hang_s`` only stops a run that hangs: it is not a speed check."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "launcher.py"), *args, "--run-dir", str(run_dir)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    start = time.monotonic()
    best, best_frames = float("-inf"), 0
    try:
        while proc.poll() is None:
            assert time.monotonic() - start < hang_s, f"the launcher hung for {hang_s:g} s"
            time.sleep(2)
            log = run_dir / "episodes.jsonl"
            lines = log.read_text().splitlines() if log.is_file() else []
            if len(lines) >= window:
                records = [json.loads(line) for line in lines[-window:]]
                mean = sum(r["return"] for r in records) / window
                if mean > best:
                    best, best_frames = mean, int(records[-1]["env_frames"])
                if best >= target:
                    break
    finally:
        stop(proc)
    return best_frames, best
