"""A learner started on its own and actors joining it through ``launcher.py --actors-only``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from learner.checkpoint import latest_checkpoint, load_checkpoint
from tests.conftest import ROOT, free_port


def test_actors_only_launcher_trains_a_separately_started_learner(tmp_path: Path) -> None:
    port = free_port()
    broadcast = free_port()
    learner = subprocess.Popen(
        [sys.executable, "-m", "learner", "--config", "configs/smoke.toml",
         "--run-dir", str(tmp_path / "learner"), "--run.total_env_frames", "4000",
         "--network.trajectory_endpoint", f"tcp://127.0.0.1:{port}",
         "--network.broadcast_endpoint", f"tcp://127.0.0.1:{broadcast}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        actors = subprocess.run(
            [sys.executable, "launcher.py", "--actors-only",
             "--learner", f"tcp://127.0.0.1:{port}",
             "--broadcast", f"tcp://127.0.0.1:{broadcast}",
             "-n", "1", "--run-dir", str(tmp_path / "actors")],
            cwd=ROOT, capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        learner_out, _ = learner.communicate(timeout=60)
    finally:
        learner.kill()
    assert actors.returncode == 0, actors.stdout + actors.stderr
    assert learner.returncode == 0, learner_out
    state = load_checkpoint(latest_checkpoint(tmp_path / "learner"))
    assert state["counters"]["env_frames"] >= 4000
    actor_logs = list((tmp_path / "actors" / "logs").glob("actor-*.log"))
    assert len(actor_logs) == 1
    assert "joined learner" in actor_logs[0].read_text()
