"""metrics.jsonl: every line has every documented field, of its documented type."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from learner.accounting import Accounting, EpisodeWindow
from learner.fleet import FleetTotals
from learner.metrics_log import FIELDS, METRICS_LOG, NAMES, check_record
from learner.reporting import Reporter
from protocol.messages import EpisodeStats
from tests.conftest import ROOT

FLEET = FleetTotals(actors_alive=1, actors_stale=0, actors_dead=0, env_fps=900.0,
                    mean_policy_lag=1.0, gpu_utilization=None)  # fmt: skip


def lines(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / METRICS_LOG).read_text().splitlines()]


def test_lines_carry_every_field_with_nulls_for_what_does_not_exist_yet(tmp_path: Path) -> None:
    reporter = Reporter(tmp_path, frames_per_step=4)
    episodes = EpisodeWindow(None)
    accounting = Accounting()
    reporter.scalars(0, 0.0, 0, episodes, accounting, FLEET)  # before any update or episode
    for i in range(10):
        episodes.add(EpisodeStats(float(i), 100, max_x_pos=300 + i, flag_get=i == 9), 0, 0)
    update = {"optim/lr": 3e-4, "replay/size": 120.0, "replay/unique_fraction": 1.0}
    reporter.record_update({**update, "loss/total": 1.5, "optim/skipped_nonfinite": 0.0}, 2, 3)
    update = {"optim/lr": 3e-4, "replay/size": 121.0, "replay/unique_fraction": 0.5}
    reporter.record_update(
        {**update, "loss/total": float("nan"), "optim/skipped_nonfinite": 1.0}, 4, 5
    )
    accounting.accepted = 7
    reporter.scalars(1_600, 800.0, 2, episodes, accounting, FLEET)
    reporter.close()
    first, second = lines(tmp_path)
    for record in (first, second):
        check_record(record)  # names, order, types
    assert first["loss_total"] is None and first["avg_return"] is None
    assert first["replay_size"] is None and first["gpu_util_mean_window"] is None
    assert second["loss_total"] is None  # NaN in the mean: null, never an invalid JSON NaN
    assert second["learning_rate"] == pytest.approx(3e-4)
    assert second["skipped_updates"] == 0.5
    assert second["replay_size"] == 120  # round(120.5) to even: an int, not a float
    assert second["replay_avg_unique_ratio"] == 0.75
    assert (second["policy_lag_mean"], second["policy_lag_max"]) == (3.0, 5.0)
    assert second["env_steps_per_sec"] == 200.0
    assert second["avg_return"] == 4.5 and second["recent_return_p50"] == 4.5
    assert second["recent_return_p99"] == pytest.approx(8.91)
    assert second["flag_rate"] == 0.1 and second["x_pos_mean"] == 304.5
    assert (second["episodes"], second["unrolls_accepted"]) == (10, 7)
    assert (second["greedy_episodes"], second["greedy_flag_rate"]) == (0, None)


def test_greedy_and_restored_episodes_stay_out_of_the_reported_figures(tmp_path: Path) -> None:
    episodes = EpisodeWindow(tmp_path / "episodes.jsonl")
    episodes.add(EpisodeStats(1.0, 10, max_x_pos=300), 0, 0)
    episodes.add(EpisodeStats(9.0, 90, max_x_pos=3161, flag_get=True, greedy=True), 0, 0)
    episodes.add(EpisodeStats(2.0, 20, max_x_pos=594, greedy=True), 0, 0)
    episodes.add(EpisodeStats(8.0, 80, max_x_pos=3161, flag_get=True, restored=True), 0, 0)
    assert (episodes.episodes, episodes.greedy, episodes.restored, episodes.flags) == (1, 2, 1, 0)
    assert episodes.mean("max_x_pos") == 300.0
    reporter = Reporter(tmp_path, frames_per_step=4)
    reporter.scalars(1_000, 100.0, 0, episodes, Accounting(), FLEET)
    reporter.close()
    (record,) = lines(tmp_path)
    check_record(record)
    assert (record["episodes"], record["greedy_episodes"], record["restored_episodes"]) == (1, 2, 1)
    assert record["greedy_flag_rate"] == 0.5 and record["flag_rate"] == 0.0
    logged = [json.loads(line) for line in (tmp_path / "episodes.jsonl").read_text().splitlines()]
    assert [(r["greedy"], r["restored"]) for r in logged] == [
        (False, False), (True, False), (True, False), (False, True),
    ]  # fmt: skip


def test_check_record_refuses_what_the_documentation_does_not_promise() -> None:
    good = {f.name: (0 if f.kind.startswith("int") else 0.0) for f in FIELDS}
    check_record(good)
    with pytest.raises(ValueError, match="updates: expected int"):
        check_record({**good, "updates": 1.0})
    with pytest.raises(ValueError, match="time: expected float"):
        check_record({**good, "time": None})
    with pytest.raises(ValueError, match="missing \\['time'\\]"):
        check_record({k: v for k, v in good.items() if k != "time"})


def test_the_readme_documents_every_field_with_its_type_and_unit() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("<!-- table: metrics.jsonl -->", 1)[1].split("\n\n", 1)[0]
    rows = [r.split("|")[1:-1] for r in table.strip().splitlines()[2:]]
    documented = {re.sub(r"`", "", c[0]).strip(): [x.strip() for x in c[1:3]] for c in rows}
    assert tuple(documented) == NAMES
    for f in FIELDS:
        assert documented[f.name] == [f.kind, f.unit or "-"], f.name
