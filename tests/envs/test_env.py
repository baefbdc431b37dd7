"""Tests for envs/factory.py and envs/preprocessing.py on the real Super Mario Bros ROM (and
CartPole for generic envs)."""

from __future__ import annotations

from typing import Any

import cv2
import gymnasium
import numpy as np
import pytest
from gymnasium import spaces

from configs.schema import EnvConfig
from envs.factory import make_env, make_vector_env
from envs.preprocessing import nes_luma
from envs.spec import num_actions, observation_spec
from envs.wrappers import EpisodeInfo

MARIO = EnvConfig()  # SuperMarioBros-1-1-v0, simple, skip 4, stack 4, 84x84
RIGHT = 1  # 'right' in every action set; walking right dies at 1-1's first goomba
NES_FRAME_COUNTER = 0x09  # SMB RAM: incremented once per NES frame


def _expected_frame(gray_frames: list[np.ndarray], res: int) -> np.ndarray:
    """Reference preprocessing of one agent step from raw grayscale NES frames."""
    pooled = (
        np.maximum(gray_frames[-2], gray_frames[-1]) if len(gray_frames) > 1 else gray_frames[-1]
    )
    return cv2.resize(pooled, (res, res), interpolation=cv2.INTER_AREA)


def _raw_mario() -> gymnasium.Env:
    import gym_super_mario_bros  # noqa: F401
    from gym_super_mario_bros.actions import SIMPLE_MOVEMENT
    from nes_py.wrappers import JoypadSpace

    return JoypadSpace(gymnasium.make(MARIO.id), SIMPLE_MOVEMENT)


def _gray(env: gymnasium.Env) -> np.ndarray:
    from nes_py.nes_env import OBSERVATION_MODE_GRAYSCALE

    return env.unwrapped.observation(mode=OBSERVATION_MODE_GRAYSCALE)


def _run_until_done(env: gymnasium.Env, action: int, limit: int) -> list[tuple[Any, ...]]:
    steps = []
    for _ in range(limit):
        out = env.step(action)
        steps.append(out)
        if out[2] or out[3]:
            break
    return steps


# --------------------------------------------------------------------------- Mario: spaces


@pytest.mark.parametrize("preprocessing", ["fused", "gymnasium"])
def test_mario_observation_space_and_reset_stack(preprocessing: str) -> None:
    cfg = EnvConfig(frame_stack=3, resolution=64)
    env = make_env(cfg, seed=0, preprocessing=preprocessing)  # type: ignore[arg-type]
    assert env.observation_space == spaces.Box(0, 255, (3, 64, 64), np.uint8)
    obs, info = env.reset()
    assert obs.shape == (3, 64, 64) and obs.dtype == np.uint8
    assert obs in env.observation_space
    assert obs.max() > obs.min()  # a real screen, not a blank buffer
    # Reset fills every slot with the first frame, the preprocessed reset screen.
    expected = _expected_frame([_gray(env)], 64)
    for frame in obs:
        np.testing.assert_array_equal(frame, expected)
    assert info == {"x_pos": 40, "flag_get": False, "stage": "1-1"}
    env.close()


