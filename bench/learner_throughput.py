"""Learner throughput: env frames consumed per second by ``Learner.train_step``.

Run: ``uv run python -m bench.learner_throughput --seconds 20 [--config C] [--batch-size B]``.
Prints one JSON line with ``frames_per_s`` (env frames consumed: B * T * frame skip per
update), ``updates_per_s``, ``device`` and ``batch`` ([T+1, B, *obs_shape] of the observations).

Batches are synthetic unrolls built from the run's trajectory spec (random frames, actions and
logits) and collated exactly as the server does, so the figure covers collation, host-to-device
copy, the forward/backward pass, V-trace and the optimiser step, without the sockets.
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
from learner.learner import Learner, collate
from protocol.messages import Trajectory, TrajectorySpec


def synthetic_unrolls(spec: TrajectorySpec, count: int, seed: int = 0) -> list[Trajectory]:
    """``count`` valid random trajectories for ``spec`` (one in four ends an episode)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        arrays = spec.empty()
        if spec.obs_dtype == np.uint8:
            arrays["obs"][:] = rng.integers(0, 256, arrays["obs"].shape, dtype=np.uint8)
        else:
            arrays["obs"][:] = rng.normal(size=arrays["obs"].shape)
        arrays["action"][:] = rng.integers(0, spec.num_actions, spec.unroll_length)
        arrays["reward"][:] = rng.normal(size=spec.unroll_length)
        arrays["behaviour_logits"][:] = rng.normal(size=arrays["behaviour_logits"].shape)
        if i % 4 == 0:
            arrays["terminated"][spec.unroll_length // 2] = True
        out.append(Trajectory(actor_id=0, run_id="bench", seq=i, env_index=0, **arrays))
    return out


def measure(config: schema.Config, seconds: float, warmup_updates: int = 3) -> dict[str, Any]:
    """Run ``train_step`` on synthetic batches for ``seconds``; return the JSON figures."""
    obs_shape, obs_dtype = observation_spec(config.env)
    spec = TrajectorySpec(
        config.actor.unroll_length, obs_shape, np.dtype(obs_dtype), num_actions(config.env)
    )
    device = config.learner.resolved_device
    learner = Learner(config, obs_shape, spec.num_actions, device)
    b = config.learner.batch_size
    pool = synthetic_unrolls(spec, 4 * b)
    batches = [pool[i * b : (i + 1) * b] for i in range(4)]
    for i in range(warmup_updates):
        learner.train_step(collate(batches[i % 4], device))
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    updates, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        learner.train_step(collate(batches[updates % 4], device))
        updates += 1
    sync()
    elapsed = time.perf_counter() - start
    return {
        "frames_per_s": round(updates * config.env_frames_per_update / elapsed, 1),
        "updates_per_s": round(updates / elapsed, 3),
        "device": device,
        "batch": [spec.unroll_length + 1, b, *obs_shape],
        "torso": config.model.torso,
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
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {}
    for key, value in (
        ("learner.batch_size", args.batch_size),
        ("model.torso", args.torso),
        ("learner.device", args.device),
    ):
        if value is not None:
            overrides[key] = value
    config = schema.load(args.config, overrides)
    print(json.dumps(measure(config, args.seconds)))


if __name__ == "__main__":
    main()
