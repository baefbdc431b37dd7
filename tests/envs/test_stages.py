"""Tests for envs/stages.py and envs/curriculum.py: grammar, level lengths, sampling, switching."""

from __future__ import annotations

import time

import numpy as np
import pytest

from configs import schema
from configs.schema import EnvConfig
from envs.curriculum import StageSampler, StageSwitcher, curriculum_weights
from envs.factory import make_env
from envs.stages import (
    ALL_STAGES,
    STAGE_GOAL_X,
    derive_goal_x,
    parse_stages,
    progress,
    stage_env_id,
    stage_of_env_id,
)

# chi-square critical values at p = 0.001 by degrees of freedom (for tests that may fail only
# once in a thousand runs by chance; the seeds are fixed anyway)
CHI2_999 = {1: 10.83, 2: 13.82, 3: 16.27, 4: 18.47, 5: 20.52}


def chi_square(counts: np.ndarray, probs: np.ndarray) -> float:
    expected = probs * counts.sum()
    return float(((counts - expected) ** 2 / expected).sum())


# ------------------------------------------------------------------------------- grammar


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("1-1", ("1-1",)),
        ("1-1, 1-2,1-1", ("1-1", "1-2")),
        (["1-4", "8-4"], ("1-4", "8-4")),
        ("world:2", ("2-1", "2-2", "2-3", "2-4")),
        ("world:1,3", ("1-1", "1-2", "1-3", "1-4", "3-1", "3-2", "3-3", "3-4")),
        ("world:8,1-1", ("8-1", "8-2", "8-3", "8-4", "1-1")),
        ("1-3..2-2", ("1-3", "1-4", "2-1", "2-2")),
        ("all", ALL_STAGES),
        ("", ()),
    ],
)
def test_parse_stages(spec: str | list[str], expected: tuple[str, ...]) -> None:
    assert parse_stages(spec) == expected


@pytest.mark.parametrize("spec", ["9-1", "1-5", "world:9", "2-1..1-1", "1-1..x", "one", "1-1,2"])
def test_parse_stages_rejects_with_the_option_name(spec: str) -> None:
    with pytest.raises(ValueError, match=r"^--stages: "):
        parse_stages(spec, "--stages")


def test_config_validates_stage_fields() -> None:
    config = schema.from_dict(
        {"env": {"stages": ["world:1", "8-4"], "stage_sampling": "curriculum"}}
    )
    assert config.env.resolved_stages == ("1-1", "1-2", "1-3", "1-4", "8-4")
    with pytest.raises(schema.ConfigError, match=r"^env\.stages: unknown stage '0-1'"):
        schema.from_dict({"env": {"stages": ["0-1"]}})
    with pytest.raises(schema.ConfigError, match=r"^env\.stages: needs a Super Mario Bros"):
        schema.from_dict({"env": {"id": "CartPole-v1", "stages": ["1-1"]}})
    with pytest.raises(schema.ConfigError, match=r"^env\.stage_sampling: expected one of"):
        schema.from_dict({"env": {"stage_sampling": "hardest"}})
    with pytest.raises(schema.ConfigError, match=r"^eval\.stages: unknown stage"):
        schema.from_dict({"eval": {"stages": ["world:0"]}})


def test_env_ids() -> None:
    assert stage_env_id("4-2") == "SuperMarioBros-4-2-v0"
    assert stage_of_env_id("SuperMarioBros-4-2-v0") == "4-2"
    assert stage_of_env_id("SuperMarioBros-v0") is None
    assert stage_of_env_id("CartPole-v1") is None


# ------------------------------------------------------------------------------- level lengths


def test_goal_table_is_what_the_rom_says() -> None:
    assert derive_goal_x() == dict(STAGE_GOAL_X)
    assert set(STAGE_GOAL_X) == set(ALL_STAGES)
    # Independent landmarks: 1-1's flagpole stands on tile column 198 (198 * 16 = 3168) and
    # 8-1 is the longest stage.
    assert STAGE_GOAL_X["1-1"] == 3168
    assert max(STAGE_GOAL_X, key=STAGE_GOAL_X.__getitem__) == "8-1"


def test_progress() -> None:
    assert progress("1-1", 1584, False) == pytest.approx(0.5)
    assert progress("1-1", 3200, False) == 1.0  # capped
    assert progress("1-1", 100, True) == 1.0  # a clear is a clear
    assert progress("CartPole-v1", 100, False) == 0.0


# ------------------------------------------------------------------------------- sampling


