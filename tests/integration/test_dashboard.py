"""``launcher.py dashboard`` in a real browser (headless Chromium) on a real smoke run.

Chromium is the Debian package (``/usr/bin/chromium``; ``.ci/run`` installs it when missing),
driven by Playwright with that executable, so no browser download is needed. Set
``MARIO_DASHBOARD_SCREENSHOT=PATH`` to keep the screenshot (the README's is made so).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.conftest import ROOT, free_port

#: The page must show its rows and a curve within this long of opening (issue 15).
PAGE_DEADLINE_S = 60


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "headless Chromium is needed: apt-get install chromium (.ci/run does)"
    return path


def wait_for_status(url: str, seconds: float) -> dict:
    """The dashboard's state once it has a learner status (the run is up)."""
    deadline = time.monotonic() + seconds
    state: dict = {}
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                state = json.loads(reply.read())
        except OSError:
            state = {}
        if state.get("status") is not None:
            return state
        time.sleep(1)
    raise AssertionError(f"no learner status on the dashboard within {seconds} s: {state}")


def interrupt(proc: subprocess.Popen[str], timeout: float) -> str:
    """Ctrl+C ``proc`` (a kill after ``timeout`` s); returns its output."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[0]


def test_the_dashboard_shows_the_fleet_and_a_learning_curve(tmp_path: Path, endpoints) -> None:
    from playwright.sync_api import sync_playwright

    broadcast = endpoints[3]
    port = free_port()
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    dash = subprocess.Popen(
        [sys.executable, "launcher.py", "dashboard", broadcast, "--port", str(port),
         "--run-dir", str(run_dir)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    run = subprocess.Popen(
        [sys.executable, "launcher.py", "--config", "configs/smoke.toml",
         "--run.total_env_frames", "1_000_000_000", "--run-dir", str(run_dir), *endpoints],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    try:
        wait_for_status(f"http://127.0.0.1:{port}/api/state", 180)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/")
            deadline_ms = PAGE_DEADLINE_S * 1000
            page.wait_for_selector("#fleet tr[data-role=learner]", timeout=deadline_ms)
            page.wait_for_selector("#fleet tr[data-role=actor]", timeout=deadline_ms)
            page.wait_for_function(
                "Number(document.getElementById('curve-mean_return').dataset.points) >= 2 && "
                "document.querySelector('#curve-mean_return canvas') !== null",
                timeout=deadline_ms,
            )
            assert page.text_content("#connection") == "live"
            assert "frames" in (page.text_content("#summary") or "")
            assert page.query_selector("#accounting tr[data-counter=accepted]") is not None
            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            browser.close()
        assert shot.stat().st_size > 10_000
        if keep := os.environ.get("MARIO_DASHBOARD_SCREENSHOT"):
            shutil.copy(shot, keep)
    finally:
        run_out = interrupt(run, 90)
        dash_out = interrupt(dash, 30)
    assert run.returncode == 0, run_out[-3000:]
    assert dash.returncode == 0, dash_out[-3000:]
    assert f"dashboard: http://127.0.0.1:{port}/ listening to {broadcast}" in dash_out
