"""Process exit statuses: the contract between each process and whatever supervises it.

Run by: the learner and actor processes (which exit with these), and the launcher, Docker or
Kubernetes (which read them). Owns: the status numbers and which of them are permanent.

A *permanent* failure cannot succeed on a retry with the same arguments (a port another process
holds, a config that does not fit the checkpoint, a corrupt run directory, a full disk), so the
launcher does not restart the process: it stops the run at once with the process's one-line
reason and exits with the same status. Any other non-zero status (a crash, a signal) is
transient and is restarted with backoff (``run.max_restarts``).
"""

from __future__ import annotations

import errno
from enum import IntEnum

__all__ = ["NO_SPACE_ERRNOS", "ExitStatus", "PermanentFailure", "is_permanent", "of_write_error"]


class ExitStatus(IntEnum):
    """Exit statuses of every project process (and of the launcher, which passes them on)."""

    OK = 0
    FAILED = 1
    """A transient or unknown failure (a crash); worth a restart."""
    CONFIG = 2
    """A bad config value, command-line flag or environment variable, or a config the checkpoint
    it resumes cannot be loaded with (a model mismatch, a missing checkpoint)."""
    LEARNER_LOST = 3
    """An actor heard nothing from its learner for ``actor.learner_timeout_s`` (transient: the
    learner may come back, so it is restarted)."""
    BIND = 4
    """A socket could not be bound: the address is in use (often another run on the same
    ports) or not available on this machine."""
    CORRUPT_RUN_DIR = 5
    """A file of the run directory cannot be read back (e.g. ``policy_version`` is not a
    number). (A run directory that cannot be written at all is a ``CONFIG`` error.)"""
    NO_SPACE = 6
    """The run directory's filesystem is full (ENOSPC, or EDQUOT for a quota)."""


PERMANENT = frozenset({ExitStatus.CONFIG, ExitStatus.BIND, ExitStatus.CORRUPT_RUN_DIR,
                       ExitStatus.NO_SPACE})  # fmt: skip


#: ``OSError.errno`` values that mean the filesystem is full (a quota counts as full).
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def of_write_error(exc: OSError) -> ExitStatus:
    """The status for a run directory that cannot be written: ``NO_SPACE`` for a full disk,
    else ``CONFIG`` (a read-only or forbidden ``--run-dir`` is the user's to change)."""
    return ExitStatus.NO_SPACE if exc.errno in NO_SPACE_ERRNOS else ExitStatus.CONFIG


def is_permanent(status: int | None) -> bool:
    """Whether a process that exited with ``status`` would fail the same way if restarted."""
    return status in PERMANENT


class PermanentFailure(RuntimeError):
    """A failure a retry cannot fix; the process logs ``str(self)`` as its last line and exits
    with ``status``.

    Args:
        status: one of the permanent :class:`ExitStatus` values.
        message: one line naming what failed (the address, the file, the field).
    """

    def __init__(self, status: ExitStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
