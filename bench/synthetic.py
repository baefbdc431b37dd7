"""Synthetic unrolls of a run's layout, for learner benchmarks.

Run by: :mod:`bench.learner_throughput` (in process) and :mod:`bench.fake_actor` (over the
wire). Owns: the run's :class:`~protocol.messages.TrajectorySpec` as a benchmark sees it and
random but valid unrolls for it. (:mod:`bench.replay` has its own generator: consecutive unrolls
of one env, for the replay's frame de-duplication.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from protocol.messages import Trajectory, TrajectorySpec

if TYPE_CHECKING:
    from configs import schema


def run_spec(config: schema.Config) -> TrajectorySpec:
    """The unroll layout of ``config``'s run (obs, actions and the model's core state), as the
    learner validates it."""
    # Imported here: fake actor processes import this module for synthetic_unrolls alone, and
    # must not pay for torch (the model) and the emulator (the env's shapes) at every spawn.
    from envs.spec import num_actions, observation_spec
    from models import build_model

    obs_shape, obs_dtype = observation_spec(config.env)
    actions = num_actions(config.env)
    model = build_model(config.model, obs_shape, actions)
    return TrajectorySpec.for_run(config, model, obs_dtype)


def synthetic_unrolls(spec: TrajectorySpec, count: int, seed: int = 0) -> list[Trajectory]:
    """``count`` valid random trajectories for ``spec`` (one in four ends an episode).

    Image observations are windows over one random frame sequence (``obs[t]`` shares
    stack - 1 frames with ``obs[t-1]``), like the real frame stack, so the replay's frame
    de-duplication sees realistic data.
    """
    rng = np.random.default_rng(seed)
    t_len, shape = spec.unroll_length, spec.obs_shape
    out = []
    for i in range(count):
        arrays = spec.empty()
        if len(shape) == 3 and spec.obs_dtype == np.uint8:
            stack = shape[0]
            frames = rng.integers(0, 256, (t_len + stack, *shape[1:]), dtype=np.uint8)
            for t in range(t_len + 1):
                arrays["obs"][t] = frames[t : t + stack]
        elif spec.obs_dtype == np.uint8:
            arrays["obs"][:] = rng.integers(0, 256, arrays["obs"].shape, dtype=np.uint8)
        else:
            arrays["obs"][:] = rng.normal(size=arrays["obs"].shape)
        arrays["action"][:] = rng.integers(0, spec.num_actions, t_len)
        arrays["reward"][:] = rng.normal(size=t_len)
        arrays["behaviour_logits"][:] = rng.normal(size=arrays["behaviour_logits"].shape)
        if i % 4 == 0:
            arrays["terminated"][t_len // 2] = True
        out.append(Trajectory(actor_id=0, run_id="bench", seq=i, env_index=0, **arrays))
    return out
