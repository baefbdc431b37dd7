"""Stall termination: end a Mario episode that has stopped gaining ground.

Run by: actor processes and evaluation (inside each Mario env, just above the frame skip, so it
counts agent steps). Owns: the per-episode count of agent steps since Mario's last new best
``x_pos``, and ending the episode when it reaches the limit.

Why: an agent that holds A runs into a pipe and stays there, because a held A does not jump again
(Super Mario Bros starts a jump on the press, not while A is held). Under the sampled policy the
occasional non-A action releases A and the next A press jumps, so the training flag rate can be
high while the greedy (argmax) policy stands at the pipe until the time limit; seed 0 of the 1-1
preset did exactly this (greedy eval 0/20, stuck at x 594; issue 12). Such an episode also burns
the rest of its ``max_episode_steps`` (up to 4,000 NES frames) on one screen that teaches nothing
more. Ending it as *terminated* (no bootstrap) makes a stall worth 0 against the positive values
of running states (~8-10 after ``reward_scale``), so holding A against an obstacle gets a negative
advantage and the frames go to play that still moves. It is a Mario-specific heuristic of this
project, measured in the README ("Learning results"); no paper defines it for SMB. Pardo et al.
2018 ("Time Limits in Reinforcement Learning", ICML) argue that a time limit the agent cannot
observe should be bootstrapped, as ``max_episode_steps`` is here; this limit differs in kind: it
ends states that look stuck on screen, so it is a termination by design, like a death without
its reward.
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium


class StallTermination(gymnasium.Wrapper):
    """Terminate an episode after ``steps`` agent steps without a new best ``x_pos``.

    The best ``x_pos`` starts at the reset's (a frontier restart's start counts as reached). A
    step that ends this way returns ``terminated=True`` with its reward unchanged and
    ``info["stalled"] = True``; every other step has ``info["stalled"] = False``. Episodes that
    end otherwise are untouched.

    Args:
        env: an env whose reset and step infos carry ``x_pos`` (pixels; gym-super-mario-bros 9)
            and whose steps are agent steps (wrap it above the frame skip).
        steps: agent steps without a new best ``x_pos`` that end the episode; >= 1.

    Raises:
        ValueError: naming ``env.stall_steps`` if ``steps`` < 1.
    """

    def __init__(self, env: gymnasium.Env, steps: int) -> None:
        super().__init__(env)
        if steps < 1:
            raise ValueError(f"env.stall_steps: must be >= 1 to wrap an env, got {steps}")
        self.steps = int(steps)
        self._best_x = 0
        self._since_best = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset the inner env and the count; ``info["stalled"]`` is False."""
        obs, info = self.env.reset(seed=seed, options=options)
        self._best_x, self._since_best = int(info["x_pos"]), 0
        return obs, {**info, "stalled": False}

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step one agent step; terminate on the ``steps``-th step in a row without new ground."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        x_pos = int(info["x_pos"])
        if x_pos > self._best_x:
            self._best_x, self._since_best = x_pos, 0
        else:
            self._since_best += 1
        stalled = not (terminated or truncated) and self._since_best >= self.steps
        return obs, reward, terminated or stalled, truncated, {**info, "stalled": stalled}
