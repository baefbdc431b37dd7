"""Config schema: presets load, bad values fail naming the field, overrides, round trip."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

import pytest

from configs import cli, schema

PRESETS = sorted(Path(cli.CONFIG_DIR).glob("*.toml"))


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_every_preset_loads(path: Path) -> None:
    config = schema.load(path)
    assert config.run.total_env_frames > 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"learner.discount": 2.0}, "learner.discount: must be <= 1"),
        ({"learner.learning_rate": 0}, "learner.learning_rate: must be > 0"),
        ({"actor.num_envs": "many"}, "actor.num_envs: expected an integer"),
        ({"actor.num_envs": True}, "actor.num_envs: expected an integer"),
        ({"actor.greedy_envs": 8}, "actor.greedy_envs: must be < actor.num_envs = 8"),
        ({"env.actions": "all"}, "env.actions: expected one of right_only, simple, complex"),
        ({"model.torso": "vit"}, "model.torso: expected one of"),
        ({"learner.momentum": 0.9}, "learner.momentum: unknown config key"),
        ({"optimizer.lr": 0.1}, "optimizer: unknown config section"),
        ({"network.trajectory_endpoint": "foo"}, "network.trajectory_endpoint: 'foo' is not a"),
        ({"network.broadcast_endpoint": "udp://1.2.3.4:5"}, "network.broadcast_endpoint: 'udp:"),
        ({"network.trajectory_endpoint": "tcp://127.0.0.1"}, "needs tcp://HOST:PORT"),
        ({"network.trajectory_endpoint": "tcp://127.0.0.1:70000"}, "port in 1-65535"),
        ({"network.trajectory_endpoint": "ipc://"}, "names no address"),
        (
            {"network.broadcast_endpoint": "tcp://127.0.0.1:5555"},
            "network.broadcast_endpoint: must differ from network.trajectory_endpoint",
        ),
    ],
)
def test_bad_values_name_the_field(overrides: dict, message: str) -> None:
    with pytest.raises(schema.ConfigError, match=re.escape(message)):
        schema.load(None, overrides)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(schema.ConfigError, match="config file not found"):
        schema.load(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\nseed = ")
    with pytest.raises(schema.ConfigError, match="invalid TOML"):
        schema.load(bad)
    typed = tmp_path / "typed.toml"
    typed.write_text('[run]\nseed = "zero"\n')
    with pytest.raises(schema.ConfigError, match=r"run\.seed: expected an integer"):
        schema.load(typed)


def test_cli_flags_are_generated_for_every_field_and_parsed_as_toml() -> None:
    parser = argparse.ArgumentParser()
    cli.add_config_arguments(parser)
    flags = {a.option_strings[0] for a in parser._actions if a.option_strings}
    for dotted, _, _ in schema.iter_fields():
        assert f"--{dotted}" in flags
    args = parser.parse_args(
        ["--learner.learning_rate", "3e-4", "--env.id", "CartPole-v1", "--run.num_actors", "2"]
    )
    config = cli.config_from_args(args)
    assert config.learner.learning_rate == pytest.approx(3e-4)
    assert config.env.id == "CartPole-v1" and not config.env.is_mario
    assert config.run.num_actors == 2 and config.run.resolved_num_actors == 2


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    config = schema.load(cli.DEFAULT_CONFIG, {"learner.batch_size": 3})
    schema.save(config, tmp_path / "config.toml")
    assert schema.load(tmp_path / "config.toml") == config


def test_derived_values() -> None:
    config = schema.load(None, {"learner.batch_size": 4, "actor.unroll_length": 10})
    assert config.env_frames_per_update == 4 * 10 * 4
    cartpole = schema.load(None, {"env.id": "CartPole-v1"})
    assert cartpole.env.frames_per_step == 1


def test_environment_variables_override_and_flags_win(monkeypatch) -> None:
    assert cli.env_var("network.trajectory_endpoint") == "MARIO_NETWORK__TRAJECTORY_ENDPOINT"
    monkeypatch.setenv("MARIO_NETWORK__TRAJECTORY_ENDPOINT", "tcp://*:6000")
    monkeypatch.setenv("MARIO_ACTOR__NUM_ENVS", "3")
    monkeypatch.setenv("MARIO_LEARNER__BATCH_SIZE", "2")
    parser = argparse.ArgumentParser()
    cli.add_config_arguments(parser)
    config = cli.config_from_args(parser.parse_args(["--learner.batch_size", "5"]))
    assert config.network.trajectory_endpoint == "tcp://*:6000"
    assert config.actor.num_envs == 3
    assert config.learner.batch_size == 5
    monkeypatch.setenv("MARIO_ACTOR__NUM_ENVS", "-1")
    with pytest.raises(schema.ConfigError, match=r"actor\.num_envs: must be >= 1"):
        cli.config_from_args(parser.parse_args([]))


def test_a_misspelt_config_variable_is_an_error_naming_it(monkeypatch) -> None:
    parser = argparse.ArgumentParser()
    cli.add_config_arguments(parser)
    monkeypatch.setenv("MARIO_LEARNER_ID", "3")  # no "__": a process setting, not config
    monkeypatch.setenv("MARIO_LEARNER__BATCH_SIZ", "2")
    with pytest.raises(
        schema.ConfigError, match=r"MARIO_LEARNER__BATCH_SIZ: .*MARIO_LEARNER__BATCH_SIZE"
    ):
        cli.config_from_args(parser.parse_args([]))
    monkeypatch.delenv("MARIO_LEARNER__BATCH_SIZ")
    assert cli.config_from_args(parser.parse_args([])).learner.batch_size >= 1


def test_valid_endpoints_load() -> None:
    for trajectory, broadcast in [
        ("tcp://*:5555", "tcp://*:5556"),
        ("tcp://[::1]:5555", "tcp://localhost:5556"),
        ("ipc:///tmp/a", "inproc://b"),
    ]:
        network = schema.load(
            None,
            {"network.trajectory_endpoint": trajectory, "network.broadcast_endpoint": broadcast},
        ).network
        assert (network.trajectory_endpoint, network.broadcast_endpoint) == (trajectory, broadcast)


def test_a_config_built_by_replace_is_checked_like_a_loaded_one() -> None:
    base = schema.load(None)
    with pytest.raises(schema.ConfigError, match=r"learner\.discount: must be <= 1, got 1\.5"):
        dataclasses.replace(base, learner=dataclasses.replace(base.learner, discount=1.5))
    with pytest.raises(schema.ConfigError, match=r"env\.actions: expected one of"):
        dataclasses.replace(base, env=dataclasses.replace(base.env, actions="all"))
    lr = dataclasses.replace(base, learner=dataclasses.replace(base.learner, learning_rate=1))
    assert isinstance(lr.learner.learning_rate, float)  # normalised as from_dict does


def test_a_section_checks_its_fields_when_built_alone() -> None:
    with pytest.raises(schema.ConfigError, match=r"env\.frame_skip: must be >= 1, got 0"):
        schema.EnvConfig(frame_skip=0)
    with pytest.raises(schema.ConfigError, match=r"replay\.capacity: expected an integer"):
        schema.ReplayConfig(capacity="many")
    with pytest.raises(schema.ConfigError, match=r"actor\.greedy_envs: must be < actor\.num_envs"):
        schema.ActorConfig(num_envs=2, greedy_envs=2)  # the section's own rule runs after
    assert schema.EvalConfig(stages=["1-1", "1-2"]).stages == ("1-1", "1-2")
