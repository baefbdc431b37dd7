"""Learner throughput: env frames consumed per second by ``Learner.step``.

Run: ``uv run python -m bench.learner_throughput --seconds 20 [--config C] [--batch-size B]
[--replay-ratio R] [--amp bf16] [--compile] [--grad-accumulation N]``.
Prints one JSON line with ``frames_per_s`` (fresh env frames consumed: B_fresh * T * frame skip
per update, which is what the actors must supply), ``updates_per_s``, ``device``, ``batch``
([T+1, B, *obs_shape] of the observations trained on per update) and ``replay`` (null, or the
ratio, fresh/replayed unrolls per update and the replay's size).

Batches are synthetic unrolls built from the run's trajectory spec (random frames shared along
the frame stack as the real env's are, random actions and logits) and go through the same
:meth:`Learner.step` the server calls, so the figure covers collation, host-to-device copy, the
forward/backward pass, V-trace and the optimiser step, and with replay also sampling,
reconstruction and pushing of unrolls and the priority updates, without the sockets.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from actor.env import num_actions, observation_spec
from configs import schema
from configs.cli import DEFAULT_CONFIG
from learner.learner import Learner
from protocol.messages import Trajectory, TrajectorySpec


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


def measure(config: schema.Config, seconds: float, warmup_updates: int = 3) -> dict[str, Any]:
    """Run ``Learner.step`` on synthetic unrolls for ``seconds``; return the JSON figures.

    With replay, the replay is first filled with the synthetic pool so that every measured
    update samples (``replay.min_size`` permitting).
    """
    obs_shape, obs_dtype = observation_spec(config.env)
    device = config.learner.resolved_device
    actions = num_actions(config.env)
    learner = Learner(config, obs_shape, actions, device, obs_dtype)
    spec = TrajectorySpec(
        config.actor.unroll_length, obs_shape, np.dtype(obs_dtype), actions,
        tuple(learner.model.state_shape),
    )  # fmt: skip
    b, n = config.learner.batch_size, learner.fresh_per_step
    pool = synthetic_unrolls(spec, 4 * b)
    groups = [pool[i * n : (i + 1) * n] for i in range(len(pool) // n)]
    if learner.replay is not None:
        for traj in pool:
            learner.replay.push(traj)
    for i in range(warmup_updates):
        learner.step(groups[i % len(groups)], progress=0.0)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    updates, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        learner.step(groups[updates % len(groups)], progress=0.5)
        updates += 1
    sync()
    elapsed = time.perf_counter() - start
    replay = None
    if learner.replay is not None:
        replay = {
            "ratio": config.replay.ratio,
            "fresh_per_update": n,
            "replayed_per_update": b - n,
            "size": len(learner.replay),
        }
    return {
        "frames_per_s": round(updates * learner.frames_per_update / elapsed, 1),
        "updates_per_s": round(updates / elapsed, 3),
        "device": device,
        "batch": [spec.unroll_length + 1, b, *obs_shape],
        "replay": replay,
        "torso": config.model.torso,
        "core": config.model.core,
        "amp": config.learner.amp,
        "compile": config.learner.compile,
        "grad_accumulation": config.learner.grad_accumulation,
        "torch_threads": torch.get_num_threads(),
        "updates": updates,
        "seconds": round(elapsed, 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--batch-size", type=int, default=None, help="override learner.batch_size")
    parser.add_argument("--torso", default=None, help="override model.torso")
    parser.add_argument("--device", default=None, help="override learner.device")
    parser.add_argument(
        "--replay-ratio",
        type=float,
        default=None,
        help="enable replay with this replay.ratio (fraction of each batch replayed)",
    )
    parser.add_argument("--amp", default=None, help="override learner.amp (off, bf16, fp16)")
    parser.add_argument("--compile", action="store_true", help="set learner.compile")
    parser.add_argument(
        "--grad-accumulation", type=int, default=None, help="override learner.grad_accumulation"
    )
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {}
    for key, value in (
        ("learner.batch_size", args.batch_size),
        ("model.torso", args.torso),
        ("learner.device", args.device),
        ("learner.amp", args.amp),
        ("learner.grad_accumulation", args.grad_accumulation),
    ):
        if value is not None:
            overrides[key] = value
    if args.compile:
        overrides["learner.compile"] = True
    if args.replay_ratio is not None:
        overrides["replay.enabled"] = True
        overrides["replay.ratio"] = args.replay_ratio
        overrides["replay.min_size"] = 0
    config = schema.load(args.config, overrides)
    print(json.dumps(measure(config, args.seconds)))


if __name__ == "__main__":
    main()
