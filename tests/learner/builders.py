"""Tiny configs and random unrolls for learner tests (CartPole-shaped: obs (3,), 2 actions)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from configs import schema
from learner.learner import Learner
from protocol.messages import Trajectory, TrajectorySpec

T = 4
OBS_SHAPE = (3,)
NUM_ACTIONS = 2
SPEC = TrajectorySpec(T, OBS_SHAPE, np.dtype(np.float32), NUM_ACTIONS)


def config(**overrides: Any) -> schema.Config:
    """A tiny mlp config; ``overrides`` use ``section__field`` keyword names."""
    values: dict[str, Any] = {
        "env.id": "CartPole-v1",
        "model.torso": "mlp",
        "model.hidden_size": 16,
        "model.mlp_layers": 1,
        "actor.unroll_length": T,
        "learner.batch_size": 4,
    }
    values.update({key.replace("__", "."): value for key, value in overrides.items()})
    return schema.load(None, values)


def server_config(sockets: Path, **overrides: Any) -> schema.Config:
    """:func:`config` for a learner server (4 envs per actor) bound on ipc endpoints in
    ``sockets``; batch 64, so no update runs unless a test feeds that many unrolls."""
    values: dict[str, Any] = {
        "actor__num_envs": 4,
        "learner__batch_size": 64,
        "learner__device": "cpu",
        "network__trajectory_endpoint": f"ipc://{sockets}/traj",
        "network__broadcast_endpoint": f"ipc://{sockets}/pub",
    }
    return config(**{**values, **overrides})


def learner(seed: int = 0, **overrides: Any) -> Learner:
    """A CPU learner whose initial weights depend only on ``seed``."""
    torch.manual_seed(seed)
    return Learner(config(**overrides), OBS_SHAPE, NUM_ACTIONS, "cpu", np.float32)


def unrolls(count: int, seed: int = 0, truncations: bool = True) -> list[Trajectory]:
    """``count`` random off-policy unrolls; some terminate, some are truncated (with obs)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        trunc = [1] if truncations and i % 3 == 1 else []
        arrays = SPEC.empty(num_truncated=len(trunc))
        arrays["obs"][:] = rng.normal(size=arrays["obs"].shape)
        arrays["action"][:] = rng.integers(0, NUM_ACTIONS, T)
        arrays["reward"][:] = rng.normal(size=T)
        arrays["behaviour_logits"][:] = rng.normal(size=arrays["behaviour_logits"].shape)
        if i % 3 == 2:
            arrays["terminated"][2] = True
        for t in trunc:
            arrays["truncated"][t] = True
        arrays["truncated_obs"][:] = rng.normal(size=arrays["truncated_obs"].shape)
        out.append(Trajectory(actor_id=0, run_id="r", seq=seed * 1000 + i, env_index=0, **arrays))
    return out


def params(learner: Learner) -> list[torch.Tensor]:
    return [p.detach().clone() for p in learner.model.parameters()]


def time_major_batch_sizes(learner: Learner) -> list[int]:
    """Record B of every time-major [T+1, B, 3] forward of ``learner.model`` (a live list)."""
    seen: list[int] = []

    def hook(_module: Any, args: tuple[Any, ...], _out: Any) -> None:
        if args[0].dim() == 3:
            seen.append(int(args[0].shape[1]))

    learner.model.register_forward_hook(hook)
    return seen
