"""Shared fixtures: free loopback ports and a helper to run the launcher in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from protocol.transport import free_tcp_port as free_port

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def endpoints() -> list[str]:
    """``--network.*`` overrides pointing a run at two fresh loopback ports."""
    return [
        "--network.trajectory_endpoint", f"tcp://127.0.0.1:{free_port()}",
        "--network.broadcast_endpoint", f"tcp://127.0.0.1:{free_port()}",
    ]  # fmt: skip


LaunchFn = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def launch() -> LaunchFn:
    """Run ``launcher.py ARGS`` to completion in a subprocess; returns the CompletedProcess."""

    def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(ROOT / "launcher.py"), *args],
            cwd=ROOT, capture_output=True, text=True, timeout=timeout,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip

    return run
