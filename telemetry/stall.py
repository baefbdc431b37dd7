"""Stall diagnostics: dump every thread's stack when a main loop stops making progress.

Run by: actors and the learner (a daemon thread each). Owns the stall file
``<stall_dir>/<role>-<id>-<UTC time>.txt`` written with :func:`faulthandler.dump_traceback`
(all threads), once per stall; progress re-arms it.

Limit: the watchdog is a Python thread, so it needs the GIL. A loop stuck in Python code or in
a call that releases the GIL (sleep, I/O, most native waits) is caught; native code that hangs
while holding the GIL freezes the watchdog too, and is then caught only by the heartbeat
timeouts (the learner marks the process dead and the launcher restarts it).
"""

from __future__ import annotations

import faulthandler
import logging
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)


class StallWatchdog:
    """Call :meth:`progress` from the main loop; a daemon thread checks the age of the last call.

    Args:
        stall_dir: where stall files go (created on first stall).
        name: ``<role>-<id>``, the file name prefix.
        stall_after_s: seconds without progress that count as a stall.
    """

    def __init__(self, stall_dir: Path, name: str, stall_after_s: float) -> None:
        self.stall_dir = stall_dir
        self.name = name
        self.stall_after_s = stall_after_s
        self.last_progress = time.monotonic()
        self.stall_file = ""  # the latest stall's file, "" while healthy
        self._fired = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="stall-watchdog", daemon=True)

    def start(self) -> StallWatchdog:
        self._thread.start()
        return self

    def progress(self) -> None:
        """The main loop made progress: reset the clock and re-arm after a stall."""
        self.last_progress = time.monotonic()
        if self._fired:
            self._fired = False
            self.stall_file = ""

    @property
    def progress_age_s(self) -> float:
        return time.monotonic() - self.last_progress

    @property
    def stalled(self) -> bool:
        return self._fired

    def _watch(self) -> None:
        period = min(1.0, self.stall_after_s / 4)
        while not self._stop.wait(period):
            if not self._fired and self.progress_age_s > self.stall_after_s:
                # the file is complete before any heartbeat can report the stall
                self.stall_file = str(self._dump())
                self._fired = True

    def _dump(self) -> Path:
        self.stall_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = self.stall_dir / f"{self.name}-{stamp}.txt"
        with open(path, "w") as fh:
            fh.write(
                f"{self.name}: no progress for {self.progress_age_s:.1f} s "
                f"(telemetry.stall_after_s = {self.stall_after_s}); stacks of all threads:\n\n"
            )
            fh.flush()
            faulthandler.dump_traceback(file=fh, all_threads=True)
        log.error(
            "%s stalled: no progress for %.0f s; stacks in %s", self.name, self.progress_age_s, path
        )
        return path

    def stop(self) -> None:
        self._stop.set()
