"""A learner started on its own and actors joining it through ``launcher.py --actors-only``."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from learner.checkpoint import latest_checkpoint, load_checkpoint
from tests.conftest import ROOT, free_port


def test_actors_only_launcher_trains_a_separately_started_learner(tmp_path: Path) -> None:
    """The actors start first: the launcher's progress line says they wait for the learner
    (issue 14), and they join it once it is up."""
    port = free_port()
    broadcast = free_port()
    out_path = tmp_path / "actors.out"
    with out_path.open("w") as out:
        actors = subprocess.Popen(
            [sys.executable, "launcher.py", "--actors-only",
             "--learner", f"tcp://127.0.0.1:{port}",
             "--broadcast", f"tcp://127.0.0.1:{broadcast}",
             "-n", "1", "--run-dir", str(tmp_path / "actors"), "--run.log_interval_s", "1"],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    learner: subprocess.Popen[str] | None = None
    try:
        deadline = time.monotonic() + 60
        waiting = f"waiting for the learner at tcp://127.0.0.1:{port}: no status for"
        while waiting not in out_path.read_text() and time.monotonic() < deadline:
            assert actors.poll() is None, out_path.read_text()
            time.sleep(0.5)
        assert waiting in out_path.read_text()
        learner = subprocess.Popen(
            [sys.executable, "-m", "learner", "--config", "configs/smoke.toml",
             "--run-dir", str(tmp_path / "learner"), "--run.total_env_frames", "4000",
             "--network.trajectory_endpoint", f"tcp://127.0.0.1:{port}",
             "--network.broadcast_endpoint", f"tcp://127.0.0.1:{broadcast}"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        actors.wait(timeout=240)
        learner_out, _ = learner.communicate(timeout=60)
    finally:
        actors.kill()
        if learner is not None:
            learner.kill()
    actors_out = out_path.read_text()
    assert actors.returncode == 0, actors_out
    assert learner.returncode == 0, learner_out
    state = load_checkpoint(latest_checkpoint(tmp_path / "learner"))
    assert state["counters"]["env_frames"] >= 4000
    actor_logs = list((tmp_path / "actors" / "logs").glob("actor-*.log"))
    assert len(actor_logs) == 1
    log_text = actor_logs[0].read_text()
    assert f"waiting for the learner at tcp://127.0.0.1:{port} (its welcome)" in log_text
    assert "joined learner" in log_text