def test_mario_spec_helpers_do_not_build_an_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_make(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("built an env")

    monkeypatch.setattr(gymnasium, "make", no_make)
    cfg = EnvConfig(frame_stack=2, resolution=48, actions="complex")
    assert observation_spec(cfg) == ((2, 48, 48), np.dtype(np.uint8))
    assert num_actions(cfg) == 12


@pytest.mark.parametrize(("actions", "n"), [("right_only", 5), ("simple", 7), ("complex", 12)])
def test_action_count_per_action_set(actions: str, n: int) -> None:
    cfg = EnvConfig(actions=actions)
    assert num_actions(cfg) == n
    env = make_env(cfg)
    assert env.action_space == spaces.Discrete(n)
    assert env.unwrapped.get_action_meanings  # a real NES env underneath
    env.close()


def test_unknown_action_set_names_field() -> None:
    with pytest.raises(ValueError, match=r"env\.actions"):
        num_actions(EnvConfig(actions="dance"))


# ----------------------------------------------------------- Mario: skip, pool, stack


@pytest.mark.parametrize("preprocessing", ["fused", "gymnasium"])
def test_frame_skip_max_pool_and_stack_match_raw_env(preprocessing: str) -> None:
    """Each agent step == 4 raw NES steps: same RAM frame counter, x_pos, summed reward, and
    observation == resize(max(gray(frame 3), gray(frame 4))) appended to the shifted stack."""
    env = make_env(MARIO, preprocessing=preprocessing)  # type: ignore[arg-type]
    raw = _raw_mario()
    obs, _ = env.reset()
    raw.reset()
    rng = np.random.default_rng(1)
    pool_mattered = False
    for _ in range(60):
        action = int(rng.choice([RIGHT, 2, 4]))  # right, right+A, right+A+B: varied motion
        new_obs, reward, terminated, truncated, info = env.step(action)
        raw_reward, grays = 0.0, []
        for _ in range(MARIO.frame_skip):
            _, r, raw_term, raw_trunc, raw_info = raw.step(action)
            raw_reward += r
            grays.append(_gray(raw).copy())
            assert not (raw_term or raw_trunc)
        assert env.unwrapped.ram[NES_FRAME_COUNTER] == raw.unwrapped.ram[NES_FRAME_COUNTER]
        assert info["x_pos"] == raw_info["x_pos"]
        assert reward == pytest.approx(raw_reward)
        assert not (terminated or truncated)
        np.testing.assert_array_equal(new_obs[-1], _expected_frame(grays, MARIO.resolution))
        np.testing.assert_array_equal(new_obs[:-1], obs[1:])  # oldest first, shifted by one
        if not np.array_equal(grays[-1], np.maximum(grays[-2], grays[-1])):
            pool_mattered = True
        obs = new_obs
    assert info["x_pos"] > 100  # Mario actually moved, so the comparison is not vacuous
    assert pool_mattered  # the pooled frame differed from the last one at least once
    env.close()
    raw.close()


def test_frame_counter_advances_frame_skip_nes_frames() -> None:
    env = make_env(EnvConfig(frame_skip=3))
    env.reset()
    before = int(env.unwrapped.ram[NES_FRAME_COUNTER])
    env.step(0)
    assert (int(env.unwrapped.ram[NES_FRAME_COUNTER]) - before) % 256 == 3
    env.close()


@pytest.mark.parametrize("preprocessing", ["fused", "gymnasium"])
def test_frame_hook_sees_every_nes_frame_and_leaves_observations_alone(
    preprocessing: str,
) -> None:
    frames: list[np.ndarray] = []
    tapped = make_env(
        MARIO, seed=0, preprocessing=preprocessing, frame_hook=lambda f: frames.append(f.copy())
    )  # type: ignore[arg-type]
    plain = make_env(MARIO, seed=0, preprocessing=preprocessing)  # type: ignore[arg-type]
    obs, _ = tapped.reset()
    np.testing.assert_array_equal(obs, plain.reset()[0])
    assert len(frames) == 1 and frames[0].shape == (240, 256, 3) and frames[0].dtype == np.uint8
    for step in range(1, 6):
        obs, *rest = tapped.step(RIGHT)
        expected_obs, *expected_rest = plain.step(RIGHT)
        np.testing.assert_array_equal(obs, expected_obs)
        assert rest == expected_rest
        assert len(frames) == 1 + 4 * step  # the reset frame, then every NES frame
        # The agent's newest frame is the max-pool of the last two NES frames, grayed.
        pooled = np.maximum(nes_luma(frames[-2]), nes_luma(frames[-1]))
        np.testing.assert_array_equal(obs[-1], _expected_frame([pooled], 84))
    tapped.close()
    plain.close()


def test_nes_luma_matches_native_grayscale() -> None:
    raw = _raw_mario()
    raw.reset()
    for _ in range(30):
        raw.step(RIGHT)
    np.testing.assert_array_equal(nes_luma(raw.unwrapped.screen), _gray(raw))
    raw.close()


@pytest.mark.parametrize(
    "cfg",
    [MARIO, EnvConfig(frame_skip=3, frame_stack=2, resolution=40), EnvConfig(frame_skip=1)],
    ids=["default", "skip3", "skip1"],
)
def test_fused_equals_gymnasium_chain(cfg: EnvConfig) -> None:
    """Same action sequence from reset, through a death, a reset and random play: identical
    observations, rewards, flags and infos. Walking right dies on NES frame 160, so with
    skip 3 the death ends an agent step after its first NES frame (the early-end path)."""
    fused = make_env(cfg, preprocessing="fused")
    chain = make_env(cfg, preprocessing="gymnasium")
    assert fused.observation_space == chain.observation_space
    obs_f, info_f = fused.reset()
    obs_c, info_c = chain.reset()
    np.testing.assert_array_equal(obs_f, obs_c)
    assert info_f == info_c
    rng = np.random.default_rng(7)
    episodes, steps_after_reset = 0, 0
    while steps_after_reset < 60:
        action = RIGHT if episodes == 0 else int(rng.integers(7))
        out_f = fused.step(action)
        out_c = chain.step(action)
        np.testing.assert_array_equal(out_f[0], out_c[0])
        assert out_f[0].shape == fused.observation_space.shape
        assert out_f[1:] == out_c[1:]  # reward, terminated, truncated, info
        steps_after_reset += episodes > 0
        if out_f[2] or out_f[3]:
            assert out_f[2]  # the death
            episodes += 1
            np.testing.assert_array_equal(fused.reset()[0], chain.reset()[0])
    assert episodes >= 1
    fused.close()
    chain.close()


@pytest.mark.parametrize("preprocessing", ["fused", "gymnasium"])
def test_early_episode_end_observation_is_last_nes_frame_alone(preprocessing: str) -> None:
    """Skip 3, walking right: death on NES frame 160 = step 54's first frame."""
    env = make_env(EnvConfig(frame_skip=3), preprocessing=preprocessing)  # type: ignore[arg-type]
    raw = _raw_mario()
    env.reset()
    raw.reset()
    steps = _run_until_done(env, RIGHT, 100)
    raw_rewards = []
    while True:
        _, r, raw_term, _, _ = raw.step(RIGHT)
        raw_rewards.append(r)
        if raw_term:
            break
    assert len(raw_rewards) == 160 and len(steps) == 54
    obs, reward, terminated, _, _ = steps[-1]
    assert terminated
    assert reward == pytest.approx(raw_rewards[-1])  # only one NES frame was stepped
    np.testing.assert_array_equal(obs[-1], _expected_frame([_gray(raw)], 84))
    np.testing.assert_array_equal(obs[:-1], steps[-2][0][1:])
    env.close()
    raw.close()


# ----------------------------------------------------- Mario: episode ends and statistics


def test_death_terminates_with_episode_stats_on_last_step_only() -> None:
    env = make_env(MARIO, seed=0)
    _, reset_info = env.reset()
    steps = _run_until_done(env, RIGHT, 400)
    *middle, last = steps
    _, reward, terminated, truncated, info = last
    assert terminated and not truncated
    assert reward < 0  # death penalty
    assert all("episode" not in s[4] and not s[2] and not s[3] for s in middle)
    assert set(info) == {"x_pos", "flag_get", "stage", "episode"}
    assert all(set(s[4]) == {"x_pos", "flag_get", "stage"} for s in middle)
    episode = info["episode"]
    assert episode["length"] == len(steps)
    assert episode["return"] == pytest.approx(sum(s[1] for s in steps))
    assert isinstance(episode["return"], float)
    xs = [reset_info["x_pos"], *(s[4]["x_pos"] for s in steps)]
    assert episode["max_x_pos"] == max(xs) > reset_info["x_pos"]
    assert episode["flag_get"] is False
    assert episode["stage"] == "1-1"
    # The next episode starts from scratch.
    env.reset()
    _, _, _, _, info = env.step(RIGHT)
    assert "episode" not in info
    env.close()


@pytest.mark.parametrize("preprocessing", ["fused", "gymnasium"])
def test_max_episode_steps_truncates_not_terminates(preprocessing: str) -> None:
    env = make_env(EnvConfig(max_episode_steps=5), preprocessing=preprocessing)  # type: ignore[arg-type]
    env.reset()
    for t in range(1, 6):
        _, _, terminated, truncated, info = env.step(RIGHT)
        assert not terminated
        assert truncated == (t == 5)
        assert ("episode" in info) == (t == 5)
    assert info["episode"]["length"] == 5
    env.close()


class _ScriptedInfoEnv(gymnasium.Env):
    """Three steps of Mario-like info; the flag is seen mid-episode only."""

    observation_space = spaces.Box(0, 1, (1,), np.float32)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):  # type: ignore[override]
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {"x_pos": 10, "flag_get": False, "world": 2, "stage": 3}

    def step(self, action: int):  # type: ignore[override]
        self.t += 1
        info = {"x_pos": [50, 30, 20][self.t - 1], "flag_get": self.t == 2, "world": 2}
        info |= {"stage": 3, "junk": object()}
        return np.zeros(1, np.float32), 1.5, self.t == 3, False, info


