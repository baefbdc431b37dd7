"""Policies that evaluation can run: the trained agent and two fixed baselines.

Run by: evaluation worker processes (``launcher.py eval``) and the eval actor.
Owns: the :class:`Policy` interface (one observation in, one action index out) and the policy
names accepted by ``--policy``:

* ``agent``: the network from a checkpoint or the learner's broadcast, sampling from its
  softmax (as the actors do) or greedy (argmax).
* ``random``: uniform over the env's action set. On 1-1 with ``simple`` actions and frame skip
  4 it averages a max ``x_pos`` of roughly 800-1200 (episodes end on the first life lost).
* ``right``: run right with B held and jump in a fixed rhythm: 8 agent steps of right+A+B, then
  2 of right+B (releasing A lets Mario jump again), repeated. On 1-1 (``simple``, frame skip 4)
  it reaches x = 1125 and dies there; holding right+A instead dies at the first Goomba (x 296).
"""

from __future__ import annotations

from typing import Final, Protocol

import numpy as np
import torch

from models import ActorCritic

#: Names accepted by ``--policy`` (comma-separated).
POLICY_NAMES: Final[tuple[str, ...]] = ("agent", "random", "right")

#: The ``right`` baseline's rhythm: agent steps with A held, then steps with A released.
RIGHT_JUMP_STEPS: Final[int] = 8
RIGHT_RELEASE_STEPS: Final[int] = 2


class Policy(Protocol):
    """Chooses one action per agent step for a single env."""

    def reset(self) -> None:
        """Start of a new episode."""

    def act(self, obs: np.ndarray) -> int:
        """Action index in [0, num_actions) for one observation (the env's obs shape)."""


def parse_policies(spec: str) -> tuple[str, ...]:
    """``"agent,random"`` -> ``("agent", "random")`` (order kept, duplicates dropped).

    Raises:
        ValueError: naming ``--policy`` for an empty spec or an unknown name.
    """
    names: list[str] = []
    for raw in spec.split(","):
        name = raw.strip().lower()
        if not name:
            continue
        if name not in POLICY_NAMES:
            raise ValueError(
                f"--policy: unknown policy {raw.strip()!r}; expected one or more of "
                f"{', '.join(POLICY_NAMES)} separated by commas"
            )
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError(f"--policy: no policy given; expected {', '.join(POLICY_NAMES)}")
    return tuple(names)


class RandomPolicy:
    """Uniform over ``num_actions`` actions, from its own seeded generator."""

    def __init__(self, num_actions: int, seed: int) -> None:
        if num_actions < 1:
            raise ValueError(f"num_actions must be >= 1, got {num_actions}")
        self.num_actions = num_actions
        self._rng = np.random.default_rng(seed)

    def reset(self) -> None:
        """Nothing to reset (the generator runs on across episodes)."""

    def act(self, obs: np.ndarray) -> int:
        """A uniform random action index."""
        return int(self._rng.integers(self.num_actions))


def _action_index(action_set: list[list[str]], buttons: set[str]) -> int:
    for i, combo in enumerate(action_set):
        if set(combo) == buttons:
            return i
    raise ValueError(f"the action set has no {'+'.join(sorted(buttons))} action: {action_set}")


class RightPolicy:
    """Right+A+B for :data:`RIGHT_JUMP_STEPS` steps, right+B for :data:`RIGHT_RELEASE_STEPS`.

    Args:
        action_set: the JoypadSpace button combinations (e.g. SIMPLE_MOVEMENT); it must contain
            ``right+A+B`` and ``right+B`` (all three preset sets do).

    Raises:
        ValueError: the action set lacks one of the two combinations.
    """

    def __init__(self, action_set: list[list[str]]) -> None:
        self.jump = _action_index(action_set, {"right", "A", "B"})
        self.run = _action_index(action_set, {"right", "B"})
        self._t = 0

    def reset(self) -> None:
        """Restart the rhythm."""
        self._t = 0

    def act(self, obs: np.ndarray) -> int:
        """The next action of the rhythm (the observation is ignored)."""
        phase = self._t % (RIGHT_JUMP_STEPS + RIGHT_RELEASE_STEPS)
        self._t += 1
        return self.jump if phase < RIGHT_JUMP_STEPS else self.run


class AgentPolicy:
    """The actor-critic network choosing actions on the CPU.

    Args:
        model: an :class:`ActorCritic` with loaded weights (put in eval mode here).
        greedy: argmax of the logits instead of sampling.
        seed: seeds the sampling generator.
    """

    def __init__(self, model: ActorCritic, greedy: bool, seed: int) -> None:
        self.model = model.eval()
        self.greedy = greedy
        self._generator = torch.Generator().manual_seed(int(seed))
        self._core_state = model.initial_state(1)
        self._last_action = torch.tensor([model.num_actions])  # "none": an episode start
        model.set_noise(not greedy)  # greedy evaluation of NoisyNet heads uses their means

    def reset(self) -> None:
        """A new episode: the recurrent core (if any) starts from its initial state and the
        previous action is "none" (A)."""
        self._core_state = self.model.initial_state(1)
        self._last_action = torch.tensor([self.model.num_actions])

    def act(self, obs: np.ndarray) -> int:
        """Sampled (or greedy) action for one observation, carrying the core state and the
        previous action (calls must follow the episode's steps in order)."""
        with torch.inference_mode():
            action, _, self._core_state = self.model.act(
                torch.from_numpy(np.asarray(obs))[None],
                core_state=self._core_state,
                greedy=self.greedy,
                generator=self._generator,
                last_action=self._last_action,
            )
        self._last_action = action.clone()
        return int(action[0])
