"""Prioritized replay benchmark: push/sample/update rates and resident memory per stored unroll.

Run: ``uv run python -m bench.replay --capacity 100000`` (about 17 GB of RAM for Mario unrolls;
``--capacity 1000`` for a quick run). Prints one JSON line:

- ``push_per_s``: unrolls pushed per second while filling the empty replay to capacity (each
  push validates, de-duplicates frames and copies; first-touch page faults included).
- ``push_steady_per_s``: the same once full (every push evicts the oldest unroll).
- ``sample_per_s``: unrolls sampled per second, i.e. ``batch_size`` (32) x sample calls per
  second, each call drawing from the sum tree, computing IS weights and rebuilding the full
  [T+1, 4, 84, 84] observations into :class:`Trajectory` objects; ``sample_batches_per_s``
  counts the calls.
- ``update_per_s``: priorities set per second through ``update_priorities`` with batches of 32.
- ``bytes_per_unroll``: (process RSS after filling to capacity - RSS before creating the
  replay) / capacity, i.e. measured resident memory per stored unroll, everything included.
- ``raw_bytes_per_unroll``: the uint8 frames alone: mean unique frames stored per unroll x
  84 x 84; ``bytes_ratio`` is their quotient (the goal is <= 1.10).

Layout: Mario's default (T=20, (4, 84, 84) uint8, 7 actions), overridable by flags. Unrolls are
synthetic but shaped like real ones: a continuous stream of frames shifting through the stack,
the last observation of one unroll carried over as the first of the next, episode ends (about
one step in 60, a tenth of them truncations with a ``truncated_obs`` row) that restart the
stack with the reset frame repeated. A pool of prebuilt unrolls is pushed round robin with
fresh ``seq`` numbers, so filling 100,000 slots costs only the replay's own work.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import sys
import time
from typing import Any

import numpy as np
import psutil

from learner.replay import PrioritizedReplay
from protocol.messages import Trajectory, TrajectorySpec

HEADROOM_BYTES = 2 << 30
"""Memory left free for the interpreter, the pool and the OS when checking that a run fits."""


def synthetic_unrolls(
    spec: TrajectorySpec, count: int, seed: int = 0, end_prob: float = 1 / 60
) -> list[Trajectory]:
    """``count`` consecutive unrolls of one env with a realistic frame stack (see module doc)."""
    rng = np.random.default_rng(seed)
    stack, h, w = spec.obs_shape
    t_len = spec.unroll_length

    def frame() -> np.ndarray:
        return rng.integers(0, 256, (h, w), dtype=np.uint8)

    frames = [frame()] * stack  # the first episode starts from a reset
    out = []
    for seq in range(count):
        arrays = spec.empty()
        arrays["action"][:] = rng.integers(0, spec.num_actions, t_len)
        arrays["reward"][:] = rng.integers(-15, 16, t_len)
        arrays["behaviour_logits"][:] = rng.normal(size=(t_len, spec.num_actions))
        arrays["policy_version"][:] = seq
        obs, final = [np.stack(frames)], []
        for t in range(t_len):
            following = [*frames[1:], frame()]
            if rng.random() < end_prob:
                if rng.random() < 0.1:
                    arrays["truncated"][t] = True
                    final.append(np.stack(following))
                else:
                    arrays["terminated"][t] = True
                following = [frame()] * stack
            frames = following
            obs.append(np.stack(frames))
        arrays["obs"] = np.stack(obs)
        if final:
            arrays["truncated_obs"] = np.stack(final)
        out.append(Trajectory(actor_id=0, run_id="bench", seq=seq, env_index=0, **arrays))
    return out


def check_memory(spec: TrajectorySpec, capacity: int) -> int:
    """Estimated bytes for ``capacity`` unrolls; exits with a clear message if they can't fit."""
    need = PrioritizedReplay.estimate_bytes(spec, capacity)
    available = psutil.virtual_memory().available
    if need + HEADROOM_BYTES > available:
        per = PrioritizedReplay.estimate_bytes(spec, 1)
        fits = max(0, (available - HEADROOM_BYTES) // per)
        sys.exit(
            f"bench.replay: --capacity {capacity} needs about {need / 2**30:.1f} GiB of RAM "
            f"(+{HEADROOM_BYTES / 2**30:.0f} GiB headroom) but only {available / 2**30:.1f} GiB "
            f"is available; the largest capacity that fits now is about {fits}."
        )
    return need


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else math.inf


def measure(
    spec: TrajectorySpec, capacity: int, seconds: float, batch_size: int, pool_size: int = 64
) -> dict[str, Any]:
    """Fill a replay of ``capacity`` unrolls, then time sampling and priority updates."""
    estimate = check_memory(spec, capacity)
    pool = synthetic_unrolls(spec, pool_size)
    rng = np.random.default_rng(1)
    gc.collect()
    process = psutil.Process()
    rss_before = process.memory_info().rss

    replay = PrioritizedReplay(spec, capacity, seed=0)
    start = time.perf_counter()
    for i in range(capacity):
        replay.push(dataclasses.replace(pool[i % pool_size], seq=i))
    fill_s = time.perf_counter() - start
    gc.collect()
    rss_after = process.memory_info().rss
    metrics = replay.metrics()

    # priorities spread over two orders of magnitude, as TD errors are
    pushes, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds / 3 or pushes < 10:
        replay.push(dataclasses.replace(pool[pushes % pool_size], seq=capacity + pushes))
        pushes += 1
    steady_s = time.perf_counter() - start

    replay.update_priorities(np.arange(capacity), rng.lognormal(0.0, 1.0, capacity))
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or calls < 3:
        replay.sample(batch_size)
        calls += 1
    sample_s = time.perf_counter() - start

    batches = [
        (rng.integers(0, capacity, batch_size), rng.lognormal(0.0, 1.0, batch_size))
        for _ in range(64)
    ]
    updates, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds / 3 or updates < 10:
        indices, priorities = batches[updates % 64]
        replay.update_priorities(indices, priorities)
        updates += 1
    update_s = time.perf_counter() - start

    frame_bytes = math.prod(spec.obs_shape[1:]) * np.dtype(spec.obs_dtype).itemsize
    raw = metrics["replay/frames_per_unroll"] * frame_bytes
    measured = (rss_after - rss_before) / capacity
    return {
        "push_per_s": _rate(capacity, fill_s),
        "push_steady_per_s": _rate(pushes, steady_s),
        "sample_per_s": _rate(calls * batch_size, sample_s),
        "sample_batches_per_s": _rate(calls, sample_s),
        "update_per_s": _rate(updates * batch_size, update_s),
        "bytes_per_unroll": round(measured, 1),
        "raw_bytes_per_unroll": round(raw, 1),
        "bytes_ratio": round(measured / raw, 4) if raw else None,
        "estimated_bytes_per_unroll": round(estimate / capacity, 1),
        "frames_per_unroll": round(metrics["replay/frames_per_unroll"], 3),
        "dedup_overflows": int(metrics["replay/dedup_overflows"]),
        "capacity": capacity,
        "batch_size": batch_size,
        "layout": {
            "unroll_length": spec.unroll_length,
            "obs_shape": list(spec.obs_shape),
            "num_actions": spec.num_actions,
        },
        "fill_s": round(fill_s, 2),
        "rss_gib": round(rss_after / 2**30, 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--capacity", type=int, default=100_000, help="unrolls stored")
    parser.add_argument("--seconds", type=float, default=3.0, help="time spent sampling")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--unroll-length", type=int, default=20)
    parser.add_argument("--frame-stack", type=int, default=4)
    parser.add_argument("--resolution", type=int, default=84)
    parser.add_argument("--num-actions", type=int, default=7)
    args = parser.parse_args(argv)
    if args.capacity < 1 or args.batch_size < 1 or args.seconds <= 0:
        parser.error("--capacity and --batch-size must be >= 1 and --seconds > 0")
    spec = TrajectorySpec(
        args.unroll_length,
        (args.frame_stack, args.resolution, args.resolution),
        np.dtype(np.uint8),
        args.num_actions,
    )
    print(json.dumps(measure(spec, args.capacity, args.seconds, args.batch_size)))


if __name__ == "__main__":
    main()
