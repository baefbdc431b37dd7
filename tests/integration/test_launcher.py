"""The real launcher in a subprocess: smoke run on the real ROM, resume, SIGTERM, failures."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from configs import schema
from learner.checkpoint import latest_checkpoint, load_checkpoint
from learner.metrics_log import METRICS_LOG, check_record
from models import build_model
from protocol.exit_status import ExitStatus
from tests.conftest import ROOT
from tests.fixtures.wandb_offline import config_and_history
from tests.integration.fleet import learner_counters, train_until_return


def scalars(run_dir: Path, tag: str) -> list[float]:
    if not any(run_dir.glob("events.out.tfevents.*")):
        return []
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return [e.value for e in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else []


def check_run_outputs(run_dir: Path) -> dict:
    config = schema.load(run_dir / "config.toml")  # the resolved config, loadable as-is
    assert scalars(run_dir, "loss/total"), "no learner update in TensorBoard"
    assert scalars(run_dir, "throughput/env_fps")
    state = load_checkpoint(latest_checkpoint(run_dir))
    model = build_model(config.model, (4, 84, 84), 7)
    model.load_state_dict(state["model"])  # the checkpoint loads into a fresh model
    assert schema.from_dict(state["config"]) == config
    metrics = [json.loads(line) for line in (run_dir / METRICS_LOG).read_text().splitlines()]
    assert metrics, "no metrics.jsonl line"
    for record in metrics:
        check_record(record)  # every documented field, of its documented type
    # a healthy run gets no hint, but this CPU-only machine's "auto" learner is on the CPU
    hints = {k for k in learner_counters(run_dir) if k.startswith("hint:")}
    assert hints <= {"hint:cpu_learner"}, hints
    return state


def test_smoke_run_on_the_real_rom(
    tmp_path: Path, launch, endpoints, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "smoke"
    monkeypatch.setenv("WANDB_MODE", "offline")  # the W&B mirror, with no network
    done = launch("--config", "configs/smoke.toml", "--run-dir", str(run_dir),
                  "--run.wandb_project", "smoke-test", *endpoints)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    state = check_run_outputs(run_dir)
    metrics = [json.loads(line) for line in (run_dir / METRICS_LOG).read_text().splitlines()]
    assert any(r["loss_total"] is not None and r["avg_return"] is not None for r in metrics)
    # the offline W&B run holds the resolved config and the metrics lines' scalars
    (run_file,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    config, history = config_and_history(run_file)
    assert config["run"]["wandb_project"] == "smoke-test" and config["env"]["id"]
    assert any("loss_total" in row and "avg_return" in row for row in history), history[-1:]
    assert [row["env_frames"] for row in history] == sorted(r["env_frames"] for r in history)
    assert state["counters"]["env_frames"] >= 16_000
    assert "done: checkpoints in" in done.stdout
    episodes = [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]
    assert episodes and {"return", "max_x_pos", "flag_get", "stage"} <= set(episodes[0])
    assert all(e["stage"] == "1-1" for e in episodes)
    assert episodes[0]["components"]["death"] <= 0  # per-episode reward components reach it
    assert scalars(run_dir, "reward_components/progress")

    # --resume latest continues the counters of that run
    resumed = launch("--resume", "latest", "--run-dir", str(run_dir),
                     "--run.total_env_frames", "20000", *endpoints)  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    after = load_checkpoint(latest_checkpoint(run_dir))
    assert after["counters"]["updates"] > state["counters"]["updates"]
    assert after["counters"]["env_frames"] >= 20_000
    assert schema.load(run_dir / "config.toml").run.total_env_frames == 20_000

    # a resume whose model cannot load fails at once, naming the field, and leaves the run as is
    before = (run_dir / "config.toml").read_text()
    wrong = launch("--resume", "latest", "--run-dir", str(run_dir),
                   "--model.torso", "impala", *endpoints)  # fmt: skip
    assert wrong.returncode == 2, wrong.stdout + wrong.stderr
    assert "model.torso:" in wrong.stdout and "impala" in wrong.stdout
    assert (run_dir / "config.toml").read_text() == before
    # a corrupt newest checkpoint: the newest one that loads is used, with a warning naming it
    newest = latest_checkpoint(run_dir)
    newest.write_bytes(newest.read_bytes()[:1000])
    again = launch("--resume", "latest", "--run-dir", str(run_dir), *endpoints)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"skipping checkpoint {newest}" in again.stdout + again.stderr


def test_sigterm_stops_cleanly_with_a_final_checkpoint(tmp_path: Path, endpoints) -> None:
    run_dir = tmp_path / "term"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "launcher.py"), "--config", "configs/smoke.toml",
         "--run-dir", str(run_dir), "--run.total_env_frames", "100_000_000", *endpoints],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not scalars(run_dir, "loss/total"):
        time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    state = check_run_outputs(run_dir)
    assert state["counters"]["updates"] >= 1
    log = (run_dir / "logs" / "learner.log").read_text()
    assert "learner stopped" in log


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_to_the_whole_group_in_the_first_seconds_is_a_clean_stop(
    tmp_path: Path, endpoints, signum: int
) -> None:
    """Ctrl+C (SIGINT to the terminal's process group) or a group SIGTERM (``timeout``) while
    the learner and actor are still importing: exit 0, no error, no traceback."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "launcher.py"), "--config", "configs/smoke.toml",
         "--run-dir", str(tmp_path / "early"), *endpoints],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # a group of its own, as a terminal's foreground job
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not (tmp_path / "early" / "logs" / "learner.log").exists():
        assert time.monotonic() < deadline, "the learner never started"
        time.sleep(0.05)
    os.killpg(proc.pid, signum)  # the launcher and everything in its group
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out
    assert "error" not in out.lower() and "Traceback" not in out, out


