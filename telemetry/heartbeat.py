"""Building and sending heartbeats: psutil process figures, NVML GPU figures, own counters.

Run by: every process. Owns :class:`HeartbeatBuilder` (one per process: psutil handle, NVML
initialised once, start time) and :class:`HeartbeatSender`, a daemon thread with its own
DEALER socket (ZeroMQ sockets are not thread-safe) that sends a heartbeat to the learner every
``telemetry.heartbeat_interval_s``. Sending from a thread keeps heartbeats (and the stall
report in them) flowing while the main loop is stuck. A heartbeat that cannot be queued at once
is dropped: the next one supersedes it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil
import zmq

from protocol import transport
from protocol.messages import Heartbeat
from telemetry.gpu import NvmlSampler

log = logging.getLogger(__name__)


class HeartbeatBuilder:
    """Makes :class:`Heartbeat` messages for one process.

    Args:
        role: ``learner``, ``actor``, ``launcher`` or ``eval``.
        id: the process's id within its role.
        run_id: this incarnation's id.
        nvml: passed to :class:`NvmlSampler` (tests pass a fake module or None).
    """

    def __init__(self, role: str, id: str, run_id: str, nvml: Any = True) -> None:
        self.role, self.id, self.run_id = role, id, run_id
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self._proc = psutil.Process(self.pid)
        self._proc.cpu_percent(None)  # the first reading is meaningless; start the interval
        self._started = time.monotonic()
        self.nvml = NvmlSampler(nvml)

    def build(self, **figures: Any) -> Heartbeat:
        """A heartbeat with fresh psutil/NVML figures plus the caller's ``figures``
        (any of :class:`Heartbeat`'s process-specific fields; the rest default to zero)."""
        with self._proc.oneshot():
            cpu = self._proc.cpu_percent(None)
            rss = self._proc.memory_info().rss / 2**20
            threads = self._proc.num_threads()
        values: dict[str, Any] = {
            "env_fps": 0.0, "updates_per_s": 0.0, "policy_version": 0, "policy_lag": None,
            "queue_depth": 0, "credits": 0, "progress_age_s": 0.0, "stalled": False,
            "stall_file": "", "counters": {},
        }  # fmt: skip
        values.update(figures)
        return Heartbeat(
            role=self.role, id=self.id, host=self.host, pid=self.pid, run_id=self.run_id,
            uptime_s=time.monotonic() - self._started, cpu_percent=float(cpu), rss_mb=rss,
            threads=threads, gpu=self.nvml.sample(), **values,
        )  # fmt: skip


class RateMeter:
    """Per-second rate of a cumulative counter between successive :meth:`rate` calls."""

    def __init__(self) -> None:
        self._last: tuple[float, float] | None = None

    def rate(self, total: float) -> float:
        now = time.monotonic()
        last, self._last = self._last, (now, total)
        if last is None or now <= last[0]:
            return 0.0
        return (total - last[1]) / (now - last[0])


class HeartbeatSender(threading.Thread):
    """Sends ``builder.build(**figures())`` to ``endpoint`` every ``interval_s`` seconds.

    ``figures`` runs on this thread: it must only read the owner's attributes.
    """

    def __init__(
        self,
        ctx: zmq.Context[Any],
        endpoint: str,
        builder: HeartbeatBuilder,
        figures: Callable[[], dict[str, Any]],
        interval_s: float,
    ) -> None:
        super().__init__(name="heartbeat", daemon=True)
        self.ctx, self.endpoint, self.builder = ctx, endpoint, builder
        self.figures, self.interval_s = figures, interval_s
        self.sent = 0
        self.paused = False  # benchmarks toggle this to measure what heartbeats cost
        self._stop_event = threading.Event()

    def run(self) -> None:
        sock = transport.connect_dealer(self.ctx, self.endpoint, sndhwm=2)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            while not self._stop_event.is_set():
                if self.paused:
                    self._stop_event.wait(self.interval_s)
                    continue
                try:
                    transport.send(sock, self.builder.build(**self.figures()), flags=zmq.NOBLOCK)
                    self.sent += 1
                except zmq.Again:
                    pass  # learner unreachable: drop it, the next one supersedes it
                except Exception:  # a heartbeat must never take its process down
                    log.exception("heartbeat failed")
                self._stop_event.wait(self.interval_s)
        finally:
            sock.close(0)

    def stop(self) -> None:
        self._stop_event.set()
