"""Gymnasium wrappers every env gets: Mario's reward components and the trimmed episode info.

Run by: actor processes and evaluation, inside the envs :func:`envs.factory.make_env` builds.
Owns: the per-episode reward components (and the shaped reward), the trimmed per-step ``info``
and ``info["episode"]``, the per-episode statistics every downstream consumer reads (keys in
:mod:`envs.factory`'s docstring).
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium


class RewardComponents(gymnasium.Wrapper):
    """Innermost Mario wrapper: sums the env's per-frame ``info["reward_components"]`` over the
    episode and, with shaping on, makes the reward their weighted sum.

    gym-super-mario-bros 9.x computes progress, time, score, coins, powerup, completion and
    death components every NES frame and returns their sum clipped to [-15, 15] as the reward.
    With ``weights`` set the reward is ``sum(weights[c] * component[c])`` instead (unclipped;
    the learner's ``reward_scale`` / ``reward_clip`` apply later). Frame skip, outside this
    wrapper, sums the per-frame rewards either way.

    Attributes:
        episode_components: component name -> sum of its raw values since the last reset.
    """

    def __init__(self, env: gymnasium.Env, weights: dict[str, float] | None) -> None:
        super().__init__(env)
        self.weights = weights
        self.episode_components: dict[str, float] = {}

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        self.episode_components = {}
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        components = info.get("reward_components") or {}
        for name, value in components.items():
            self.episode_components[name] = self.episode_components.get(name, 0.0) + value
        if self.weights is not None:
            reward = sum(self.weights.get(n, 0.0) * v for n, v in components.items())
        return obs, reward, terminated, truncated, info


class EpisodeInfo(gymnasium.Wrapper):
    """Trim ``info`` to a few typed keys and add ``info["episode"]`` on an episode's last step.

    See the module docstring for the keys. Optionally applies ``seed`` on the first reset that
    is not given one, so an env seeded at construction is reproducible even when its first reset
    comes from a vector env's argument-less ``reset()``.

    Args:
        env: the env to wrap; for ``mario=True`` its info must have ``x_pos``, ``flag_get``,
            ``world`` and ``stage``.
        mario: whether to keep the Mario keys (otherwise info has no per-step keys).
        name: ``episode["stage"]`` for non-Mario envs (the env id).
        seed: seed for the first reset, or None.
    """

    def __init__(
        self, env: gymnasium.Env, *, mario: bool, name: str, seed: int | None = None
    ) -> None:
        super().__init__(env)
        self._mario = mario
        self._name = name
        self._first_seed = seed
        self._return = 0.0
        self._length = 0
        self._max_x = 0
        self._flag = False
        self._restored = False

    def _trim(self, info: dict[str, Any]) -> dict[str, Any]:
        if not self._mario:
            return {}
        x_pos = int(info["x_pos"])
        flag = bool(info["flag_get"])
        self._max_x = max(self._max_x, x_pos)
        self._flag = self._flag or flag
        return {"x_pos": x_pos, "flag_get": flag, "stage": f"{info['world']}-{info['stage']}"}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset the inner env (with the construction seed if this is the first, unseeded one)."""
        if seed is None:
            seed = self._first_seed
        self._first_seed = None
        obs, info = self.env.reset(seed=seed, options=options)
        self._return, self._length, self._max_x, self._flag = 0.0, 0, 0, False
        self._restored = bool(info.get("restored", False))
        return obs, self._trim(info)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the inner env; ``info["episode"]`` appears iff ``terminated or truncated``."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._return += float(reward)
        self._length += 1
        out = self._trim(info)
        if terminated or truncated:
            out["episode"] = {
                "return": self._return,
                "length": self._length,
                "max_x_pos": self._max_x,
                "flag_get": self._flag,
                "stage": out["stage"] if self._mario else self._name,
                "restored": self._restored,
            }
            if self._mario:
                try:
                    components = self.env.get_wrapper_attr("episode_components")
                    out["episode"]["components"] = dict(components)
                except AttributeError:  # a Mario-like env without RewardComponents
                    pass
        return obs, reward, terminated, truncated, out