def test_children_do_not_outlive_a_killed_launcher(tmp_path: Path, endpoints) -> None:
    run_dir = tmp_path / "orphans"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "launcher.py"), "--config", "configs/smoke.toml",
         "--run-dir", str(run_dir), "--run.total_env_frames", "100_000_000", *endpoints],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not (run_dir / "logs" / "actor-0.log").is_file():
        time.sleep(0.5)
    time.sleep(3)
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
    pids = [int(p) for p in children.stdout.split()]
    assert len(pids) >= 2, "learner and actor should be running"
    proc.kill()  # SIGKILL: the launcher gets no chance to stop them itself
    proc.wait()
    deadline = time.monotonic() + 60
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.5)
        alive = [p for p in pids if Path(f"/proc/{p}").exists()
                 and "Z" not in Path(f"/proc/{p}/stat").read_text().split()[2]]  # fmt: skip
    assert not alive, f"orphaned children still running: {alive}"


def test_bad_config_value_fails_naming_the_field(launch, tmp_path: Path) -> None:
    done = launch("--run-dir", str(tmp_path / "x"), "--learner.discount", "1.5")
    assert done.returncode == 2
    assert "learner.discount: must be <= 1" in done.stdout
    missing = launch("--resume", str(tmp_path / "nope.pt"))
    assert missing.returncode == 2 and "checkpoint not found" in missing.stdout


def test_learner_that_cannot_start_fails_the_run_with_its_log(tmp_path: Path, endpoints) -> None:
    # occupy the learner's port so its bind fails
    port = int(endpoints[1].rsplit(":", 1)[1])
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        done = subprocess.run(
            [sys.executable, str(ROOT / "launcher.py"), "--config", "configs/smoke.toml",
             "--run-dir", str(tmp_path / "fail"), "--run.max_restarts", "1", *endpoints],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
            env={**os.environ, "COLUMNS": "200"},
        )  # fmt: skip
    # a taken port stays taken: no restart, the launcher stops at once with one line and the
    # learner's own exit status (protocol/exit_status.py)
    assert done.returncode == ExitStatus.BIND, done.stdout
    assert "learner cannot run (bind, exit status 4)" in done.stdout
    assert f"cannot bind {endpoints[1]}: Address already in use" in done.stdout
    assert "failed 2 times" not in done.stdout
    assert "restarting" not in (tmp_path / "fail" / "logs" / "learner.log").read_text()


def test_two_runs_on_the_same_ports_never_merge(tmp_path: Path, endpoints) -> None:
    """The second run cannot bind and ends at once; its actor never joins the first run's
    learner (they carry different run tokens), whose counters hold only its own actor."""
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first = subprocess.Popen(
        [sys.executable, str(ROOT / "launcher.py"), "--config", "configs/smoke.toml",
         "--run-dir", str(first_dir), "--run.total_env_frames", "100_000_000", *endpoints],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        log = first_dir / "logs" / "learner.log"
        while not (log.exists() and "joined with" in log.read_text()):
            assert time.monotonic() < deadline, "the first run's actor never joined"
            time.sleep(0.5)
        second = subprocess.run(
            [sys.executable, str(ROOT / "launcher.py"), "--config", "configs/smoke.toml",
             "--run-dir", str(second_dir), *endpoints],
            cwd=ROOT, capture_output=True, text=True, timeout=180,
            env={**os.environ, "COLUMNS": "200"},
        )  # fmt: skip
    finally:
        first.send_signal(signal.SIGTERM)
        out, _ = first.communicate(timeout=120)
    assert second.returncode == ExitStatus.BIND, second.stdout
    assert "cannot bind" in second.stdout
    actor_log = (second_dir / "logs" / "actor-0.log").read_text()
    assert "joined learner" not in actor_log, actor_log
    assert first.returncode == 0, out
    assert log.read_text().count("joined with") == 1  # only its own actor's hello


@pytest.mark.slow
def test_cartpole_learns_through_the_launcher(tmp_path: Path, endpoints) -> None:
    """V-trace, bootstrapping and weight publishing are right end to end: a mean return of
    at least 400 over the last 20 episodes within the preset's 1.5M-frame budget."""
    run_dir = tmp_path / "cartpole"
    args = ["--config", "configs/cartpole.toml", *endpoints]
    frames, best = train_until_return(run_dir, args, target=400)
    assert best >= 400, f"best mean return over 20 episodes: {best:.1f} (at {frames} frames)"
    assert latest_checkpoint(run_dir).is_file()  # the clean stop wrote a checkpoint