def test_episode_info_aggregates_max_x_and_any_flag() -> None:
    env = EpisodeInfo(_ScriptedInfoEnv(), mario=True, name="unused")
    env.reset()
    infos = [env.step(0)[4] for _ in range(3)]
    assert "junk" not in infos[0]
    assert infos[2]["episode"] == {
        "return": 4.5,
        "length": 3,
        "max_x_pos": 50,
        "flag_get": True,
        "stage": "2-3",
        "restored": False,
    }


# ------------------------------------------------------------------------- other envs


def test_cartpole_float32_vector_obs_and_episode_stats() -> None:
    cfg = EnvConfig(id="CartPole-v1")
    assert observation_spec(cfg) == ((4,), np.dtype(np.float32))
    assert num_actions(cfg) == 2
    env = make_env(cfg, seed=3)
    obs, info = env.reset()
    assert obs.dtype == np.float32 and obs.shape == (4,) and info == {}
    steps = _run_until_done(env, 0, 600)  # always pushing left falls within ~10 steps
    assert steps[-1][2] and not steps[-1][3]
    assert all(s[4] == {} for s in steps[:-1])
    assert steps[-1][4]["episode"] == {
        "return": float(len(steps)),
        "length": len(steps),
        "max_x_pos": 0,
        "flag_get": False,
        "stage": "CartPole-v1",
        "restored": False,
    }
    env.close()


