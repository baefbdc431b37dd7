"""Actor throughput on one core: raw emulator vs plain env loop vs the full actor pipeline.

Run: ``uv run python -m bench.actor_throughput --seconds 20 [--config C] [--cpu N]``.
Prints one JSON line; every rate is in env (NES) frames per second:

- ``raw_emulator_fps``: nes-py's ``VectorNESEmulator`` with one slot, random button bytes, no
  observation copy: the ceiling.
- ``env_loop_fps``: ``SuperMarioBrosEnv`` + ``JoypadSpace``, ``env.step`` with random actions.
- ``actor_fps``: the real :class:`actor.worker.Actor` (preprocessing, batched CPU inference on
  ``actor.num_envs`` envs, unroll collection, encoding and ZeroMQ sends, heartbeats) against an
  in-process sink that plays the learner (welcome + weights, then drains unrolls). The sink
  thread shares the pinned core, so the figure is conservative.
- ``actor_fps_heartbeats_off`` and ``heartbeat_overhead`` (1 - on/off): the same run with
  heartbeats paused in alternate 2-second windows, to show what heartbeats cost.

Each phase runs ``--seconds`` after a short warm-up. The process is pinned to one core and torch
to one thread, so the ratios ``actor_vs_env_loop`` and ``actor_vs_raw_emulator`` compare like
with like on a noisy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w
import torch
import zmq

from actor.worker import Actor, ActorOptions
from configs import schema
from configs.cli import DEFAULT_CONFIG
from envs.spec import num_actions, observation_spec
from models import build_model
from models.weights import flatten_state
from protocol import transport
from protocol.messages import Hello, Trajectory, Weights, Welcome


def raw_emulator_fps(seconds: float, seed: int = 0) -> float:
    """NES frames/s of the bare emulator stepping random controller bytes."""
    from gym_super_mario_bros._roms.rom_path import smb1_rom_path
    from nes_py.vector_env import VectorNESEmulator

    emu = VectorNESEmulator(smb1_rom_path(), 1)
    emu.reset()
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, 256, size=(4096, 1), dtype=np.uint8)
    frames, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for row in actions[:256]:
            emu.step(row)
        frames += 256
        actions = np.roll(actions, 1, axis=0)
    elapsed = time.perf_counter() - start
    emu.close()
    return frames / elapsed


def env_loop_fps(config: schema.Config, seconds: float, seed: int = 0) -> float:
    """NES frames/s of plain ``env.step`` on the raw Mario env with random actions."""
    import gym_super_mario_bros
    from nes_py.wrappers import JoypadSpace

    from envs.factory import mario_action_set

    env = JoypadSpace(gym_super_mario_bros.make(config.env.id), mario_action_set(config.env))
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    n = env.action_space.n
    frames, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, _, terminated, truncated, _ = env.step(int(rng.integers(n)))
        frames += 1
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - start
    env.close()
    return frames / elapsed


class SinkLearner(threading.Thread):
    """Plays the learner for one actor: answers hello with welcome + weights, drains unrolls."""

    def __init__(self, config: schema.Config, endpoint: str) -> None:
        super().__init__(daemon=True)
        self.ctx = zmq.Context.instance()
        self.router = transport.bind_router(self.ctx, endpoint)
        self.config = config
        obs_shape, _ = observation_spec(config.env)
        model = build_model(config.model, obs_shape, num_actions(config.env))
        layout, flat = flatten_state(model)
        self.weights = Weights(policy_version=0, learner_run_id="sink", layout=layout, flat=flat)
        self.unrolls = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            if not self.router.poll(100):
                continue
            identity, msg = transport.recv(self.router, prefix_frames=1)
            if isinstance(msg, Hello):
                welcome = Welcome(
                    learner_run_id="sink",
                    config_toml=tomli_w.dumps(schema.to_dict(self.config)),
                    broadcast_endpoint="inproc://unused-broadcast",
                    policy_version=0,
                    credits=1 << 30,  # a sink consumes at once: never make the actor wait
                )
                transport.send(self.router, welcome, prefix=identity)
                transport.send(self.router, self.weights, prefix=identity)
            elif isinstance(msg, Trajectory):
                self.unrolls += 1
        self.router.close(0)


def actor_fps(
    config: schema.Config, seconds: float, warmup: float = 3.0, window: float = 2.0
) -> dict[str, Any]:
    """Env frames/s of the real actor loop against :class:`SinkLearner`.

    Heartbeats are switched on and off in alternating ``window``-second slices of one run, so
    machine noise hits both modes alike; ``actor_fps`` is the rate with them on.
    """
    endpoint = "inproc://bench-actor"
    sink = SinkLearner(config, endpoint)
    sink.start()
    actor = Actor(ActorOptions(learner=endpoint, actor_id=0))
    actor.join()
    totals = {True: [0.0, 0.0], False: [0.0, 0.0]}  # heartbeats on? -> [frames, seconds]

    def timer() -> None:
        time.sleep(warmup)
        on = True
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            assert actor.heartbeat is not None
            actor.heartbeat.paused = not on
            t0, f0 = time.perf_counter(), actor.env_frames
            time.sleep(min(window, max(0.0, end - t0)))
            totals[on][0] += actor.env_frames - f0
            totals[on][1] += time.perf_counter() - t0
            on = not on
        actor.stopping = True

    threading.Thread(target=timer, daemon=True).start()
    actor.run()
    heartbeats_sent = actor.heartbeat.sent if actor.heartbeat else 0
    actor.close()
    sink.stop.set()
    sink.join()
    on_fps = totals[True][0] / max(totals[True][1], 1e-9)
    off_fps = totals[False][0] / max(totals[False][1], 1e-9) if totals[False][1] else on_fps
    return {
        "actor_fps": on_fps,
        "actor_fps_heartbeats_off": off_fps,
        "heartbeats_sent": heartbeats_sent,
        "unrolls_sent": actor.sent,
        "num_envs": actor.num_envs,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds per phase")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--cpu", type=int, default=None, help="core to pin to [default: last]")
    parser.add_argument("--num-envs", type=int, default=None, help="override actor.num_envs")
    parser.add_argument("--torso", default=None, help="override model.torso")
    args = parser.parse_args(argv)
    # the sink broadcasts no status, so the actor must not give up on it mid-measurement
    overrides: dict[str, Any] = {"actor.learner_timeout_s": 1e6}
    if args.num_envs:
        overrides["actor.num_envs"] = args.num_envs
    if args.torso:
        overrides["model.torso"] = args.torso
    config = schema.load(args.config, overrides)
    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    torch.set_num_threads(1)

    raw = raw_emulator_fps(args.seconds)
    loop = env_loop_fps(config, args.seconds)
    actor = actor_fps(config, args.seconds)
    result = {
        "raw_emulator_fps": round(raw, 1),
        "env_loop_fps": round(loop, 1),
        "actor_fps": round(actor["actor_fps"], 1),
        "actor_vs_env_loop": round(actor["actor_fps"] / loop, 3),
        "actor_vs_raw_emulator": round(actor["actor_fps"] / raw, 3),
        "actor_fps_heartbeats_off": round(actor["actor_fps_heartbeats_off"], 1),
        "heartbeat_overhead": round(1 - actor["actor_fps"] / actor["actor_fps_heartbeats_off"], 4),
        "heartbeats_sent": actor["heartbeats_sent"],
        "num_envs": actor["num_envs"],
        "torso": config.model.torso,
        "unroll_length": config.actor.unroll_length,
        "seconds_per_phase": args.seconds,
        "cpu": cpu,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
