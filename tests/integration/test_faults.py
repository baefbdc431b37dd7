"""Faults a real fleet meets, on real processes: killed actors and learners, a crash during a
checkpoint write, a hung actor, a slowed learner."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from learner.checkpoint import (
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
)
from tests.fixtures import faults
from tests.integration.fleet import Watch, learner_counters, start_launcher, stop


@pytest.mark.slow
def test_killed_actor_and_killed_learner_are_restarted_and_nothing_is_lost(
    tmp_path: Path, endpoints: list[str]
) -> None:
    run_dir = tmp_path / "kills"
    proc = start_launcher(run_dir, endpoints, "--run.num_actors", "2", "--actor.num_envs", "2",
                 "--learner.batch_size", "2", "--run.checkpoint_interval_s", "3")  # fmt: skip
    watch = Watch(endpoints[3])
    try:
        watch.until(lambda: watch.updates >= 3 and {"actor:0", "actor:1"} <= set(watch.beats),
                    120, "training with two actors")  # fmt: skip
        # 1. kill -9 an actor mid-stream: the learner keeps updating, the launcher restarts it
        victim = watch.beats["actor:0"].pid
        os.kill(victim, signal.SIGKILL)
        before = watch.updates
        watch.until(lambda: watch.beats["actor:0"].pid != victim, 60, "actor-0 restarted")
        watch.until(lambda: watch.updates > before + 2, 60, "updates after the actor kill")

        # 2. kill -9 the learner: restarted from its checkpoint; actors rejoin by themselves
        watch.until(lambda: bool(list_checkpoints(run_dir)), 30, "a checkpoint")
        learner = watch.beats["learner:0"]
        survivor = watch.beats["actor:1"].pid
        version_at_kill = watch.statuses[-1].policy_version
        os.kill(learner.pid, signal.SIGKILL)
        watch.until(lambda: watch.beats["learner:0"].run_id != learner.run_id, 90,
                    "a new learner incarnation")  # fmt: skip
        restarted_at = watch.updates
        watch.until(lambda: watch.statuses[-1].updates > restarted_at + 2
                    and watch.statuses[-1].learner_run_id != learner.run_id,
                    120, "updates from the restarted learner")  # fmt: skip
        assert watch.beats["actor:1"].pid == survivor  # reconnected, not restarted
        versions = [s.policy_version for s in watch.statuses]
        assert versions == sorted(versions), "policy_version went backwards"
        assert versions[-1] > version_at_kill
    finally:
        watch.close()
        stop(proc)
    learner_log = (run_dir / "logs" / "learner.log").read_text()
    assert "resumed from" in learner_log
    assert "learner restarted" in (run_dir / "logs" / "actor-1.log").read_text()
    counters = learner_counters(run_dir)
    assert counters["lost"] == 0
    assert counters["sent"] == (
        counters["accepted"] + counters["rejected_unrolls"] + counters["dropped_stale"]
        + counters["lost"]
    )  # fmt: skip


def test_sigkill_during_a_checkpoint_write_leaves_a_loadable_checkpoint(
    tmp_path: Path, endpoints: list[str]
) -> None:
    run_dir = tmp_path / "ckpt"
    proc = start_launcher(run_dir, endpoints, "--run.checkpoint_interval_s", "1",
                 env=faults.env(checkpoint_delay_s=4))  # fmt: skip
    watch = Watch(endpoints[3])
    folder = run_dir / "checkpoints"
    try:
        watch.until(lambda: "learner:0" in watch.beats, 90, "the learner")
        watch.until(lambda: folder.is_dir() and any(folder.glob("ckpt-*.pt"))
                    and any(folder.glob(".ckpt-*.tmp")), 90, "a write in progress")  # fmt: skip
        os.kill(watch.beats["learner:0"].pid, signal.SIGKILL)
        newest = latest_checkpoint(run_dir)
        state = load_checkpoint(newest)  # the newest file on disk loads, and is whole:
        assert checkpoint_path(run_dir, state["counters"]["updates"]) == newest
        assert state["learner"]["updates"] == state["counters"]["updates"]
        watch.until(lambda: "resumed from" in (run_dir / "logs" / "learner.log").read_text(),
                    90, "the learner resumed")  # fmt: skip
    finally:
        watch.close()
        stop(proc)
    assert not any(folder.glob(".ckpt-*.tmp"))
    assert "cut short" in (run_dir / "logs" / "learner.log").read_text()


def test_hung_actor_is_declared_dead_restarted_and_leaves_a_stack_dump(
    tmp_path: Path, endpoints: list[str]
) -> None:
    run_dir = tmp_path / "hung"
    proc = start_launcher(
        run_dir, endpoints, "--env.id", "tests.fixtures.hanging_env:HangingCartPole-v0",
        "--model.torso", "mlp", "--actor.num_envs", "1", "--telemetry.stall_after_s", "2",
        "--telemetry.stale_after_s", "3", "--telemetry.dead_after_s", "6",
    )  # fmt: skip
    watch = Watch(endpoints[3])
    try:
        watch.until(lambda: "actor:0" in watch.beats, 90, "the actor")
        first = watch.beats["actor:0"].pid
        watch.until(lambda: watch.beats["actor:0"].state == "dead", 60, "declared dead")
        watch.until(lambda: watch.beats["actor:0"].pid != first, 60, "a restarted actor")
    finally:
        watch.close()
        out = stop(proc)
    dumps = list((run_dir / "stalls").glob("actor-0-*.txt"))
    assert dumps and "hang_forever_in_step" in dumps[0].read_text()
    assert re.search(r"actor-0 \(pid \d+\) declared dead by the learner", out), out


@pytest.mark.slow
def test_slowed_learner_keeps_memory_bounded_and_counts_stale_drops(
    tmp_path: Path, endpoints: list[str]
) -> None:
    run_dir = tmp_path / "slow"
    proc = start_launcher(run_dir, endpoints, "--learner.max_policy_lag", "1",
                 env=faults.env(train_sleep_s=1.0))  # fmt: skip
    watch = Watch(endpoints[3])
    rss: dict[str, list[tuple[float, float]]] = {"learner:0": [], "actor:0": []}
    try:
        watch.until(lambda: watch.updates >= 1, 120, "the first update")
        start_time = time.monotonic()
        while time.monotonic() - start_time < 120:
            watch.pump(1.0)
            for key, series in rss.items():
                if key in watch.beats:
                    series.append((time.monotonic() - start_time, watch.beats[key].rss_mb))
    finally:
        watch.close()
        stop(proc)
    for key, series in rss.items():
        first = max(v for t, v in series if t < 60)
        second = max(v for t, v in series if t >= 60)
        assert second < first * 1.10 + 20, f"{key} RSS grew from {first:.0f} to {second:.0f} MB"
    assert learner_counters(run_dir)["dropped_stale"] > 0