def test_seed_fixes_first_reset_and_action_space() -> None:
    cfg = EnvConfig(id="CartPole-v1")
    a, b, c = make_env(cfg, seed=5), make_env(cfg, seed=5), make_env(cfg, seed=6)
    np.testing.assert_array_equal(a.reset()[0], b.reset()[0])
    assert not np.array_equal(a.reset()[0], c.reset()[0])
    assert [a.action_space.sample() for _ in range(20)] == [
        b.action_space.sample() for _ in range(20)
    ]


def test_max_episode_steps_overrides_registered_limit() -> None:
    env = make_env(EnvConfig(id="CartPole-v1", max_episode_steps=3), seed=0)
    env.reset()
    steps = [env.step(t % 2) for t in range(3)]  # alternating: CartPole stays up
    assert [s[3] for s in steps] == [False, False, True]
    assert not any(s[2] for s in steps)


class _Float64Env(gymnasium.Env):
    observation_space = spaces.Box(-1.0, 1.0, (3,), np.float64)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):  # type: ignore[override]
        return np.full(3, 0.25), {}

    def step(self, action: int):  # type: ignore[override]
        return np.full(3, 0.5), 1.0, True, False, {}


class _ImageEnv(_Float64Env):
    observation_space = spaces.Box(0, 255, (8, 8), np.uint8)


gymnasium.register("TestFloat64-v0", entry_point=_Float64Env)
gymnasium.register("TestImage-v0", entry_point=_ImageEnv)


def test_float64_obs_cast_to_float32() -> None:
    env = make_env(EnvConfig(id="TestFloat64-v0"))
    assert env.observation_space.dtype == np.float32
    obs, _ = env.reset()
    assert obs.dtype == np.float32
    assert env.step(0)[0].dtype == np.float32


@pytest.mark.parametrize(
    ("env_id", "why"),
    [
        ("NoSuchEnv-v0", "cannot make"),
        ("SuperMarioBros-9-9-v0", "cannot make"),
        ("Pendulum-v1", "Discrete"),
        ("FrozenLake-v1", "1-D Box"),
        ("TestImage-v0", "1-D Box"),
    ],
)
def test_bad_env_ids_raise_value_error_naming_field(env_id: str, why: str) -> None:
    with pytest.raises(ValueError, match=rf"env\.id.*{why}"):
        make_env(EnvConfig(id=env_id))