def test_curriculum_frequencies_follow_the_weighting() -> None:
    stages = ("1-1", "1-2", "1-3", "1-4")
    sampler = StageSampler(stages, "curriculum", window=10, min_weight=0.1)
    # Fake outcomes: 1-1 always cleared, 1-2 half, 1-3 never, 1-4 not played yet. Older
    # outcomes beyond the window (10) must not count: 1-1 first fails 30 times.
    for _ in range(30):
        sampler.record("1-1", False)
    for i in range(10):
        sampler.record("1-1", True)
        sampler.record("1-2", i % 2 == 0)
        sampler.record("1-3", False)
    assert sampler.clear_rates() == {"1-1": 1.0, "1-2": 0.5, "1-3": 0.0, "1-4": 0.0}
    # w = m + (1 - m)(1 - c) = 0.1, 0.55, 1, 1 -> p = w / 2.65
    expected = np.array([0.1, 0.55, 1.0, 1.0]) / 2.65
    np.testing.assert_allclose(sampler.probabilities(), expected)
    np.testing.assert_allclose(curriculum_weights([1.0, 0.5, 0.0], 0.1), [0.1, 0.55, 1.0])
    rng = np.random.default_rng(1)
    draws = 20_000
    counts = np.array([0, 0, 0, 0])
    for _ in range(draws):
        counts[stages.index(sampler.sample(rng))] += 1
    assert chi_square(counts, expected) < CHI2_999[3], counts
    # ... and not uniform: a uniform sampler would miss by far.
    assert chi_square(counts, np.full(4, 0.25)) > 100 * CHI2_999[3]


def test_uniform_sampling_ignores_clear_rates() -> None:
    stages = ("1-1", "2-1", "3-1")
    sampler = StageSampler(stages, "uniform")
    for _ in range(20):
        sampler.record("1-1", True)
    rng = np.random.default_rng(2)
    counts = np.zeros(3)
    for _ in range(9000):
        counts[stages.index(sampler.sample(rng))] += 1
    assert chi_square(counts, np.full(3, 1 / 3)) < CHI2_999[2], counts


def test_sampler_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="at least one stage"):
        StageSampler(())
    with pytest.raises(ValueError, match="mode"):
        StageSampler(("1-1",), "hardest")
    with pytest.raises(ValueError, match="min_weight"):
        StageSampler(("1-1",), "curriculum", min_weight=0)


# ------------------------------------------------------------------------------- switching


def _switcher(env) -> StageSwitcher:  # type: ignore[no-untyped-def]
    while not isinstance(env, StageSwitcher):
        env = env.env
    return env


def test_switched_env_plays_exactly_like_a_fresh_env_of_that_stage() -> None:
    switching = make_env(EnvConfig(stages=("1-1", "4-1")), seed=0)
    switcher = _switcher(switching)
    switcher.sampler = StageSampler(("4-1",))  # force a switch away from the boot stage 1-1
    fresh = make_env(EnvConfig(id="SuperMarioBros-4-1-v0"), seed=0)
    obs_a, info_a = switching.reset()
    obs_b, info_b = fresh.reset()
    assert info_a == info_b and info_a["stage"] == "4-1"
    np.testing.assert_array_equal(obs_a, obs_b)
    rng = np.random.default_rng(0)
    for _ in range(150):
        action = int(rng.integers(7))
        a, b = switching.step(action), fresh.step(action)
        np.testing.assert_array_equal(a[0], b[0])
        assert a[1:] == b[1:]
        if a[2] or a[3]:
            switching.reset()
            fresh.reset()
    switching.close()
    fresh.close()


def test_envs_switch_stage_at_episode_boundaries_and_feed_the_curriculum() -> None:
    cfg = EnvConfig(stages=("1-1", "1-4"), stage_sampling="curriculum", max_episode_steps=5)
    env = make_env(cfg, seed=4)
    starts, ends = [], []
    for _ in range(12):
        _, info = env.reset()
        starts.append(info["stage"])
        done = False
        while not done:
            _, _, terminated, truncated, info = env.step(1)
            assert info["stage"] == starts[-1]  # never mid-episode
            done = terminated or truncated
        ends.append(info["episode"]["stage"])
    assert starts == ends
    assert set(starts) == {"1-1", "1-4"}
    sampler = _switcher(env).sampler
    # Episodes cut by the time limit count as not cleared; 11 were recorded (the 12th is
    # recorded at the next reset).
    assert sum(sampler.counts().values()) == 11
    assert sampler.clear_rates() == {"1-1": 0.0, "1-4": 0.0}
    env.close()


def test_stage_sampling_is_reproducible_from_the_env_seed() -> None:
    def stages(seed: int) -> list[str]:
        env = make_env(EnvConfig(stages=("1-1", "1-2", "1-3")), seed=seed)
        out = []
        for _ in range(6):
            out.append(env.reset()[1]["stage"])
            env.step(0)
        env.close()
        return out

    assert stages(7) == stages(7)


def test_stage_switch_cost() -> None:
    """A repeat switch restores a cached snapshot: far below one agent step (~4 ms)."""
    env = make_env(EnvConfig(stages=("1-1", "2-1")), seed=0)
    switcher = _switcher(env)
    switcher._switch("2-1")  # first visit: boots the stage once
    switcher._switch("1-1")
    start = time.perf_counter()
    for i in range(100):
        switcher._switch(("2-1", "1-1")[i % 2])
    per_switch = (time.perf_counter() - start) / 100
    assert per_switch < 2e-3, per_switch
    env.close()
