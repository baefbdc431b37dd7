"""Supervised child processes and the restart policy.

Run by: the launcher. Owns starting a child with its output in ``RUN_DIR/logs/<name>.log``,
signalling and reaping it, and deciding when a failed child is restarted: after a backoff that
doubles from ``backoff_min_s`` to ``backoff_max_s`` with each failure in the window, and not at
all once it failed more than ``max_restarts`` times within ``window_s`` seconds.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]


def _terminate_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the launcher dies, even by SIGKILL, so no
    learner or actor outlives it (Linux prctl PR_SET_PDEATHSIG; elsewhere a no-op)."""
    if sys.platform != "linux":
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except OSError:
        pass


@dataclass(frozen=True)
class RestartPolicy:
    """When to restart a failed child, and when to give up on it."""

    max_restarts: int
    window_s: float
    backoff_min_s: float = 1.0
    backoff_max_s: float = 30.0


@dataclass
class Child:
    """One supervised process.

    Attributes:
        name: ``learner``, ``actor-3``, ``eval``: names its log file and messages.
        argv: the command line; ``start`` runs it from the project root.
        restarts: restarts so far; failures: times of failures within the policy's window.
        next_start: monotonic time of a scheduled restart, or None.
    """

    name: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    failures: deque[float] = field(default_factory=deque)
    next_start: float | None = None
    log_file: IO[bytes] | None = field(default=None, repr=False)

    def start(self, argv: list[str] | None = None) -> None:
        """Start (or restart) the process, appending to its log."""
        if argv is not None:
            self.argv = argv
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.log_file is not None:
            self.log_file.close()
        self.log_file = open(self.log_path, "ab")  # noqa: SIM115 - held for the child's life
        self.proc = subprocess.Popen(
            self.argv, cwd=ROOT, stdout=self.log_file, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=_terminate_with_parent,
            # its own session: a terminal's Ctrl+C or a group signal (timeout, systemd) reaches
            # the launcher only, which then stops every child in order (actors, then learner)
            start_new_session=True,
        )  # fmt: skip
        self.next_start = None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def poll(self) -> int | None:
        """Exit status if it has exited (and is not already scheduled to restart), else None."""
        if self.proc is None or self.next_start is not None:
            return None
        return self.proc.poll()

    def signal(self, signum: int) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signum)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    def wait(self, timeout: float) -> int | None:
        """Wait for exit; SIGKILL after ``timeout`` seconds."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def schedule_restart(self, policy: RestartPolicy, now: float | None = None) -> float | None:
        """Record a failure; returns the backoff before the restart, or None to give up."""
        now = time.monotonic() if now is None else now
        self.failures.append(now)
        while self.failures and now - self.failures[0] > policy.window_s:
            self.failures.popleft()
        if len(self.failures) > policy.max_restarts:
            return None
        delay = min(policy.backoff_max_s, policy.backoff_min_s * 2 ** (len(self.failures) - 1))
        self.next_start = now + delay
        return delay

    def due(self, now: float | None = None) -> bool:
        """A scheduled restart's time has come."""
        now = time.monotonic() if now is None else now
        return self.next_start is not None and now >= self.next_start

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def close(self) -> None:
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None
