"""The dashboard's state and web app (no browser: tests/integration/test_dashboard.py has one)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from protocol.messages import GpuStats, Heartbeat, LearnerStatus
from telemetry import dashboard
from telemetry.dashboard import CURVE_FIELDS, FleetBoard, build_app


def heartbeat(role: str, peer_id: str, **extra: object) -> Heartbeat:
    fields: dict = {
        "role": role, "id": peer_id, "host": "box", "pid": 1, "run_id": "r", "uptime_s": 1.0,
        "cpu_percent": 50.0, "rss_mb": 300.0, "threads": 4, "env_fps": 900.0,
        "updates_per_s": 0.0, "policy_version": 3, "policy_lag": 1.0, "queue_depth": 0,
        "credits": 2, "progress_age_s": 0.1, "stalled": False, "stall_file": "",
        "counters": {}, "gpu": None,
    }  # fmt: skip
    return Heartbeat(**{**fields, **extra})


def status(env_frames: int, run_id: str = "learner-a", **extra: object) -> LearnerStatus:
    fields: dict = {
        "learner_run_id": run_id, "policy_version": 3, "updates": 10, "env_frames": env_frames,
        "total_env_frames": 100_000, "env_fps": 800.0, "episodes": 5, "mean_return": 12.5,
        "mean_x_pos": 640.0, "max_x_pos": 900, "flags": 1, "accepted": 40, "rejected": 2,
        "dropped_stale": 0, "duplicates": 0, "flag_rate": 0.2,
    }  # fmt: skip
    return LearnerStatus(**{**fields, **extra})


def test_the_board_keeps_one_row_per_process_and_one_curve_point_per_new_frame_count() -> None:
    board = FleetBoard("tcp://127.0.0.1:5556")
    assert board.snapshot()["silent_s"] is None and not board.snapshot()["answering"]
    board.on_message(heartbeat("actor", "10"), now=0.0)
    board.on_message(heartbeat("actor", "2"), now=0.0)
    gpu = [GpuStats(0, "H200", utilization=97.0, memory_used_mb=20_480.0)]
    board.on_message(heartbeat("learner", "0", gpu=gpu, counters={"sent": 42.0}), now=0.0)
    board.on_message(heartbeat("actor", "2", env_fps=450.0), now=0.5)  # replaces its row
    for frames in (1_000, 1_000, 2_000, 3_500):  # a repeated count adds no point
        board.on_message(status(frames), now=1.0)
    snap = board.snapshot(now=2.0)
    assert [(p["role"], p["id"]) for p in snap["peers"]] == [
        ("learner", "0"), ("actor", "2"), ("actor", "10"),
    ]  # fmt: skip
    assert snap["peers"][1]["env_fps"] == 450.0
    assert snap["peers"][0]["gpu"][0]["utilization"] == 97.0
    assert snap["answering"] and snap["silent_s"] == 1.0
    assert set(snap["curves"]) == set(CURVE_FIELDS)
    assert snap["curves"]["env_frames"] == [1_000.0, 2_000.0, 3_500.0]
    assert snap["curves"]["flag_rate"] == [0.2, 0.2, 0.2]
    assert snap["status"]["accepted"] == 40 and snap["video"] is None
    assert not board.snapshot(now=1.0 + dashboard.SILENT_AFTER_S)["answering"]


def test_a_new_learner_rewinds_the_curve_to_its_frame_count() -> None:
    board = FleetBoard("tcp://127.0.0.1:5556")
    for frames in (1_000, 3_000, 5_000):
        board.on_message(status(frames, run_id="a"))
    board.on_message(status(3_000, run_id="b"))  # restarted from its checkpoint at 3,000
    assert board.snapshot()["curves"]["env_frames"] == [1_000.0, 3_000.0]
    board.on_message(status(0, run_id="c"))  # another run from the start: its own curve
    assert board.snapshot()["curves"]["env_frames"] == [0.0]


def test_a_long_run_keeps_its_whole_curve_at_lower_resolution(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dashboard, "MAX_POINTS", 10)
    board = FleetBoard("tcp://127.0.0.1:5556")
    for frames in range(1, 12):
        board.on_message(status(frames))
    frames = board.snapshot()["curves"]["env_frames"]
    assert frames[0] == 1.0 and frames[-1] == 11.0  # the start and the newest stay
    assert len(frames) <= 10 and frames == sorted(frames)


def test_the_latest_video_is_the_newest_file_of_the_run(tmp_path: Path) -> None:
    board = FleetBoard("tcp://127.0.0.1:5556", run_dir=tmp_path)
    assert board.latest_video() is None
    videos = tmp_path / "eval" / "videos"
    videos.mkdir(parents=True)
    (videos / "1-1-v10.gif").write_bytes(b"GIF89a old")
    (videos / "1-1-v20.gif").write_bytes(b"GIF89a new")
    (videos / "notes.txt").write_text("not a video")
    now = time.time()
    os.utime(videos / "1-1-v10.gif", (now - 60, now - 60))
    assert board.latest_video() == videos / "1-1-v20.gif"
    client = TestClient(build_app(board))
    reply = client.get("/video/latest")
    assert reply.status_code == 200 and reply.content == b"GIF89a new"
    assert reply.headers["content-type"] == "image/gif"
    assert client.get("/api/state").json()["video"] == "1-1-v20.gif"


def test_the_app_serves_the_page_its_vendored_charts_and_the_state(tmp_path: Path) -> None:
    board = FleetBoard("tcp://127.0.0.1:5556", run_dir=tmp_path)
    board.on_message(heartbeat("learner", "0"))
    board.on_message(status(1_000))
    client = TestClient(build_app(board))
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/static/vendor/uPlot.iife.min.js" in page.text and "https://" not in page.text
    assert "uPlot" in client.get("/static/vendor/uPlot.iife.min.js").text
    assert "EventSource" in client.get("/static/dashboard.js").text
    state = client.get("/api/state").json()
    assert state["peers"][0]["role"] == "learner" and state["status"]["env_frames"] == 1_000
    assert client.get("/video/latest").status_code == 404  # no video yet
    assert client.get("/static/missing.js").status_code == 404


def test_a_dashboard_started_mid_run_shows_the_history_from_metrics_jsonl(tmp_path: Path) -> None:
    def line(frames: int, ret: float | None) -> str:
        return json.dumps({"env_frames": frames, "avg_return": ret, "x_pos_mean": 400.0,
                           "flag_rate": 0.0, "env_frames_per_sec": 600.0})  # fmt: skip

    (tmp_path / "metrics.jsonl").write_text(
        "\n".join([line(1_000, None), line(2_000, 3.0), "{not json", line(2_000, 4.0),
                   line(5_000, 9.0)]) + "\n" + line(9_000, 1.0)[:10]  # a torn last line
    )  # fmt: skip
    board = FleetBoard("tcp://127.0.0.1:5556", run_dir=tmp_path)
    board.on_message(status(4_000))  # heard live before the backfill ran
    assert board.backfill() == 2  # 1,000 and 2,000: older than the first point heard
    curves = board.snapshot()["curves"]
    assert curves["env_frames"] == [1_000.0, 2_000.0, 4_000.0]
    assert curves["mean_return"] == [None, 3.0, 12.5]  # a null stays a gap
    assert FleetBoard("tcp://127.0.0.1:5556").backfill() == 0  # no run directory known