# ------------------------------------------------------------------------- vector env


def test_vector_env_same_step_autoreset_gives_final_obs() -> None:
    cfg = EnvConfig(max_episode_steps=3)
    envs = make_vector_env(cfg, 2, seed=0)
    assert envs.autoreset_mode == gymnasium.vector.AutoresetMode.SAME_STEP
    obs, infos = envs.reset()
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    assert list(infos["stage"]) == ["1-1", "1-1"]
    for _ in range(2):
        obs, _, term, trunc, infos = envs.step(np.array([RIGHT, RIGHT]))
        assert "final_obs" not in infos and not term.any() and not trunc.any()
    last_obs = obs
    obs, _, term, trunc, infos = envs.step(np.array([RIGHT, RIGHT]))
    assert trunc.tolist() == [True, True] and term.tolist() == [False, False]
    assert infos["_final_obs"].tolist() == [True, True]
    for i in range(2):
        final = infos["final_obs"][i]
        assert final.shape == (4, 84, 84)
        np.testing.assert_array_equal(final[:-1], last_obs[i, 1:])  # continues the episode
        assert all(np.array_equal(f, obs[i, 0]) for f in obs[i])  # fresh reset stack
        assert not np.array_equal(final, obs[i])
    episode = infos["final_info"]["episode"]
    assert infos["final_info"]["_episode"].tolist() == [True, True]
    assert episode["length"].tolist() == [3, 3]
    assert list(episode["stage"]) == ["1-1", "1-1"]
    assert (episode["max_x_pos"] > 40).all()
    envs.close()


def test_vector_env_masks_when_one_env_ends_and_seeds_per_env() -> None:
    cfg = EnvConfig(id="CartPole-v1")
    envs = make_vector_env(cfg, 2, seed=10)
    obs, _ = envs.reset()
    for i in range(2):
        np.testing.assert_array_equal(obs[i], make_env(cfg, seed=10 + i).reset()[0])
    # Env 0 always pushes left (falls in ~10 steps), env 1 alternates (stays up far longer).
    for t in range(100):
        obs, _, term, trunc, infos = envs.step(np.array([0, t % 2]))
        if term[0]:
            break
    assert term.tolist() == [True, False] and not trunc.any()
    assert infos["_final_obs"].tolist() == [True, False]
    assert infos["final_obs"][1] is None
    assert infos["final_obs"][0].dtype == np.float32
    assert infos["final_info"]["_episode"].tolist() == [True, False]
    assert infos["final_info"]["episode"]["length"][0] == t + 1
    assert "episode" not in infos  # the top level holds env 0's reset info, which has none
    envs.close()


def test_unknown_preprocessing_raises() -> None:
    with pytest.raises(ValueError, match="preprocessing"):
        make_env(MARIO, preprocessing="opencv")  # type: ignore[arg-type]


def test_reward_shaping_weights_components_and_episodes_report_their_sums() -> None:
    """Raw env reward by default; with shaping, the weighted sum of the reward components."""
    from configs.schema import EnvConfig

    actions = [3] * 400  # right+B: runs until the first Goomba kills Mario
    results = {}
    for shaping in (False, True):
        cfg = EnvConfig(reward_shaping=shaping, reward_progress=2.0, reward_time=0.0,
                        reward_death=0.0)  # fmt: skip
        env = make_env(cfg, seed=0)
        env.reset(seed=0)
        total, episode = 0.0, None
        for a in actions:
            _, reward, terminated, truncated, info = env.step(a)
            total += float(reward)
            if terminated or truncated:
                episode = info["episode"]
                break
        env.close()
        assert episode is not None, "Mario should die within 400 steps of running right"
        results[shaping] = (total, episode)
    (raw_total, raw_ep), (shaped_total, shaped_ep) = results[False], results[True]
    components = raw_ep["components"]
    assert set(components) == {"progress", "time", "score", "coins", "powerup", "completion",
                               "death"}  # fmt: skip
    assert components["death"] == -25.0 and components["progress"] > 100
    assert shaped_ep["components"] == components  # same play, same components
    expected = sum(v for k, v in components.items() if k not in ("time", "death"))
    expected += components["progress"]  # progress weighted 2
    assert shaped_total == pytest.approx(expected)
    assert raw_total != pytest.approx(shaped_total)
