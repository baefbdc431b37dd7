"""bench.learn: the progress figures, the Mario presets, and a short real run on CartPole."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.final_eval import summarize as summarize_final_eval
from bench.learn import PROGRESS_KEYS, summarize_baselines, training_stages
from configs import schema
from configs.cli import DEFAULT_CONFIG
from launch.harness import RunProgress, marks
from tests.conftest import ROOT


def write_jsonl(path: Path, records: list[dict]) -> None:
    with path.open("a") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in records)


def episode(frames: int, x: int, flag: bool = False, ret: float = 1.0) -> dict:
    return {"env_frames": frames, "actor_id": 0, "return": ret, "length": 10,
            "max_x_pos": x, "flag_get": flag, "stage": "1-1"}  # fmt: skip


def test_progress_figures_cover_the_last_100_episodes(tmp_path: Path) -> None:
    progress = RunProgress(tmp_path)
    assert progress.figures()["episodes"] == 0 and progress.figures()["mean_max_x"] == 0.0
    # 50 early episodes at x 100 (one flag), then 100 at x 1..100: the early ones fall out
    write_jsonl(tmp_path / "episodes.jsonl",
                [episode(i, 100, flag=i == 7) for i in range(50)])  # fmt: skip
    write_jsonl(tmp_path / "heartbeats.jsonl", [
        {"type": "heartbeat", "role": "actor"},
        {"type": "learner_status", "env_frames": 4000, "updates": 9},
    ])  # fmt: skip
    progress.update()
    assert progress.figures()["flag_rate"] == 0.02
    later = [episode(100 + x, x, ret=float(x)) for x in range(1, 101)]
    with (tmp_path / "episodes.jsonl").open("a") as fh:  # one line still being written
        fh.writelines(json.dumps(r) + "\n" for r in later[:-1])
        fh.write(json.dumps(later[-1])[:20])
    progress.update()
    assert progress.figures()["episodes"] == 149
    with (tmp_path / "episodes.jsonl").open("a") as fh:
        fh.write(json.dumps(later[-1])[20:] + "\n")
    progress.update()
    figures = progress.figures()
    assert figures["episodes"] == 150
    assert figures["mean_max_x"] == 50.5 and figures["mean_return"] == 50.5
    assert figures["p90_max_x"] == pytest.approx(90.1)
    assert figures["flag_rate"] == 0.0  # the flag is older than the window
    assert figures["first_flag_frames"] == 7
    assert (figures["env_frames"], figures["updates"]) == (4000, 9)


def test_restored_episodes_are_counted_apart_from_the_figures(tmp_path: Path) -> None:
    progress = RunProgress(tmp_path)
    write_jsonl(tmp_path / "episodes.jsonl", [
        episode(10, 300),
        {**episode(20, 3168, flag=True), "restored": True},  # a restart that reached the flag
        {**episode(30, 2000), "restored": True},
        {**episode(40, 500), "restored": False},
    ])  # fmt: skip
    progress.update()
    figures = progress.figures()
    assert figures["episodes"] == 2 and figures["restored_episodes"] == 2
    assert figures["mean_max_x"] == 400.0 and figures["flag_rate"] == 0.0
    assert figures["first_flag_frames"] is None


def test_greedy_envs_episodes_have_their_own_figures(tmp_path: Path) -> None:
    progress = RunProgress(tmp_path)
    assert progress.figures()["greedy_flag_rate"] is None  # no greedy env: null, not 0
    write_jsonl(tmp_path / "episodes.jsonl", [
        episode(10, 300),
        {**episode(20, 3168, flag=True), "greedy": True},
        {**episode(30, 594), "greedy": True},
        {**episode(40, 3168, flag=True), "greedy": True, "restored": True},  # restored wins
    ])  # fmt: skip
    progress.update()
    figures = progress.figures()
    assert (figures["episodes"], figures["greedy_episodes"], figures["restored_episodes"]) == (
        1, 2, 1,
    )  # fmt: skip
    assert figures["greedy_flag_rate"] == 0.5
    assert figures["flag_rate"] == 0.0 and figures["first_flag_frames"] is None


def test_final_eval_reduces_greedy_and_sampled_reports(tmp_path: Path) -> None:
    def report(clears: list[float]) -> dict:
        return {"agent": {stage: {"episodes": 20, "clear_rate": c, "progress": 0.5 + c / 2,
                                  "mean_x_pos": 1000.0 * (1 + c)}
                          for stage, c in zip(("1-1", "1-2"), clears)}}  # fmt: skip

    (tmp_path / "g.json").write_text(json.dumps(report([1.0, 0.0])))
    (tmp_path / "s.json").write_text(json.dumps(report([0.6, 0.1])))
    out = summarize_final_eval({"greedy": tmp_path / "g.json", "sampled": tmp_path / "s.json"})
    assert out.clear_rate == {
        "greedy": {"1-1": 1.0, "1-2": 0.0, "mean": 0.5},
        "sampled": {"1-1": 0.6, "1-2": 0.1, "mean": 0.35},
    }
    assert out.progress["greedy"]["mean"] == 0.75 and out.episodes == 20


def test_report_marks_end_at_the_deadline() -> None:
    assert marks(180, 60) == [60, 120, 180]
    assert marks(90, 60) == [60, 90]
    assert marks(30, 60) == [30]


def test_baselines_average_over_stages(tmp_path: Path) -> None:
    row = {"clear_rate": 0.0, "mean_x_pos": 600.0, "max_x_pos": 900, "mean_return": 5.0,
           "episodes": 4, "progress": 0.2}  # fmt: skip
    data = {"random": {"1-1": row, "1-2": {**row, "mean_x_pos": 800.0}}, "right": {"1-1": row}}
    (tmp_path / "eval.json").write_text(json.dumps(data))
    out = summarize_baselines(tmp_path / "eval.json")
    assert out["random"]["mean_x_pos"] == 700.0 and out["random"]["episodes"] == 8
    assert out["right"]["mean_x_pos"] == 600.0


def test_default_config_is_the_1_1_preset() -> None:
    assert DEFAULT_CONFIG == ROOT / "configs" / "mario-1-1.toml"
    preset = schema.load(DEFAULT_CONFIG)
    assert preset.run.total_env_frames >= 10_000_000
    assert training_stages(preset) == ("1-1",)


def test_world1_preset_trains_the_four_stages_with_the_curriculum_and_restarts() -> None:
    config = schema.load(ROOT / "configs" / "mario-world1.toml")
    preset = schema.load(ROOT / "configs" / "mario-1-1.toml")
    assert training_stages(config) == ("1-1", "1-2", "1-3", "1-4")
    assert config.env.stage_sampling == "curriculum"
    assert config.env.restart_fraction == preset.env.restart_fraction > 0
    assert config.learner == preset.learner and config.model == preset.model


def test_all_stages_preset_uses_the_curriculum() -> None:
    config = schema.load(ROOT / "configs" / "mario-all.toml")
    assert config.env.stage_sampling == "curriculum"
    assert len(training_stages(config)) == 32


@pytest.mark.slow
def test_learn_bench_on_cartpole_prints_progress_a_summary_and_a_curve(tmp_path: Path) -> None:
    run_dir = tmp_path / "learn"
    done = subprocess.run(
        [sys.executable, "-m", "bench.learn", "--config", "configs/cartpole.toml",
         "--minutes", "1", "--run-dir", str(run_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    progress = [line for line in lines if line["type"] == "progress"]
    assert [line["minute"] for line in progress] == [1]
    for line in progress:
        assert set(PROGRESS_KEYS) <= set(line)
    assert progress[-1]["env_frames"] > 0 and progress[-1]["episodes"] > 0
    assert progress[-1]["mean_return"] > 0 and progress[-1]["mean_max_x"] == 0.0
    summary = lines[-1]
    assert summary["type"] == "summary" and summary["baselines"] is None
    assert summary["env_frames"] == progress[-1]["env_frames"]
    curve = Path(summary["curve"])
    assert curve == run_dir / "learning_curve.png"
    assert curve.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_learn_bench_stops_at_its_frame_budget(tmp_path: Path) -> None:
    run_dir = tmp_path / "learn"
    done = subprocess.run(
        [sys.executable, "-m", "bench.learn", "--config", "configs/cartpole.toml",
         "--frames", "4000", "--run-dir", str(run_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    summary = lines[-1]
    assert summary["type"] == "summary" and summary["frames"] == 4000
    # the learner stopped by itself once the budget was consumed (it counts whole updates)
    assert 4000 <= summary["env_frames"] <= 4000 + 16 * 20  # batch 16 x unroll 20
    config = schema.load(run_dir / "config.toml")
    assert config.run.total_env_frames == 4000
    assert summary["eval_clear_rate_greedy"] is None  # no stages to clear on CartPole
    assert lines[-2]["type"] == "progress" and lines[-2]["env_frames"] == summary["env_frames"]
