"""``launcher.py tune``: the search space as launcher flags, and a real 3-trial search."""

from __future__ import annotations

import tomllib
from pathlib import Path

import optuna
import pytest

from configs import schema
from tests.conftest import ROOT
from tuning.tune import SNIPPET_MARKER, config_values, overrides, preset_params


def test_search_values_become_valid_launcher_flags() -> None:
    params = {"learning_rate": 1.5e-5, "entropy_cost": 0.003, "unroll_length": 40,
              "discount": 0.95, "replay_ratio": 0.25}  # fmt: skip
    flags = overrides(params)
    pairs = dict(zip(flags[::2], flags[1::2]))
    parsed = {k[2:]: schema.parse_override(k[2:], v) for k, v in pairs.items()}
    config = schema.load(ROOT / "configs" / "cartpole.toml", parsed)
    assert config.learner.learning_rate == 1.5e-5 and config.learner.discount == 0.95
    assert config.actor.unroll_length == 40
    assert config.replay.enabled and config.replay.ratio == 0.25
    off = config_values({**params, "replay_ratio": 0.0})
    assert off["replay"] == {"enabled": False}


def test_a_new_study_starts_from_the_preset() -> None:
    cartpole = schema.load(ROOT / "configs" / "cartpole.toml")
    assert preset_params(cartpole) == {"learning_rate": 2e-3, "entropy_cost": 0.001,
                                       "unroll_length": 20, "discount": 0.99,
                                       "replay_ratio": 0.0}  # fmt: skip
    mario = preset_params(schema.load(ROOT / "configs" / "mario-1-1.toml"))
    assert mario is not None and mario["replay_ratio"] == 0.75
    assert preset_params(schema.load(None, {"learner.discount": 0.97})) is None


@pytest.mark.slow
def test_three_trials_on_cartpole_end_to_end(tmp_path: Path, launch) -> None:
    run_dir = tmp_path / "tune"
    done = launch("tune", "--trials", "3", "--minutes-per-trial", "1",
                  "--config", "configs/cartpole.toml", "--run-dir", str(run_dir),
                  timeout=480)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr

    storage = f"sqlite:///{run_dir / 'optuna.db'}"
    study = optuna.load_study(study_name="cartpole", storage=storage)
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    assert len(study.trials) == 3
    assert all(t.state in finished for t in study.trials), [t.state for t in study.trials]
    assert all(t.intermediate_values for t in study.trials)  # reported for the pruner
    assert study.trials[0].params["learning_rate"] == 2e-3  # the preset came first
    for trial in study.trials:
        assert (run_dir / f"trial-{trial.number:03d}" / "episodes.jsonl").is_file()
    assert sum(line.startswith("trial ") for line in done.stdout.splitlines()) == 3

    snippet = tomllib.loads(done.stdout.split(SNIPPET_MARKER, 1)[1])
    best = study.best_trial
    assert snippet["learner"]["learning_rate"] == pytest.approx(best.params["learning_rate"])
    assert snippet["actor"]["unroll_length"] == best.params["unroll_length"]
    assert set(snippet) == {"learner", "actor", "replay"}
    # best.toml is the preset with those values: a config the launcher takes as it is
    config = schema.load(run_dir / "best.toml")
    assert config.env.id == "CartPole-v1"
    assert config.learner.entropy_cost == pytest.approx(best.params["entropy_cost"])
