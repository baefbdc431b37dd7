"""Weight publishing on real processes (issue 13): capped by ``learner.publish_interval_s``,
and the actor ends on the learner's final policy."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import LaunchFn


@pytest.mark.slow
def test_publishing_is_capped_by_the_interval_and_the_actor_ends_on_the_final_version(
    launch: LaunchFn, tmp_path: Path, endpoints: list[str]
) -> None:
    run_dir = tmp_path / "run"
    interval = 0.1
    proc = launch(
        "--config", "configs/cartpole.toml", "--run-dir", str(run_dir), *endpoints,
        "--run.total_env_frames", "16000", "--learner.batch_size", "4",
        "--actor.num_envs", "4", "--learner.publish_interval_s", str(interval),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    learner = (run_dir / "logs" / "learner.log").read_text()
    updates = int(re.search(r"learner stopped: (\d+) updates", learner).group(1))
    assert updates >= 100, learner  # 16,000 frames / (4 unrolls x 20 steps) = 200 updates
    found = re.search(
        r"published (\d+) weights messages \([\d.]+ MB\) in ([\d.]+) s .*final policy version "
        r"(\d+)", learner,
    )  # fmt: skip
    assert found, learner
    published, seconds, final = int(found.group(1)), float(found.group(2)), int(found.group(3))
    # one at the start, at most one per interval after it, and the final one
    assert published <= seconds / interval + 2, learner
    assert published < updates  # the interval held versions back: not one per update
    actor = (run_dir / "logs" / "actor-0.log").read_text()
    held = re.search(r"actor 0 stopped after .* at policy version (\d+)", actor)
    assert held and int(held.group(1)) == final, actor
