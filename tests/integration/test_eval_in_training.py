"""With the eval actor on, a smoke training run logs eval scalars and a video to TensorBoard."""

from __future__ import annotations

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.integration.fleet import Watch, start_launcher, stop


def test_smoke_run_with_the_eval_actor_logs_eval_scalars_and_a_video(
    tmp_path: Path, endpoints: list[str]
) -> None:
    run_dir = tmp_path / "eval-run"
    proc = start_launcher(
        run_dir, endpoints, "--eval.interval_updates", "2", "--eval.episodes", "1",
        "--eval.max_episode_steps", "60",
    )  # fmt: skip
    watch = Watch(endpoints[3])
    eval_dir = run_dir / "eval"

    def logged() -> bool:
        if not any(eval_dir.glob("events.out.tfevents.*")):
            return False
        acc = EventAccumulator(str(eval_dir))
        acc.Reload()
        tags = acc.Tags()
        return "eval/best_x_pos" in tags["scalars"] and any("video" in t for t in tags["images"])

    try:
        watch.until(logged, 240, "an eval scalar and a video in RUN_DIR/eval")
    finally:
        watch.close()
        stop(proc)
    assert "eval" in (run_dir / "logs" / "eval.log").read_text()
